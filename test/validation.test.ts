// Bad input (docs/contract.md "Errors"): every bad body, id, query value, content type and size gets the status and the
// {"detail": …} shape of the error table, never a 500 or Fastify's own envelope, and changes nothing.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { asc } from 'drizzle-orm'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Database, TasksDb } from '../src/db/database.ts'
import { tasks } from '../src/db/schema.ts'
import { buildTestApp, listenOnLoopback, openTestApp } from './helpers/test-app.ts'
import { authHeaderFor } from './helpers/tokens.ts'

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
type Loc = readonly (string | number)[]

/** One request. `{id}` in the URL stands for the owner's target task; `body` is sent as raw text. */
interface Probe {
  method: Method
  url: string
  body?: string | Buffer
  /** Default: application/json when there is a body; `null` sends no Content-Type at all. */
  contentType?: string | null
  /** More request headers. */
  headers?: Record<string, string>
}

/** A bad request and the answer docs/contract.md's error table gives it. */
interface BadInput extends Probe {
  title: string
  /** The status, or the statuses the contract allows ("400 or 422", "404 or 422"). */
  status: number | readonly number[]
  /** For a 422: the `loc` of every entry, in any order. */
  locs?: readonly Loc[]
  /** For a 422: the `type` of every entry. */
  type?: string
  /** For any other status: the exact `detail`. */
  detail?: string
}

const JSON_TYPE = 'application/json'
const EMOJI = '😀'
const BODY_LIMIT = 64 * 1024

/** The routes that take a body, with a field set each accepts. */
const BODY_ROUTES = [
  { method: 'POST', url: '/api/tasks', valid: { title: 'fine' } },
  { method: 'PUT', url: '/api/tasks/{id}', valid: { title: 'fine' } },
  { method: 'PATCH', url: '/api/tasks/{id}/complete', valid: { completed: true } },
] as const

/** Every single-task route, for an id given as URL text. */
const SINGLE_TASK_ROUTES: readonly { method: Method; url: (id: string) => string; body?: string }[] = [
  { method: 'GET', url: (id) => `/api/tasks/${id}` },
  { method: 'PUT', url: (id) => `/api/tasks/${id}`, body: JSON.stringify({ title: 'renamed' }) },
  { method: 'PATCH', url: (id) => `/api/tasks/${id}/complete` },
  { method: 'DELETE', url: (id) => `/api/tasks/${id}` },
]

/** `json` padded with trailing whitespace to exactly `bytes` bytes: still valid JSON. */
function padTo(json: string, bytes: number): string {
  return json + ' '.repeat(bytes - Buffer.byteLength(json))
}

/**
 * Values each task field refuses, with the 422 `type` they get. JSON.stringify writes a NUL or a lone surrogate
 * as an escape (`\u0000`, `\ud800`), so those bodies are the JSON text a client would send.
 */
const BAD_VALUES: Record<'title' | 'description' | 'completed', readonly [string, unknown, string][]> = {
  title: [
    ['123 (no coercion to "123")', 123, 'string_type'],
    ['true (no coercion to "true")', true, 'string_type'],
    ['[]', [], 'string_type'],
    ['{}', {}, 'string_type'],
    ['null', null, 'string_type'],
    ['""', '', 'string_too_short'],
    ['only spaces', '   ', 'string_too_short'],
    ['only tabs, newlines and Unicode spaces', '\t\n\u00a0\u2003\u3000', 'string_too_short'],
    ['201 characters', 'x'.repeat(201), 'string_too_long'],
    ['201 characters inside spaces', `  ${'x'.repeat(201)}  `, 'string_too_long'],
    ['201 emoji', EMOJI.repeat(201), 'string_too_long'],
    ['a NUL byte', 'a\u0000b', 'string_pattern_mismatch'],
    ['a lone high surrogate', '\ud800', 'string_pattern_mismatch'],
    ['a lone low surrogate', 'a\udc00b', 'string_pattern_mismatch'],
    ['a surrogate pair in the wrong order', '\ude00\ud83d', 'string_pattern_mismatch'],
  ],
  description: [
    ['5', 5, 'string_type'],
    ['true', true, 'string_type'],
    ['[]', [], 'string_type'],
    ['{}', {}, 'string_type'],
    ['1001 characters', 'x'.repeat(1001), 'string_too_long'],
    ['1001 emoji', EMOJI.repeat(1001), 'string_too_long'],
    ['a NUL byte', 'line\u0000break', 'string_pattern_mismatch'],
    ['a lone surrogate', 'x\ud800', 'string_pattern_mismatch'],
  ],
  completed: [
    ['"true"', 'true', 'boolean_type'],
    ['"false"', 'false', 'boolean_type'],
    ['1', 1, 'boolean_type'],
    ['0', 0, 'boolean_type'],
    ['null', null, 'boolean_type'],
    ['[]', [], 'boolean_type'],
  ],
}

