// X-Total-Count reads task_counts, which triggers on tasks keep (migrations/0003_maintain_task_counts.sql): after any
// mix of writes, under concurrency, after a TRUNCATE, and on a database that held tasks before the migration, it must
// equal what count(*) says. Runs on PGlite and, with TEST_DATABASE_URL, on the server, where requests really overlap.
import assert from 'node:assert/strict'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { asc, count, eq, ne, or, sql } from 'drizzle-orm'
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import type { FastifyInstance } from 'fastify'
import type { Database, TasksDb } from '../src/db/database.ts'
import { applyMigrations, MIGRATIONS_FOLDER } from '../src/db/migrate.ts'
import { taskCounts, tasks } from '../src/db/schema.ts'
import { createIdempotencyStore } from '../src/idempotency/idempotency-store.ts'
import { createTaskStore } from '../src/tasks/task-store.ts'
import { asUser, race, statusCounts, type TaskJson } from './helpers/api-client.ts'
import { createTestDatabase, TEST_DATABASE_URL } from './helpers/databases.ts'
import { openTestApp } from './helpers/test-app.ts'

/** One user's counts: all tasks, and the completed ones. */
interface Counts {
  userId: string
  total: number
  completed: number
}

/** What count(*) says, per user who has tasks. */
async function countedFromTasks(db: TasksDb): Promise<Counts[]> {
  return db
    .select({
      userId: tasks.userId,
      total: count(),
      completed: sql<number>`count(*) filter (where ${tasks.completed})`.mapWith(Number),
    })
    .from(tasks)
    .groupBy(tasks.userId)
    .orderBy(asc(tasks.userId))
}

/** What task_counts holds, leaving out the rows at zero (a user whose last task was deleted keeps one). */
async function keptInTaskCounts(db: TasksDb): Promise<Counts[]> {
  return db
    .select()
    .from(taskCounts)
    .where(or(ne(taskCounts.total, 0), ne(taskCounts.completed, 0)))
    .orderBy(asc(taskCounts.userId))
}

/** task_counts equals count(*) for every user. */
async function assertCountsExact(db: TasksDb, label: string): Promise<Counts[]> {
  const counted = await countedFromTasks(db)
  assert.deepEqual(await keptInTaskCounts(db), counted, `${label}: task_counts equals count(*) per user`)
  return counted
}

/** For each user, X-Total-Count of every status (first page and past the end) equals count(*). */
async function assertTotalsExact(
  app: FastifyInstance,
  db: TasksDb,
  userIds: readonly string[],
  label: string,
): Promise<void> {
  const counted = await assertCountsExact(db, label)
  for (const userId of userIds) {
    const counts = counted.find((row) => row.userId === userId) ?? { total: 0, completed: 0 }
    const expected = { all: counts.total, pending: counts.total - counts.completed, completed: counts.completed }
    const user = asUser(app, userId, { checkHeaders: true })
    for (const [status, total] of Object.entries(expected)) {
      const page = await user.list(`?status=${status}&limit=2`)
      assert.equal(page.total, total, `${label}: ${userId} status=${status}`)
      assert.equal(page.tasks.length, Math.min(2, total), `${label}: ${userId} status=${status} page`)
      assert.deepEqual(
        await user.list(`?status=${status}&offset=${total}`),
        { tasks: [], total },
        `${label}: ${userId} past the end`,
      )
    }
  }
}

/** Runs `work` on one connection (PGlite has only one) inside a transaction that is rolled back. */
async function inRolledBackTransaction(
  database: Database,
  work: (query: (text: string) => Promise<unknown[]>) => Promise<void>,
): Promise<void> {
  if (database.kind === 'pglite') {
    await database.client.transaction(async (tx) => {
      await work(async (text) => (await tx.query(text)).rows)
      await tx.rollback()
    })
    return
  }
  const client = await database.pool.connect()
  try {
    await client.query('begin')
    await work(async (text) => (await client.query(text)).rows)
  } finally {
    await client.query('rollback')
    client.release()
  }
}

