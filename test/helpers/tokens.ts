// Really signed tokens for tests (jose), and a local JWKS server on loopback that can be stopped and counted.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import {
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
} from 'jose'

/** The HS256 secret every test app is configured with. */
export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

/** Seconds since the epoch. */
export const nowS = (): number => Math.floor(Date.now() / 1000)

/**
 * Signs `claims` exactly as given (nothing added) with HS256 and `secret` (default TEST_SECRET).
 * `header` is merged into the protected header, e.g. `{ kid }` or `{ jku }`.
 */
export async function signHs256(
  claims: JWTPayload,
  options: { secret?: string; header?: Partial<JWTHeaderParameters> } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...options.header })
    .sign(new TextEncoder().encode(options.secret ?? TEST_SECRET))
}

/** A valid HS256 token for `userId` (in `sub`), expiring in 5 minutes. */
export async function tokenFor(userId: string): Promise<string> {
  return signHs256({ sub: userId, iat: nowS(), exp: nowS() + 300 })
}

/** `{ authorization: 'Bearer …' }` for app.inject. */
export async function authHeaderFor(userId: string): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await tokenFor(userId)}` }
}

/** A key pair with its public JWK (carrying `kid` and `alg`, as Better Auth publishes them). */
export interface TestKey {
  kid: string
  alg: string
  privateKey: CryptoKey
  publicJwk: JWK
}

/** Generates a key pair for `alg` (EdDSA, ES256, RS256, PS256, …). */
export async function createTestKey(alg: string, kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg } }
}

/** Signs `claims` with `key` (its `kid` and `alg` in the header unless `header` overrides them). */
export async function signWithKey(
  key: TestKey,
  claims: JWTPayload,
  header: Partial<JWTHeaderParameters> = {},
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey)
}

/** A JWKS endpoint on 127.0.0.1 serving `keys`; counts requests; can be stopped, and made slow or failing. */
export interface JwksServer {
  url: URL
  /** The keys served; replace the array's contents to rotate. */
  keys: TestKey[]
  /** GET requests received so far. */
  requests(): number
  /** When set, every answer is delayed by this many ms. */
  delayMs: number
  /** When set, every answer is this HTTP status with no key set. */
  failWith: number | null
  /** Closes the listening socket (the URL then refuses connections). */
  stop(): Promise<void>
}

/** Starts a JWKS server on a loopback port; it is stopped after the test. */
export async function startJwksServer(t: TestContext, keys: TestKey[]): Promise<JwksServer> {
  let count = 0
  const state: JwksServer = {
    url: new URL('http://127.0.0.1/'),
    keys,
    requests: () => count,
    delayMs: 0,
    failWith: null,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  }
  const server: Server = createServer((request, response) => {
    count++
    const answer = (): void => {
      if (state.failWith !== null) {
        response.writeHead(state.failWith).end()
        return
      }
      response
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: state.keys.map((key) => key.publicJwk) }))
    }
    if (state.delayMs > 0) setTimeout(answer, state.delayMs)
    else answer()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`)
  t.after(async () => {
    server.closeAllConnections()
    if (server.listening) await state.stop()
  })
  return state
}