/** Fields a client may not send (the server assigns them, or they do not exist), with a plausible value. */
const UNKNOWN_FIELDS: readonly [string, unknown][] = [
  ['user_id', 'user_validation_other'],
  ['id', 999],
  ['created_at', '2020-01-01T00:00:00.000Z'],
  ['updated_at', '2020-01-01T00:00:00.000Z'],
  ['extra', true],
]

function badBodies(): BadInput[] {
  const cases: BadInput[] = []
  const body = (
    method: Method,
    url: string,
    what: string,
    fields: Record<string, unknown>,
    locs: Loc[],
    type?: string,
  ): void => {
    cases.push({
      title: `${method} ${url} with ${what}`,
      method,
      url,
      body: JSON.stringify(fields),
      status: 422,
      locs,
      ...(type === undefined ? {} : { type }),
    })
  }
  for (const route of BODY_ROUTES) {
    const fieldsOfRoute =
      route.method === 'PATCH' ? (['completed'] as const) : (['title', 'description', 'completed'] as const)
    for (const field of fieldsOfRoute) {
      for (const [what, value, type] of BAD_VALUES[field]) {
        // POST needs a title beside the bad field; PUT and PATCH take the bad field alone.
        const fields =
          route.method === 'POST' && field !== 'title' ? { title: 'fine', [field]: value } : { [field]: value }
        body(route.method, route.url, `${field} ${what}`, fields, [['body', field]], type)
      }
    }
    const unknown: readonly [string, unknown][] =
      route.method === 'PATCH' ? [...UNKNOWN_FIELDS, ['title', 'renamed'], ['description', 'changed']] : UNKNOWN_FIELDS
    for (const [field, value] of unknown) {
      body(
        route.method,
        route.url,
        `the unknown field ${field}`,
        { ...route.valid, [field]: value },
        [['body', field]],
        'extra_forbidden',
      )
    }
  }
  body('POST', '/api/tasks', 'no title', { description: 'x', completed: true }, [['body', 'title']], 'missing')
  body('POST', '/api/tasks', '{}', {}, [['body', 'title']], 'missing')
  body('POST', '/api/tasks', 'three bad fields at once', { title: 123, completed: 'yes', user_id: 'user_b' }, [
    ['body', 'title'],
    ['body', 'completed'],
    ['body', 'user_id'],
  ])
  body('PUT', '/api/tasks/{id}', 'two bad fields at once', { title: '', description: 5 }, [
    ['body', 'title'],
    ['body', 'description'],
  ])
  for (const method of ['POST', 'PUT'] as const) {
    const url = method === 'POST' ? '/api/tasks' : '/api/tasks/{id}'
    const missing = { method, url, status: 422, locs: [['body']], type: 'missing' } as const
    cases.push({ ...missing, title: `${method} ${url} with no body and no Content-Type`, contentType: null })
    cases.push({
      ...missing,
      title: `${method} ${url} with an empty body and Content-Type: application/json`,
      body: '',
    })
  }
  return cases
}

function badJson(): BadInput[] {
  const cases: BadInput[] = []
  for (const { method, url } of BODY_ROUTES) {
    for (const text of ['[]', '[{"title":"x"}]', '"x"', '1', 'null', 'true']) {
      cases.push({
        title: `${method} ${url} with the JSON body ${text}, not an object`,
        method,
        url,
        body: text,
        status: [400, 422],
      })
    }
    for (const text of [
      '{"title":',
      '{title:"x"}',
      "{'title':'x'}",
      '{"title":"x",}',
      '{"title":"x"} trailing',
      '{"title":"x"}{"title":"y"}',
    ]) {
      cases.push({
        title: `${method} ${url} with the malformed JSON ${text}`,
        method,
        url,
        body: text,
        status: [400, 422],
      })
    }
    for (const text of [
      '{"title":"x","__proto__":{"polluted":true}}',
      '{"title":"x","\\u005f_proto__":{"polluted":true}}',
      '{"title":"x","constructor":{"prototype":{"polluted":true}}}',
      '{"__proto__":{"completed":true,"polluted":true}}',
      '{"title":"x","constructor":{}}',
    ]) {
      cases.push({ title: `${method} ${url} with ${text}`, method, url, body: text, status: [400, 422] })
    }
  }
  return cases
}

