// Safe retries of POST /api/tasks (docs/contract.md "Retries and concurrent edits", issue 5): an Idempotency-Key makes
// a repeat replay the first answer and create nothing, across users, over time and under concurrency. Several server
// processes sharing one PostgreSQL database: test/process/idempotency-across-processes.test.ts.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import { count } from 'drizzle-orm'
import type { LightMyRequestResponse } from 'fastify'
import type { Database } from '../src/db/database.ts'
import { idempotencyKeys, tasks } from '../src/db/schema.ts'
import { DEFAULT_RETENTION_MS, DEFAULT_SWEEP_BATCH, fingerprintOf } from '../src/idempotency/idempotency-store.ts'
import { asUser, race, statusCounts, type TaskJson } from './helpers/api-client.ts'
import { databaseKind, TEST_DATABASE_URL } from './helpers/databases.ts'
import { buildTestApp } from './helpers/test-app.ts'

const HOUR_MS = 60 * 60 * 1000

/** Everything a client can see of an answer to a POST: what a replay must repeat exactly. */
function seen(response: LightMyRequestResponse) {
  return {
    status: response.statusCode,
    body: response.body,
    contentType: response.headers['content-type'],
    location: response.headers.location,
    etag: response.headers.etag,
  }
}

async function taskCount(database: Database): Promise<number> {
  const [row] = await database.db.select({ n: count() }).from(tasks)
  return row?.n ?? -1
}

async function keyRows(database: Database): Promise<{ userId: string; key: string }[]> {
  return database.db.select({ userId: idempotencyKeys.userId, key: idempotencyKeys.key }).from(idempotencyKeys)
}

void test('a retried POST with the same Idempotency-Key and body gets the first answer again and creates nothing', async (t) => {
  const { app, database } = await buildTestApp(t)
  const alice = asUser(app, 'idem-alice')
  const headers = { 'idempotency-key': 'retry-7f3c9a' }

  const first = await alice.request('POST', '/api/tasks', { title: 'Buy milk', description: 'two litres' }, headers)
  assert.equal(first.statusCode, 201, first.body)
  assert.equal(first.headers['idempotent-replayed'], undefined, 'the first answer is not a replay')
  const task = first.json<TaskJson>()
  assert.equal(first.headers.location, `/api/tasks/${task.id}`)
  assert.match(String(first.headers.etag), /^"\d+"$/)

  // The phone on the train retries twice, once with the fields in another order and the title padded (trimmed alike).
  const second = await alice.request('POST', '/api/tasks', { title: 'Buy milk', description: 'two litres' }, headers)
  const third = await alice.request('POST', '/api/tasks', { description: 'two litres', title: '  Buy milk ' }, headers)
  for (const repeat of [second, third]) {
    assert.deepEqual(seen(repeat), seen(first))
    assert.equal(repeat.headers['idempotent-replayed'], 'true')
  }

  assert.equal((await alice.list()).total, 1)
  assert.equal(await taskCount(database), 1)
  assert.deepEqual(await keyRows(database), [{ userId: 'idem-alice', key: 'retry-7f3c9a' }])
})

void test('the replay is the first answer even after the task has changed or been deleted', async (t) => {
  const { app } = await buildTestApp(t)
  const alice = asUser(app, 'idem-later')
  const headers = { 'idempotency-key': 'later-1' }
  const first = await alice.request('POST', '/api/tasks', { title: 'Original' }, headers)
  assert.equal(first.statusCode, 201)
  const { id } = first.json<TaskJson>()

  assert.equal((await alice.request('PUT', `/api/tasks/${id}`, { title: 'Renamed' })).statusCode, 200)
  assert.deepEqual(seen(await alice.request('POST', '/api/tasks', { title: 'Original' }, headers)), seen(first))
  assert.equal((await alice.request('DELETE', `/api/tasks/${id}`)).statusCode, 204)
  assert.deepEqual(seen(await alice.request('POST', '/api/tasks', { title: 'Original' }, headers)), seen(first))
  assert.equal((await alice.list()).total, 0, 'the replay did not bring the task back')
})

void test('the same key with a different body is 422 and creates nothing', async (t) => {
  const { app, database } = await buildTestApp(t)
  const alice = asUser(app, 'idem-mismatch')
  const headers = { 'idempotency-key': 'reused-key' }
  const first = await alice.create({ title: 'First' }, headers)

  for (const body of [
    { title: 'Second' },
    { title: 'First', completed: false },
    { title: 'First', description: null },
    { title: 'First', completed: true },
  ]) {
    const response = await alice.request('POST', '/api/tasks', body, headers)
    assert.equal(response.statusCode, 422, JSON.stringify(body))
    assert.deepEqual(response.json(), {
      detail: [
        {
          loc: ['header', 'idempotency-key'],
          msg: 'This Idempotency-Key was already used with a different request body',
          type: 'idempotency_key_reused',
        },
      ],
    })
  }
  const listed = await alice.list()
  assert.deepEqual(
    listed.tasks.map((task) => task.id),
    [first.id],
  )
  assert.equal(await taskCount(database), 1)
})