void describe('task_counts and X-Total-Count', () => {
  let app: FastifyInstance
  let database: Database
  let db: TasksDb
  before(async () => {
    ;({ app, database } = await openTestApp())
    db = database.db
  })
  after(() => app.close())

  void test('after every kind of write by several users, each status counts exactly what count(*) says', async () => {
    const [ann, ben, cat] = ['mix-ann', 'mix-ben', 'mix-cat'].map((userId) =>
      asUser(app, userId, { checkHeaders: true }),
    )
    assert.ok(ann !== undefined && ben !== undefined && cat !== undefined)
    const users = [ann.userId, ben.userId, cat.userId, 'mix-nobody']
    const check = async (label: string): Promise<void> => assertTotalsExact(app, db, users, label)
    await check('before any write')

    const annTasks: TaskJson[] = []
    for (let i = 0; i < 6; i++) annTasks.push(await ann.create({ title: `ann ${i}`, completed: i % 3 === 0 }))
    const benTasks = [await ben.create({ title: 'ben 0' }), await ben.create({ title: 'ben 1', completed: true })]
    const catTasks = await Promise.all([0, 1, 2].map(async (i) => cat.create({ title: `cat ${i}`, completed: true })))
    await check('creates')

    // The same key twice is one task; the same key of another user is another task.
    const once = { 'idempotency-key': 'counts-key-1' }
    const first = await ann.create({ title: 'once', completed: true }, once)
    assert.deepEqual(await ann.create({ title: 'once', completed: true }, once), first)
    await ben.create({ title: 'once' }, once)
    await check('idempotent creates')

    // Writes rolled back leave no trace: an idempotent create whose response fails, and a transaction of every write.
    const store = createTaskStore(db)
    await assert.rejects(
      createIdempotencyStore(db).once(ann.userId, 'counts-key-failing', { title: 'never' }, async (tx) => {
        await store.createForOwner(ann.userId, { title: 'never' }, tx)
        throw new Error('response failed')
      }),
      /response failed/,
    )
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.insert(tasks).values([
          { userId: ann.userId, title: 'rolled back', completed: true },
          { userId: 'mix-nobody', title: 'rolled back' },
        ])
        await tx.update(tasks).set({ completed: sql`not ${tasks.completed}` })
        await tx.delete(tasks).where(eq(tasks.userId, cat.userId))
        tx.rollback()
      }),
    )
    await check('rolled back')

    // Toggles, set-completes (one changing nothing), and PUTs changing completed or only the title.
    const [a0, a1, a2, a3, a4, a5] = annTasks.map((task) => task.id)
    assert.ok(
      a0 !== undefined &&
        a1 !== undefined &&
        a2 !== undefined &&
        a3 !== undefined &&
        a4 !== undefined &&
        a5 !== undefined,
    )
    await ann.complete(a0)
    await ann.complete(a1)
    await ann.complete(a1)
    await ann.complete(a2)
    await ann.complete(a3, { completed: true })
    await ann.complete(a4, { completed: true })
    await check('toggles and completes')
    await ann.put(a3, { completed: false })
    await ann.put(a4, { title: 'only the title' })
    await ann.put(a5, { title: 'both', completed: true })
    await ann.put(a5, { completed: true })
    await ben.put(benTasks[1]?.id ?? 0, { description: 'notes', completed: false })
    await check('PUTs')

    // If-Match: a current ETag writes, a stale one writes nothing (412).
    const current = await ann.get(a0)
    const stale = current.etag
    assert.equal(
      (await ann.request('PUT', `/api/tasks/${a0}`, { completed: !current.task.completed }, { 'if-match': stale }))
        .statusCode,
      200,
    )
    assert.equal(
      (await ann.request('PATCH', `/api/tasks/${a0}/complete`, undefined, { 'if-match': stale })).statusCode,
      412,
    )
    assert.equal((await ann.request('DELETE', `/api/tasks/${a0}`, undefined, { 'if-match': stale })).statusCode, 412)
    await check('If-Match writes and refusals')
    assert.equal(
      (await ann.request('DELETE', `/api/tasks/${a0}`, undefined, { 'if-match': (await ann.get(a0)).etag })).statusCode,
      204,
    )
    assert.equal(
      (await ann.request('PATCH', `/api/tasks/${a1}/complete`, undefined, { 'if-match': '*' })).statusCode,
      200,
    )
    await check('If-Match delete and toggle')

    // Deletes, including every task of one user (whose counts go to zero), and one of another user's tasks (404).
    assert.equal((await ann.request('DELETE', `/api/tasks/${a2}`)).statusCode, 204)
    assert.equal((await ben.request('DELETE', `/api/tasks/${a3}`)).statusCode, 404)
    for (const task of catTasks) assert.equal((await cat.request('DELETE', `/api/tasks/${task.id}`)).statusCode, 204)
    await check('deletes')
    assert.deepEqual(await cat.list(''), { tasks: [], total: 0 })

    // A user whose tasks were all deleted starts counting again.
    await cat.create({ title: 'cat again', completed: true })
    await check('a create after the last delete')
  })

  void test('concurrent creates, toggles and deletes of one user leave the exact count', async () => {
    const alice = asUser(app, 'race-alice', { checkHeaders: true })
    const created = await race(60, async (i) =>
      alice.request('POST', '/api/tasks', { title: `race ${i}`, completed: i % 2 === 0 }),
    )
    assert.deepEqual(statusCounts(created), { 201: 60 })
    const ids = created.map((response) => response.json<TaskJson>().id)
    await assertTotalsExact(app, db, [alice.userId], 'concurrent creates')

    // Deletes of the first 30, toggles of the 15th to the 45th (so half of them race a delete of their task), and
    // creates.
    const responses = await race(90, async (i) => {
      if (i < 30) return alice.request('DELETE', `/api/tasks/${ids[i] ?? 0}`)
      if (i < 60) return alice.request('PATCH', `/api/tasks/${ids[i - 15] ?? 0}/complete`)
      return alice.request('POST', '/api/tasks', { title: `race more ${i}`, completed: i % 3 === 0 })
    })
    const counted = statusCounts(responses)
    assert.equal(counted[204], 30)
    assert.equal(counted[201], 30)
    assert.equal((counted[200] ?? 0) + (counted[404] ?? 0), 30, JSON.stringify(counted))
    await assertTotalsExact(app, db, [alice.userId], 'concurrent deletes, toggles and creates')
    assert.equal((await alice.list('')).total, 60)
  })

  void test('bulk statements over many users, and a task moved to another owner, are counted per user', async () => {
    const users = Array.from({ length: 40 }, (_, i) => `bulk-user-${String(i).padStart(2, '0')}`)
    await db.execute(sql`
      insert into tasks (user_id, title, completed)
      select 'bulk-user-' || lpad((g % 40)::text, 2, '0'), 'bulk ' || g, g % 3 = 0 from generate_series(1, 4000) as g`)
    await assertTotalsExact(app, db, users.slice(0, 3), 'one INSERT … SELECT of 4,000 rows')
    await db.execute(sql`update tasks set completed = not completed where user_id like 'bulk-user-%' and id % 5 = 0`)
    await db.execute(sql`update tasks set title = 'renamed' where user_id like 'bulk-user-%'`)
    await db.execute(sql`delete from tasks where user_id like 'bulk-user-%' and id % 7 = 0`)
    await assertTotalsExact(app, db, users.slice(0, 3), 'bulk UPDATE and DELETE')
    // The service never moves a task; the counts stay right if someone does.
    await db.execute(
      sql`update tasks set user_id = 'bulk-user-moved', completed = not completed where user_id = 'bulk-user-01' and id % 2 = 0`,
    )
    await db.execute(sql`update tasks set user_id = 'bulk-user-02' where user_id = 'bulk-user-03'`)
    await assertTotalsExact(
      app,
      db,
      ['bulk-user-01', 'bulk-user-02', 'bulk-user-03', 'bulk-user-moved'],
      'tasks moved to another owner',
    )
  })

  void test('a title edit never calls the update trigger; a change of completed calls it once per changed row', async () => {
    const alice = asUser(app, 'trigger-calls-alice')
    const task = await alice.create({ title: 'counted once' })
    await inRolledBackTransaction(database, async (query) => {
      await query(`set local track_functions = 'pl'`)
      const calls = async (): Promise<number> => {
        const [row] = (await query(
          `select pg_stat_get_xact_function_calls('task_counts_apply_update'::regproc) as calls`,
        )) as {
          calls: number | string | null
        }[]
        return Number(row?.calls ?? 0)
      }
      await query(`update tasks set title = 'edited', updated_at = now() where id = ${task.id}`)
      await query(`update tasks set completed = false where id = ${task.id}`)
      assert.equal(await calls(), 0, 'neither a title edit nor writing the same completed calls it')
      await query(`update tasks set completed = true where id = ${task.id}`)
      assert.equal(await calls(), 1)
    })
  })

  void test('TRUNCATE of tasks empties the counts', async () => {
    const alice = asUser(app, 'truncate-alice', { checkHeaders: true })
    await alice.create({ title: 'before the truncate', completed: true })
    await db.execute(sql`truncate tasks`)
    assert.deepEqual(await db.select().from(taskCounts), [])
    assert.deepEqual(await alice.list(''), { tasks: [], total: 0 })
    await alice.create({ title: 'after the truncate' })
    await assertTotalsExact(app, db, [alice.userId, 'mix-ann'], 'after a TRUNCATE')
  })
})