function badSizesAndTypes(): BadInput[] {
  const cases: BadInput[] = []
  for (const { method, url, valid } of BODY_ROUTES) {
    const json = JSON.stringify(valid)
    cases.push({
      title: `${method} ${url} with a body one byte past 64 KiB`,
      method,
      url,
      body: padTo(json, BODY_LIMIT + 1),
      status: 413,
    })
    cases.push({
      title: `${method} ${url} with a body of 1 MiB`,
      method,
      url,
      body: padTo(json, 1024 * 1024),
      status: 413,
    })
    const foreign: [string | null, string][] = [
      ['text/plain', json],
      ['text/plain; charset=utf-8', json],
      ['application/x-www-form-urlencoded', 'title=x&completed=true'],
      ['multipart/form-data; boundary=b', '--b\r\nContent-Disposition: form-data; name="title"\r\n\r\nx\r\n--b--\r\n'],
      ['application/xml', '<task><title>x</title></task>'],
      ['text/json', json],
      [null, json],
    ]
    for (const [contentType, body] of foreign) {
      cases.push({
        title: `${method} ${url} with ${contentType === null ? 'a body and no Content-Type' : `Content-Type: ${contentType}`}`,
        method,
        url,
        body,
        contentType,
        status: 415,
      })
    }
    const unsupported = 'Unsupported media type: send application/json in UTF-8'
    for (const contentType of ['application/json; charset=iso-8859-1', 'application/json; charset=utf-16']) {
      cases.push({
        title: `${method} ${url} with Content-Type: ${contentType}`,
        method,
        url,
        body: json,
        contentType,
        status: 415,
        detail: unsupported,
      })
    }
    cases.push({
      title: `${method} ${url} with Content-Encoding: gzip`,
      method,
      url,
      body: json,
      headers: { 'content-encoding': 'gzip' },
      status: 415,
      detail: unsupported,
    })
    // Invalid bytes, an overlong encoding of '/', and an encoded surrogate: none is UTF-8, none may be stored as
    // U+FFFD.
    for (const bytes of [
      [0xff, 0xfe],
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
    ]) {
      const body = Buffer.concat([Buffer.from('{"title":"bad'), Buffer.from(bytes), Buffer.from('"}')])
      cases.push({
        title: `${method} ${url} with the bytes ${Buffer.from(bytes).toString('hex')} in the JSON text`,
        method,
        url,
        body,
        status: 400,
        detail: 'Request body is not valid UTF-8',
      })
    }
  }
  return cases
}

function badIds(): BadInput[] {
  const cases: BadInput[] = []
  const notIds = ['0', '-1', '-0', 'abc', '1.5', '1e3', '1e400', '0x10', '%201', 'Infinity', '-Infinity', 'NaN', '%00']
  const pastSafe = ['9007199254740992', '9223372036854775807', '9223372036854775808', '99999999999999999999999']
  for (const route of SINGLE_TASK_ROUTES) {
    const request = (id: string): Probe => ({
      method: route.method,
      url: route.url(id),
      ...(route.body === undefined ? {} : { body: route.body }),
    })
    for (const id of notIds) {
      cases.push({
        title: `${route.method} ${route.url(id)}: not a positive integer`,
        ...request(id),
        status: 422,
        locs: [['path', 'id']],
      })
    }
    for (const id of pastSafe) {
      cases.push({ title: `${route.method} ${route.url(id)}: past 2^53`, ...request(id), status: [404, 422] })
    }
    for (const id of ['2147483648', String(Number.MAX_SAFE_INTEGER)]) {
      cases.push({
        title: `${route.method} ${route.url(id)}: a big id of no task`,
        ...request(id),
        status: 404,
        detail: 'Task not found',
      })
    }
  }
  return cases
}

