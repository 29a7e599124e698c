// One user cannot starve the others: MAX_TASKS_PER_USER is exact under concurrency (with and without
// Idempotency-Key), and DATABASE_MAX_IN_FLIGHT_PER_USER caps one user's requests in flight in a process, the rest
// queued for DATABASE_PER_USER_WAIT_MS then refused with 429, while another user's requests still succeed.
// The status filters have indexes that serve each sort. Runs on PGlite and, with TEST_DATABASE_URL, on the server,
// where the creates really overlap.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { count, eq, sql } from 'drizzle-orm'
import type { Database, TasksDb } from '../src/db/database.ts'
import { taskCounts, tasks } from '../src/db/schema.ts'
import { asUser, race, statusCounts } from './helpers/api-client.ts'
import { databaseKind } from './helpers/databases.ts'
import { buildTestApp, listenOnLoopback } from './helpers/test-app.ts'
import { authHeaderFor } from './helpers/tokens.ts'

/** The owner's task count as count(*) says and as task_counts keeps it (0 without a row). */
async function countsOf(db: TasksDb, userId: string): Promise<{ counted: number; kept: number }> {
  const [counted] = await db.select({ n: count() }).from(tasks).where(eq(tasks.userId, userId))
  const [kept] = await db.select({ n: taskCounts.total }).from(taskCounts).where(eq(taskCounts.userId, userId))
  return { counted: counted?.n ?? 0, kept: kept?.n ?? 0 }
}

for (const idempotent of [false, true]) {
  const how = idempotent ? 'with Idempotency-Key' : 'without Idempotency-Key'
  void test(`MAX_TASKS_PER_USER=5: 20 concurrent creates ${how} make exactly 5 tasks, the rest 409 (${databaseKind})`, async (t) => {
    const { app, database } = await buildTestApp(t, { config: { maxTasksPerUser: 5, maxInFlightPerUser: 50 } })
    const alice = asUser(app, 'alice')
    const keyOf = (i: number): Record<string, string> => (idempotent ? { 'idempotency-key': `create-${i}` } : {})
    const responses = await race(20, (i) => alice.request('POST', '/api/tasks', { title: `task ${i}` }, keyOf(i)))
    assert.deepEqual(statusCounts(responses), { 201: 5, 409: 15 })
    for (const refused of responses.filter((response) => response.statusCode === 409)) {
      assert.deepEqual(refused.json(), { detail: 'Task limit reached' })
    }
    assert.deepEqual(await countsOf(database.db, 'alice'), { counted: 5, kept: 5 })
    // A refused key stored nothing: its retry after a delete creates the task.
    const refusedIndex = responses.findIndex((response) => response.statusCode === 409)
    const [first] = responses.filter((response) => response.statusCode === 201)
    assert.equal((await alice.request('DELETE', `/api/tasks/${first?.json<{ id: number }>().id}`)).statusCode, 204)
    const retried = await alice.request('POST', '/api/tasks', { title: `task ${refusedIndex}` }, keyOf(refusedIndex))
    assert.equal(retried.statusCode, 201, retried.body)
    assert.equal(retried.headers['idempotent-replayed'], undefined)
    assert.deepEqual(await countsOf(database.db, 'alice'), { counted: 5, kept: 5 })
    // Another user's cap is their own.
    await asUser(app, 'bob').create({ title: 'mine' })
  })
}

/** Tokens signed once per user, so that a burst of requests leaves the client at once. */
const authHeaders = new Map<string, Promise<{ authorization: string }>>()

/** A request over a real loopback connection (no keep-alive reuse, so each one is its own connection). */
async function send(
  port: number,
  userId: string,
  method: string,
  path: string,
  body?: object,
  headers: Record<string, string> = {},
) {
  if (!authHeaders.has(userId)) authHeaders.set(userId, authHeaderFor(userId))
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: {
      ...(await authHeaders.get(userId)),
      connection: 'close',
      ...headers,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(10_000),
  })
  return { statusCode: response.status, retryAfter: response.headers.get('retry-after'), body: await response.text() }
}

/**
 * Holds `userId`'s creates in flight for real until `release()` (or 5 s): a transaction locks their counter row, which
 * every create takes (on PGlite, which runs one transaction at a time, it holds the whole database).
 */
async function holdCreatesOf(database: Database, userId: string): Promise<{ release(): Promise<void> }> {
  let release = (): void => {}
  let locked = (): void => {}
  const rowLocked = new Promise<void>((resolve) => (locked = resolve))
  const holder = database.db.transaction(async (tx) => {
    await tx.select().from(taskCounts).where(eq(taskCounts.userId, userId)).for('update')
    locked()
    await new Promise<void>((resolve) => {
      release = resolve
      setTimeout(resolve, 5000)
    })
  })
  await rowLocked
  return {
    async release() {
      release()
      await holder
    },
  }
}