/** The migrations before task_counts existed, in a folder of their own (SQL files and a journal of just those). */
async function migrationsBeforeTaskCounts(): Promise<{ folder: string; remove: () => Promise<void> }> {
  const journal = JSON.parse(await readFile(join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string }[]
  }
  const firstOfCounts = journal.entries.findIndex((entry) => entry.tag.endsWith('_create_task_counts'))
  assert.ok(firstOfCounts > 0, 'the journal has a create_task_counts migration')
  const earlier = journal.entries.slice(0, firstOfCounts)
  const folder = await mkdtemp(join(tmpdir(), 'tasks-migrations-'))
  await cp(join(MIGRATIONS_FOLDER, 'meta'), join(folder, 'meta'), { recursive: true })
  await writeFile(join(folder, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries: earlier }))
  for (const entry of earlier) await cp(join(MIGRATIONS_FOLDER, `${entry.tag}.sql`), join(folder, `${entry.tag}.sql`))
  return { folder, remove: () => rm(folder, { recursive: true, force: true }) }
}

/** Applies only the migrations before task_counts, as a database deployed before it has them. */
async function migrateToBeforeTaskCounts(database: Database): Promise<void> {
  const { folder, remove } = await migrationsBeforeTaskCounts()
  try {
    if (database.kind === 'pglite') await migratePglite(database.db, { migrationsFolder: folder })
    else await migratePg(database.db, { migrationsFolder: folder })
  } finally {
    await remove()
  }
}

