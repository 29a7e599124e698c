// What a list costs when one user holds N tasks, all completed (the worst case for `status=pending`): the median of 7
// calls of the task store per query shape, in ms, on a fresh database (PGlite in memory, or with TEST_DATABASE_URL a
// database of its own on that server). docs/operations.md "Failure behaviour" quotes these figures.
//   N=10000 npx tsx bench/list-costs.ts
//   N=200000 TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/list-costs.ts
import { sql } from 'drizzle-orm'
import { createTaskStore } from '../src/tasks/task-store.ts'
import type { TaskListQuery } from '../src/tasks/task-schemas.ts'
import { createTestDatabase, databaseKind } from '../test/helpers/databases.ts'

const n = Number(process.env.N ?? 10_000)
const queries: Record<string, TaskListQuery> = {
  'first page (default)': {},
  'status=pending&limit=1': { status: 'pending', limit: 1 },
  'status=completed': { status: 'completed' },
  'status=pending&sort=title&limit=1': { status: 'pending', sort: 'title', limit: 1 },
  'status=pending&sort=updated&order=asc&limit=1': { status: 'pending', sort: 'updated', order: 'asc', limit: 1 },
  'sort=title&offset=N-100': { sort: 'title', offset: n - 100 },
  'offset=2147483647': { offset: 2_147_483_647 },
}

const testDatabase = await createTestDatabase()
try {
  const db = testDatabase.database.db
  await db.execute(
    sql`insert into tasks (user_id, title, completed) select 'big', 'task ' || g, true from generate_series(1, ${n}) g`,
  )
  await db.execute(sql`analyze tasks`)
  const store = createTaskStore(db)
  for (const [name, query] of Object.entries(queries)) {
    await store.listForOwner('big', query)
    const times: number[] = []
    for (let i = 0; i < 7; i++) {
      const startedAt = performance.now()
      await store.listForOwner('big', query)
      times.push(performance.now() - startedAt)
    }
    times.sort((a, b) => a - b)
    console.log(
      JSON.stringify({ database: databaseKind, tasks: n, query: name, medianMs: Number(times[3]?.toFixed(2)) }),
    )
  }
} finally {
  await testDatabase.drop()
}
