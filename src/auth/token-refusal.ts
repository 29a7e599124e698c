// Why a token was refused, in words a log line can carry: a reason code from a fixed vocabulary and, for some reasons,
// the claim's name or the values compared; never the token, its signature, or the rest of its payload
// (docs/decisions/token-refusal-diagnostics.md).
import { errors } from 'jose'
import { loggableText } from '../http/request-log.ts'

/**
 * The reason codes of the `token refused` log line. `malformed`: not a b64token, not three base64url parts, or an
 * undecodable header or payload; `alg_not_allowed`: an algorithm outside the allow-list (HS256 included when it is
 * off); `bad_signature`; `unknown_kid`: no single key of the set matches, even after a refetch; `expired`;
 * `not_yet_valid`: `nbf` or `iat` in the future; `missing_claim` / `invalid_claim`: a required claim absent, or a
 * time claim that is not a number; `issuer_mismatch` / `audience_mismatch`; `no_user_id`: no usable `sub` / `user.id`.
 */
export type RefusalReason =
  | 'malformed'
  | 'alg_not_allowed'
  | 'bad_signature'
  | 'unknown_kid'
  | 'expired'
  | 'not_yet_valid'
  | 'missing_claim'
  | 'invalid_claim'
  | 'issuer_mismatch'
  | 'audience_mismatch'
  | 'no_user_id'

/**
 * A refusal as logged. `claim` names the claim of `missing_claim`, `invalid_claim` and `not_yet_valid`; `alg` and `kid`
 * are the header's (`alg_not_allowed`, `unknown_kid`); `expected` is the configuration's and `received` the token's
 * (`issuer_mismatch`, `audience_mismatch`). Every text taken from the token went through `loggableText`.
 */
export interface TokenRefusal {
  reason: RefusalReason
  claim?: string
  alg?: string
  kid?: string
  expected?: string | readonly string[]
  received?: string | string[]
}

/** At most this many entries of an `aud` array are logged. */
const MAX_LOGGED_AUDIENCES = 10

/** A claim or header value of the token, for `received`, `alg` or `kid`: a string made safe to log, or its type. */
export function loggableClaim(value: unknown): string {
  return typeof value === 'string' ? loggableText(value) : `(${value === null ? 'null' : typeof value})`
}

/** An `aud` claim as `received`: a string, or the first entries of an array, each made safe to log. */
export function loggableAudience(aud: unknown): string | string[] {
  return Array.isArray(aud) ? aud.slice(0, MAX_LOGGED_AUDIENCES).map(loggableClaim) : loggableClaim(aud)
}

/**
 * The refusal a jose error stands for. jose checks the signature before any claim, so a claim-based reason is only
 * ever given for a token that was really signed by a trusted key. An error that is not jose's (none is expected) is
 * `malformed`.
 */
export function refusalOfJoseError(error: unknown, header: { alg?: unknown; kid?: unknown }): TokenRefusal {
  if (error instanceof errors.JWTExpired) return { reason: 'expired' }
  if (error instanceof errors.JWSSignatureVerificationFailed) return { reason: 'bad_signature' }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys)
    return { reason: 'unknown_kid', ...(header.kid === undefined ? {} : { kid: loggableClaim(header.kid) }) }
  if (error instanceof errors.JOSEAlgNotAllowed) return { reason: 'alg_not_allowed', alg: loggableClaim(header.alg) }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return { reason: 'missing_claim', claim: error.claim }
    if (error.reason === 'check_failed' && (error.claim === 'nbf' || error.claim === 'iat'))
      return { reason: 'not_yet_valid', claim: error.claim }
    return { reason: 'invalid_claim', claim: error.claim }
  }
  return { reason: 'malformed' }
}