void test('the migration counts the tasks a database already held', async (t) => {
  const testDatabase = await createTestDatabase({ migrate: false })
  t.after(() => testDatabase.drop())
  const { database } = testDatabase
  const db: TasksDb = database.db
  await migrateToBeforeTaskCounts(database)
  await db.execute(sql`
    insert into tasks (user_id, title, completed)
    select 'old-user-' || (g % 7), 'old ' || g, g % 4 = 0 from generate_series(1, 700) as g`)
  await db.execute(sql`delete from tasks where user_id = 'old-user-6' or (user_id = 'old-user-5' and completed)`)

  await applyMigrations(database)
  const counted = await assertCountsExact(db, 'after the migration')
  assert.equal(counted.length, 6, 'six users still have tasks')
  assert.ok(counted.some((row) => row.userId === 'old-user-5' && row.total > 0 && row.completed === 0))
  const store = createTaskStore(db)
  assert.equal((await store.listForOwner('old-user-1', { status: 'completed', limit: 1 })).total, 25)
  assert.deepEqual(await store.listForOwner('old-user-6', {}), { tasks: [], total: 0 })

  // And the triggers count from there on.
  await db.execute(sql`update tasks set completed = not completed where user_id = 'old-user-2'`)
  await db.execute(sql`delete from tasks where user_id = 'old-user-3' and id % 2 = 0`)
  await db.insert(tasks).values({ userId: 'old-user-6', title: 'new', completed: true })
  await assertCountsExact(db, 'writes after the migration')
})

if (TEST_DATABASE_URL !== undefined) {
  void test('a write committed while the migration waits for it is counted (PostgreSQL only)', async (t) => {
    const testDatabase = await createTestDatabase({ migrate: false })
    t.after(() => testDatabase.drop())
    const { database } = testDatabase
    assert.ok(database.kind === 'postgres')
    await migrateToBeforeTaskCounts(database)
    await database.pool.query(`insert into tasks (user_id, title) values ('waiting-user', 'committed before')`)

    // A transaction holds an insert open while the migration starts; it commits only once the migration waits for it.
    const writer = await database.pool.connect()
    let migrating: Promise<void> | undefined
    try {
      await writer.query('begin')
      await writer.query(`insert into tasks (user_id, title, completed) values ('waiting-user', 'in flight', true)`)
      migrating = applyMigrations(database)
      const deadline = Date.now() + 10_000
      for (;;) {
        const { rows } = await database.pool.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
        )
        if ((rows[0]?.n ?? 0) > 0) break
        assert.ok(Date.now() < deadline, 'the migration waits for the open write')
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      await writer.query('commit')
    } finally {
      await writer.query('rollback').catch(() => undefined)
      writer.release()
    }
    await migrating
    assert.deepEqual(await keptInTaskCounts(database.db), [{ userId: 'waiting-user', total: 2, completed: 1 }])
    await assertCountsExact(database.db, 'after the migration')
  })
}
