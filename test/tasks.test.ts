// The task endpoints of docs/contract.md "The task resource" and "Endpoints", through the real app on a real database:
// statuses, headers, the exact JSON of a task, partial updates, toggles, deletes, and lists that page stably.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Database, TasksDb } from '../src/db/database.ts'
import { tasks } from '../src/db/schema.ts'
import { asUser as sharedAsUser, JSON_CONTENT_TYPE, type TaskJson } from './helpers/api-client.ts'
import { openTestApp } from './helpers/test-app.ts'

const TASK_KEYS = ['completed', 'created_at', 'description', 'id', 'title', 'updated_at', 'user_id']
/** ISO 8601 in UTC with milliseconds, as `Date.prototype.toISOString` writes it. */
const ISO_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const NOT_FOUND_BODY = '{"detail":"Task not found"}'

/**
 * Requests as one user, asserting as well that every answer the helpers accept is JSON, and every list's X-Total-Count.
 */
const asUser = (app: FastifyInstance, userId: string) => sharedAsUser(app, userId, { checkHeaders: true })

/** Asserts the exact shape of a task: exactly the seven keys, their types, and timestamps in ISO 8601 UTC with ms. */
function assertTaskShape(value: unknown): asserts value is TaskJson {
  assert.equal(typeof value, 'object')
  assert.notEqual(value, null)
  const task = value as Record<string, unknown>
  assert.deepEqual(Object.keys(task).sort(), TASK_KEYS)
  assert.ok(Number.isSafeInteger(task.id) && (task.id as number) > 0, `id ${String(task.id)} is a positive integer`)
  assert.equal(typeof task.title, 'string')
  assert.ok(task.description === null || typeof task.description === 'string', 'description is a string or null')
  assert.equal(typeof task.completed, 'boolean')
  assert.equal(typeof task.user_id, 'string')
  for (const key of ['created_at', 'updated_at'] as const) {
    assert.match(String(task[key]), ISO_UTC_MS, key)
    assert.equal(new Date(String(task[key])).toISOString(), task[key], `${key} is a real instant`)
  }
}

const ids = (list: readonly TaskJson[]): number[] => list.map((task) => task.id)
const time = (iso: string): number => Date.parse(iso)

