// Migrated databases for tests: PGlite in memory by default, or databases on the real PostgreSQL server when
// TEST_DATABASE_URL is set (drizzle-kit's SQL names `public`, so a database each, not a schema). The migrations run
// once per run, into a template every test database is copied from (docs/decisions/test-database-template.md).
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
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

const serverTemplates = new Map<string, Promise<string>>()

/**
 * The name of the migrated template database on the server behind `adminUrl`: created once (under an advisory lock,
 * migrated under another name and renamed, so no file copies a half-migrated one) and kept for later runs.
 */
function migratedServerTemplate(adminUrl: string): Promise<string> {
  let template = serverTemplates.get(adminUrl)
  if (template === undefined) {
    template = withAdmin(async (admin) => {
      const name = `tasks_test_template_${TEMPLATE_KEY}`
      await admin.query('select pg_advisory_lock(hashtext($1))', [name])
      const existing = await admin.query('select 1 from pg_database where datname = $1', [name])
      if (existing.rowCount === 0) {
        const building = `${name}_${process.pid}`
        await admin.query(`DROP DATABASE IF EXISTS "${building}"`)
        await admin.query(`CREATE DATABASE "${building}"`)
        const database = await openServerDatabase(urlOf(adminUrl, building), {})
        await applyMigrations(database)
        await database.close()
        await admin.query(`ALTER DATABASE "${building}" RENAME TO "${name}"`)
      }
      await admin.query('select pg_advisory_unlock(hashtext($1))', [name])
      return name
    }, adminUrl)
    serverTemplates.set(adminUrl, template)
  }
  return template
}

/** The URL of database `name` on the server behind `adminUrl`. */
function urlOf(adminUrl: string, name: string): string {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

function openServerDatabase(url: string, options: ServerDatabaseOptions): Promise<Database> {
  return openDatabase(
    { kind: 'postgres', url },
    {
      poolMax: options.poolMax ?? 20,
      statementTimeoutMs: options.statementTimeoutMs ?? 5000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    },
  )
}

/** A database of its own on a PostgreSQL server, by name and URL, and how to remove it. */
export interface ScratchDatabase {
  name: string
  url: string
  /** Removes the database, ending any connection still open to it (WITH (FORCE)). */
  drop(): Promise<void>
}

/**
 * Creates a database on the server behind `adminUrl` (a superuser URL), named `<prefix>_<pid>_<random>`: a copy of
 * the migrated template, or empty with `migrate: false` (as on a first start). The tests and the benchmark both make
 * theirs here.
 */
export async function createScratchDatabase(
  adminUrl: string,
  options: { migrate?: boolean; prefix?: string } = {},
): Promise<ScratchDatabase> {
  const name = `${options.prefix ?? 'tasks_test'}_${process.pid}_${randomBytes(4).toString('hex')}`
  const template = options.migrate === false ? '' : ` TEMPLATE "${await migratedServerTemplate(adminUrl)}"`
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${name}"${template}`), adminUrl)
  return {
    name,
    url: urlOf(adminUrl, name),
    async drop() {
      await withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`), adminUrl)
    },
  }
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
  const scratch = await createScratchDatabase(TEST_DATABASE_URL, options)
  const database = await openServerDatabase(scratch.url, options)
  return {
    database,
    url: scratch.url,
    async drop() {
      await database.close()
      await scratch.drop()
    },
  }
}

/** Runs `work` on a fresh superuser connection to the server at `adminUrl` (TEST_DATABASE_URL), closed after. */
export async function withAdmin<T>(
  work: (admin: pg.Client) => Promise<T>,
  adminUrl: string | undefined = TEST_DATABASE_URL,
): Promise<T> {
  if (adminUrl === undefined) throw new Error('withAdmin needs TEST_DATABASE_URL')
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 })
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
