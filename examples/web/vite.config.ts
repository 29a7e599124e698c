// One command serves the page and its Better Auth server on http://localhost:3000: Vite serves index.html and
// src/main.ts, and this plugin hands every /api/auth/* request to Better Auth, as a real app's server would.
import { toNodeHandler } from 'better-auth/node'
import { defineConfig, type Plugin } from 'vite'

/** Mounts Better Auth on /api/auth in Vite's dev server. */
function betterAuthRoutes(): Plugin {
  return {
    name: 'better-auth-routes',
    async configureServer(server) {
      // Loaded here, not at the top: `vite build` reads this file too, and needs no auth server.
      const { auth } = await import('./src/auth.ts')
      const handler = toNodeHandler(auth)
      server.middlewares.use((request, response, next) => {
        // Better Auth routes on the full path, so the middleware is not mounted on a prefix (which would strip it).
        if (request.url?.startsWith('/api/auth/') === true) void handler(request, response)
        else next()
      })
    },
  }
}

export default defineConfig({
  plugins: [betterAuthRoutes()],
  // Port 3000 or nothing: it is the API's default CORS_ORIGINS entry and the origin in Better Auth's tokens.
  server: { port: 3000, strictPort: true },
})
