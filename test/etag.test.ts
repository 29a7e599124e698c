// Concurrent edits without lost updates (docs/contract.md "Retries and concurrent edits", issue 5): a strong ETag on
// every single-task answer, and If-Match on PUT, PATCH …/complete and DELETE checked in the same statement as the
// write. Also what browsers and generated clients need to use both headers: CORS and the OpenAPI document.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { asUser, race, statusCounts, type TaskJson } from './helpers/api-client.ts'
import { databaseKind } from './helpers/databases.ts'
import { buildTestApp, openTestApp } from './helpers/test-app.ts'
import { authHeaderFor } from './helpers/tokens.ts'

const STRONG_ETAG = /^"[^"]+"$/
const PRECONDITION_FAILED = '{"detail":"Precondition failed"}'
const NOT_FOUND = '{"detail":"Task not found"}'

/** The three conditional writes, each with a body that would change the task if it were let through. */
const WRITES = [
  {
    name: 'PUT',
    method: 'PUT',
    path: (id: number) => `/api/tasks/${id}`,
    payload: { title: 'Overwritten', completed: true },
  },
  { name: 'PATCH toggle', method: 'PATCH', path: (id: number) => `/api/tasks/${id}/complete`, payload: undefined },
  {
    name: 'PATCH set',
    method: 'PATCH',
    path: (id: number) => `/api/tasks/${id}/complete`,
    payload: { completed: true },
  },
  { name: 'DELETE', method: 'DELETE', path: (id: number) => `/api/tasks/${id}`, payload: undefined },
] as const

function etagOf(response: LightMyRequestResponse): string {
  const etag = response.headers.etag
  assert.equal(typeof etag, 'string', `no ETag on ${response.statusCode} ${response.body}`)
  return String(etag)
}

interface OpenApiOperation {
  parameters?: { in: string; name: string; required?: boolean; description?: string }[]
  responses: Record<string, { description?: string; headers?: Record<string, unknown>; content?: unknown }>
}

