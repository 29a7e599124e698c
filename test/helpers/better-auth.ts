// A real Better Auth instance (the `better-auth` package, memory adapter) served on a loopback port, with a page's
// files beside it when a browser test needs one, and users signed up through its HTTP handler with the tokens a
// frontend would forward to this service.
//
// What Better Auth 1.7 really sends (checked against the running package):
// - `GET /api/auth/token` → `{"token": <JWT>}`, signed with the JWKS key (`alg` from `jwks.keyPairConfig`, EdDSA by
//   default; `kid` in the header), user id in `sub`, `iss` and `aud` both the origin of `baseURL` (no path, no
//   trailing slash), lifetime 15 min.
// - The `better-auth.session_data` cookie (with `session.cookieCache: { enabled: true, strategy: 'jwt' }`) is a bare
//   compact JWT: HS256 with the raw secret, user id in `user.id`, no `sub`/`iss`/`aud`, lifetime `cookieCache.maxAge`
//   (300 s). It is neither signed with Better Auth's cookie HMAC nor URL-encoded (base64url only), so the frontend
//   forwards the cookie value exactly as it is, as `Authorization: Bearer <value>`. It is httpOnly, so only
//   server-side frontend code can read it. Two things can change its name: an https `baseURL` (or
//   `advanced.useSecureCookies`) prefixes it `__Secure-`, and a value over ~4 KB is split into
//   `better-auth.session_data.0`, `.1`, … whose values the frontend must join in index order.
// - The `better-auth.session_token` cookie (and the bearer() plugin's `set-auth-token` header) is an opaque session
//   id `<token>.<HMAC>`, URL-encoded in the cookie: not a JWT, so this service refuses it.
// - The email-verification link's token is HS256 with the same raw secret, but carries `userId` at the top level (no
//   `sub`, no `user.id`), so this service refuses it too.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { betterAuth } from 'better-auth'
import { memoryAdapter } from 'better-auth/adapters/memory'
import { toNodeHandler } from 'better-auth/node'
import { bearer } from 'better-auth/plugins/bearer'
import { jwt, type JWSAlgorithms } from 'better-auth/plugins/jwt'
import { TEST_SECRET } from './tokens.ts'

/** The cookie names Better Auth uses over plain http with the default prefix. */
export const SESSION_DATA_COOKIE = 'better-auth.session_data'
export const SESSION_TOKEN_COOKIE = 'better-auth.session_token'

/** A user signed up through Better Auth's HTTP handler, with every credential a frontend could forward. */
export interface BetterAuthUser {
  /** Better Auth's user id: the `user_id` of this user's tasks. */
  id: string
  email: string
  name: string
  /** The `jwt()` plugin's token from `GET /api/auth/token` (asymmetric, verified through the JWKS). */
  jwt: string
  /** The `better-auth.session_data` cookie value from sign-up's Set-Cookie (HS256 cookie-cache JWT), as sent. */
  sessionData: string
  /** The `better-auth.session_token` cookie value from sign-up's Set-Cookie (opaque, signed, URL-encoded), as sent. */
  sessionTokenCookie: string
  /** The bearer() plugin's `set-auth-token` header from sign-up (the same session token, not URL-encoded). */
  setAuthToken: string
  /** The token of the email-verification link Better Auth sent at sign-up (HS256 with the same secret). */
  emailVerificationToken: string
}

/** A running Better Auth instance. */
export interface BetterAuthServer {
  /** `http://127.0.0.1:<port>`: Better Auth's `baseURL`. */
  baseURL: string
  /** Its `/api/auth/jwks`: the service's `JWT_JWKS_URL`. */
  jwksUrl: URL
  /** The Better Auth instance itself (for `auth.api.*` calls). */
  auth: ReturnType<typeof createAuth>
  /** Signs a user up over HTTP (`POST /api/auth/sign-up/email`) and collects their tokens. */
  signUp(user: { email: string; name: string; password?: string }): Promise<BetterAuthUser>
  /** A new jwt() token for a signed-up user (`GET /api/auth/token` with their session), signed by the current key. */
  issueToken(user: BetterAuthUser): Promise<string>
  /** Better Auth's stored signing keys now (the memory adapter's `jwks` rows): a test can end a key's life here. */
  storedKeys(): StoredKey[]
  /**
   * Files served beside Better Auth, by path (a page on Better Auth's origin, as in a real app): a GET outside
   * /api/auth for a path in this map gets the file, any other GET 404. Empty at start.
   */
  pageFiles: Map<string, { contentType: string; body: string }>
  /**
   * Serves the same handler (Better Auth and the page files) on another loopback port too, closed after the test:
   * the origin of that port, a second origin for the same page. Cookies ignore ports, so a browser signed in on one
   * is signed in on both.
   */
  listenOnAnotherPort(): Promise<string>
}

