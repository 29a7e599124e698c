// The concurrency matrix of issue 5: many requests at once, of many kinds, by several users. Every write is one SQL
// statement (the If-Match check included), so none is lost, applied twice, half-applied or seen by another user.
// PGlite runs one statement at a time; on the PostgreSQL server (TEST_DATABASE_URL) these requests really race.
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { after, before, describe, test } from 'node:test'
import { asUser, race, statusCounts, type TaskJson } from './helpers/api-client.ts'
import { databaseKind } from './helpers/databases.ts'
import { openTestApp } from './helpers/test-app.ts'

void describe(`the concurrency matrix (${databaseKind})`, () => {
  let app: FastifyInstance
  // These tests are about correctness under races, not fairness (fairness.test.ts): a user's queued requests wait
  // as long as a loaded machine needs rather than getting 429 after the default 1 s.
  before(async () => ({ app } = await openTestApp({ config: { perUserWaitMs: 30_000 } })))
  after(() => app.close())

  void test('200 creates across 10 users at once: 200 tasks, 20 per user, each seen only by its owner', async () => {
    const users = Array.from({ length: 10 }, (_, i) => asUser(app, `matrix-creator-${i}`))
    const responses = await race(200, (i) => users[i % 10]!.request('POST', '/api/tasks', { title: `task ${i}` }))
    assert.deepEqual(statusCounts(responses), { 201: 200 })
    const created = responses.map((response) => response.json<TaskJson>())
    assert.equal(new Set(created.map((task) => task.id)).size, 200)
    for (const [u, user] of users.entries()) {
      const listed = await user.list()
      assert.equal(listed.total, 20, user.userId)
      const expected = created.filter((_, i) => i % 10 === u)
      assert.deepEqual(
        listed.tasks.map((task) => task.id).sort((a, b) => a - b),
        expected.map((task) => task.id).sort((a, b) => a - b),
        user.userId,
      )
      assert.ok(
        expected.every((task) => task.user_id === user.userId),
        user.userId,
      )
    }
  })

  for (const toggles of [50, 51]) {
    void test(`${toggles} concurrent toggles: each applies once, so the final state follows the parity`, async () => {
      const alice = asUser(app, `matrix-toggler-${toggles}`)
      const task = await alice.create({ title: `Toggle ${toggles} times`, completed: false })
      const responses = await race(toggles, () => alice.request('PATCH', `/api/tasks/${task.id}/complete`))
      assert.deepEqual(statusCounts(responses), { 200: toggles })
      const answers = responses.map((response) => response.json<TaskJson>())
      assert.equal(
        new Set(answers.map((answer) => answer.updated_at)).size,
        toggles,
        'every toggle is a write of its own',
      )
      assert.equal(
        new Set(responses.map((response) => response.headers.etag)).size,
        toggles,
        'and has an ETag of its own',
      )
      assert.equal(answers.filter((answer) => answer.completed).length, Math.ceil(toggles / 2))
      const final = await alice.get(task.id)
      assert.equal(final.task.completed, toggles % 2 === 1)
      // The last write's answer is what remains.
      const last = answers.reduce((a, b) => (Date.parse(a.updated_at) > Date.parse(b.updated_at) ? a : b))
      assert.deepEqual(final.task, last)
    })
  }

  void test('50 concurrent PUTs: the final task is exactly one of them, never a mix of two', async () => {
    const alice = asUser(app, 'matrix-putter')
    const task = await alice.create({ title: 'Before', description: 'before', completed: false })
    const bodyOf = (i: number) => ({
      title: `title from PUT ${i}`,
      description: `description from PUT ${i}`,
      completed: i % 3 === 0,
    })
    const responses = await race(50, (i) => alice.request('PUT', `/api/tasks/${task.id}`, bodyOf(i)))
    assert.deepEqual(statusCounts(responses), { 200: 50 })
    // Each answer is exactly its own PUT applied in full.
    for (const [i, response] of responses.entries()) {
      const answer = response.json<TaskJson>()
      assert.deepEqual({ title: answer.title, description: answer.description, completed: answer.completed }, bodyOf(i))
    }
    const final = (await alice.get(task.id)).task
    const winner = Number(/^title from PUT (\d+)$/.exec(final.title)?.[1])
    assert.ok(Number.isInteger(winner), final.title)
    assert.deepEqual({ title: final.title, description: final.description, completed: final.completed }, bodyOf(winner))
    // ...and it is the last write: its answer is the task as it is now.
    assert.deepEqual(final, responses[winner]?.json<TaskJson>())
    const newest = Math.max(...responses.map((response) => Date.parse(response.json<TaskJson>().updated_at)))
    assert.equal(Date.parse(final.updated_at), newest)
  })

  void test('PUT, toggle and DELETE interleaved on one task answer only 200, 204, 404 or 412, never 500', async (t) => {
    const alice = asUser(app, 'matrix-interleaver')
    for (let round = 0; round < 3; round++) {
      const task = await alice.create({ title: `Interleaved ${round}` })
      const { etag } = await alice.get(task.id)
      const responses = await race(40, (i) => {
        const ifMatch: Record<string, string> =
          i % 4 === 0 ? { 'if-match': etag } : i % 4 === 1 ? { 'if-match': '*' } : {}
        if (i === 20 + round || i === 33) return alice.request('DELETE', `/api/tasks/${task.id}`, undefined, ifMatch)
        if (i % 2 === 0) return alice.request('PUT', `/api/tasks/${task.id}`, { title: `edit ${i}` }, ifMatch)
        return alice.request('PATCH', `/api/tasks/${task.id}/complete`, undefined, ifMatch)
      })
      const counts = statusCounts(responses)
      assert.deepEqual(
        Object.keys(counts).filter((status) => !['200', '204', '404', '412'].includes(status)),
        [],
        JSON.stringify(counts),
      )
      // A DELETE without a version (request 33 sends *) always finds the task unless another DELETE took it first.
      assert.equal(counts[204], 1, `deleted exactly once: ${JSON.stringify(counts)}`)
      // Only requests carrying the first ETag can be 412, and at most one of them can have succeeded.
      const withFirstEtag = responses.filter((_, i) => i % 4 === 0)
      assert.equal(
        responses.filter((_, i) => i % 4 !== 0).filter((response) => response.statusCode === 412).length,
        0,
        'no 412 without a stale ETag',
      )
      assert.ok(
        withFirstEtag.filter((response) => response.statusCode === 200 || response.statusCode === 204).length <= 1,
      )
      for (const response of responses.filter((r) => r.statusCode === 200)) {
        assert.equal(response.json<TaskJson>().id, task.id)
      }
      assert.equal((await alice.request('GET', `/api/tasks/${task.id}`)).statusCode, 404)
      // Every successful write made a version of its own.
      const written = responses.filter((response) => response.statusCode === 200)
      assert.equal(new Set(written.map((response) => response.headers.etag)).size, written.length)
      t.diagnostic(`round ${round}: ${JSON.stringify(counts)}`)
    }
  })

  void test('two users working at once never see or touch each other’s tasks', async () => {
    const alice = asUser(app, 'matrix-alice')
    const bob = asUser(app, 'matrix-bob')
    const alices = await Promise.all(Array.from({ length: 10 }, (_, i) => alice.create({ title: `alice ${i}` })))
    const bobs = await Promise.all(Array.from({ length: 10 }, (_, i) => bob.create({ title: `bob ${i}` })))
    const responses = await race(120, (i) => {
      const [me, mine, theirs] = i % 2 === 0 ? [alice, alices, bobs] : [bob, bobs, alices]
      const own = mine[i % 10]!
      const other = theirs[i % 10]!
      switch (Math.floor(i / 2) % 6) {
        case 0:
          return me.request('GET', '/api/tasks?limit=500')
        case 1:
          return me.request('POST', '/api/tasks', { title: `${me.userId} new ${i}` })
        case 2:
          return me.request('PATCH', `/api/tasks/${own.id}/complete`)
        case 3:
          return me.request('PUT', `/api/tasks/${other.id}`, { title: 'hijacked' }, { 'if-match': '*' })
        case 4:
          return me.request('GET', `/api/tasks/${other.id}`)
        default:
          return me.request('DELETE', `/api/tasks/${other.id}`)
      }
    })
    for (const [i, response] of responses.entries()) {
      const me = i % 2 === 0 ? alice : bob
      const kind = Math.floor(i / 2) % 6
      const expected = kind === 0 || kind === 2 ? 200 : kind === 1 ? 201 : 404
      assert.equal(response.statusCode, expected, `${me.userId} request ${i}: ${response.body}`)
      if (kind === 0) {
        const listed = response.json<TaskJson[]>()
        assert.ok(listed.length >= 10)
        assert.ok(
          listed.every((task) => task.user_id === me.userId),
          `${me.userId} saw only their own tasks`,
        )
      }
      if (kind === 1 || kind === 2) assert.equal(response.json<TaskJson>().user_id, me.userId)
    }
    for (const [me, mine] of [
      [alice, alices],
      [bob, bobs],
    ] as const) {
      const listed = await me.list()
      assert.equal(listed.total, 20, me.userId)
      assert.ok(listed.tasks.every((task) => task.user_id === me.userId && task.title !== 'hijacked'))
      for (const task of mine)
        assert.equal((await me.get(task.id)).task.title, task.title, 'untouched by the other user')
    }
  })
})