void test('another user with the same key gets a task of their own', async (t) => {
  const { app, database } = await buildTestApp(t)
  const headers = { 'idempotency-key': 'shared-key' }
  const alice = asUser(app, 'idem-alice-2')
  const bob = asUser(app, 'idem-bob-2')
  const alices = await alice.request('POST', '/api/tasks', { title: 'Same title' }, headers)
  const bobs = await bob.request('POST', '/api/tasks', { title: 'Same title' }, headers)
  assert.equal(alices.statusCode, 201)
  assert.equal(bobs.statusCode, 201)
  assert.equal(bobs.headers['idempotent-replayed'], undefined)
  assert.notEqual(bobs.json<TaskJson>().id, alices.json<TaskJson>().id)
  assert.equal(bobs.json<TaskJson>().user_id, 'idem-bob-2')
  // Each one's repeat replays their own task, and a different body from Bob is not judged against Alice's.
  assert.deepEqual(seen(await alice.request('POST', '/api/tasks', { title: 'Same title' }, headers)), seen(alices))
  assert.deepEqual(seen(await bob.request('POST', '/api/tasks', { title: 'Same title' }, headers)), seen(bobs))
  assert.equal(await taskCount(database), 2)
})

void test('POSTs without an Idempotency-Key each create a task, as before', async (t) => {
  const { app } = await buildTestApp(t)
  const alice = asUser(app, 'idem-none')
  const one = await alice.request('POST', '/api/tasks', { title: 'Twice' })
  const two = await alice.request('POST', '/api/tasks', { title: 'Twice' })
  assert.deepEqual([one.statusCode, two.statusCode], [201, 201])
  assert.notEqual(one.json<TaskJson>().id, two.json<TaskJson>().id)
  assert.equal(one.headers.location, `/api/tasks/${one.json<TaskJson>().id}`)
  assert.match(String(one.headers.etag), /^"\d+"$/)
})

void test('a request that fails leaves its key free for the retry', async (t) => {
  const { app, database } = await buildTestApp(t)
  const alice = asUser(app, 'idem-failed')
  const headers = { 'idempotency-key': 'after-a-422' }
  assert.equal((await alice.request('POST', '/api/tasks', { title: '' }, headers)).statusCode, 422)
  assert.equal((await alice.request('POST', '/api/tasks', { title: 'x'.repeat(201) }, headers)).statusCode, 422)
  assert.deepEqual(await keyRows(database), [])
  const fixed = await alice.request('POST', '/api/tasks', { title: 'Fixed' }, headers)
  assert.equal(fixed.statusCode, 201)
  assert.equal(fixed.headers['idempotent-replayed'], undefined)
  assert.equal(fixed.json<TaskJson>().title, 'Fixed')
})

void test('a bad Idempotency-Key is 422 and creates nothing: too long, control characters, empty, not ASCII', async (t) => {
  const { app, database } = await buildTestApp(t)
  const alice = asUser(app, 'idem-bad-keys')
  const bad = {
    '256 characters': 'k'.repeat(256),
    tab: 'a\tb',
    'line feed': 'a\nb',
    NUL: 'a\u0000b',
    DEL: 'a\u007fb',
    'C1 control': 'a\u0085b',
    empty: '',
    'non-ASCII': 'clé',
  }
  for (const [name, key] of Object.entries(bad)) {
    const response = await alice.request('POST', '/api/tasks', { title: 'Never' }, { 'idempotency-key': key })
    assert.equal(response.statusCode, 422, name)
    const detail = response.json<{ detail: { loc: unknown[] }[] }>().detail
    assert.deepEqual(detail[0]?.loc, ['header', 'idempotency-key'], name)
  }
  assert.equal(await taskCount(database), 0)
  assert.deepEqual(await keyRows(database), [])

  // The longest key allowed, and every printable ASCII character (quotes and spaces included), work.
  for (const key of ['k'.repeat(255), ' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~']) {
    const response = await alice.request('POST', '/api/tasks', { title: 'Fine' }, { 'idempotency-key': key })
    assert.equal(response.statusCode, 201, response.body)
  }
  assert.equal(await taskCount(database), 2)
})