/** A row of Better Auth's `jwks` table: its id is the `kid`. */
export interface StoredKey {
  id: string
  createdAt: Date
  expiresAt?: Date
}

export interface BetterAuthOptions {
  /** `jwt({ jwks: { keyPairConfig: { alg } } })`; unset keeps Better Auth's default (EdDSA). */
  alg?: JWSAlgorithms
  /**
   * Key rotation (`jwks.rotationInterval` and `jwks.gracePeriod`, in seconds): a key signs for `rotationInterval`,
   * then a new one is made on the next token, and the old one stays in the key set for `gracePeriod` more.
   */
  rotation?: { rotationInterval: number; gracePeriod: number }
  /** The jwt() plugin's token lifetime (`jwt.expirationTime`, e.g. `'5s'`); unset keeps Better Auth's 15 min. */
  expirationTime?: string
}

/** The memory adapter's tables; the adapter may replace a table's array, so read them through this object. */
type MemoryTables = Record<'user' | 'session' | 'account' | 'verification' | 'jwks', unknown[]>

function createAuth(
  baseURL: string,
  options: BetterAuthOptions,
  verificationTokens: Map<string, string>,
  tables: MemoryTables,
) {
  const jwks = {
    ...(options.alg === undefined ? {} : { keyPairConfig: { alg: options.alg } }),
    ...(options.rotation ?? {}),
  }
  const jwtOptions = {
    ...(Object.keys(jwks).length === 0 ? {} : { jwks }),
    ...(options.expirationTime === undefined ? {} : { jwt: { expirationTime: options.expirationTime } }),
  }
  return betterAuth({
    baseURL,
    secret: TEST_SECRET,
    database: memoryAdapter(tables),
    emailAndPassword: { enabled: true },
    // "Sends" the verification link by keeping its token, so tests can try it as a bearer token.
    emailVerification: {
      sendOnSignUp: true,
      sendVerificationEmail: async ({ user, token }) => {
        verificationTokens.set(user.email, token)
      },
    },
    session: { cookieCache: { enabled: true, strategy: 'jwt' } },
    plugins: [jwt(jwtOptions), bearer()],
    telemetry: { enabled: false },
  })
}

