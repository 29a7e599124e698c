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

/** `Bearer <token>`; the scheme is case-insensitive (RFC 7235 §2.1). */
const BEARER = /^Bearer +(\S+) *$/i

/** How many `Authorization` lines the raw request has (`rawHeaders` is `[name, value, name, value, …]`). */
function countAuthorizationHeaders(rawHeaders: readonly string[]): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]?.toLowerCase() === 'authorization') count++
  return count
}

/**
 * Registers the authentication hook on the instance it is called with: register it inside the /api scope,
 * so /health, /ready and /docs stay public without exemptions. Errors (API.md "Authentication", RFC 6750 §3): 401
 * with `WWW-Authenticate`, 400 for two Authorization headers, 503 with Retry-After when the key set cannot be fetched
 * (the token may be valid, so the client must not sign its user out).
 */
export function authenticate(app: FastifyInstance, verifier: TokenVerifier): void {
  app.decorateRequest('userId', '')
  app.addHook('onRequest', async (request) => {
    if (countAuthorizationHeaders(request.raw.rawHeaders) > 1) throw answers.credentialsAmbiguous
    const header = request.headers.authorization
    const match = header === undefined ? null : BEARER.exec(header)
    if (match?.[1] === undefined) throw answers.notAuthenticated
    try {
      request.userId = (await verifier.verify(match[1])).userId
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      if (error.reason === 'unavailable') {
        request.log.warn(
          { cause: 'the JWKS endpoint cannot be reached and no key set has been fetched yet' },
          'key set unavailable: answered 503',
        )
        throw answers.serviceUnavailable
      }
      throw error.reason === 'expired' ? answers.tokenExpired : answers.invalidToken
    }
  })
}
