// Isolation between users (docs/contract.md "Endpoints", "Authentication" rule 4): another user's task is
// indistinguishable from a missing one, lists show only the caller's tasks, and a user_id sent by the client is never
// used.
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { after, before, describe, test } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { asUser, JSON_CONTENT_TYPE, type Method, type TaskJson } from './helpers/api-client.ts'
import { openTestApp } from './helpers/test-app.ts'

const NOT_FOUND_BODY = '{"detail":"Task not found"}'

/** Every way to reach one task, with a body that would change it if the request were let through. */
const SINGLE_TASK_ROUTES: readonly { name: string; method: Method; path: (id: number) => string; payload?: object }[] =
  [
    { name: 'GET one', method: 'GET', path: (id) => `/api/tasks/${id}` },
    { name: 'PUT title', method: 'PUT', path: (id) => `/api/tasks/${id}`, payload: { title: 'hijacked' } },
    {
      name: 'PUT every field',
      method: 'PUT',
      path: (id) => `/api/tasks/${id}`,
      payload: { title: 'x', description: null, completed: true },
    },
    { name: 'PATCH complete (toggle, no body)', method: 'PATCH', path: (id) => `/api/tasks/${id}/complete` },
    { name: 'PATCH complete (toggle, {})', method: 'PATCH', path: (id) => `/api/tasks/${id}/complete`, payload: {} },
    {
      name: 'PATCH complete (set true)',
      method: 'PATCH',
      path: (id) => `/api/tasks/${id}/complete`,
      payload: { completed: true },
    },
    { name: 'DELETE', method: 'DELETE', path: (id) => `/api/tasks/${id}` },
  ]

/** The parts of a response that could tell one 404 from another. */
function visible(response: LightMyRequestResponse): { status: number; contentType: unknown; body: string } {
  return { status: response.statusCode, contentType: response.headers['content-type'], body: response.body }
}