/** Starts Better Auth on 127.0.0.1 (a free port) with TEST_SECRET as its secret; it is closed after the test. */
export async function startBetterAuth(t: TestContext, options: BetterAuthOptions = {}): Promise<BetterAuthServer> {
  // The base URL needs the port: listen first (nobody knows the port yet), then attach Better Auth's handler.
  const baseURL = await serveOnLoopback(t, (request, response) => handle(request, response))
  const verificationTokens = new Map<string, string>()
  const tables: MemoryTables = { user: [], session: [], account: [], verification: [], jwks: [] }
  const auth = createAuth(baseURL, options, verificationTokens, tables)
  const authHandler = toNodeHandler(auth)
  const pageFiles: BetterAuthServer['pageFiles'] = new Map()
  function handle(request: IncomingMessage, response: ServerResponse): void {
    const path = new URL(request.url ?? '/', baseURL).pathname
    if (path.startsWith('/api/auth/') || request.method !== 'GET') return void authHandler(request, response)
    const file = pageFiles.get(path)
    if (file === undefined) return void response.writeHead(404).end()
    response.writeHead(200, { 'content-type': file.contentType, 'cache-control': 'no-store' }).end(file.body)
  }

  async function signUp(user: { email: string; name: string; password?: string }): Promise<BetterAuthUser> {
    // Better Auth's CSRF check refuses a POST without Origin (403 MISSING_OR_NULL_ORIGIN), as a browser would send it.
    const response = await fetch(`${baseURL}/api/auth/sign-up/email`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: baseURL },
      body: JSON.stringify({
        email: user.email,
        name: user.name,
        password: user.password ?? 'correct-horse-battery-staple',
      }),
    })
    if (!response.ok) throw new Error(`Better Auth sign-up answered ${response.status}: ${await response.text()}`)
    const body = (await response.json()) as { user: { id: string } }
    const cookies = new Map(
      response.headers.getSetCookie().map((line) => {
        const pair = line.split(';', 1)[0] ?? ''
        const equals = pair.indexOf('=')
        return [pair.slice(0, equals), pair.slice(equals + 1)] as const
      }),
    )
    const sessionData = cookies.get(SESSION_DATA_COOKIE)
    const sessionTokenCookie = cookies.get(SESSION_TOKEN_COOKIE)
    const setAuthToken = response.headers.get('set-auth-token')
    if (sessionData === undefined || sessionTokenCookie === undefined || setAuthToken === null) {
      throw new Error(`Better Auth sign-up did not set the expected cookies: ${[...cookies.keys()].join(', ')}`)
    }
    const token = await tokenWithSession(sessionTokenCookie)
    const emailVerificationToken = verificationTokens.get(user.email.toLowerCase())
    if (emailVerificationToken === undefined) throw new Error('Better Auth sent no verification email at sign-up')
    return {
      id: body.user.id,
      email: user.email,
      name: user.name,
      jwt: token,
      sessionData,
      sessionTokenCookie,
      setAuthToken,
      emailVerificationToken,
    }
  }

  /** The frontend's way to the jwt() plugin's token: the session cookie on GET /api/auth/token. */
  async function tokenWithSession(sessionTokenCookie: string): Promise<string> {
    const tokenResponse = await fetch(`${baseURL}/api/auth/token`, {
      headers: { cookie: `${SESSION_TOKEN_COOKIE}=${sessionTokenCookie}` },
    })
    if (!tokenResponse.ok)
      throw new Error(`Better Auth /api/auth/token answered ${tokenResponse.status}: ${await tokenResponse.text()}`)
    return ((await tokenResponse.json()) as { token: string }).token
  }

  return {
    baseURL,
    jwksUrl: new URL('/api/auth/jwks', baseURL),
    auth,
    signUp,
    issueToken: (user) => tokenWithSession(user.sessionTokenCookie),
    storedKeys: () => tables.jwks as StoredKey[],
    pageFiles,
    listenOnAnotherPort: () => serveOnLoopback(t, handle),
  }
}

/** An HTTP server for `handler` on a free 127.0.0.1 port, closed after the test; its origin. */
async function serveOnLoopback(
  t: TestContext,
  handler: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<string> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A loopback HTTP proxy in front of a key-set URL that a test can count, slow down and stop. */
export interface KeySetProxy {
  /** The proxy's URL: the service's JWT_JWKS_URL. */
  url: URL
  /** Requests received so far. */
  requests(): number
  /** When above 0, every answer is held this many ms first. */
  delayMs: number
  /** Closes the listening socket: the URL then refuses connections. */
  stop(): Promise<void>
}

/** Starts a proxy on 127.0.0.1 in front of `upstream` (Better Auth's /api/auth/jwks); closed after the test. */
export async function startKeySetProxy(t: TestContext, upstream: URL): Promise<KeySetProxy> {
  let count = 0
  const timers = new Set<NodeJS.Timeout>()
  const server = createServer((request, response) => {
    count++
    const answer = async (): Promise<void> => {
      const upstreamResponse = await fetch(upstream, { headers: { accept: 'application/json' } })
      const body = await upstreamResponse.text()
      if (!response.destroyed)
        response.writeHead(upstreamResponse.status, { 'content-type': 'application/json' }).end(body)
    }
    const run = (): void => void answer().catch(() => response.destroy())
    if (state.delayMs <= 0) return run()
    const timer = setTimeout(() => {
      timers.delete(timer)
      run()
    }, state.delayMs)
    timers.add(timer)
  })
  const state: KeySetProxy = {
    url: new URL('http://127.0.0.1/'),
    requests: () => count,
    delayMs: 0,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/auth/jwks`)
  t.after(async () => {
    for (const timer of timers) clearTimeout(timer)
    server.closeAllConnections()
    if (server.listening) await state.stop()
  })
  return state
}
