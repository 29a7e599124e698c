// Opens the one database the service uses: a PostgreSQL server through a pg Pool, or embedded PGlite.
import { mkdir } from 'node:fs/promises'
import { PGlite } from '@electric-sql/pglite'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePg, type NodePgDatabase } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePglite, type PgliteDatabase } from 'drizzle-orm/pglite'
import pg from 'pg'
import type { DatabaseTarget } from '../config.ts'
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
  | (DatabaseBase & { kind: 'postgres'; db: NodePgDatabase<typeof schema>; pool: pg.Pool })
  | (DatabaseBase & { kind: 'pglite'; db: PgliteDatabase<typeof schema>; client: PGlite })

/** Limits for a PostgreSQL server connection pool (API.md configuration; all times in ms). */
export interface PoolOptions {
  poolMax: number
  statementTimeoutMs: number
  connectTimeoutMs: number
  /** Called with errors of idle pooled connections (a server restart, Neon suspending), which must not crash the process. */
  onIdleError?: (error: Error) => void
}

/**
 * Opens the database named by the configuration. PGlite on a directory creates it when missing.
 * @throws when PGlite cannot open its directory; a PostgreSQL pool connects lazily and never throws here.
 */
export async function openDatabase(target: DatabaseTarget, options: PoolOptions): Promise<Database> {
  if (target.kind === 'postgres') return openPostgres(target.url, options)
  if (target.kind === 'pglite-memory') return wrapPglite(await PGlite.create())
  await mkdir(target.dataDir, { recursive: true })
  return wrapPglite(await PGlite.create(target.dataDir))
}

function openPostgres(url: string, options: PoolOptions): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolMax,
    connectionTimeoutMillis: options.connectTimeoutMs,
    // Sent at connection start, so the server itself cancels a statement past the limit.
    statement_timeout: options.statementTimeoutMs,
    // Client-side backstop for a server that stops answering altogether (a cut network).
    query_timeout: options.statementTimeoutMs + 1000,
    idleTimeoutMillis: 30_000,
  })
  pool.on('error', (error) => options.onIdleError?.(error))
  let closed = false
  return {
    kind: 'postgres',
    db: drizzlePg({ client: pool, schema }),
    pool,
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

/** Wraps an open PGlite instance (tests pass a clone of a migrated template). */
export function wrapPglite(client: PGlite): Database {
  return {
    kind: 'pglite',
    db: drizzlePglite({ client, schema }),
    client,
    async ping() {
      await client.query('select 1')
    },
    async close() {
      if (!client.closed) await client.close()
    },
  }
}

const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
])
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error',
  'Cannot use a pool after calling end',
  'PGlite is closed',
]

/**
 * True when an error (or any error in its `cause` chain, as Drizzle wraps driver errors) means the
 * database could not be reached or did not answer in time: the request gets 503, not 500.
 * SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention, incl. 57014 statement timeout).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string' && (UNAVAILABLE_NODE_CODES.has(code) || /^(08|53|57)[0-9A-Z]{3}$/.test(code))) return true
    if (UNAVAILABLE_MESSAGES.some((message) => current instanceof Error && current.message.includes(message))) return true
  }
  return false
}
