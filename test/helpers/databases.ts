// Migrated databases for tests: PGlite in memory by default, or databases on the real PostgreSQL server when
// TEST_DATABASE_URL is set (drizzle-kit's SQL names `public`, so a database each, not a schema). The migrations run
// once per run, into a template every test database is copied from (docs/decisions/test-database-template.md).
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { after } from 'node:test'
import pg from 'pg'
import { openDatabase, wrapPglite, type Database } from '../../src/db/database.ts'
import { applyMigrations, MIGRATIONS_FOLDER } from '../../src/db/migrate.ts'

/** The admin URL of the real server, when the suite runs against it. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL?.trim() || undefined

/** Which database the suite runs on, for test titles and logs. */
export const databaseKind = TEST_DATABASE_URL === undefined ? 'pglite' : 'postgres'

/** A fresh database and the URL of it (postgres only), with `drop()` to remove it when done. */
export interface TestDatabase {
  database: Database
  /** The server URL of this database (null on PGlite): child processes of a test connect to it. */
  url: string | null
  /** Closes the connections and removes the database. */
  drop(): Promise<void>
}

/** Connection limits of a test database on the server (ms). */
interface ServerDatabaseOptions {
  poolMax?: number
  statementTimeoutMs?: number
  connectTimeoutMs?: number
}

/**
 * Names the migrated template after the migrations and the locked dependencies (PGlite's data directory format
 * is its version's), so a changed migration or PGlite upgrade migrates a new one.
 */
const TEMPLATE_KEY = (() => {
  const hash = createHash('sha256')
  for (const name of readdirSync(MIGRATIONS_FOLDER, { recursive: true, encoding: 'utf8' }).sort()) {
    const path = join(MIGRATIONS_FOLDER, name)
    if (name.endsWith('.sql') || name.endsWith('.json')) hash.update(name).update(readFileSync(path))
  }
  hash.update(readFileSync(new URL('../../package-lock.json', import.meta.url)))
  return hash.digest('hex').slice(0, 16)
})()

let pgliteTemplate: Promise<Blob> | undefined

/**
 * The migrated PGlite data directory as a tar: read from the temp dir when an earlier file (or run) dumped it,
 * else migrated here and dumped there (written aside, then renamed, so a concurrent file never reads half of it).
 */
function migratedPgliteDataDir(): Promise<Blob> {
  pgliteTemplate ??= (async () => {
    const path = join(tmpdir(), `tasks-api-test-template-${TEMPLATE_KEY}.tar`)
    const dumped = await readFile(path).catch(() => undefined)
    if (dumped !== undefined) return new Blob([dumped])
    const template = await PGlite.create()
    await applyMigrations(wrapPglite(template))
    const dataDir = await template.dumpDataDir('none')
    await template.close()
    const partial = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`
    await writeFile(partial, Buffer.from(await dataDir.arrayBuffer()))
    await rename(partial, path).catch(() => rm(partial, { force: true }))
    return dataDir
  })()
  return pgliteTemplate
}

let serverTemplate: Promise<string> | undefined

/**
 * The name of the migrated template database on the server: created once (under an advisory lock, migrated under
 * another name and renamed, so no file copies a half-migrated one) and kept for later runs.
 */
function migratedServerTemplate(): Promise<string> {
  serverTemplate ??= withAdmin(async (admin) => {
    const name = `tasks_test_template_${TEMPLATE_KEY}`
    await admin.query('select pg_advisory_lock(hashtext($1))', [name])
    const existing = await admin.query('select 1 from pg_database where datname = $1', [name])
    if (existing.rowCount === 0) {
      const building = `${name}_${process.pid}`
      await admin.query(`DROP DATABASE IF EXISTS "${building}"`)
      await admin.query(`CREATE DATABASE "${building}"`)
      const database = await openServerDatabase(building, {})
      await applyMigrations(database)
      await database.close()
      await admin.query(`ALTER DATABASE "${building}" RENAME TO "${name}"`)
    }
    await admin.query('select pg_advisory_unlock(hashtext($1))', [name])
    return name
  })
  return serverTemplate
}

function serverUrlOf(name: string): string {
  if (TEST_DATABASE_URL === undefined) throw new Error('a server database needs TEST_DATABASE_URL')
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

function openServerDatabase(name: string, options: ServerDatabaseOptions): Promise<Database> {
  return openDatabase(
    { kind: 'postgres', url: serverUrlOf(name) },
    {
      poolMax: options.poolMax ?? 20,
      statementTimeoutMs: options.statementTimeoutMs ?? 5000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    },
  )
}

/**
 * Creates a database of its own: migrated and empty, a copy of the run's template (`migrate: false`: a database
 * with no tables yet, as on a first start). On the server each gets a random name, dropped by `drop()`.
 */
export async function createTestDatabase(
  options: ServerDatabaseOptions & { migrate?: boolean } = {},
): Promise<TestDatabase> {
  if (TEST_DATABASE_URL === undefined) {
    const client =
      options.migrate === false
        ? await PGlite.create()
        : await PGlite.create({ loadDataDir: await migratedPgliteDataDir() })
    const database = wrapPglite(client)
    return { database, url: null, drop: () => database.close() }
  }
  const name = `tasks_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const template = options.migrate === false ? '' : ` TEMPLATE "${await migratedServerTemplate()}"`
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${name}"${template}`))
  const database = await openServerDatabase(name, options)
  return {
    database,
    url: serverUrlOf(name),
    async drop() {
      await database.close()
      await withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`))
    },
  }
}

let fileDatabase: { testDatabase: Promise<TestDatabase>; closedByTest: boolean } | undefined

// Registered when this module is imported (the test file's top level), so it runs once, after the file's last test.
// An `after` called inside a running test attaches to that test: the database would go under the next test.
after(async () => {
  const testDatabase = await fileDatabase?.testDatabase.catch(() => undefined)
  await testDatabase?.drop()
})

/**
 * The test file's database, emptied: every table truncated and its identities restarted, so a test sees what a
 * fresh migrated database shows (task ids from 1) at the cost of one statement. Tests in a file run one at a time.
 * A test that closes it gets it replaced for the next one.
 */
export async function emptiedFileDatabase(): Promise<Database> {
  if (fileDatabase?.closedByTest === true) {
    const spent = await fileDatabase.testDatabase
    await spent.drop()
    fileDatabase = undefined
  }
  const current = (fileDatabase ??= { testDatabase: createTestDatabase(), closedByTest: false })
  const { database } = await current.testDatabase
  const truncate = await truncateStatements(database)
  if (database.kind === 'pglite') await database.client.exec(truncate)
  else await database.pool.query(truncate)
  return {
    ...database,
    async close() {
      current.closedByTest = true
      await database.close()
    },
  }
}

let truncates: string | undefined

/**
 * One TRUNCATE per migrated table (drizzle's own bookkeeping lives in its `drizzle` schema). One statement each: a
 * table's TRUNCATE trigger may empty another table (tasks empties task_counts), which one statement naming both
 * refuses.
 */
async function truncateStatements(database: Database): Promise<string> {
  const query =
    "select format('TRUNCATE %I RESTART IDENTITY;', tablename) as name from pg_tables where schemaname = 'public'"
  truncates ??= (
    database.kind === 'pglite'
      ? (await database.client.query<{ name: string }>(query)).rows
      : (await database.pool.query<{ name: string }>(query)).rows
  )
    .map((row) => row.name)
    .join(' ')
  return truncates
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
