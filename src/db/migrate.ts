// Applies the committed drizzle-kit migrations (migrations/) through the driver in use.
import { fileURLToPath } from 'node:url'
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres'
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import type { Database } from './database.ts'

/** The committed migrations folder, next to src/. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))

/** An arbitrary constant that names the migration lock among advisory locks. */
const MIGRATION_LOCK_ID = 7_301_946_211

/**
 * Brings the schema up to date. On a PostgreSQL server, concurrent starts (several processes) take turns
 * through an advisory lock held on one connection, so no two run the same migration.
 * @throws the driver's error when the database is unreachable or a migration fails.
 */
export async function applyMigrations(database: Database): Promise<void> {
  if (database.kind === 'pglite') {
    await migratePglite(database.db, { migrationsFolder: MIGRATIONS_FOLDER })
    return
  }
  const client = await database.pool.connect()
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID])
    await migratePg(drizzlePg({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => undefined)
    client.release()
  }
}
