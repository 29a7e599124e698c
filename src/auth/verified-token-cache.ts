// HS256 tokens already verified, so a repeated token costs one Map lookup instead of an HMAC; bounded in bytes.

/**
 * The memory the verified tokens may hold, in bytes: 8 MiB. Counted in bytes, not entries, because a Better Auth
 * cookie-cache JWT carries the user object, whose `name` the user chooses (docs/decisions/verified-token-cache.md).
 */
export const VERIFIED_TOKEN_CACHE_BYTES = 8 * 1024 * 1024

/**
 * What one entry costs beyond its characters, in bytes: the string headers, the entry object and its Map slot, with
 * margin (docs/decisions/verified-token-cache.md).
 */
const ENTRY_OVERHEAD_BYTES = 512

/** Bytes one entry holds: the token (ASCII, one byte a character in V8), the user id (up to two), the overhead. */
function entryBytes(token: string, userId: string): number {
  return token.length + 2 * userId.length + ENTRY_OVERHEAD_BYTES
}

/** A bounded map of verified tokens; `bytes` is what its entries hold by `entryBytes`'s count, never over budget. */
interface VerifiedTokenCache {
  /** The token's user id, while `nowMs` is before the instant it stops being valid; else undefined (and forgotten). */
  get(token: string, nowMs: number): string | undefined
  /** Remembers `token` until `validUntilMs` (epoch ms), dropping the oldest insertions until it fits. */
  set(token: string, userId: string, validUntilMs: number): void
  readonly bytes: number
  readonly size: number
}

/**
 * Tokens already verified, each with its user id and the instant (epoch ms) it stops being valid. Only successes are
 * kept, keyed by the whole token text, so a token not byte-for-byte identical is verified in full. Past `maxBytes` the
 * oldest insertions are dropped (a Map iterates in insertion order), so a hit stays one lookup. A token that alone
 * exceeds the budget is not remembered.
 */
export function createVerifiedTokenCache(maxBytes: number): VerifiedTokenCache {
  const entries = new Map<string, { userId: string; validUntilMs: number }>()
  let bytes = 0
  const forget = (token: string, userId: string): void => {
    entries.delete(token)
    bytes -= entryBytes(token, userId)
  }
  return {
    get(token, nowMs) {
      const entry = entries.get(token)
      if (entry === undefined) return undefined
      // jose's rule: expired once exp <= now - leeway. Past it, verify in full, which answers "expired".
      if (nowMs >= entry.validUntilMs) {
        forget(token, entry.userId)
        return undefined
      }
      return entry.userId
    },
    set(token, userId, validUntilMs) {
      const added = entryBytes(token, userId)
      if (added > maxBytes) return
      // Two concurrent first requests with one token both verify it and both land here: count it once.
      const previous = entries.get(token)
      if (previous !== undefined) forget(token, previous.userId)
      for (const [oldest, entry] of entries) {
        if (bytes + added <= maxBytes) break
        forget(oldest, entry.userId)
      }
      entries.set(token, { userId, validUntilMs })
      bytes += added
    },
    get bytes() {
      return bytes
    },
    get size() {
      return entries.size
    },
  }
}