function badQueries(): BadInput[] {
  const queries: [string, string[]][] = [
    ['status=done', ['status']],
    ['status=ALL', ['status']],
    ['status=', ['status']],
    ['sort=priority', ['sort']],
    ['sort=id', ['sort']],
    ['order=up', ['order']],
    ['order=DESC', ['order']],
    ['limit=0', ['limit']],
    ['limit=501', ['limit']],
    ['limit=-1', ['limit']],
    ['limit=abc', ['limit']],
    ['limit=1.5', ['limit']],
    ['limit=1e2', ['limit']],
    ['limit=1e400', ['limit']],
    ['limit=0x10', ['limit']],
    ['limit=Infinity', ['limit']],
    ['limit=', ['limit']],
    ['offset=-1', ['offset']],
    ['offset=abc', ['offset']],
    ['offset=1.5', ['offset']],
    ['offset=1e400', ['offset']],
    ['offset=2147483648', ['offset']],
    ['offset=99999999999999999999999', ['offset']],
    ['limit=1&limit=2', ['limit']],
    ['offset=0&offset=1', ['offset']],
    ['status=all&status=pending', ['status']],
    ['sort=title&sort=created', ['sort']],
    ['status=done&sort=priority&order=up', ['status', 'sort', 'order']],
  ]
  return queries.map(([query, names]) => ({
    title: `GET /api/tasks?${query}`,
    method: 'GET',
    url: `/api/tasks?${query}`,
    status: 422,
    locs: names.map((name) => ['query', name]),
  }))
}