/** `count` concurrent creates by `userId`, and how many have been answered so far. */
function flood(port: number, userId: string, count: number) {
  const progress = { answered: 0 }
  const responses = race(count, async (i) => {
    const startedAt = Date.now()
    const response = await send(port, userId, 'POST', '/api/tasks', { title: `flood ${i}` })
    progress.answered += 1
    return { ...response, elapsedMs: Date.now() - startedAt }
  })
  return { progress, responses }
}

/** Waits (at most 4 s) until `answered` reaches `count`. */
async function untilAnswered(progress: { answered: number }, count: number): Promise<void> {
  for (const deadline = Date.now() + 4000; progress.answered < count && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

void test(`one user flooding gets 429 + Retry-After past their share, writes nothing refused, and another user is served (${databaseKind})`, async (t) => {
  const { app, database } = await buildTestApp(t, { config: { maxInFlightPerUser: 2, perUserWaitMs: 0 } })
  const port = await listenOnLoopback(app)
  const { id } = await asUser(app, 'bob').create({ title: 'bob’s task' })
  await asUser(app, 'flooder').create({ title: 'first' })

  const hold = await holdCreatesOf(database, 'flooder')
  const { progress, responses } = flood(port, 'flooder', 60)
  // Bob, one request at a time (within his own share), meanwhile.
  const bobs = (async () => {
    const answers = []
    for (let i = 0; i < 5; i++) answers.push(await send(port, 'bob', 'GET', `/api/tasks/${id}`))
    return answers
  })()
  // All but the flooder's 2 turns are answered while the lock is held; then it goes.
  await untilAnswered(progress, 58)
  await hold.release()
  const flooded = await responses

  assert.deepEqual(statusCounts(await bobs), { 200: 5 })
  assert.deepEqual(statusCounts(flooded), { 201: 2, 429: 58 })
  for (const refused of flooded.filter((response) => response.statusCode === 429)) {
    assert.equal(refused.retryAfter, '1')
    assert.deepEqual(JSON.parse(refused.body), { detail: 'Too many requests' })
  }
  // Nothing was written for a refused request: the rows are the first task and the two 201s.
  assert.deepEqual(await countsOf(database.db, 'flooder'), { counted: 3, kept: 3 })
  // Every turn was given back: the flooder is served again once the flood is over.
  assert.equal((await send(port, 'flooder', 'GET', '/api/tasks')).statusCode, 200)
})

void test(`past the share a request waits DATABASE_PER_USER_WAIT_MS for a turn, then 429 (${databaseKind})`, async (t) => {
  const { app, database } = await buildTestApp(t, { config: { maxInFlightPerUser: 1, perUserWaitMs: 300 } })
  const port = await listenOnLoopback(app)
  await asUser(app, 'alice').create({ title: 'first' })

  const hold = await holdCreatesOf(database, 'alice')
  const { progress, responses } = flood(port, 'alice', 4)
  await untilAnswered(progress, 3)
  await hold.release()
  const answered = await responses
  assert.deepEqual(statusCounts(answered), { 201: 1, 429: 3 })
  for (const refused of answered.filter((response) => response.statusCode === 429)) {
    assert.ok(refused.elapsedMs >= 300, `refused after its wait (${refused.elapsedMs} ms)`)
  }
  // A request that waits less than the bound is served: the queue hands the turn over.
  const queued = await race(10, () => send(port, 'alice', 'GET', '/api/tasks'))
  assert.deepEqual(statusCounts(queued), { 200: 10 })
})

void test(`a status-filtered page is read from an index on (user_id, completed, key, id) in every sort and order (${databaseKind})`, async (t) => {
  const { database } = await buildTestApp(t)
  const db = database.db
  await db.execute(
    sql`insert into tasks (user_id, title, completed) select 'big', 'task ' || g, true from generate_series(1, 5000) g`,
  )
  await db.execute(sql`analyze tasks`)
  const keys = { created: sql`created_at`, updated: sql`updated_at`, title: sql`lower(title) collate "C"` }
  for (const [sort, key] of Object.entries(keys)) {
    for (const order of [sql`asc`, sql`desc`]) {
      const plan = await db.execute(
        sql`explain select * from tasks where user_id = 'big' and completed = false order by ${key} ${order}, id ${order} limit 1`,
      )
      const text = JSON.stringify(plan.rows ?? plan)
      assert.match(text, new RegExp(`tasks_user_completed_${sort}_idx`), `sort=${sort}: ${text}`)
    }
  }
})
