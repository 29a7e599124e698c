import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTestApp } from './helpers/test-app.ts'
import { authHeaderFor } from './helpers/tokens.ts'

test('a user creates, reads, toggles and deletes a task', async (t) => {
  const { app } = await buildTestApp(t)
  const headers = await authHeaderFor('user_a')
  const created = await app.inject({ method: 'POST', url: '/api/tasks', headers, payload: { title: '  Buy milk  ' } })
  assert.equal(created.statusCode, 201, created.body)
  const task = created.json()
  assert.equal(task.title, 'Buy milk')
  assert.equal(created.headers.location, `/api/tasks/${task.id}`)
  const list = await app.inject({ method: 'GET', url: '/api/tasks', headers })
  assert.equal(list.statusCode, 200, list.body)
  assert.equal(list.headers['x-total-count'], '1')
  const toggled = await app.inject({
    method: 'PATCH',
    url: `/api/tasks/${task.id}/complete`,
    headers: { ...headers, 'content-type': 'application/json' },
  })
  assert.equal(toggled.statusCode, 200, toggled.body)
  assert.equal(toggled.json().completed, true)
  const other = await app.inject({ method: 'GET', url: `/api/tasks/${task.id}`, headers: await authHeaderFor('user_b') })
  assert.equal(other.statusCode, 404)
  const bad = await app.inject({ method: 'POST', url: '/api/tasks', headers, payload: { title: 123, user_id: 'x' } })
  assert.equal(bad.statusCode, 422, bad.body)
  assert.deepEqual(
    bad
      .json()
      .detail.map((issue: { loc: string[] }) => issue.loc.join('.'))
      .sort(),
    ['body.title', 'body.user_id'],
  )
  const empty = await app.inject({ method: 'POST', url: '/api/tasks', headers: { ...headers, 'content-type': 'application/json' } })
  assert.deepEqual([empty.statusCode, empty.json()], [422, { detail: [{ loc: ['body'], msg: 'Field required', type: 'missing' }] }])
  const del = await app.inject({
    method: 'DELETE',
    url: `/api/tasks/${task.id}`,
    headers: { ...headers, 'content-type': 'application/json' },
  })
  assert.equal(del.statusCode, 204, del.body)
})
