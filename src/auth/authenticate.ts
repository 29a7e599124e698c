// The authentication step of every /api route: Authorization header → verified token → request.userId.
import type { FastifyInstance } from 'fastify'
import { answers } from '../http/answers.ts'
import { AuthError, type TokenVerifier } from './token-verifier.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller's user id from a verified token; set only inside the /api scope. */
    userId: string
  }
}

/**
 * The Bearer scheme, case-insensitive (RFC 7235 §2.1), and what follows it: nothing (no credentials), or whitespace
 * and the credential. `Bearer` glued to anything else (`Bearer:x`, `Bearerx`) is another scheme.
 */
const BEARER_SCHEME = /^Bearer(?:[ \t]+(.*?))?[ \t]*$/is

/** RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/**
 * The token of an Authorization header: `null` when it carries no Bearer credentials (absent, another scheme, or
 * `Bearer` with nothing after it: RFC 6750 §3.1, no error code), `undefined` for the Bearer scheme with a credential
 * that is not one b64token (whitespace inside, other characters), else the token. Node has trimmed the value's ends.
 */
function bearerTokenOf(header: string | undefined): string | null | undefined {
  const match = header === undefined ? null : BEARER_SCHEME.exec(header)
  if (match === null) return null
  const credential = match[1] ?? ''
  if (credential === '') return null
  return B64TOKEN.test(credential) ? credential : undefined
}

/** How many `Authorization` lines the raw request has (`rawHeaders` is `[name, value, name, value, …]`). */
function countAuthorizationHeaders(rawHeaders: readonly string[]): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]?.toLowerCase() === 'authorization') count++
  return count
}

/**
 * Registers the authentication hook on the instance it is called with: register it inside the /api scope,
 * so /health, /ready and /docs stay public without exemptions. Errors (docs/contract.md "Authentication", RFC 6750 §3):
 * 401 with `WWW-Authenticate`, 400 for two Authorization headers, 503 with Retry-After when the key set cannot be
 * fetched (the token may be valid, so the client must not sign its user out). Every refused token is logged once, at
 * info, by the request's logger: `token refused` with its reason (src/auth/token-refusal.ts); a request without
 * credentials is not.
 */
export function authenticate(app: FastifyInstance, verifier: TokenVerifier): void {
  app.decorateRequest('userId', '')
  app.addHook('onRequest', async (request) => {
    if (countAuthorizationHeaders(request.raw.rawHeaders) > 1) throw answers.credentialsAmbiguous
    const token = bearerTokenOf(request.headers.authorization)
    if (token === null) throw answers.notAuthenticated
    if (token === undefined) {
      request.log.info({ reason: 'malformed' }, 'token refused')
      throw answers.invalidToken
    }
    try {
      request.userId = (await verifier.verify(token)).userId
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      if (error.reason === 'unavailable') {
        request.log.warn(
          { cause: 'the JWKS endpoint cannot be reached and no key set has been fetched yet' },
          'key set unavailable: answered 503',
        )
        throw answers.serviceUnavailable
      }
      request.log.info({ ...error.refusal }, 'token refused')
      throw error.reason === 'expired' ? answers.tokenExpired : answers.invalidToken
    }
  })
}