void describe('the single-task endpoints', () => {
  let app: FastifyInstance
  before(async () => ({ app } = await openTestApp()))
  after(() => app.close())

  void test('creating a task answers 201, a Location header and the task with its defaults', async () => {
    const alice = asUser(app, 'create-alice')
    const before = Date.now()
    const response = await alice.request('POST', '/api/tasks', { title: 'Buy milk' })
    const after = Date.now()
    assert.equal(response.statusCode, 201, response.body)
    assert.equal(response.headers['content-type'], JSON_CONTENT_TYPE)
    const task: unknown = response.json()
    assertTaskShape(task)
    assert.equal(response.headers.location, `/api/tasks/${task.id}`)
    assert.deepEqual(task, {
      id: task.id,
      title: 'Buy milk',
      description: null,
      completed: false,
      user_id: 'create-alice',
      created_at: task.created_at,
      updated_at: task.created_at,
    })
    // The database clock and this process's clock are the same machine's; allow for rounding and scheduling.
    assert.ok(
      time(task.created_at) >= before - 2000 && time(task.created_at) <= after + 2000,
      `created_at ${task.created_at} is now`,
    )
  })

  void test('the Location of a created task serves that task', async () => {
    const alice = asUser(app, 'location-alice')
    const response = await alice.request('POST', '/api/tasks', { title: 'Follow me' })
    assert.equal(response.statusCode, 201, response.body)
    const location = response.headers.location
    assert.equal(typeof location, 'string')
    const fetched = await alice.request('GET', String(location))
    assert.equal(fetched.statusCode, 200, fetched.body)
    assert.deepEqual(fetched.json(), response.json())
  })

  void test('the title is trimmed of surrounding whitespace, inner spaces kept', async () => {
    const alice = asUser(app, 'trim-alice')
    const created = await alice.create({ title: ' \t Buy  oat milk \n ' })
    assert.equal(created.title, 'Buy  oat milk')
    assert.equal((await alice.get(created.id)).task.title, 'Buy  oat milk')
    const updated = await alice.put(created.id, { title: '\n  Buy soy milk  ' })
    assert.equal(updated.title, 'Buy soy milk')
    assert.equal((await alice.get(created.id)).task.title, 'Buy soy milk')
  })

  void test('a description and completed can be given when creating', async () => {
    const alice = asUser(app, 'create-full-alice')
    const created = await alice.create({ title: 'Call mum', description: 'Sunday, after lunch', completed: true })
    assertTaskShape(created)
    assert.deepEqual(
      {
        title: created.title,
        description: created.description,
        completed: created.completed,
        user_id: created.user_id,
      },
      { title: 'Call mum', description: 'Sunday, after lunch', completed: true, user_id: 'create-full-alice' },
    )
    const explicitNull = await alice.create({ title: 'No notes', description: null, completed: false })
    assert.equal(explicitNull.description, null)
    assert.equal(explicitNull.completed, false)
  })

  void test('each created task gets an id of its own', async () => {
    const alice = asUser(app, 'ids-alice')
    const created = [
      await alice.create({ title: 'one' }),
      await alice.create({ title: 'two' }),
      await alice.create({ title: 'three' }),
    ]
    assert.equal(new Set(ids(created)).size, 3)
  })

  void test('reading a task answers 200 with exactly the task as it was created', async () => {
    const alice = asUser(app, 'read-alice')
    const created = await alice.create({ title: 'Read me', description: 'twice' })
    const response = await alice.request('GET', `/api/tasks/${created.id}`)
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.headers['content-type'], JSON_CONTENT_TYPE)
    const task: unknown = response.json()
    assertTaskShape(task)
    assert.deepEqual(task, created)
  })

  void test('a task that does not exist is 404 "Task not found" on every route', async () => {
    const alice = asUser(app, 'missing-alice')
    const gone = await alice.create({ title: 'Soon gone' })
    assert.equal((await alice.request('DELETE', `/api/tasks/${gone.id}`)).statusCode, 204)
    for (const id of [gone.id, Number.MAX_SAFE_INTEGER]) {
      for (const [method, url, payload] of [
        ['GET', `/api/tasks/${id}`],
        ['PUT', `/api/tasks/${id}`, { title: 'x' }],
        ['PATCH', `/api/tasks/${id}/complete`],
        ['PATCH', `/api/tasks/${id}/complete`, { completed: true }],
        ['DELETE', `/api/tasks/${id}`],
      ] as const) {
        const response = await alice.request(method, url, payload)
        assert.equal(response.statusCode, 404, `${method} ${url}: ${response.body}`)
        assert.equal(response.headers['content-type'], JSON_CONTENT_TYPE)
        assert.equal(response.body, NOT_FOUND_BODY)
      }
    }
  })

  void test('PUT changes only the title when only the title is sent', async () => {
    const alice = asUser(app, 'put-title-alice')
    const created = await alice.create({ title: 'Old title', description: 'keep me', completed: true })
    const updated = await alice.put(created.id, { title: 'New title' })
    assertTaskShape(updated)
    assert.deepEqual(updated, { ...created, title: 'New title', updated_at: updated.updated_at })
    assert.deepEqual((await alice.get(created.id)).task, updated)
  })

  void test('PUT changes only the description when only the description is sent', async () => {
    const alice = asUser(app, 'put-description-alice')
    const created = await alice.create({ title: 'Keep title', description: 'old notes' })
    const updated = await alice.put(created.id, { description: 'new notes' })
    assert.deepEqual(updated, { ...created, description: 'new notes', updated_at: updated.updated_at })
    assert.deepEqual((await alice.get(created.id)).task, updated)
  })

  void test('PUT changes only completed when only completed is sent', async () => {
    const alice = asUser(app, 'put-completed-alice')
    const created = await alice.create({ title: 'Keep title', description: 'keep notes' })
    const done = await alice.put(created.id, { completed: true })
    assert.deepEqual(done, { ...created, completed: true, updated_at: done.updated_at })
    const undone = await alice.put(created.id, { completed: false })
    assert.deepEqual(undone, { ...created, completed: false, updated_at: undone.updated_at })
    assert.deepEqual((await alice.get(created.id)).task, undone)
  })

  void test('PUT with description null clears the description', async () => {
    const alice = asUser(app, 'put-clear-alice')
    const created = await alice.create({ title: 'Has notes', description: 'to be cleared', completed: true })
    const cleared = await alice.put(created.id, { description: null })
    assert.deepEqual(cleared, { ...created, description: null, updated_at: cleared.updated_at })
    assert.deepEqual((await alice.get(created.id)).task, cleared)
  })

  void test('PUT with every field changes them all at once', async () => {
    const alice = asUser(app, 'put-all-alice')
    const created = await alice.create({ title: 'Before' })
    const updated = await alice.put(created.id, { title: 'After', description: 'now with notes', completed: true })
    assert.deepEqual(updated, {
      ...created,
      title: 'After',
      description: 'now with notes',
      completed: true,
      updated_at: updated.updated_at,
    })
  })

  void test('PUT with an empty object changes no field', async () => {
    const alice = asUser(app, 'put-empty-alice')
    const created = await alice.create({ title: 'Untouched', description: 'as it was', completed: true })
    const updated = await alice.put(created.id, {})
    assert.deepEqual(updated, { ...created, updated_at: updated.updated_at })
  })

  void test('updated_at moves forward on every write, even writes within one millisecond, and created_at stays', async () => {
    const alice = asUser(app, 'updated-at-alice')
    const created = await alice.create({ title: 'Busy task' })
    const writes: [string, () => Promise<TaskJson>][] = [
      ['PUT title', () => alice.put(created.id, { title: 'Busier task' })],
      ['PUT description', () => alice.put(created.id, { description: 'notes' })],
      ['PUT completed', () => alice.put(created.id, { completed: true })],
      ['PATCH toggle (no body)', () => alice.complete(created.id)],
      ['PATCH toggle ({})', () => alice.complete(created.id, {})],
      ['PATCH set true', () => alice.complete(created.id, { completed: true })],
      ['PATCH set false', () => alice.complete(created.id, { completed: false })],
    ]
    let previous = created
    // Three rounds back to back: several writes land in the same millisecond of the clock.
    for (let round = 0; round < 3; round++) {
      for (const [name, write] of writes) {
        const next = await write()
        assert.ok(
          time(next.updated_at) > time(previous.updated_at),
          `${name}: ${next.updated_at} after ${previous.updated_at}`,
        )
        assert.equal(next.created_at, created.created_at, `${name} keeps created_at`)
        previous = next
      }
    }
    assert.equal((await alice.get(created.id)).task.updated_at, previous.updated_at)
  })

  void test('writes sent all at once each get an updated_at of their own, later than the one before', async () => {
    const alice = asUser(app, 'updated-at-burst-alice')
    const created = await alice.create({ title: 'Burst' })
    // Sent together, these land within a millisecond or two of each other.
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? alice.put(created.id, { description: `burst ${i}` })
          : alice.complete(created.id, { completed: i % 4 === 1 }),
      ),
    )
    const times = answers.map((answer) => time(answer.updated_at))
    assert.equal(
      new Set(times).size,
      20,
      `distinct updated_at: ${answers.map((answer) => answer.updated_at).join(' ')}`,
    )
    assert.ok(Math.min(...times) > time(created.updated_at))
    assert.ok(answers.every((answer) => answer.created_at === created.created_at))
    assert.equal(time((await alice.get(created.id)).task.updated_at), Math.max(...times))
  })

  void test('PATCH complete with no body toggles completed back and forth', async () => {
    const alice = asUser(app, 'toggle-alice')
    const created = await alice.create({ title: 'Toggle me', description: 'stays' })
    const once = await alice.complete(created.id)
    assertTaskShape(once)
    assert.deepEqual(once, { ...created, completed: true, updated_at: once.updated_at })
    const twice = await alice.complete(created.id)
    assert.deepEqual(twice, { ...created, completed: false, updated_at: twice.updated_at })
    assert.equal((await alice.get(created.id)).task.completed, false)
  })

  void test('PATCH complete with {} toggles completed', async () => {
    const alice = asUser(app, 'toggle-empty-alice')
    const created = await alice.create({ title: 'Toggle me', completed: true })
    assert.equal((await alice.complete(created.id, {})).completed, false)
    assert.equal((await alice.complete(created.id, {})).completed, true)
    assert.equal((await alice.get(created.id)).task.completed, true)
  })

  void test('PATCH complete with {"completed": true|false} sets it, however often it is sent', async () => {
    const alice = asUser(app, 'set-alice')
    const created = await alice.create({ title: 'Set me', description: 'stays' })
    for (const completed of [true, true, false, false, true]) {
      const set = await alice.complete(created.id, { completed })
      assert.deepEqual(set, { ...created, completed, updated_at: set.updated_at })
      assert.equal((await alice.get(created.id)).task.completed, completed)
    }
  })

  void test('deleting a task answers 204 with an empty body, and then the task is gone', async () => {
    const alice = asUser(app, 'delete-alice')
    const doomed = await alice.create({ title: 'Delete me' })
    const kept = await alice.create({ title: 'Keep me' })
    const response = await alice.request('DELETE', `/api/tasks/${doomed.id}`)
    assert.equal(response.statusCode, 204)
    assert.equal(response.body, '')
    assert.equal(response.headers['content-type'], undefined)
    const again = await alice.request('GET', `/api/tasks/${doomed.id}`)
    assert.equal(again.statusCode, 404)
    assert.equal(again.body, NOT_FOUND_BODY)
    const twice = await alice.request('DELETE', `/api/tasks/${doomed.id}`)
    assert.equal(twice.statusCode, 404)
    assert.equal(twice.body, NOT_FOUND_BODY)
    const list = await alice.list('')
    assert.deepEqual(ids(list.tasks), [kept.id])
    assert.equal(list.total, 1)
    assert.deepEqual((await alice.get(kept.id)).task, kept)
  })
})

