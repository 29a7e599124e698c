// The benchmark's own data: a database created and dropped per run (a copy of the tests' migrated template),
// and seeded through SQL (generate_series) before every measurement so each starts from the same rows.
import { PGlite } from '@electric-sql/pglite'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import pg from 'pg'
import { MIGRATIONS_FOLDER } from '../../src/db/migrate.ts'
import { createScratchDatabase, type ScratchDatabase } from '../../test/helpers/databases.ts'

/** Anything that runs SQL text: a pg Pool or a PGlite instance. */
export interface SqlRunner {
  query<T>(text: string, values?: unknown[]): Promise<{ rows: T[] }>
}

/**
 * The user ids and task ids of the seed: user i is `bench-user-` and i in 6 digits (one width, so every token and
 * row has one size), and `taskIds[i]` are its tasks.
 */
export interface Seed {
  userIds: string[]
  taskIds: number[][]
}

/** A database of the run's own on the server, dropped by `drop()` (also after a failed run). */
export interface ServerDatabase extends ScratchDatabase {
  /** The harness's own connections (2), for seeding and counting. */
  pool: pg.Pool
  /** The pids of the server's backends serving this database for others than the harness (the servers under test). */
  backendPids(): Promise<number[]>
}

const HARNESS_APPLICATION_NAME = 'tasks-bench-harness'

/** Creates a migrated database of its own on the server behind `adminUrl`, with a pool for the harness. */
export async function createServerDatabase(adminUrl: string): Promise<ServerDatabase> {
  const scratch = await createScratchDatabase(adminUrl, { prefix: 'tasks_bench' })
  const pool = new pg.Pool({
    connectionString: scratch.url,
    max: 2,
    statement_timeout: 600_000,
    application_name: HARNESS_APPLICATION_NAME,
  })
  pool.on('error', () => undefined)
  let dropped = false
  return {
    name: scratch.name,
    url: scratch.url,
    pool,
    async backendPids() {
      const result = await pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND application_name <> $2`,
        [scratch.name, HARNESS_APPLICATION_NAME],
      )
      return result.rows.map((row) => row.pid)
    },
    async drop() {
      if (dropped) return
      dropped = true
      await pool.end().catch(() => undefined)
      await scratch.drop()
    },
  }
}

/**
 * Opens (creating when new) a PGlite directory, migrated, for seeding; the caller closes it before a server opens it.
 */
export async function openPgliteForSeeding(dataDir: string): Promise<PGlite> {
  const client = await PGlite.create(dataDir)
  await migratePglite(drizzlePglite({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
  return client
}

/**
 * Empties `tasks` and inserts `users` × `tasksPerUser` rows in one statement, with fixed timestamps and
 * identities restarted, so every seed gives the same rows, ids and bodies (the parity check compares them), and
 * checks that the triggers counted them.
 * Then VACUUM ANALYZE (fresh statistics and visibility map) and a CHECKPOINT, so no measurement inherits
 * the seed's dirty pages.
 */
export async function seed(db: SqlRunner, users: number, tasksPerUser: number): Promise<Seed> {
  await db.query('TRUNCATE tasks RESTART IDENTITY')
  await insertUsers(db, 0, users, tasksPerUser)
  await assertCountsExact(db)
  await db.query('VACUUM ANALYZE tasks, task_counts')
  await db.query('CHECKPOINT')
  const rows = await db.query<{ user_id: string; ids: (number | string)[] }>(
    'SELECT user_id, array_agg(id ORDER BY id) AS ids FROM tasks GROUP BY user_id ORDER BY user_id',
  )
  return { userIds: rows.rows.map((row) => row.user_id), taskIds: rows.rows.map((row) => row.ids.map(Number)) }
}

/**
 * Throws unless `task_counts` (kept by triggers, which the seed's TRUNCATE and INSERT fire) holds exactly each user's
 * count of tasks: the parity check cannot see a wrong count, since the service and the baseline read the same row.
 */
async function assertCountsExact(db: SqlRunner): Promise<void> {
  const counted = `SELECT user_id, count(*)::int AS total, (count(*) FILTER (WHERE completed))::int AS completed FROM tasks GROUP BY user_id`
  const kept = `SELECT user_id, total, completed FROM task_counts WHERE total <> 0 OR completed <> 0`
  const { rows } = await db.query<{ user_id: string }>(
    `(${counted} EXCEPT ${kept}) UNION (${kept} EXCEPT ${counted}) LIMIT 5`,
  )
  if (rows.length > 0) throw new Error(`task_counts is wrong for ${rows.map((row) => row.user_id).join(', ')}`)
}

/**
 * Inserts users `first` … `first + count - 1` with `tasksPerUser` tasks each, through generate_series.
 * One in three tasks has a description, one in four is completed; created_at descends one second per task
 * from a fixed instant, so the list's order is fixed and the same on every seed.
 */
export async function insertUsers(
  db: SqlRunner,
  first: number,
  count: number,
  tasksPerUser: number,
  userIdPrefix = 'bench-user-',
): Promise<void> {
  await db.query(
    `INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at)
     SELECT $1::text || lpad(u::text, 6, '0'),
            'Task ' || t || ' of the benchmark',
            CASE WHEN t % 3 = 0 THEN 'A description of task ' || t || ', long enough to look like one.' END,
            t % 4 = 0,
            timestamptz '2026-01-01T00:00:00Z' + make_interval(secs => (u::bigint * $4::int + t)::float8),
            timestamptz '2026-01-01T00:00:00Z' + make_interval(secs => (u::bigint * $4::int + t)::float8)
       FROM generate_series($2::int, $3::int) AS u, generate_series(1, $4::int) AS t
      ORDER BY u, t`,
    [userIdPrefix, first, first + count - 1, tasksPerUser],
  )
}
