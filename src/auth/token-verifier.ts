// Turns a bearer token into the caller's user id, by docs/contract.md's "Authentication" rules, or says why not.
import { decodeProtectedHeader, jwtVerify, type JWTPayload, type ProtectedHeaderParameters } from 'jose'
import type { Config } from '../config.ts'
import { createJwksKeys, KeySetUnavailableError } from './jwks-keys.ts'
import { loggableAudience, loggableClaim, refusalOfJoseError, type TokenRefusal } from './token-refusal.ts'
import { createVerifiedTokenCache, VERIFIED_TOKEN_CACHE_BYTES } from './verified-token-cache.ts'

/** Why a token was refused: 401 "Token expired", 401 "Invalid token", or 503 (the key set is unreachable). */
type AuthFailure = 'expired' | 'invalid' | 'unavailable'

/**
 * Thrown by `verify`; `reason` decides the answer, `refusal` says why for the log (null for `unavailable`: the token
 * was not refused, only not checked). Nothing of the token is in the message.
 */
export class AuthError extends Error {
  readonly reason: AuthFailure
  readonly refusal: TokenRefusal | null
  constructor(refusal: TokenRefusal | 'unavailable') {
    const reason = refusal === 'unavailable' ? refusal : refusal.reason === 'expired' ? 'expired' : 'invalid'
    super(`token refused: ${refusal === 'unavailable' ? refusal : refusal.reason}`)
    this.name = 'AuthError'
    this.reason = reason
    this.refusal = refusal === 'unavailable' ? null : refusal
  }
}

/** What a verified token tells the service: only who the caller is (docs/contract.md rule 4). */
export interface VerifiedToken {
  userId: string
}

export interface TokenVerifier {
  /** @throws AuthError when the token is expired, invalid, or cannot be checked now. */
  verify(token: string): Promise<VerifiedToken>
}

/** The asymmetric algorithms accepted from the JWKS (Better Auth signs with EdDSA, ES256, ES512, RS256 or PS256). */
const ASYMMETRIC_ALGORITHMS = [
  'EdDSA',
  'Ed25519',
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
]

/**
 * Longest accepted user id in characters (code points, as PostgreSQL counts them): the width of `tasks.user_id`
 * (docs/contract.md rule 3).
 */
const MAX_USER_ID_LENGTH = 255

type TokenVerifierConfig = Pick<Config, 'betterAuthSecret' | 'jwksUrl' | 'issuer' | 'audiences' | 'clockToleranceS'>

/** The algorithms `config` accepts, as the start log lists them: HS256 with a secret, the asymmetric ones with keys. */
export function acceptedAlgorithms(config: Pick<Config, 'betterAuthSecret' | 'jwksUrl'>): string[] {
  return [
    ...(config.betterAuthSecret === null ? [] : ['HS256']),
    ...(config.jwksUrl === null ? [] : ASYMMETRIC_ALGORITHMS),
  ]
}

/**
 * Creates the verifier. HS256 uses the secret's raw UTF-8 bytes (as Better Auth signs its cookie cache), imported
 * once, and is refused when there is no secret (JWKS only); every other algorithm goes to the JWKS or is refused
 * (docs/contract.md rule 1). Options: `now`, the clock in epoch ms (tests inject one); `onJwksFetchError`, told about
 * each failed key-set fetch; `jwksFetchTimeoutMs`, the limit on one fetch.
 */