void describe('lists', () => {
  let app: FastifyInstance
  let database: Database
  before(async () => ({ app, database } = await openTestApp()))
  after(() => app.close())

  void test('a user with no tasks gets an empty list and X-Total-Count 0', async () => {
    const nobody = asUser(app, 'list-empty-user')
    for (const query of ['', '?status=pending', '?status=completed', '?sort=title&order=desc&limit=5&offset=3']) {
      assert.deepEqual(await nobody.list(query), { tasks: [], total: 0 })
    }
  })

  void test('every listed task has the exact shape of a task', async () => {
    const alice = asUser(app, 'list-shape-alice')
    const created = [
      await alice.create({ title: 'plain' }),
      await alice.create({ title: 'full', description: 'notes', completed: true }),
    ]
    const { tasks: listed } = await alice.list('')
    for (const task of listed) assertTaskShape(task)
    assert.deepEqual(
      listed.sort((a, b) => a.id - b.id),
      created,
    )
  })

  void test('status=all|pending|completed filters, and X-Total-Count counts what matches', async () => {
    const alice = asUser(app, 'list-status-alice')
    const created: TaskJson[] = []
    for (let i = 0; i < 7; i++) created.push(await alice.create({ title: `task ${i}`, completed: i % 3 === 0 }))
    const done = created.filter((task) => task.completed).map((task) => task.id)
    const open = created.filter((task) => !task.completed).map((task) => task.id)
    assert.deepEqual([done.length, open.length], [3, 4])
    const sorted = (list: readonly number[]): number[] => [...list].sort((a, b) => a - b)
    for (const [query, expected] of [
      ['', [...done, ...open]],
      ['?status=all', [...done, ...open]],
      ['?status=pending', open],
      ['?status=completed', done],
    ] as const) {
      const list = await alice.list(query)
      assert.deepEqual(sorted(ids(list.tasks)), sorted(expected), query)
      assert.equal(list.total, expected.length, query)
    }
    // A toggle moves a task from one filter to the other.
    const [first] = open
    assert.ok(first !== undefined)
    await alice.complete(first)
    assert.equal((await alice.list('?status=completed')).total, 4)
    assert.equal((await alice.list('?status=pending')).total, 3)
  })

  void test('sorts by created, updated or title; newest first by default, titles A to Z', async () => {
    const alice = asUser(app, 'list-sort-alice')
    // Created in this order, a few ms apart so that no two share a timestamp.
    const charlie = await alice.create({ title: 'charlie' })
    await sleep(5)
    const alpha = await alice.create({ title: 'alpha' })
    await sleep(5)
    const bravo = await alice.create({ title: 'bravo' })
    await sleep(5)
    // The oldest task becomes the most recently updated.
    await alice.put(charlie.id, { description: 'touched' })
    for (const [query, expected] of [
      ['', [bravo, alpha, charlie]],
      ['?sort=created', [bravo, alpha, charlie]],
      ['?sort=created&order=desc', [bravo, alpha, charlie]],
      ['?sort=created&order=asc', [charlie, alpha, bravo]],
      ['?order=asc', [charlie, alpha, bravo]],
      ['?sort=updated', [charlie, bravo, alpha]],
      ['?sort=updated&order=desc', [charlie, bravo, alpha]],
      ['?sort=updated&order=asc', [alpha, bravo, charlie]],
      ['?sort=title', [alpha, bravo, charlie]],
      ['?sort=title&order=asc', [alpha, bravo, charlie]],
      ['?sort=title&order=desc', [charlie, bravo, alpha]],
    ] as const) {
      assert.deepEqual(
        (await alice.list(query)).tasks.map((task) => task.title),
        expected.map((task) => task.title),
        query,
      )
    }
  })

  void test('limit is 1 to 500 (100 by default), offset skips, and X-Total-Count ignores both', async () => {
    const alice = asUser(app, 'list-limit-alice')
    const count = 501
    for (let start = 0; start < count; start += 50) {
      const batch = Array.from({ length: Math.min(50, count - start) }, (_, i) => start + i)
      await Promise.all(
        batch.map((i) => alice.create({ title: `task ${String(i).padStart(3, '0')}`, completed: i % 3 === 0 })),
      )
    }
    const everything = await alice.list('?limit=500&sort=title')
    assert.equal(everything.tasks.length, 500)
    assert.equal(everything.total, count)
    const allTitles = [
      ...everything.tasks.map((task) => task.title),
      ...(await alice.list('?limit=500&offset=500&sort=title')).tasks.map((task) => task.title),
    ]
    assert.deepEqual(
      allTitles,
      Array.from({ length: count }, (_, i) => `task ${String(i).padStart(3, '0')}`),
    )

    const byDefault = await alice.list('?sort=title')
    assert.deepEqual(byDefault, { tasks: everything.tasks.slice(0, 100), total: count })
    assert.deepEqual(await alice.list('?sort=title&limit=1'), { tasks: everything.tasks.slice(0, 1), total: count })
    assert.deepEqual(await alice.list('?sort=title&limit=50&offset=50'), {
      tasks: everything.tasks.slice(50, 100),
      total: count,
    })
    assert.equal((await alice.list('?sort=title&offset=499&limit=10')).tasks.length, 2)
    assert.deepEqual(await alice.list('?offset=501'), { tasks: [], total: count })
    assert.deepEqual(await alice.list('?offset=100000&limit=500'), { tasks: [], total: count })
    assert.equal((await alice.list('')).tasks.length, 100)

    // The count follows the filter, not the page.
    const completed = await alice.list('?status=completed&limit=10&offset=160')
    assert.deepEqual([completed.tasks.length, completed.total], [7, 167])
    assert.ok(completed.tasks.every((task) => task.completed))
    const pending = await alice.list('?status=pending&limit=500')
    assert.deepEqual([pending.tasks.length, pending.total], [334, 334])
    assert.ok(pending.tasks.every((task) => !task.completed))

    for (const [query, field] of [
      ['?limit=0', 'limit'],
      ['?limit=501', 'limit'],
      ['?limit=-1', 'limit'],
      ['?offset=-1', 'offset'],
    ] as const) {
      const response = await alice.request('GET', `/api/tasks${query}`)
      assert.equal(response.statusCode, 422, `${query}: ${response.body}`)
      const { detail } = response.json<{ detail: { loc: unknown[] }[] }>()
      assert.deepEqual(
        detail.map((issue) => issue.loc),
        [['query', field]],
        query,
      )
    }
  })

  void test('paging through tasks that share titles and timestamps never repeats or skips a task, under every filter, sort and order', async () => {
    const owner = 'list-paging-alice'
    const alice = asUser(app, owner)
    const titles = ['apple', 'banana', 'cherry']
    // One INSERT of many rows: every row gets the same created_at and updated_at (now() of that statement).
    const db: TasksDb = database.db
    await db.insert(tasks).values(
      Array.from({ length: 30 }, (_, i) => ({
        userId: owner,
        title: titles[i % 3] ?? 'apple',
        completed: i % 4 === 0,
      })),
    )
    // And some through the API, concurrently, so that several land in the same millisecond.
    await Promise.all(
      Array.from({ length: 12 }, (_, i) => alice.create({ title: titles[i % 2] ?? 'apple', completed: i % 3 === 0 })),
    )
    // A few updated later: updated_at then differs from created_at for some.
    const all = (await alice.list('?limit=500')).tasks
    for (const task of all.filter((_, i) => i % 9 === 0)) await alice.put(task.id, { description: 'touched' })
    const snapshot = (await alice.list('?limit=500')).tasks
    assert.equal(snapshot.length, 42)

    // The data really has ties, or this test would prove nothing.
    const largestGroup = (key: (task: TaskJson) => string): number => {
      const sizes = new Map<string, number>()
      for (const task of snapshot) sizes.set(key(task), (sizes.get(key(task)) ?? 0) + 1)
      return Math.max(...sizes.values())
    }
    assert.ok(largestGroup((task) => task.created_at) >= 30, 'at least 30 tasks share created_at')
    assert.ok(largestGroup((task) => task.updated_at) >= 20, 'at least 20 tasks share updated_at')
    assert.ok(largestGroup((task) => task.title) >= 14, 'at least 14 tasks share a title')

    const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
    for (const status of [undefined, 'all', 'pending', 'completed'] as const) {
      for (const sort of [undefined, 'created', 'updated', 'title'] as const) {
        for (const order of [undefined, 'asc', 'desc'] as const) {
          const key = (task: TaskJson): string =>
            sort === 'title' ? task.title : sort === 'updated' ? task.updated_at : task.created_at
          const direction = (order ?? (sort === 'title' ? 'asc' : 'desc')) === 'asc' ? 1 : -1
          // ISO strings of one format compare as the instants they name; ties go by id, in the same direction.
          const expected = snapshot
            .filter((task) => (status === 'pending' ? !task.completed : status === 'completed' ? task.completed : true))
            .sort((a, b) => direction * (compareText(key(a), key(b)) || a.id - b.id))
          const base = [status && `status=${status}`, sort && `sort=${sort}`, order && `order=${order}`]
            .filter(Boolean)
            .join('&')
          const pageSizes = status === undefined && sort === undefined && order === undefined ? [1, 5, 7] : [5, 7]
          for (const limit of pageSizes) {
            const seen: TaskJson[] = []
            for (let offset = 0; offset <= expected.length; offset += limit) {
              const page = await alice.list(`?${base}${base ? '&' : ''}limit=${limit}&offset=${offset}`)
              assert.equal(page.total, expected.length, `${base} limit=${limit} offset=${offset}: X-Total-Count`)
              assert.ok(page.tasks.length <= limit)
              seen.push(...page.tasks)
            }
            const label = `${base || '(defaults)'} in pages of ${limit}`
            assert.equal(new Set(ids(seen)).size, seen.length, `${label}: no task twice`)
            assert.deepEqual(ids(seen), ids(expected), `${label}: every task once, in order`)
          }
        }
      }
    }
  })
})
