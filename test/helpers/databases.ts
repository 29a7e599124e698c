// A fresh, migrated database per test file: PGlite in memory by default, or a database of its own on the
// real PostgreSQL server when TEST_DATABASE_URL is set (drizzle-kit's SQL names `public`, so not a schema).
import { randomBytes } from 'node:crypto'
import { PGlite } from '@electric-sql/pglite'
import { after } from 'node:test'
import pg from 'pg'
import { openDatabase, wrapPglite, type Database } from '../../src/db/database.ts'
import { applyMigrations } from '../../src/db/migrate.ts'

/** The admin URL of the real server, when the suite runs against it. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL?.trim() || undefined

/** Which database the suite runs on, for test titles and logs. */
export const databaseKind = TEST_DATABASE_URL === undefined ? 'pglite' : 'postgres'

let pgliteTemplate: Promise<PGlite> | undefined

// Registered when this module is imported (the test file's top level), so it runs once, after the file's last test.
// An `after` called inside a running test attaches to that test: the template would close under the next test.
after(async () => {
  const template = await pgliteTemplate?.catch(() => undefined)
  await template?.close()
})

/** Creating and migrating PGlite costs ~2 s; each test copies a migrated template instead. */
async function migratedPgliteTemplate(): Promise<PGlite> {
  pgliteTemplate ??= (async () => {
    const template = await PGlite.create()
    await applyMigrations(wrapPglite(template))
    return template
  })()
  return pgliteTemplate
}

/** A fresh database and the URL of it (postgres only), with `drop()` to remove it when done. */
export interface TestDatabase {
  database: Database
  /** The server URL of this database (null on PGlite): child processes of a test connect to it. */
  url: string | null
  /** Closes the connections and removes the database. */
  drop(): Promise<void>
}

/**
 * Creates a migrated, empty database (`migrate: false`: a database with no tables yet, as on a first start).
 * On the server each gets a random name, dropped by `drop()`.
 */
export async function createTestDatabase(
  options: { poolMax?: number; statementTimeoutMs?: number; connectTimeoutMs?: number; migrate?: boolean } = {},
): Promise<TestDatabase> {
  if (TEST_DATABASE_URL === undefined) {
    const database = wrapPglite(
      options.migrate === false ? await PGlite.create() : ((await (await migratedPgliteTemplate()).clone()) as PGlite),
    )
    return { database, url: null, drop: () => database.close() }
  }
  const name = `tasks_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE "${name}"`)
  await admin.end()
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  const database = await openDatabase(
    { kind: 'postgres', url: url.toString() },
    {
      poolMax: options.poolMax ?? 20,
      statementTimeoutMs: options.statementTimeoutMs ?? 5000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    },
  )
  if (options.migrate !== false) await applyMigrations(database)
  return {
    database,
    url: url.toString(),
    async drop() {
      await database.close()
      const dropper = new pg.Client({ connectionString: TEST_DATABASE_URL })
      await dropper.connect()
      await dropper.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      await dropper.end()
    },
  }
}

/** Runs `work` on a fresh superuser connection to the server (TEST_DATABASE_URL), closed after. */
export async function withAdmin<T>(work: (admin: pg.Client) => Promise<T>): Promise<T> {
  if (TEST_DATABASE_URL === undefined) throw new Error('withAdmin needs TEST_DATABASE_URL')
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await admin.connect()
  try {
    return await work(admin)
  } finally {
    await admin.end()
  }
}

/** The database name in a server URL. */
export function databaseNameOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1))
}