void describe('with the default configuration, one app', () => {
  let app: FastifyInstance
  before(async () => ({ app } = await openTestApp()))
  after(() => app.close())

  void test('every single-task answer carries a strong ETag that changes with every write and only then', async () => {
    const alice = asUser(app, 'etag-alice')
    const created = await alice.request('POST', '/api/tasks', { title: 'Versioned' })
    const id = created.json<TaskJson>().id
    const etags = [etagOf(created)]
    assert.match(etags[0]!, STRONG_ETAG, 'strong: no W/ prefix')

    // Reads give the same ETag as long as nothing is written.
    for (let i = 0; i < 2; i++) assert.equal(etagOf(await alice.request('GET', `/api/tasks/${id}`)), etags[0])

    const writes = [
      () => alice.request('PUT', `/api/tasks/${id}`, { title: 'Renamed' }),
      () => alice.request('PUT', `/api/tasks/${id}`, {}),
      () => alice.request('PATCH', `/api/tasks/${id}/complete`),
      () => alice.request('PATCH', `/api/tasks/${id}/complete`, { completed: true }),
      () => alice.request('PATCH', `/api/tasks/${id}/complete`, { completed: true }),
    ]
    for (const write of writes) {
      const response = await write()
      assert.equal(response.statusCode, 200, response.body)
      const etag = etagOf(response)
      assert.match(etag, STRONG_ETAG)
      assert.ok(
        !etags.includes(etag),
        `a write (even one that changes nothing but updated_at) gives a new ETag: ${etag}`,
      )
      etags.push(etag)
      const read = await alice.request('GET', `/api/tasks/${id}`)
      assert.equal(etagOf(read), etag, 'GET shows the ETag the write answered with')
      assert.equal(read.body, response.body)
    }
    // The list is not a single-task answer: no ETag there.
    assert.equal((await alice.request('GET', '/api/tasks')).headers.etag, undefined)
  })

  void test('a stale If-Match on PUT, PATCH and DELETE is 412 and the task is unchanged', async () => {
    const alice = asUser(app, 'etag-stale')
    const created = await alice.request('POST', '/api/tasks', { title: 'Seen by tab A', description: 'original' })
    const id = created.json<TaskJson>().id
    const staleEtag = etagOf(created)
    // Tab B edits it; tab A still holds the first ETag.
    const edited = await alice.request('PUT', `/api/tasks/${id}`, { description: 'edited in tab B' })
    assert.equal(edited.statusCode, 200)
    const before = await alice.get(id)

    for (const write of WRITES) {
      const response = await alice.request(write.method, write.path(id), write.payload, { 'if-match': staleEtag })
      assert.equal(response.statusCode, 412, `${write.name}: ${response.body}`)
      assert.equal(response.body, PRECONDITION_FAILED, write.name)
      assert.equal(response.headers.etag, undefined, write.name)
      assert.deepEqual(await alice.get(id), before, `${write.name} changed nothing`)
    }
    // An ETag this service never gave (past the year 9999 too: no timestamp could hold it), a weak one, and a list of
    // only stale ones are stale too, on every write: never a 500.
    const leadingZero = `"0${before.etag.slice(1)}`
    const pastYear9999 = ['"253402300800000"', '"8640000000000001"', '"9999999999999999"']
    for (const ifMatch of [
      '"123"',
      '"not-a-version"',
      `W/${before.etag}`,
      leadingZero,
      `${staleEtag}, "1"`,
      ...pastYear9999,
    ]) {
      for (const write of WRITES) {
        const response = await alice.request(write.method, write.path(id), write.payload, { 'if-match': ifMatch })
        assert.equal(response.statusCode, 412, `${write.name} If-Match: ${ifMatch}`)
      }
    }
    assert.deepEqual(await alice.get(id), before)
  })

  void test('the current ETag or * lets PUT, PATCH and DELETE proceed', async () => {
    const alice = asUser(app, 'etag-current')
    for (const write of WRITES) {
      for (const useStar of [false, true]) {
        const label = `${write.name} with ${useStar ? '*' : 'the current ETag'}`
        const task = await alice.create({ title: `For ${label}` })
        const { etag } = await alice.get(task.id)
        const response = await alice.request(write.method, write.path(task.id), write.payload, {
          'if-match': useStar ? '*' : etag,
        })
        if (write.method === 'DELETE') {
          assert.equal(response.statusCode, 204, label)
          assert.equal((await alice.request('GET', `/api/tasks/${task.id}`)).statusCode, 404, label)
        } else {
          assert.equal(response.statusCode, 200, `${label}: ${response.body}`)
          assert.notEqual(etagOf(response), etag, label)
          assert.equal(response.json<TaskJson>().completed, true, label)
        }
      }
    }
    // A list naming the current ETag among others matches, with any spacing.
    const task = await alice.create({ title: 'Listed' })
    const { etag } = await alice.get(task.id)
    const response = await alice.request(
      'PUT',
      `/api/tasks/${task.id}`,
      { title: 'Matched' },
      { 'if-match': ` "1" ,W/"2",${etag} ` },
    )
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.json<TaskJson>().title, 'Matched')
  })

  void test("If-Match on another user's task or a missing one is 404, never 412, and changes nothing", async () => {
    const alice = asUser(app, 'etag-owner')
    const mallory = asUser(app, 'etag-mallory')
    const task = await alice.create({ title: 'Mine' })
    const { etag } = await alice.get(task.id)
    await alice.request('PUT', `/api/tasks/${task.id}`, { title: 'Mine, edited' })
    const before = await alice.get(task.id)
    const missing = task.id + 1000

    for (const write of WRITES) {
      // Stale, current and *: whatever Mallory guesses, she cannot tell the task exists.
      for (const ifMatch of [etag, before.etag, '*', '"253402300800000"']) {
        for (const id of [task.id, missing]) {
          const response = await mallory.request(write.method, write.path(id), write.payload, { 'if-match': ifMatch })
          assert.deepEqual(
            [response.statusCode, response.body],
            [404, NOT_FOUND],
            `${write.name} #${id} If-Match: ${ifMatch}`,
          )
        }
        const own = await alice.request(write.method, write.path(missing), write.payload, { 'if-match': ifMatch })
        assert.equal(own.statusCode, 404, `${write.name} of a missing task`)
      }
    }
    assert.deepEqual(await alice.get(task.id), before)
  })

  void test('a malformed If-Match is 422, and nothing changes', async () => {
    const alice = asUser(app, 'etag-malformed')
    const task = await alice.create({ title: 'Keep' })
    const before = await alice.get(task.id)
    const unquoted = before.etag.replaceAll('"', '')
    for (const ifMatch of [unquoted, '', '"unterminated', '**', `${before.etag};`]) {
      for (const write of WRITES) {
        const response = await alice.request(write.method, write.path(task.id), write.payload, { 'if-match': ifMatch })
        assert.equal(response.statusCode, 422, `${write.name} If-Match: ${JSON.stringify(ifMatch)}`)
        assert.deepEqual(response.json().detail[0].loc, ['header', 'if-match'])
      }
    }
    assert.deepEqual(await alice.get(task.id), before)
  })

  void test(`10 concurrent PUTs carrying the same ETag: exactly one 200, the rest 412, and the task is the winner's (${databaseKind})`, async () => {
    const alice = asUser(app, 'etag-race')
    for (let round = 0; round < 3; round++) {
      const task = await alice.create({ title: `Contended ${round}` })
      const { etag } = await alice.get(task.id)
      const responses = await race(10, (i) =>
        alice.request(
          'PUT',
          `/api/tasks/${task.id}`,
          { title: `tab ${i}`, description: `written by tab ${i}`, completed: i % 2 === 0 },
          { 'if-match': etag },
        ),
      )
      assert.deepEqual(statusCounts(responses), { 200: 1, 412: 9 })
      const winner = responses.find((response) => response.statusCode === 200)!
      for (const response of responses.filter((r) => r.statusCode === 412))
        assert.equal(response.body, PRECONDITION_FAILED)
      const final = await alice.get(task.id)
      assert.deepEqual(final.task, winner.json<TaskJson>())
      assert.equal(final.etag, etagOf(winner))
      const i = responses.indexOf(winner)
      assert.deepEqual(
        [final.task.title, final.task.description, final.task.completed],
        [`tab ${i}`, `written by tab ${i}`, i % 2 === 0],
      )
    }
  })

  void test('concurrent toggles and deletes carrying the same ETag: exactly one wins', async () => {
    const alice = asUser(app, 'etag-race-2')
    const task = await alice.create({ title: 'Toggle once', completed: false })
    const { etag } = await alice.get(task.id)
    const toggles = await race(10, () =>
      alice.request('PATCH', `/api/tasks/${task.id}/complete`, undefined, { 'if-match': etag }),
    )
    assert.deepEqual(statusCounts(toggles), { 200: 1, 412: 9 })
    const after = await alice.get(task.id)
    assert.equal(after.task.completed, true, 'toggled exactly once')

    const deletes = await race(10, () =>
      alice.request('DELETE', `/api/tasks/${task.id}`, undefined, { 'if-match': after.etag }),
    )
    const counts = statusCounts(deletes)
    // The first delete wins; the others found it changed (412) or, after it was gone, found nothing (404).
    assert.equal(counts[204], 1, JSON.stringify(counts))
    assert.equal((counts[412] ?? 0) + (counts[404] ?? 0), 9, JSON.stringify(counts))
    assert.equal((await alice.request('GET', `/api/tasks/${task.id}`)).statusCode, 404)
  })

  void test('the OpenAPI document describes Idempotency-Key, If-Match, ETag and the 409 and 412 answers', async () => {
    const response = await app.inject({ method: 'GET', url: '/openapi.json' })
    assert.equal(response.statusCode, 200)
    const paths = response.json<{ paths: Record<string, Record<string, OpenApiOperation>> }>().paths
    const operation = (path: string, method: string): OpenApiOperation => {
      const found = paths[path]?.[method]
      assert.ok(found !== undefined, `${method} ${path}`)
      return found
    }
    const headerParameter = (op: OpenApiOperation, name: string) =>
      op.parameters?.find((parameter) => parameter.in === 'header' && parameter.name.toLowerCase() === name)

    const post = operation('/api/tasks', 'post')
    const key = headerParameter(post, 'idempotency-key')
    assert.ok(key !== undefined && key.required !== true, 'POST documents an optional Idempotency-Key')
    assert.match(String(key.description), /24 hours/)
    assert.ok(post.responses['409']?.content !== undefined, 'POST documents 409')
    assert.deepEqual(
      Object.keys(post.responses['201']?.headers ?? {}).map((name) => name.toLowerCase()),
      ['location', 'etag', 'idempotent-replayed'],
    )

    for (const [path, method] of [
      ['/api/tasks/{id}', 'put'],
      ['/api/tasks/{id}/complete', 'patch'],
      ['/api/tasks/{id}', 'delete'],
    ] as const) {
      const op = operation(path, method)
      assert.ok(headerParameter(op, 'if-match') !== undefined, `${method} ${path} documents If-Match`)
      assert.ok(op.responses['412']?.content !== undefined, `${method} ${path} documents 412`)
      assert.equal(headerParameter(op, 'idempotency-key'), undefined)
    }
    for (const [path, method] of [
      ['/api/tasks/{id}', 'get'],
      ['/api/tasks/{id}', 'put'],
      ['/api/tasks/{id}/complete', 'patch'],
    ] as const) {
      assert.ok(
        Object.keys(operation(path, method).responses['200']?.headers ?? {}).some(
          (name) => name.toLowerCase() === 'etag',
        ),
        `${method} ${path} documents the ETag header`,
      )
    }
  })
})

