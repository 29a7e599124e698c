// The remote key set behind JWT_JWKS_URL, built over jose's local key set because jose's remote set
// (6.x) throws on a failed refresh even for a kid it knew; here the last good set is kept (docs/contract.md rule 5).
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose'

/** Thrown by `getKey` when no key set has ever been fetched and the endpoint cannot be reached now. */
export class KeySetUnavailableError extends Error {
  constructor() {
    super('The JWKS endpoint could not be reached and no key set has been fetched yet')
    this.name = 'KeySetUnavailableError'
  }
}

/** How the key set is fetched and kept. Times in ms. */
interface JwksKeysOptions {
  url: URL
  /** Limit on one fetch of the key set (default 5000). */
  fetchTimeoutMs?: number
  /** Least time between two fetches caused by tokens with an unknown `kid` (default 30000, docs/contract.md). */
  unknownKidCooldownMs?: number
  /** Least time between two fetches while no key set has been fetched yet (default 5000). */
  firstFetchRetryMs?: number
  /** A key set older than this is refreshed in the background on the next token (default 600000). */
  maxAgeMs?: number
  /** The clock, in ms since the epoch (tests inject one). */
  now?: () => number
  /** Told about each failed fetch, with a message that carries no token. */
  onFetchError?: (error: unknown) => void
}

/**
 * Creates the key set, as the `getKey` that jose's `jwtVerify` calls. Keys are fetched lazily, on the first asymmetric
 * token, and concurrent callers share one fetch. An unknown `kid` refetches at most once per `unknownKidCooldownMs`; a
 * failed fetch keeps the last good set.
 * @throws KeySetUnavailableError (from the returned function) when no set was ever fetched and none can be now.
 * @throws jose's JWKSNoMatchingKey (from the returned function) when the `kid` is not in the set.
 */
export function createJwksKeys(options: JwksKeysOptions): JWTVerifyGetKey {
  const fetchTimeoutMs = options.fetchTimeoutMs ?? 5000
  const unknownKidCooldownMs = options.unknownKidCooldownMs ?? 30_000
  const firstFetchRetryMs = options.firstFetchRetryMs ?? 5000
  const maxAgeMs = options.maxAgeMs ?? 600_000
  const now = options.now ?? Date.now

  let keySet: JWTVerifyGetKey | null = null
  let fetchedAt = Number.NEGATIVE_INFINITY
  let attemptedAt = Number.NEGATIVE_INFINITY
  let inFlight: Promise<void> | null = null

  const fetchKeySet = async (): Promise<void> => {
    const response = await fetch(options.url, {
      headers: { accept: 'application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(fetchTimeoutMs),
    })
    if (!response.ok) throw new Error(`JWKS endpoint answered HTTP ${response.status}`)
    const body: unknown = await response.json()
    if (!isKeySet(body)) throw new Error('JWKS endpoint did not answer a JSON Web Key Set')
    keySet = createLocalJWKSet(body)
    fetchedAt = now()
  }

  /** Starts a fetch unless one is running; resolves when it ends, never rejects. */
  const refresh = (): Promise<void> => {
    if (inFlight === null) {
      attemptedAt = now()
      inFlight = fetchKeySet()
        .catch((error: unknown) => options.onFetchError?.(error))
        .finally(() => {
          inFlight = null
        })
    }
    return inFlight
  }

  return async (header, token) => {
    if (keySet === null) {
      if (inFlight !== null || now() - attemptedAt >= firstFetchRetryMs) await refresh()
      if (keySet === null) throw new KeySetUnavailableError()
    } else if (now() - fetchedAt >= maxAgeMs && now() - attemptedAt >= firstFetchRetryMs) {
      void refresh() // routine refresh: this request keeps using the current set
    }
    const current: JWTVerifyGetKey = keySet
    try {
      return await current(header, token)
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error
      if (inFlight === null && now() - attemptedAt < unknownKidCooldownMs) throw error
      await refresh()
      return keySet(header, token)
    }
  }
}

function isKeySet(value: unknown): value is JSONWebKeySet {
  if (typeof value !== 'object' || value === null) return false
  const keys = (value as { keys?: unknown }).keys
  return Array.isArray(keys) && keys.every((key) => typeof key === 'object' && key !== null)
}