void test('a key is remembered for 24 hours, then free again (clock moved forward)', async (t) => {
  let nowMs = Date.now()
  const { app, database } = await buildTestApp(t, { now: () => new Date(nowMs) })
  const alice = asUser(app, 'idem-clock')
  const headers = { 'idempotency-key': 'daily-report' }
  const first = await alice.request('POST', '/api/tasks', { title: 'Daily report' }, headers)
  assert.equal(first.statusCode, 201)

  nowMs += DEFAULT_RETENTION_MS - 1
  const stillReplayed = await alice.request('POST', '/api/tasks', { title: 'Daily report' }, headers)
  assert.deepEqual(seen(stillReplayed), seen(first), '1 ms before 24 hours it is still a replay')
  // Within the window another body is still refused.
  assert.equal((await alice.request('POST', '/api/tasks', { title: 'Other' }, headers)).statusCode, 422)

  nowMs += 1
  const fresh = await alice.request('POST', '/api/tasks', { title: 'Daily report' }, headers)
  assert.equal(fresh.statusCode, 201)
  assert.equal(fresh.headers['idempotent-replayed'], undefined, 'after 24 hours the key starts over')
  assert.notEqual(fresh.json<TaskJson>().id, first.json<TaskJson>().id)
  assert.equal(await taskCount(database), 2)
  // The key now remembers the new answer, and the row was taken over, not duplicated.
  assert.deepEqual(seen(await alice.request('POST', '/api/tasks', { title: 'Daily report' }, headers)), seen(fresh))
  assert.equal((await keyRows(database)).length, 1)

  // After another 24 hours a different body is welcome too.
  nowMs += DEFAULT_RETENTION_MS
  const different = await alice.request('POST', '/api/tasks', { title: 'Weekly report' }, headers)
  assert.equal(different.statusCode, 201)
  assert.equal(different.json<TaskJson>().title, 'Weekly report')
})

void test('expired keys are deleted in small batches by later requests, so the table stays bounded', async (t) => {
  let nowMs = Date.now()
  const { app, database } = await buildTestApp(t, { now: () => new Date(nowMs) })
  const expiring = DEFAULT_SWEEP_BATCH + 5
  for (let i = 0; i < expiring; i++) {
    const response = await asUser(app, `sweep-user-${i % 3}`).request(
      'POST',
      '/api/tasks',
      { title: `old ${i}` },
      { 'idempotency-key': `old-${i}` },
    )
    assert.equal(response.statusCode, 201)
  }
  assert.equal((await keyRows(database)).length, expiring)

  // Still live an hour before expiry: a new key sweeps nothing.
  nowMs += DEFAULT_RETENTION_MS - HOUR_MS
  const carol = asUser(app, 'sweep-carol')
  assert.equal(
    (await carol.request('POST', '/api/tasks', { title: 'new 0' }, { 'idempotency-key': 'new-0' })).statusCode,
    201,
  )
  assert.equal((await keyRows(database)).length, expiring + 1)

  // A day later every old key has expired: each new key deletes at most a batch of them, oldest first.
  nowMs += 2 * HOUR_MS
  assert.equal(
    (await carol.request('POST', '/api/tasks', { title: 'new 1' }, { 'idempotency-key': 'new-1' })).statusCode,
    201,
  )
  assert.equal((await keyRows(database)).length, expiring - DEFAULT_SWEEP_BATCH + 2)
  // A replay sweeps nothing (it writes nothing).
  assert.equal(
    (await carol.request('POST', '/api/tasks', { title: 'new 1' }, { 'idempotency-key': 'new-1' })).headers[
      'idempotent-replayed'
    ],
    'true',
  )
  assert.equal((await keyRows(database)).length, expiring - DEFAULT_SWEEP_BATCH + 2)
  assert.equal(
    (await carol.request('POST', '/api/tasks', { title: 'new 2' }, { 'idempotency-key': 'new-2' })).statusCode,
    201,
  )
  const left = await keyRows(database)
  assert.deepEqual(left.map((row) => row.key).sort(), ['new-0', 'new-1', 'new-2'], 'only live keys remain')
  // Sweeping forgets keys, never tasks.
  assert.equal(await taskCount(database), expiring + 3)
})

void test(`10 concurrent POSTs with one key in one process create one task; every answer is that task or 409 (${databaseKind})`, async (t) => {
  const { app, database } = await buildTestApp(t)
  const alice = asUser(app, 'idem-race')
  for (let round = 0; round < 3; round++) {
    const headers = { 'idempotency-key': `race-${round}` }
    const responses = await race(10, () => alice.request('POST', '/api/tasks', { title: `Race ${round}` }, headers))
    const counts = statusCounts(responses)
    assert.deepEqual(
      Object.keys(counts).filter((status) => status !== '201' && status !== '409'),
      [],
      JSON.stringify(counts),
    )
    const created = responses.filter((response) => response.statusCode === 201)
    assert.equal(
      created.filter((response) => response.headers['idempotent-replayed'] === undefined).length,
      1,
      'exactly one created it',
    )
    const firstSeen = seen(created[0] ?? responses[0]!)
    for (const response of created) assert.deepEqual(seen(response), firstSeen)
    for (const response of responses.filter((r) => r.statusCode === 409))
      assert.equal(typeof response.json().detail, 'string')
    t.diagnostic(`round ${round}: ${JSON.stringify(counts)}, replays ${created.length - 1}`)
  }
  assert.equal((await alice.list()).total, 3)
  assert.equal(await taskCount(database), 3)
})