function badRoutes(): BadInput[] {
  return [
    { title: 'GET /api/nothing-here', method: 'GET', url: '/api/nothing-here', status: 404, detail: 'Not Found' },
    {
      title: 'PATCH /api/tasks (no such method on the list)',
      method: 'PATCH',
      url: '/api/tasks',
      status: 404,
      detail: 'Not Found',
    },
    {
      title: 'DELETE /api/tasks/{id}/complete',
      method: 'DELETE',
      url: '/api/tasks/{id}/complete',
      status: 404,
      detail: 'Not Found',
    },
  ]
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Every error: JSON, exactly `{"detail": …}` (never Fastify's statusCode/error/code/message), no stack trace. */
function errorDetailOf(response: LightMyRequestResponse): unknown {
  assert.match(String(response.headers['content-type']), /^application\/json\b/, response.body)
  const body: unknown = JSON.parse(response.body)
  assert.ok(isRecord(body), response.body)
  assert.deepEqual(Object.keys(body), ['detail'], `only "detail": ${response.body}`)
  assert.doesNotMatch(response.body, /\bat \S+ \(|:\d+:\d+\)|node_modules|\bstack\b|Error:/, response.body)
  return body.detail
}

/** A 422's detail: FastAPI's `[{loc, msg, type}]`, each `loc` starting with where the bad value was. */
function assertValidationDetail(detail: unknown, expected: Pick<BadInput, 'locs' | 'type'>): void {
  assert.ok(Array.isArray(detail) && detail.length > 0, JSON.stringify(detail))
  for (const issue of detail as unknown[]) {
    assert.ok(isRecord(issue))
    assert.deepEqual(Object.keys(issue).sort(), ['loc', 'msg', 'type'])
    const { loc, msg, type } = issue
    assert.ok(Array.isArray(loc) && loc.length > 0, JSON.stringify(issue))
    assert.ok(['body', 'query', 'path'].includes(loc[0] as string), JSON.stringify(issue))
    assert.ok(
      (loc as unknown[]).every((part) => typeof part === 'string' || Number.isInteger(part)),
      JSON.stringify(issue),
    )
    assert.ok(typeof msg === 'string' && msg.length > 0, JSON.stringify(issue))
    assert.ok(typeof type === 'string' && /^[a-z_]+$/.test(type), JSON.stringify(issue))
    if (expected.type !== undefined) assert.equal(type, expected.type, JSON.stringify(issue))
  }
  if (expected.locs !== undefined) {
    const locsOf = (locs: readonly unknown[]): string[] => locs.map((loc) => JSON.stringify(loc)).sort()
    assert.deepEqual(locsOf((detail as { loc: unknown }[]).map((issue) => issue.loc)), locsOf(expected.locs))
  }
}

void describe('bad input gets the status and {"detail": …} of the error table, and changes nothing', () => {
  let app: FastifyInstance
  let db: TasksDb
  let owner: Record<string, string>
  let target: { id: number }
  before(async () => {
    let database: Database
    ;({ app, database } = await openTestApp())
    db = database.db
    owner = await authHeaderFor('user_validation_owner')
    const other = await authHeaderFor('user_validation_other')
    target = await create(owner, { title: 'Target task', description: 'keep me as I am', completed: false })
    await create(owner, { title: 'Second task', completed: true })
    await create(other, { title: "Another user's task", description: 'not yours' })
  })
  after(() => app.close())

  const create = async (headers: Record<string, string>, fields: Record<string, unknown>): Promise<{ id: number }> => {
    const created = await app.inject({ method: 'POST', url: '/api/tasks', headers, payload: fields })
    assert.equal(created.statusCode, 201, created.body)
    return created.json<{ id: number }>()
  }
  const send = (probe: Probe, headers: Record<string, string> = owner): Promise<LightMyRequestResponse> => {
    const contentType =
      probe.contentType === undefined ? (probe.body === undefined ? undefined : JSON_TYPE) : probe.contentType
    return app.inject({
      method: probe.method,
      url: probe.url.replace('{id}', String(target.id)),
      headers: {
        ...headers,
        ...probe.headers,
        ...(contentType === null || contentType === undefined ? {} : { 'content-type': contentType }),
      },
      ...(probe.body === undefined ? {} : { payload: probe.body }),
    })
  }
  /** What "nothing changed" compares: the owner's list and target task through the API, and every row of the table. */
  const state = async (): Promise<unknown> => {
    const view = (response: LightMyRequestResponse): unknown => ({
      status: response.statusCode,
      total: response.headers['x-total-count'],
      body: response.json<unknown>(),
    })
    return {
      list: view(await send({ method: 'GET', url: '/api/tasks?limit=500' })),
      task: view(await send({ method: 'GET', url: '/api/tasks/{id}' })),
      rows: await db.select().from(tasks).orderBy(asc(tasks.id)),
    }
  }

  const groups: [string, BadInput[]][] = [
    ['bad bodies', badBodies()],
    ['malformed, non-object and prototype-polluting JSON', badJson()],
    ['oversized bodies and unsupported content types', badSizesAndTypes()],
    ['bad ids on every single-task route', badIds()],
    ['bad query values on the list', badQueries()],
    ['unknown routes', badRoutes()],
  ]
  for (const [group, cases] of groups) {
    void describe(group, () => {
      for (const bad of cases) {
        void test(bad.title, async () => {
          const before = await state()
          const response = await send(bad)
          const allowed = typeof bad.status === 'number' ? [bad.status] : bad.status
          assert.ok(
            allowed.includes(response.statusCode),
            `${response.statusCode} is not ${allowed.join(' or ')}: ${response.body}`,
          )
          const detail = errorDetailOf(response)
          if (response.statusCode === 422) assertValidationDetail(detail, bad)
          else {
            assert.ok(typeof detail === 'string' && detail.length > 0, response.body)
            if (bad.detail !== undefined) assert.equal(detail, bad.detail)
          }
          assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype was polluted')
          assert.deepEqual(await state(), before, 'a refused request changed something')
        })
      }
    })
  }

  void test('a URL Fastify cannot decode, or a path segment past 100 characters, is answered {"detail": …}', async () => {
    for (const url of ['/api/tasks/%', '/api/tasks/%E0%A4%A', `/api/tasks/${'1'.repeat(101)}`]) {
      const response = await send({ method: 'GET', url })
      assert.ok([400, 404, 414, 422].includes(response.statusCode), `${url}: ${response.statusCode}`)
      assert.equal(typeof errorDetailOf(response), 'string', response.body)
    }
  })

  void test('a body of thousands of unknown fields gets a 422 of at most 20 entries, not megabytes', async () => {
    const body = JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, 1])))
    const before = await state()
    const response = await send({ method: 'POST', url: '/api/tasks', body })
    assert.equal(response.statusCode, 422)
    assert.equal(response.json().detail.length, 20)
    assert.ok(response.body.length < 4096, `${response.body.length} bytes`)
    assert.deepEqual(await state(), before)
  })

  void describe('valid input at the edges is accepted', () => {
    const task = async (fields: Record<string, unknown> = { title: 'edge' }): Promise<{ id: number }> =>
      create(owner, fields)
    const expectTask = (response: LightMyRequestResponse, status: number, fields: Record<string, unknown>): void => {
      assert.equal(response.statusCode, status, response.body)
      const body = response.json<Record<string, unknown>>()
      for (const [key, value] of Object.entries(fields)) assert.deepEqual(body[key], value, key)
    }

    void test('a title of exactly 200 characters, on create and on update', async () => {
      const title = 'x'.repeat(200)
      expectTask(await send({ method: 'POST', url: '/api/tasks', body: JSON.stringify({ title }) }), 201, { title })
      const { id } = await task()
      expectTask(await send({ method: 'PUT', url: `/api/tasks/${id}`, body: JSON.stringify({ title }) }), 200, {
        title,
      })
    })

    void test('200 characters inside surrounding spaces are trimmed and accepted', async () => {
      const title = 'y'.repeat(200)
      const padded = JSON.stringify({ title: ` \t ${title}\n  ` })
      expectTask(await send({ method: 'POST', url: '/api/tasks', body: padded }), 201, { title })
      const { id } = await task()
      expectTask(await send({ method: 'PUT', url: `/api/tasks/${id}`, body: padded }), 200, { title })
    })

    void test('emoji count as one character each: 200 in a title, 1000 in a description', async () => {
      const fields = { title: EMOJI.repeat(200), description: EMOJI.repeat(1000) }
      const created = await send({ method: 'POST', url: '/api/tasks', body: JSON.stringify(fields) })
      expectTask(created, 201, fields)
      expectTask(await send({ method: 'GET', url: `/api/tasks/${created.json<{ id: number }>().id}` }), 200, fields)
    })

    void test('an escaped surrogate pair in JSON text is one character', async () => {
      expectTask(await send({ method: 'POST', url: '/api/tasks', body: '{"title":"\\ud83d\\ude00 ok"}' }), 201, {
        title: `${EMOJI} ok`,
      })
    })

    void test('a description of exactly 1000 characters', async () => {
      const description = 'd'.repeat(1000)
      expectTask(
        await send({ method: 'POST', url: '/api/tasks', body: JSON.stringify({ title: 't', description }) }),
        201,
        { description },
      )
    })

    void test('description null on create, and null on update clears it', async () => {
      expectTask(
        await send({ method: 'POST', url: '/api/tasks', body: JSON.stringify({ title: 't', description: null }) }),
        201,
        {
          description: null,
        },
      )
      const { id } = await task({ title: 't', description: 'to be cleared' })
      expectTask(
        await send({ method: 'PUT', url: `/api/tasks/${id}`, body: JSON.stringify({ description: null }) }),
        200,
        {
          title: 't',
          description: null,
        },
      )
    })

    void test('a body of exactly 64 KiB is accepted on every body route', async () => {
      const created = await send({
        method: 'POST',
        url: '/api/tasks',
        body: padTo(JSON.stringify({ title: 'big' }), BODY_LIMIT),
      })
      expectTask(created, 201, { title: 'big' })
      const { id } = created.json<{ id: number }>()
      const renamed = padTo(JSON.stringify({ title: 'bigger' }), BODY_LIMIT)
      expectTask(await send({ method: 'PUT', url: `/api/tasks/${id}`, body: renamed }), 200, { title: 'bigger' })
      const completed = padTo(JSON.stringify({ completed: true }), BODY_LIMIT)
      expectTask(await send({ method: 'PATCH', url: `/api/tasks/${id}/complete`, body: completed }), 200, {
        completed: true,
      })
    })

    void test('Content-Type: application/json with a charset, or in capitals, is accepted', async () => {
      for (const contentType of [
        'application/json; charset=utf-8',
        'application/json;charset=UTF-8',
        'Application/JSON',
      ]) {
        const body = JSON.stringify({ title: contentType })
        const created = await send({ method: 'POST', url: '/api/tasks', body, contentType })
        expectTask(created, 201, { title: contentType })
        const { id } = created.json<{ id: number }>()
        expectTask(
          await send({ method: 'PUT', url: `/api/tasks/${id}`, body: '{"completed":true}', contentType }),
          200,
          {
            completed: true,
          },
        )
        expectTask(
          await send({ method: 'PATCH', url: `/api/tasks/${id}/complete`, body: '{"completed":false}', contentType }),
          200,
          {
            completed: false,
          },
        )
      }
    })

    void test('PATCH …/complete with Content-Type: application/json and an empty body toggles, as {} does', async () => {
      const { id } = await task()
      const url = `/api/tasks/${id}/complete`
      expectTask(await send({ method: 'PATCH', url, body: '' }), 200, { completed: true })
      expectTask(await send({ method: 'PATCH', url, body: '{}' }), 200, { completed: false })
      expectTask(await send({ method: 'PATCH', url }), 200, { completed: true })
    })

    void test('DELETE and PATCH with an empty text/plain body (what fetch sends for body: "") work', async () => {
      const { id } = await create(owner, { title: 'Deleted by fetch' })
      expectTask(
        await send({
          method: 'PATCH',
          url: `/api/tasks/${id}/complete`,
          body: '',
          contentType: 'text/plain;charset=UTF-8',
        }),
        200,
        { completed: true },
      )
      const deleted = await send({
        method: 'DELETE',
        url: `/api/tasks/${id}`,
        body: '',
        contentType: 'text/plain;charset=UTF-8',
      })
      assert.equal(deleted.statusCode, 204, deleted.body)
    })

    void test('DELETE with Content-Type: application/json and an empty body deletes', async () => {
      const { id } = await task()
      const deleted = await send({ method: 'DELETE', url: `/api/tasks/${id}`, body: '' })
      assert.equal(deleted.statusCode, 204, deleted.body)
      assert.equal(deleted.body, '')
      assert.equal((await send({ method: 'GET', url: `/api/tasks/${id}` })).statusCode, 404)
    })

    void test('limit and offset at their bounds, and unknown query parameters (__proto__ too), are accepted', async () => {
      const plain = await send({ method: 'GET', url: '/api/tasks?limit=500' })
      assert.equal(plain.statusCode, 200, plain.body)
      for (const query of [
        'limit=1',
        'limit=500&offset=0',
        'offset=2147483647',
        '__proto__=x&constructor=y&user_id=user_validation_other',
      ]) {
        const response = await send({ method: 'GET', url: `/api/tasks?${query}` })
        assert.equal(response.statusCode, 200, `${query}: ${response.body}`)
        assert.equal(response.headers['x-total-count'], plain.headers['x-total-count'], query)
      }
      const ignored = await send({
        method: 'GET',
        url: '/api/tasks?limit=500&__proto__=x&constructor=y&user_id=user_validation_other',
      })
      assert.deepEqual(ignored.json<unknown>(), plain.json<unknown>())
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
    })
  })
})