export function createTokenVerifier(
  config: TokenVerifierConfig,
  options: { now?: () => number; onJwksFetchError?: (error: unknown) => void; jwksFetchTimeoutMs?: number } = {},
): TokenVerifier {
  const now = options.now ?? Date.now
  const hmacKey =
    config.betterAuthSecret === null
      ? null
      : crypto.subtle.importKey(
          'raw',
          new TextEncoder().encode(config.betterAuthSecret),
          { name: 'HMAC', hash: 'SHA-256' },
          false,
          ['verify'],
        )
  const jwksGetKey =
    config.jwksUrl === null
      ? null
      : createJwksKeys({
          url: config.jwksUrl,
          now,
          ...(options.onJwksFetchError ? { onFetchError: options.onJwksFetchError } : {}),
          ...(options.jwksFetchTimeoutMs === undefined ? {} : { fetchTimeoutMs: options.jwksFetchTimeoutMs }),
        })
  const common = { clockTolerance: config.clockToleranceS, requiredClaims: ['exp'] }
  const verifiedHs256 = createVerifiedTokenCache(VERIFIED_TOKEN_CACHE_BYTES)

  /** The verified payload, or a jose error (or KeySetUnavailableError) for `verify` to translate. */
  async function verifyClaims(token: string, header: ProtectedHeaderParameters): Promise<JWTPayload> {
    const { alg } = header
    const currentDate = new Date(now())
    if (alg === 'HS256' && hmacKey !== null) {
      const { payload } = await jwtVerify(token, await hmacKey, { ...common, currentDate, algorithms: ['HS256'] })
      // Better Auth's cookie-cache JWT has no iss/aud, and the shared secret already proves its origin.
      checkIssuerAndAudience(payload, config, false)
      return payload
    }
    if (jwksGetKey !== null && typeof alg === 'string' && ASYMMETRIC_ALGORITHMS.includes(alg)) {
      const { payload } = await jwtVerify(token, jwksGetKey, {
        ...common,
        currentDate,
        algorithms: ASYMMETRIC_ALGORITHMS,
      })
      checkIssuerAndAudience(payload, config, true)
      return payload
    }
    throw new AuthError({ reason: 'alg_not_allowed', alg: loggableClaim(alg) })
  }

  return {
    async verify(token) {
      const cached = verifiedHs256.get(token, now())
      if (cached !== undefined) return { userId: cached }
      let header: ProtectedHeaderParameters
      try {
        header = decodeProtectedHeader(token)
      } catch {
        throw new AuthError({ reason: 'malformed' })
      }
      let payload: JWTPayload
      try {
        payload = await verifyClaims(token, header)
      } catch (error) {
        if (error instanceof AuthError) throw error
        if (error instanceof KeySetUnavailableError) throw new AuthError('unavailable')
        throw new AuthError(refusalOfJoseError(error, header))
      }
      // jose checks iat only against a maximum age; docs/contract.md also refuses one from the future.
      if (typeof payload.iat === 'number' && payload.iat > now() / 1000 + config.clockToleranceS)
        throw new AuthError({ reason: 'not_yet_valid', claim: 'iat' })
      const userId = userIdOf(payload)
      // Only HS256: its answer depends on nothing but the token, the secret and the clock. A JWKS token is verified
      // every time, so a key removed from the set stops being accepted at the next refetch.
      if (payload.exp !== undefined && header.alg === 'HS256')
        verifiedHs256.set(token, userId, (payload.exp + config.clockToleranceS) * 1000)
      return { userId }
    },
  }
}

/**
 * `iss` and `aud` against JWT_ISSUER / JWT_AUDIENCE; a claim the token lacks is refused only when `required`.
 * @throws AuthError `missing_claim`, `issuer_mismatch` or `audience_mismatch` (with what was expected and received).
 */
function checkIssuerAndAudience(payload: JWTPayload, config: TokenVerifierConfig, required: boolean): void {
  if (config.issuer !== null) {
    if (payload.iss === undefined) {
      if (required) throw new AuthError({ reason: 'missing_claim', claim: 'iss' })
    } else if (payload.iss !== config.issuer) {
      const received = loggableClaim(payload.iss)
      throw new AuthError({ reason: 'issuer_mismatch', expected: config.issuer, received })
    }
  }
  if (config.audiences.length > 0) {
    const aud: unknown = payload.aud
    if (aud === undefined) {
      if (required) throw new AuthError({ reason: 'missing_claim', claim: 'aud' })
    } else {
      const audiences: unknown[] = Array.isArray(aud) ? aud : [aud]
      if (!audiences.some((value) => typeof value === 'string' && config.audiences.includes(value)))
        throw new AuthError({
          reason: 'audience_mismatch',
          expected: config.audiences,
          received: loggableAudience(aud),
        })
    }
  }
}

/**
 * The user id: `sub`, or when there is no `sub`, `user.id` (Better Auth's cookie cache). A non-empty string
 * of at most 255 characters that PostgreSQL can store (no NUL, no lone surrogate).
 * @throws AuthError `no_user_id` for anything else.
 */
function userIdOf(payload: JWTPayload): string {
  const candidate: unknown =
    payload.sub !== undefined ? payload.sub : (payload.user as { id?: unknown } | undefined)?.id
  if (typeof candidate !== 'string' || candidate === '' || characterCount(candidate) > MAX_USER_ID_LENGTH)
    throw new AuthError({ reason: 'no_user_id' })
  if (candidate.includes('\u0000') || !candidate.isWellFormed()) throw new AuthError({ reason: 'no_user_id' })
  return candidate
}

/**
 * Code points, not UTF-16 units: 255 emoji are 255 characters to PostgreSQL's varchar(255), but 510 units to `length`.
 */
function characterCount(text: string): number {
  return text.length <= MAX_USER_ID_LENGTH ? text.length : [...text].length
}
