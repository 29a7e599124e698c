// The only SQL about idempotency keys: run a piece of work once per (owner, key), remember its response for
// 24 hours in the database (so every process sharing it agrees), and replay that response to repeats.
import { createHash } from 'node:crypto'
import { and, asc, eq, inArray, lte, sql } from 'drizzle-orm'
import type { TasksDb } from '../db/database.ts'
import { isLockNotAvailable } from '../db/pg-errors.ts'
import { idempotencyKeys } from '../db/schema.ts'

/** A response as stored and replayed: HTTP status, the headers to repeat (lower-case names), the JSON body. */
export interface StoredResponse {
  status: number
  headers: Record<string, string>
  body: unknown
}

/**
 * What `once` did:
 * - `first`: this request claimed the key and ran the work; `response` is what the work returned.
 * - `replay`: the key was used before with the same request body; `response` is the first one's.
 * - `mismatch`: the key was used before with a different body; nothing ran.
 * - `in-progress`: another request with the key was still running after `inFlightWaitMs`; nothing ran.
 */
export type OnceOutcome =
  | { kind: 'first'; response: StoredResponse }
  | { kind: 'replay'; response: StoredResponse }
  | { kind: 'mismatch' }
  | { kind: 'in-progress' }

/** Idempotency-Key for a create (docs/contract.md "Retries and concurrent edits"): the work runs once per owner and
 * key. */
export interface IdempotencyStore {
  /**
   * Runs `work` in a transaction unless `ownerId` already used `key` within the retention window. The key row
   * is claimed first, the work's writes follow, and its response is recorded last, all in one transaction: so
   * either the work's effects and the key's record are both committed, or neither is (a failed request leaves
   * the key free for its retry). `request` is the request body; its canonical JSON is what "the same request"
   * means. Errors of `work` or of the database propagate after the rollback.
   */
  once(
    ownerId: string,
    key: string,
    request: unknown,
    work: (tx: TasksDb) => Promise<StoredResponse>,
  ): Promise<OnceOutcome>
}

/** The clock and limits of `createIdempotencyStore` (all durations in ms). */
export interface IdempotencyOptions {
  /** The clock, for the stored timestamps and the expiry check (tests move it forward). Default: the system clock. */
  now?: () => Date
  /** How long a key is remembered, in ms. Default 24 hours (docs/contract.md). */
  retentionMs?: number
  /**
   * How long, in ms, a repeat waits for a first request with the same key that is still in flight (on the
   * PostgreSQL server its claim blocks on the first one's uncommitted row) before giving up with `in-progress`.
   * Keep it below the statement timeout, which would otherwise end the wait as a 503. Default 2500.
   */
  inFlightWaitMs?: number
  /** At most this many expired rows (of any user) are deleted by each request that claims a key. Default 10. */
  sweepBatch?: number
}

/** How long a key is remembered by default: 24 hours, in ms (docs/contract.md). */
export const DEFAULT_RETENTION_MS = 24 * 60 * 60 * 1000

/** How many expired rows each claimed key deletes by default. */
export const DEFAULT_SWEEP_BATCH = 10

/**
 * Creates the store over a Drizzle handle of either driver. On PGlite transactions run one at a time, so a
 * repeat always finds the first request committed; on a PostgreSQL server they really overlap, and the primary
 * key `(user_id, key)` makes the repeat's claim wait for the first transaction's outcome.
 */
export function createIdempotencyStore(db: TasksDb, options: IdempotencyOptions = {}): IdempotencyStore {
  const now = options.now ?? (() => new Date())
  const retentionMs = options.retentionMs ?? DEFAULT_RETENTION_MS
  const inFlightWaitMs = Math.max(1, Math.floor(options.inFlightWaitMs ?? 2500))
  const sweepBatch = options.sweepBatch ?? DEFAULT_SWEEP_BATCH
  const ownedKey = (ownerId: string, key: string) =>
    and(eq(idempotencyKeys.userId, ownerId), eq(idempotencyKeys.key, key))

  return {
    async once(ownerId, key, request, work) {
      const fingerprint = fingerprintOf(request)
      const startedAt = now()
      const expiresAt = new Date(startedAt.getTime() + retentionMs)
      try {
        return await db.transaction(async (tx): Promise<OnceOutcome> => {
          // Transaction-local (pooler-safe): bounds the wait for an in-flight first request with this key.
          await tx.execute(sql`select set_config('lock_timeout', ${`${inFlightWaitMs}ms`}, true)`)

          // Claim the key: insert it, or take over a row whose retention has passed. A live row (committed) gives
          // no row back; an uncommitted one (a first request in flight) makes this wait for its outcome. Either
          // way the conflicting row stays locked by this transaction ("all rows will be locked" by ON CONFLICT
          // DO UPDATE, whatever its WHERE), so it cannot expire or be swept while it is read below.
          const claimed = await tx
            .insert(idempotencyKeys)
            .values({ userId: ownerId, key, fingerprint, createdAt: startedAt, expiresAt })
            .onConflictDoUpdate({
              target: [idempotencyKeys.userId, idempotencyKeys.key],
              set: {
                fingerprint,
                createdAt: startedAt,
                expiresAt,
                responseStatus: null,
                responseHeaders: null,
                responseBody: null,
              },
              setWhere: lte(idempotencyKeys.expiresAt, startedAt),
            })
            .returning({ key: idempotencyKeys.key })

          if (claimed.length === 0) {
            const [existing] = await tx.select().from(idempotencyKeys).where(ownedKey(ownerId, key))
            if (existing === undefined) throw new Error('an idempotency key row vanished while locked')
            if (existing.fingerprint !== fingerprint) return { kind: 'mismatch' }
            // Committed rows always carry their response (it is written in the claiming transaction); stay safe anyway.
            if (existing.responseStatus === null || existing.responseHeaders === null) return { kind: 'in-progress' }
            return {
              kind: 'replay',
              response: {
                status: existing.responseStatus,
                headers: existing.responseHeaders,
                body: existing.responseBody,
              },
            }
          }

          const response = await work(tx)
          await tx
            .update(idempotencyKeys)
            .set({ responseStatus: response.status, responseHeaders: response.headers, responseBody: response.body })
            .where(ownedKey(ownerId, key))
          // Bounded growth without a cron process: each claimed key deletes up to `sweepBatch` expired rows of any
          // user, so expired rows leave at up to that many times the rate new ones arrive. SKIP LOCKED: rows that
          // another transaction is taking over or sweeping are left to it, so sweeps never wait or deadlock.
          const expired = tx
            .select({ userId: idempotencyKeys.userId, key: idempotencyKeys.key })
            .from(idempotencyKeys)
            .where(lte(idempotencyKeys.expiresAt, startedAt))
            .orderBy(asc(idempotencyKeys.expiresAt))
            .limit(sweepBatch)
            .for('update', { skipLocked: true })
          await tx
            .delete(idempotencyKeys)
            .where(inArray(sql`(${idempotencyKeys.userId}, ${idempotencyKeys.key})`, expired))
          return { kind: 'first', response }
        })
      } catch (error) {
        if (isLockNotAvailable(error)) return { kind: 'in-progress' }
        throw error
      }
    },
  }
}

/**
 * SHA-256 (64 hex digits) of `value` as canonical JSON: object keys sorted at every level, so the same fields in
 * another order are the same request.
 */
export function fingerprintOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex')
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([name, item]) => `${JSON.stringify(name)}:${canonicalJson(item)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}