void describe('isolation between users', () => {
  let app: FastifyInstance
  before(async () => ({ app } = await openTestApp()))
  after(() => app.close())

  for (const route of SINGLE_TASK_ROUTES) {
    void test(`${route.name} of another user's task is 404, not 403, exactly as for a missing task, and changes nothing`, async () => {
      const owner = asUser(app, `owner-${route.name}`)
      const intruder = asUser(app, `intruder-${route.name}`)
      const task = await owner.create({ title: 'Private', description: 'mine only', completed: false })
      const gone = await owner.create({ title: 'Gone' })
      assert.equal((await owner.request('DELETE', `/api/tasks/${gone.id}`)).statusCode, 204)

      const foreign = await intruder.request(route.method, route.path(task.id), route.payload)
      assert.deepEqual(visible(foreign), { status: 404, contentType: JSON_CONTENT_TYPE, body: NOT_FOUND_BODY })
      // The same answer as for an id that no longer exists and one that never existed, for the intruder and the owner
      // alike.
      for (const [who, missingId] of [
        [intruder, gone.id],
        [intruder, Number.MAX_SAFE_INTEGER],
        [owner, gone.id],
      ] as const) {
        assert.deepEqual(
          visible(await who.request(route.method, route.path(missingId), route.payload)),
          visible(foreign),
        )
      }

      assert.deepEqual((await owner.get(task.id)).task, task, 'the owner sees the task unchanged')
      assert.deepEqual(await owner.list(''), { tasks: [task], total: 1 })
      assert.deepEqual(await intruder.list(''), { tasks: [], total: 0 })
    })
  }

  void test("lists under every filter, sort and order show only the caller's tasks and count only theirs", async () => {
    const users = ['list-ann', 'list-ben', 'list-cat'] as const
    const mine = new Map<string, TaskJson[]>(users.map((user) => [user, []]))
    // Interleaved creation and shared titles, so that every sort would mix the users' tasks if it could.
    for (let i = 0; i < 8; i++) {
      for (const [u, user] of users.entries()) {
        if (user === 'list-cat' && i >= 3) continue
        const task = await asUser(app, user).create({ title: `task ${i % 4}`, completed: (i + u) % 3 === 0 })
        mine.get(user)?.push(task)
      }
    }
    for (const user of users) {
      const caller = asUser(app, user)
      const own = mine.get(user) ?? []
      for (const status of ['', 'status=all', 'status=pending', 'status=completed']) {
        for (const sort of ['', 'sort=created', 'sort=updated', 'sort=title']) {
          for (const order of ['', 'order=asc', 'order=desc']) {
            for (const page of ['', 'limit=500', 'limit=2&offset=1']) {
              const query = [status, sort, order, page].filter(Boolean).join('&')
              const expected = own.filter((task) =>
                status === 'status=pending' ? !task.completed : status === 'status=completed' ? task.completed : true,
              )
              const list = await caller.list(`?${query}`)
              assert.ok(
                list.tasks.every((task) => task.user_id === user),
                `${user} ?${query}: only own tasks`,
              )
              const expectedIds = new Set(expected.map((task) => task.id))
              assert.ok(
                list.tasks.every((task) => expectedIds.has(task.id)),
                `${user} ?${query}: only own ids`,
              )
              const expectedLength =
                page === 'limit=2&offset=1' ? Math.min(2, Math.max(0, expected.length - 1)) : expected.length
              assert.equal(list.tasks.length, expectedLength, `${user} ?${query}: all own tasks on the page`)
              assert.equal(list.total, expected.length, `${user} ?${query}: X-Total-Count`)
            }
          }
        }
      }
    }
  })

  void test('a user with no tasks sees an empty list while others have tasks', async () => {
    await asUser(app, 'busy-user').create({ title: 'not yours' })
    assert.deepEqual(await asUser(app, 'idle-user').list('?limit=500'), { tasks: [], total: 0 })
  })

  void test('user ids that differ only in case, spaces or SQL wildcards are different users', async () => {
    const base = 'Case-User_1'
    const task = await asUser(app, base).create({ title: 'exact owner only' })
    for (const lookalike of [
      'case-user_1',
      'CASE-USER_1',
      'Case-User_1 ',
      ' Case-User_1',
      'Case-User%',
      'Case-User__',
      '%',
    ]) {
      const other = asUser(app, lookalike)
      assert.deepEqual(await other.list(''), { tasks: [], total: 0 }, `${JSON.stringify(lookalike)} sees nothing`)
      const response = await other.request('GET', `/api/tasks/${task.id}`)
      assert.equal(response.statusCode, 404, `${JSON.stringify(lookalike)} cannot read it`)
    }
    assert.deepEqual((await asUser(app, base).get(task.id)).task, task)
  })

  void test('a user_id in the body of a POST is refused with 422 and creates nothing', async () => {
    const mallory = asUser(app, 'body-mallory')
    const victim = asUser(app, 'body-victim')
    for (const body of [
      { title: 'planted', user_id: 'body-victim' },
      { title: 'planted', user_id: 'body-mallory' },
      { title: 'planted', userId: 'body-victim' },
    ]) {
      const response = await mallory.request('POST', '/api/tasks', body)
      assert.equal(response.statusCode, 422, response.body)
      const extra = Object.keys(body).find((key) => key !== 'title')
      assert.deepEqual(response.json(), {
        detail: [{ loc: ['body', extra], msg: 'Extra inputs are not permitted', type: 'extra_forbidden' }],
      })
    }
    assert.deepEqual(await victim.list(''), { tasks: [], total: 0 })
    assert.deepEqual(await mallory.list(''), { tasks: [], total: 0 })
  })

  void test('a user_id in the body of a PUT is refused with 422 and changes nothing', async () => {
    const owner = asUser(app, 'put-owner')
    const victim = asUser(app, 'put-victim')
    const task = await owner.create({ title: 'stays mine' })
    for (const body of [
      { user_id: 'put-victim' },
      { title: 'moved', user_id: 'put-victim' },
      { title: 'moved', user_id: 'put-owner' },
    ]) {
      const response = await owner.request('PUT', `/api/tasks/${task.id}`, body)
      assert.equal(response.statusCode, 422, response.body)
      assert.deepEqual(response.json(), {
        detail: [{ loc: ['body', 'user_id'], msg: 'Extra inputs are not permitted', type: 'extra_forbidden' }],
      })
    }
    assert.deepEqual((await owner.get(task.id)).task, task)
    assert.deepEqual(await victim.list(''), { tasks: [], total: 0 })
  })

  void test("a user_id or userId in the list's query is ignored: the caller still sees only their own", async () => {
    const victim = asUser(app, 'query-victim')
    const mallory = asUser(app, 'query-mallory')
    const victimTask = await victim.create({ title: 'victim secret' })
    for (const query of [
      '?user_id=query-victim',
      '?userId=query-victim',
      '?user_id=query-victim&userId=query-victim&status=all&limit=500',
    ]) {
      assert.deepEqual(await mallory.list(query), { tasks: [], total: 0 }, `mallory ${query}`)
    }
    const malloryTask = await mallory.create({ title: 'mallory own' })
    assert.deepEqual(await mallory.list('?user_id=query-victim'), { tasks: [malloryTask], total: 1 })
    assert.deepEqual(await victim.list('?user_id=query-mallory&userId=query-mallory'), {
      tasks: [victimTask],
      total: 1,
    })
  })
})