void test('browsers may send Idempotency-Key and If-Match and read ETag (CORS)', async (t) => {
  const origin = 'http://localhost:3000'
  const { app } = await buildTestApp(t, { config: { corsOrigins: [origin] } })
  const list = (response: LightMyRequestResponse, name: string): string[] =>
    String(response.headers[name] ?? '')
      .split(',')
      .map((item) => item.trim().toLowerCase())
  for (const [url, method, header] of [
    ['/api/tasks', 'POST', 'idempotency-key'],
    ['/api/tasks/1', 'PUT', 'if-match'],
    ['/api/tasks/1/complete', 'PATCH', 'if-match'],
    ['/api/tasks/1', 'DELETE', 'if-match'],
  ] as const) {
    const preflight = await app.inject({
      method: 'OPTIONS',
      url,
      headers: {
        origin,
        'access-control-request-method': method,
        'access-control-request-headers': `authorization,content-type,${header}`,
      },
    })
    assert.equal(preflight.statusCode, 204, `${method} ${url}`)
    assert.equal(preflight.headers['access-control-allow-origin'], origin)
    assert.ok(
      list(preflight, 'access-control-allow-headers').includes(header),
      `${method} ${url}: ${preflight.headers['access-control-allow-headers']}`,
    )
  }
  const created = await app.inject({
    method: 'POST',
    url: '/api/tasks',
    headers: { ...(await authHeaderFor('etag-cors')), origin, 'idempotency-key': 'from-the-browser' },
    payload: { title: 'From the browser' },
  })
  assert.equal(created.statusCode, 201)
  const exposed = list(created, 'access-control-expose-headers')
  assert.ok(
    exposed.includes('etag') && exposed.includes('idempotent-replayed') && exposed.includes('location'),
    exposed.join(),
  )
})
