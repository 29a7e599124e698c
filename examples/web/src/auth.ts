// The example's Better Auth server: email and password accounts, and the jwt() plugin, whose tokens the Tasks API
// verifies through this server's /api/auth/jwks. Vite's dev server mounts it on /api/auth (vite.config.ts), so the
// page and its auth share one origin and Better Auth's cookies never leave it.
import { betterAuth } from 'better-auth'
import { memoryAdapter } from 'better-auth/adapters/memory'
import { jwt } from 'better-auth/plugins'

/**
 * Better Auth for http://localhost:3000: its tokens carry that origin as `iss` and `aud` (set JWT_ISSUER and
 * JWT_AUDIENCE on the API to it to enforce them). The secret comes from BETTER_AUTH_SECRET in the environment (Better
 * Auth reads it; in development it falls back to its own default with a warning): it stays on the server, never in
 * the page's code.
 */
export const auth = betterAuth({
  baseURL: 'http://localhost:3000',
  // Users, sessions and signing keys live in memory and are gone when the dev server stops. A real app passes its
  // database here (Better Auth's Drizzle, Prisma or Kysely adapter, or a pg Pool) and keeps its keys across restarts.
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  emailAndPassword: { enabled: true },
  // GET /api/auth/token answers {"token": <JWT>}, EdDSA-signed, user id in `sub`, valid 15 minutes.
  plugins: [jwt()],
  telemetry: { enabled: false },
})
