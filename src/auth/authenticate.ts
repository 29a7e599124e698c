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

/** RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** Space or tab: the whitespace a header value may hold around and inside a credential (RFC 9110 §5.6.3). */
const isSpaceOrTab = (character: string | undefined): boolean => character === ' ' || character === '\t'

/**
 * The token of an Authorization header: `null` when it carries no Bearer credentials (absent, another scheme, or
 * `Bearer` with nothing after it: RFC 6750 §3.1, no error code), `undefined` for the Bearer scheme with a credential
 * that is not one b64token (whitespace inside, other characters), else the token. The scheme is case-insensitive
 * (RFC 7235 §2.1); `Bearer` glued to anything else (`Bearer:x`, `Bearerx`) is another scheme.
 *
 * Read by index, not by a regular expression: a pattern with a lazy credential before optional trailing whitespace
 * backtracks quadratically on a long run of spaces inside the value (16 KB of them cost about 120 ms of CPU per
 * request, before any token is checked).
 */
function bearerTokenOf(header: string | undefined): string | null | undefined {
  if (header === undefined || header.slice(0, 6).toLowerCase() !== 'bearer') return null
  if (header.length > 6 && !isSpaceOrTab(header[6])) return null
  let start = 6
  let end = header.length
  while (start < end && isSpaceOrTab(header[start])) start += 1
  while (end > start && isSpaceOrTab(header[end - 1])) end -= 1
  if (start === end) return null
  const credential = header.slice(start, end)
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
