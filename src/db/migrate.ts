// Applies the committed drizzle-kit migrations (migrations/) through the driver in use.
import { fileURLToPath } from 'node:url'
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres'
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import pg from 'pg'
import type { Database } from './database.ts'
import { limitStatements } from './pg-pool.ts'

/** The committed migrations folder, next to src/. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))

/** An arbitrary constant that names the migration lock among advisory locks. */
const MIGRATION_LOCK_ID = 7_301_946_211

/**
 * Limit on one migration statement (waiting for another process's migrations included): far above the request
 * limit, which would cancel a legitimate index build, yet finite, so that a connection lost mid-migration fails
 * the attempt instead of hanging it forever.
 */
const MIGRATION_STATEMENT_TIMEOUT_MS = 10 * 60_000

/**
 * Thrown when the server's database is not UTF8: under SQL_ASCII, `varchar(n)` counts bytes, so a valid 200-character
 * title of accented letters or emoji would fail as a 500 (docs/contract.md counts characters).
 */
class DatabaseEncodingError extends Error {
  constructor(readonly encoding: string) {
    super(
      `The database's server_encoding is ${encoding}, not UTF8: lengths would count bytes, not characters. ` +
        `Create the database with ENCODING 'UTF8' (e.g. CREATE DATABASE tasks ENCODING 'UTF8' TEMPLATE template0).`,
    )
    this.name = 'DatabaseEncodingError'
  }
}

/**
 * Brings the schema up to date, after checking that the server's database is UTF8 (PGlite always is). On a
 * PostgreSQL server, concurrent starts (several processes) take turns through an advisory lock held on one
 * connection, so no two run the same migration. That connection is its own, outside the pool, so the request time
 * limit does not apply to migrations.
 * @throws DatabaseEncodingError when the server's database is not UTF8; the driver's error when the database is
 *   unreachable or a migration fails.
 */
export async function applyMigrations(database: Database): Promise<void> {
  if (database.kind === 'pglite') {
    await migratePglite(database.db, { migrationsFolder: MIGRATIONS_FOLDER })
    return
  }
  const { connectTimeoutMs } = database.limits
  const client = new pg.Client({ connectionString: database.url, connectionTimeoutMillis: connectTimeoutMs })
  // A lost connection fails the statement it was running; the 'error' event itself needs no more.
  client.on('error', () => undefined)
  limitStatements(client, { statementTimeoutMs: MIGRATION_STATEMENT_TIMEOUT_MS, connectTimeoutMs })
  try {
    await client.connect()
    const encoding = (await client.query<{ server_encoding: string }>('SHOW server_encoding')).rows[0]?.server_encoding
    if (encoding !== 'UTF8') throw new DatabaseEncodingError(String(encoding))
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID])
    await migratePg(drizzlePg({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_ID])
  } finally {
    // Ending the session releases the advisory lock too; bounded, since a lost network never acknowledges the end.
    await Promise.race([
      client.end().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, connectTimeoutMs).unref()),
    ])
    ;(client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
  }
}

/** What `applyMigrationsWhenReachable` reports while it waits for the database. */
export interface MigrationRetryEvents {
  /** A failed attempt that will be retried after `retryInMs`. */
  onRetry?: (error: unknown, retryInMs: number) => void
}

/**
 * Applies the migrations, retrying while the database is unreachable (an unavailable error, as `isUnavailable`
 * tells), with delays of 0.5 s doubling up to `maxDelayMs`, until it succeeds or `signal` aborts.
 * @throws the first error that is not unavailability (a failing migration, refused credentials), or the abort.
 */
export async function applyMigrationsWhenReachable(
  database: Database,
  isUnavailable: (error: unknown) => boolean,
  options: MigrationRetryEvents & { signal?: AbortSignal; maxDelayMs?: number } = {},
): Promise<void> {
  const maxDelayMs = options.maxDelayMs ?? 5000
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted()
    try {
      await applyMigrations(database)
      return
    } catch (error) {
      if (!isUnavailable(error)) throw error
      const retryInMs = Math.min(500 * 2 ** attempt, maxDelayMs)
      options.onRetry?.(error, retryInMs)
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, retryInMs)
        options.signal?.addEventListener('abort', () => {
          clearTimeout(timer)
          reject(options.signal?.reason as Error)
        })
      })
    }
  }
}