void test('over a real connection, bad bodies get the same answers as through inject: a 422, never "Request aborted"', async (t) => {
  // app.inject hands Fastify a request object that is never destroyed; Node's IncomingMessage is destroyed as soon
  // as its body has been read in full, so a check of `destroyed` alone took every 422 of a body for a client abort.
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  const owner = await authHeaderFor('user_validation_socket')
  const created = await app.inject({
    method: 'POST',
    url: '/api/tasks',
    headers: owner,
    payload: { title: 'Target task' },
  })
  assert.equal(created.statusCode, 201, created.body)
  const { id } = created.json<{ id: number }>()
  const probes = [...badBodies(), ...badJson()].filter(
    (probe) => probe.body !== undefined && probe.contentType !== null && probe.headers === undefined,
  )
  assert.ok(probes.length > 10)
  for (const probe of probes) {
    const url = probe.url.replace('{id}', String(id))
    const headers = { ...owner, 'content-type': probe.contentType ?? JSON_TYPE }
    const viaInject = await app.inject({ method: probe.method, url, headers, payload: probe.body })
    const viaSocket = await fetch(`http://127.0.0.1:${port}${url}`, { method: probe.method, headers, body: probe.body })
    const text = await viaSocket.text()
    assert.equal(viaSocket.status, viaInject.statusCode, `${probe.title}: ${text}`)
    assert.deepEqual(JSON.parse(text), viaInject.json(), probe.title)
  }
})
