// Opens the one database the service uses: a PostgreSQL server through a pg Pool, or embedded PGlite.
import { mkdir, realpath } from 'node:fs/promises'
import { PGlite, type PGliteOptions } from '@electric-sql/pglite'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePg, type NodePgDatabase } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePglite, type PgliteDatabase } from 'drizzle-orm/pglite'
import type pg from 'pg'
import type { DatabaseTarget } from '../config.ts'
import { lockDataDir } from './data-dir-lock.ts'
import { endedTheBackend } from './pg-errors.ts'
import { createPool } from './pg-pool.ts'
import * as schema from './schema.ts'

/** The Drizzle API common to both drivers: what stores are written against. */
export type TasksDb = PgDatabase<PgQueryResultHKT, typeof schema>

interface DatabaseBase {
  /** Runs `select 1`; rejects when the database cannot answer. */
  ping(): Promise<void>
  /** Closes every connection (or the embedded instance). Safe to call twice. */
  close(): Promise<void>
}

/** An open database. `kind` tells which driver is underneath; `db` is the typed Drizzle handle. */
export type Database =
  | (DatabaseBase & {
      kind: 'postgres'
      db: NodePgDatabase<typeof schema>
      pool: pg.Pool
      url: string
      limits: PoolOptions
    })
  | (DatabaseBase & { kind: 'pglite'; db: PgliteDatabase<typeof schema>; client: PGlite })

/** Limits for a PostgreSQL server connection pool (docs/contract.md configuration; all times in ms). */
export interface PoolOptions {
  poolMax: number
  statementTimeoutMs: number
  connectTimeoutMs: number
  /**
   * Called with errors of idle pooled connections (a server restart, Neon suspending), which must not crash the
   * process.
   */
  onIdleError?: (error: Error) => void
  /**
   * Embedded database only: called, with its data directory already unlocked, when PostgreSQL inside PGlite ended
   * (a FATAL or PANIC error, e.g. WAL that cannot be written on a full disk). PGlite cannot restart its backend, and
   * its next statement would spin forever without answering, so the caller must end the process.
   */
  onEmbeddedEnded?: (error: Error) => void
}

/**
 * PostgreSQL settings for the embedded database: PGlite keeps PostgreSQL's shared buffer cache in this process's
 * memory, and a development database fits in 16MB (docs/decisions/pglite-shared-buffers.md).
 */
const PGLITE_SETTINGS = ['-c', 'shared_buffers=16MB']

/**
 * PGlite's options: the settings on every start (after PGlite's own start parameters, which `startParams`
 * replaces), and for initdb too, which then writes them into a new directory's postgresql.conf. Not
 * `postgresqlconf`, which PGlite writes over the whole file on every start.
 */
const PGLITE_OPTIONS: PGliteOptions = {
  startParams: [...PGlite.defaultStartParams, ...PGLITE_SETTINGS],
  initDbStartParams: PGLITE_SETTINGS,
}

/**
 * Opens the database named by the configuration. PGlite on a directory creates it when missing, follows a symbolic
 * link to it (PGlite's file system layer cannot), and locks it (src/db/data-dir-lock.ts) for as long as it is open.
 * @throws DataDirLockedError when another running process has the directory open; Node's file system error when the
 *   directory cannot be created or written (EROFS, EACCES, ENOSPC); whatever PGlite throws when it cannot open it.
 *   A PostgreSQL pool connects lazily and never throws here.
 */
export async function openDatabase(target: DatabaseTarget, options: PoolOptions): Promise<Database> {
  if (target.kind === 'postgres') return openPostgres(target.url, options)
  const onEnded = options.onEmbeddedEnded
  if (target.kind === 'pglite-memory') return wrapPglite(await PGlite.create(PGLITE_OPTIONS), undefined, onEnded)
  await mkdir(target.dataDir, { recursive: true })
  const dataDir = await realpath(target.dataDir)
  const lock = lockDataDir(dataDir)
  try {
    return wrapPglite(await PGlite.create(dataDir, PGLITE_OPTIONS), () => lock.release(), onEnded)
  } catch (error) {
    lock.release()
    throw error
  }
}

function openPostgres(url: string, options: PoolOptions): Database {
  // Time limits are enforced by the client and a server-side cancel (src/db/pg-pool.ts), never by a
  // statement_timeout startup parameter, which a transaction-mode pooler (Neon's pooled endpoint) may refuse.
  const pool = createPool({
    connectionString: url,
    max: options.poolMax,
    statementTimeoutMs: options.statementTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs,
    ...(options.onIdleError === undefined ? {} : { onIdleError: options.onIdleError }),
  })
  let closed = false
  return {
    kind: 'postgres',
    db: drizzlePg({ client: pool, schema }),
    pool,
    url,
    limits: options,
    async ping() {
      await pool.query('select 1')
    },
    async close() {
      if (closed) return
      closed = true
      await pool.end()
    },
  }
}

/**
 * Wraps an open PGlite instance (tests pass a clone of a migrated template); `onClose` runs once it is closed, or
 * before `onEnded` when PostgreSQL inside it ended (PoolOptions.onEmbeddedEnded).
 */
export function wrapPglite(
  client: PGlite,
  onClose: () => void = () => undefined,
  onEnded?: (error: Error) => void,
): Database {
  if (onEnded !== undefined) watchForEnd(client, () => onClose(), onEnded)
  return {
    kind: 'pglite',
    db: drizzlePglite({ client, schema }),
    client,
    async ping() {
      await client.query('select 1')
    },
    async close() {
      if (client.closed) return
      await client.close()
      onClose()
    },
  }
}

/**
 * Calls `onEnded` when a statement fails with an ending severity. PGlite runs every statement through these two
 * methods, and gives no other sign: PostgreSQL's abort() is reported as an ordinary error (`severity` PANIC), and
 * the next statement, a transaction's ROLLBACK included, never returns. So the check runs before the error goes on.
 */
function watchForEnd(client: PGlite, release: () => void, onEnded: (error: Error) => void): void {
  for (const method of ['execProtocol', 'execProtocolStream'] as const) {
    const run = (client[method] as (...args: unknown[]) => Promise<unknown>).bind(client)
    Object.defineProperty(client, method, {
      value: async (...args: unknown[]) => {
        try {
          return await run(...args)
        } catch (error) {
          if (endedTheBackend(error)) {
            release()
            onEnded(error)
          }
          throw error
        }
      },
    })
  }
}