// The server-only tests below need several connections at once (PGlite is one connection in one process).
if (TEST_DATABASE_URL !== undefined) {
  /**
   * Until a backend of this database waits for a lock (the app's claim waiting on the held transaction), at most 10 s.
   */
  async function someoneWaitsForALock(database: Database): Promise<void> {
    if (database.kind !== 'postgres') throw new Error('server only')
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(20)) {
      const { rows } = await database.pool.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
      )
      if ((rows[0]?.n ?? 0) > 0) return
    }
    throw new Error('no request ever waited for the held key')
  }

  void test('a repeat that arrives while the first request is still in flight waits for it and replays its answer (PostgreSQL only)', async (t) => {
    const { app, database } = await buildTestApp(t)
    if (database.kind !== 'postgres') throw new Error('server only')
    const alice = asUser(app, 'idem-inflight')
    const body = { title: 'In flight' }
    // Another process's first request, caught mid-transaction: it has claimed the key and inserted its task.
    const other = await database.pool.connect()
    try {
      await other.query('begin')
      const inserted = await other.query<{ id: string; created_at: Date; updated_at: Date }>(
        `insert into tasks (user_id, title) values ($1, $2) returning id, created_at, updated_at`,
        ['idem-inflight', body.title],
      )
      const row = inserted.rows[0]!
      const task = {
        id: Number(row.id),
        title: body.title,
        description: null,
        completed: false,
        user_id: 'idem-inflight',
        created_at: row.created_at.toISOString(),
        updated_at: row.updated_at.toISOString(),
      }
      const etag = `"${row.updated_at.getTime()}"`
      await other.query(
        `insert into idempotency_keys (user_id, key, fingerprint, response_status, response_headers, response_body, created_at, expires_at)
         values ($1, $2, $3, 201, $4, $5, now(), now() + interval '24 hours')`,
        [
          'idem-inflight',
          'in-flight-key',
          fingerprintOf(body),
          JSON.stringify({ location: `/api/tasks/${task.id}`, etag }),
          JSON.stringify(task),
        ],
      )
      const repeat = alice.request('POST', '/api/tasks', body, { 'idempotency-key': 'in-flight-key' })
      await someoneWaitsForALock(database)
      await other.query('commit')
      const response = await repeat
      assert.equal(response.statusCode, 201, response.body)
      assert.equal(response.headers['idempotent-replayed'], 'true')
      assert.deepEqual(response.json(), task)
      assert.equal(response.headers.etag, etag)
      assert.equal(response.headers.location, `/api/tasks/${task.id}`)
    } finally {
      await other.query('rollback').catch(() => undefined)
      other.release()
    }
    assert.equal((await alice.list()).total, 1)
  })

  void test('a repeat gets 409 while the first request stays in flight too long, and the key is free once that one fails (PostgreSQL only)', async (t) => {
    // Statement timeout 1 s: a repeat waits half of it (500 ms) for the first request.
    const { app, database } = await buildTestApp(t, { config: { statementTimeoutMs: 1000 } })
    if (database.kind !== 'postgres') throw new Error('server only')
    const alice = asUser(app, 'idem-stuck')
    const other = await database.pool.connect()
    try {
      await other.query('begin')
      await other.query(
        `insert into idempotency_keys (user_id, key, fingerprint, created_at, expires_at) values ($1, $2, $3, now(), now() + interval '24 hours')`,
        ['idem-stuck', 'stuck-key', fingerprintOf({ title: 'Stuck' })],
      )
      const response = await alice.request('POST', '/api/tasks', { title: 'Stuck' }, { 'idempotency-key': 'stuck-key' })
      assert.equal(response.statusCode, 409, response.body)
      assert.deepEqual(response.json(), {
        detail: 'A request with this Idempotency-Key is still in progress; retry it later',
      })
      assert.equal(response.headers['retry-after'], '1')
      assert.equal((await alice.list()).total, 0)
      // The first request fails (its transaction rolls back): the retry runs and creates the task.
      await other.query('rollback')
    } finally {
      other.release()
    }
    const retry = await alice.request('POST', '/api/tasks', { title: 'Stuck' }, { 'idempotency-key': 'stuck-key' })
    assert.equal(retry.statusCode, 201, retry.body)
    assert.equal(retry.headers['idempotent-replayed'], undefined)
    assert.equal((await alice.list()).total, 1)
  })
}
