// Concurrent requests on one task (issue 3, "Concurrency"): every write is one SQL statement, so none is lost or
// applied twice. PGlite serializes queries; on the PostgreSQL server (TEST_DATABASE_URL) these requests really race.
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { after, before, describe, test } from 'node:test'
import { asUser, race, statusCounts, type TaskJson } from './helpers/api-client.ts'
import { openTestApp } from './helpers/test-app.ts'

void describe('concurrent requests', () => {
  let app: FastifyInstance
  // These tests are about correctness under races, not fairness (fairness.test.ts): a user's queued requests wait
  // as long as a loaded machine needs rather than getting 429 after the default 1 s.
  before(async () => ({ app } = await openTestApp({ config: { perUserWaitMs: 30_000 } })))
  after(() => app.close())

  void test('50 concurrent toggles of one task each apply exactly once', async () => {
    const alice = asUser(app, 'toggle-alice')
    const task = await alice.create({ title: 'Flip me', completed: false })
    const responses = await race(50, () => alice.request('PATCH', `/api/tasks/${task.id}/complete`))
    assert.deepEqual(statusCounts(responses), { 200: 50 })
    const answers = responses.map((response) => response.json<TaskJson>())
    // Each toggle saw the one before it: the answers are 25 times true and 25 times false...
    assert.deepEqual(
      {
        true: answers.filter((answer) => answer.completed).length,
        false: answers.filter((answer) => !answer.completed).length,
      },
      { true: 25, false: 25 },
    )
    // ...and, in the order the writes happened (updated_at changes on every write), they alternate.
    const inWriteOrder = [...answers].sort((a, b) => Date.parse(a.updated_at) - Date.parse(b.updated_at))
    assert.equal(new Set(answers.map((answer) => answer.updated_at)).size, 50, 'every toggle is a write of its own')
    assert.deepEqual(
      inWriteOrder.map((answer) => answer.completed),
      Array.from({ length: 50 }, (_, i) => i % 2 === 0),
    )
    // An even number of toggles leaves it as it was.
    const final = (await alice.get(task.id)).task
    assert.equal(final.completed, false)
    assert.equal(final.updated_at, inWriteOrder.at(-1)?.updated_at)
    assert.deepEqual({ ...final, updated_at: task.updated_at }, task)
  })

  void test('an odd number of concurrent toggles leaves the task flipped', async () => {
    const alice = asUser(app, 'toggle-odd-alice')
    const task = await alice.create({ title: 'Flip me oddly', completed: true })
    const responses = await race(31, () => alice.request('PATCH', `/api/tasks/${task.id}/complete`, {}))
    assert.deepEqual(statusCounts(responses), { 200: 31 })
    assert.equal(responses.filter((response) => response.json<TaskJson>().completed).length, 15)
    assert.equal((await alice.get(task.id)).task.completed, false)
  })

  void test('concurrent edits and toggles of one task lose neither', async () => {
    const alice = asUser(app, 'mixed-alice')
    const task = await alice.create({ title: 'Edit me', completed: false })
    const responses = await race(41, (i) =>
      i % 2 === 0
        ? alice.request('PATCH', `/api/tasks/${task.id}/complete`)
        : alice.request('PUT', `/api/tasks/${task.id}`, { description: `edit ${i}` }),
    )
    assert.deepEqual(statusCounts(responses), { 200: 41 })
    const toggles = responses.filter((_, i) => i % 2 === 0).map((response) => response.json<TaskJson>())
    assert.equal(toggles.length, 21)
    assert.equal(toggles.filter((answer) => answer.completed).length, 11, 'the edits did not undo any toggle')
    const final = (await alice.get(task.id)).task
    assert.equal(final.completed, true)
    assert.match(String(final.description), /^edit \d+$/)
    assert.equal(final.title, 'Edit me')
  })

  void test('20 concurrent deletes of one task give exactly one 204 and nineteen 404', async () => {
    const alice = asUser(app, 'delete-alice')
    const task = await alice.create({ title: 'Delete me once' })
    const kept = await alice.create({ title: 'Keep me' })
    const responses = await race(20, () => alice.request('DELETE', `/api/tasks/${task.id}`))
    assert.deepEqual(statusCounts(responses), { 204: 1, 404: 19 })
    for (const response of responses) {
      assert.equal(response.body, response.statusCode === 204 ? '' : '{"detail":"Task not found"}')
    }
    assert.equal((await alice.request('GET', `/api/tasks/${task.id}`)).statusCode, 404)
    assert.deepEqual((await alice.get(kept.id)).task, kept)
  })

  void test('toggles racing a delete of the same task answer 200 or 404, never 500', async () => {
    const alice = asUser(app, 'toggle-delete-alice')
    const task = await alice.create({ title: 'Racing' })
    const responses = await race(30, (i) =>
      i === 15
        ? alice.request('DELETE', `/api/tasks/${task.id}`)
        : alice.request('PATCH', `/api/tasks/${task.id}/complete`),
    )
    const deleted = responses[15]
    assert.equal(deleted?.statusCode, 204)
    const toggles = responses.filter((_, i) => i !== 15)
    assert.ok(
      toggles.every((response) => response.statusCode === 200 || response.statusCode === 404),
      JSON.stringify(statusCounts(toggles)),
    )
    assert.equal((await alice.request('GET', `/api/tasks/${task.id}`)).statusCode, 404)
  })

  void test('200 concurrent creates by several users give exactly 200 tasks, each owned by its creator', async () => {
    const users = ['create-ann', 'create-ben', 'create-cat', 'create-dan', 'create-eve']
    const responses = await race(200, (i) => {
      const user = users[i % users.length] ?? 'create-ann'
      return asUser(app, user).request('POST', '/api/tasks', {
        title: `task ${i} of ${user}`,
        completed: i % 2 === 0,
      })
    })
    assert.deepEqual(statusCounts(responses), { 201: 200 })
    const created = responses.map((response) => response.json<TaskJson>())
    assert.equal(new Set(created.map((task) => task.id)).size, 200, 'every task has an id of its own')
    for (const [i, task] of created.entries()) {
      const user = users[i % users.length]
      assert.deepEqual([task.user_id, task.title, task.completed], [user, `task ${i} of ${user}`, i % 2 === 0])
      assert.equal(responses[i]?.headers.location, `/api/tasks/${task.id}`)
    }
    for (const user of users) {
      const listed = await asUser(app, user).request('GET', '/api/tasks?limit=500')
      assert.equal(listed.statusCode, 200)
      assert.equal(listed.headers['x-total-count'], '40', user)
      const own = created.filter((task) => task.user_id === user)
      assert.deepEqual(
        listed
          .json<TaskJson[]>()
          .map((task) => task.id)
          .sort((a, b) => a - b),
        own.map((task) => task.id).sort((a, b) => a - b),
        user,
      )
    }
  })

  void test('concurrent reads and writes of one user answer no 500', async () => {
    const alice = asUser(app, 'mixed-load-alice')
    const seed = await Promise.all(Array.from({ length: 10 }, (_, i) => alice.create({ title: `seed ${i}` })))
    const responses = await race(100, (i) => {
      const target = seed[i % seed.length]?.id ?? 0
      switch (i % 5) {
        case 0:
          return alice.request('GET', '/api/tasks?sort=updated')
        case 1:
          return alice.request('POST', '/api/tasks', { title: `new ${i}` })
        case 2:
          return alice.request('PUT', `/api/tasks/${target}`, { title: `renamed ${i}` })
        case 3:
          return alice.request('PATCH', `/api/tasks/${target}/complete`, { completed: i % 2 === 0 })
        default:
          return alice.request('GET', `/api/tasks/${target}`)
      }
    })
    assert.deepEqual(statusCounts(responses), { 200: 80, 201: 20 })
    const listed = await alice.request('GET', '/api/tasks?limit=500')
    assert.equal(listed.headers['x-total-count'], '30')
  })
})
