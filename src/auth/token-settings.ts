// What the start log says about token verification: the accepted algorithms, and warnings for settings that would
// refuse every Better Auth token (docs/decisions/hs256-only-when-configured.md, jwt-issuer-checks.md).
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.ts'
import { acceptedAlgorithms } from './token-verifier.ts'

type TokenSettings = Pick<Config, 'betterAuthSecret' | 'usingDevelopmentSecret' | 'jwksUrl' | 'issuer' | 'audiences'>

/** The audience of Better Auth's session cookie cache when the `jwt()` plugin signs it (not a URL, and right). */
const SESSION_CACHE_AUDIENCE = 'better-auth:session-cache'

/**
 * Why `value` of `variable` (JWT_ISSUER, or an entry of JWT_AUDIENCE) would not match Better Auth's default `iss` /
 * `aud`, which is the origin of its base URL (better-auth's jwt plugin, sign.mjs: `jwt.issuer ?? baseURL`); null when
 * it would. A value that is no http(s) URL may still be right (the plugin's `jwt.issuer` / `jwt.audience` may be any
 * string), so both are warnings, not errors.
 */
function claimSettingWarning(variable: string, claim: 'iss' | 'aud', value: string): string | null {
  const url = URL.canParse(value) ? new URL(value) : null
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    if (claim === 'aud' && value === SESSION_CACHE_AUDIENCE) return null
    return (
      `${variable} "${value}" is not an http(s) URL: Better Auth's \`${claim}\` is the origin of its base URL ` +
      `(like https://auth.example.com) unless its jwt() plugin sets jwt.${claim === 'iss' ? 'issuer' : 'audience'}`
    )
  }
  if (url.origin === value) return null
  return (
    `${variable} "${value}" is not an origin: Better Auth's \`${claim}\` is the origin of its base URL: no path, ` +
    `no trailing slash; tokens with ${claim}=${url.origin} will be refused`
  )
}

/** One warning per JWT_ISSUER / JWT_AUDIENCE value that Better Auth's default claims would not match. */
export function tokenSettingWarnings(config: Pick<Config, 'issuer' | 'audiences'>): string[] {
  return [
    config.issuer === null ? null : claimSettingWarning('JWT_ISSUER', 'iss', config.issuer),
    ...config.audiences.map((audience) => claimSettingWarning('JWT_AUDIENCE entry', 'aud', audience)),
  ].filter((warning) => warning !== null)
}

/**
 * Logs, once at start: one info line `accepted token algorithms` with `accepted_algorithms` (and `hs256` saying why
 * it is off, when it is), the development-secret warning, and each of `tokenSettingWarnings` as a warning.
 */
export function logTokenSettings(log: FastifyBaseLogger, config: TokenSettings): void {
  const hs256Off =
    config.betterAuthSecret === null ? { hs256: 'off: JWT_JWKS_URL is set and BETTER_AUTH_SECRET is not' } : {}
  log.info({ accepted_algorithms: acceptedAlgorithms(config), ...hs256Off }, 'accepted token algorithms')
  if (config.usingDevelopmentSecret) {
    log.warn(
      'BETTER_AUTH_SECRET is the public development value: set your Better Auth secret before real use (refused with NODE_ENV=production)',
    )
  }
  for (const warning of tokenSettingWarnings(config)) log.warn(warning)
}
