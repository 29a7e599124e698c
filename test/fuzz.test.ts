// Property-based fuzzing (fast-check) of every route: generated methods, ids, query strings, bodies (JSON objects
// near the schema, any JSON, raw text, oversized) and headers (Content-Type, Authorization, X-Request-Id, …). For a
// bounded number of runs: never a 5xx, every error body has docs/contract.md's shape, and a refused request changes no
// row. Runs in both passes. A failure prints fast-check's seed and the shrunk request, to replay it.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import type { InjectOptions } from 'fastify'
import type { Database } from '../src/db/database.ts'
import { buildTestApp } from './helpers/test-app.ts'
import { nowS, signHs256, tokenFor } from './helpers/tokens.ts'

/** Runs per property, and a time bound past which fast-check stops early (and passes with the runs it made). */
const RUNS = 400
const TIME_LIMIT_MS = 90_000

/** Every row of the tasks table, as text: compared before and after each refused request. */
async function snapshot(database: Database): Promise<string> {
  const sql = 'select * from tasks order by id'
  const rows =
    database.kind === 'pglite' ? (await database.client.query(sql)).rows : (await database.pool.query(sql)).rows
  return JSON.stringify(rows)
}

/** `{"detail": "…"}` or `{"detail": [{"loc": [...], "msg": "…", "type": "…"}, …]}` (docs/contract.md "Errors"). */
function assertErrorShape(status: number, body: string, request: string): void {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    assert.fail(`${status} without a JSON body for ${request}: ${body.slice(0, 200)}`)
  }
  assert.ok(
    typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed),
    `${status} body is an object for ${request}`,
  )
  assert.deepEqual(
    Object.keys(parsed),
    ['detail'],
    `${status} body has only "detail" for ${request}: ${body.slice(0, 200)}`,
  )
  const { detail } = parsed as { detail: unknown }
  if (typeof detail === 'string') return
  assert.ok(
    Array.isArray(detail) && detail.length > 0,
    `${status} detail is a string or a non-empty list for ${request}`,
  )
  for (const issue of detail as unknown[]) {
    const { loc, msg, type } = issue as { loc?: unknown; msg?: unknown; type?: unknown }
    assert.ok(
      Array.isArray(loc) && loc.every((part) => typeof part === 'string' || typeof part === 'number'),
      `loc for ${request}`,
    )
    assert.ok(typeof msg === 'string' && typeof type === 'string', `msg and type for ${request}`)
  }
}

const printable = (max: number): fc.Arbitrary<string> => fc.stringMatching(new RegExp(`^[\\x20-\\x7e]{0,${max}}$`))

test('fuzzed requests to every route: never a 5xx, every error body of docs/contract.md’s shape, nothing changed by a refused request', async (t) => {
  const { app, database, logs } = await buildTestApp(t)
  const owner = await tokenFor('fuzz-owner')
  const other = await tokenFor('fuzz-other')
  const expired = await signHs256({ sub: 'fuzz-owner', iat: nowS() - 7200, exp: nowS() - 3600 })
  const ids: string[] = []
  for (const [token, title] of [
    [owner, 'mine 1'],
    [owner, 'mine 2'],
    [other, 'theirs'],
  ] as const) {
    const response = await app.inject({
      method: 'POST',
      url: '/api/tasks',
      headers: { authorization: `Bearer ${token}` },
      payload: { title },
    })
    ids.push(String(response.json<{ id: number }>().id))
  }

  const id = fc.oneof(
    fc.constantFrom(...ids),
    fc.integer().map(String),
    fc.constantFrom(
      '0',
      '-1',
      '1.5',
      '1e3',
      '0x10',
      ' 1',
      '9007199254740993',
      'Infinity',
      'NaN',
      'null',
      '%00',
      '%2e%2e',
      '%F0%9F%98%80',
    ),
    printable(20).map(encodeURIComponent),
  )
  const route = fc.oneof(
    fc.constant({ method: 'GET', path: '/api/tasks' }),
    fc.constant({ method: 'POST', path: '/api/tasks' }),
    id.map((value) => ({ method: 'GET', path: `/api/tasks/${value}` })),
    id.map((value) => ({ method: 'PUT', path: `/api/tasks/${value}` })),
    id.map((value) => ({ method: 'PATCH', path: `/api/tasks/${value}/complete` })),
    id.map((value) => ({ method: 'DELETE', path: `/api/tasks/${value}` })),
    fc
      .constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')
      .map((method) => ({ method, path: '/api/tasks' })),
    fc
      .constantFrom('/health', '/ready', '/nope', '/api', '/api/tasks/1/2', '/api/tasks/1/complete/x')
      .map((path) => ({ method: 'GET', path })),
  )
  const value = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.double(), fc.jsonValue())
  const query = fc
    .dictionary(
      fc.constantFrom('status', 'sort', 'order', 'limit', 'offset', 'user_id', 'x'),
      fc.oneof(
        fc.constantFrom(
          'all',
          'pending',
          'completed',
          'created',
          'updated',
          'title',
          'asc',
          'desc',
          '0',
          '1',
          '500',
          '501',
          '-1',
          '',
        ),
        printable(12),
      ),
      { maxKeys: 4 },
    )
    .map((entries) => new URLSearchParams(entries).toString())
  const body = fc.oneof(
    fc.constant(undefined),
    fc
      .record(
        { title: value, description: value, completed: value, user_id: value, id: value, extra: value },
        { requiredKeys: [] },
      )
      .map((object) => JSON.stringify(object)),
    fc
      .record({ title: fc.string({ maxLength: 210 }) }, { requiredKeys: ['title'] })
      .map((object) => JSON.stringify(object)),
    fc.jsonValue().map((json) => JSON.stringify(json)),
    fc.string({ maxLength: 200 }),
    fc.constantFrom(
      '{',
      '{"title": "a",}',
      '{"__proto__": {"x": 1}, "title": "a"}',
      '{"constructor": {}}',
      'null',
      '[]',
      '"x"',
      '',
    ),
    fc
      .integer({ min: 60 * 1024, max: 70 * 1024 })
      .map((size) => JSON.stringify({ title: 'big', description: 'x'.repeat(size) })),
  )
  // Mostly a valid token and a JSON content type, so that most requests get past authentication and parsing.
  const usually = <T>(common: T, ...rare: T[]): fc.Arbitrary<T> =>
    fc.oneof(
      { arbitrary: fc.constant(common), weight: rare.length },
      { arbitrary: fc.constantFrom(...rare), weight: rare.length },
    )
  const headers = fc.record(
    {
      'content-type': usually(
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/jsonx',
        'multipart/form-data; boundary=x',
        '',
      ),
      authorization: usually(
        `Bearer ${owner}`,
        `Bearer ${other}`,
        `Bearer ${expired}`,
        'Bearer garbage',
        'Bearer',
        'Basic Zm9vOmJhcg==',
        `bearer ${owner}`,
        '',
      ),
      'x-request-id': printable(140),
      'if-match': printable(20),
      'idempotency-key': printable(40),
      origin: fc.constantFrom('http://localhost:3000', 'http://evil.example'),
    },
    { requiredKeys: ['content-type', 'authorization'] },
  )

  let runs = 0
  const statuses = new Map<number, number>()
  await fc.assert(
    fc.asyncProperty(route, query, body, headers, async (target, search, payload, headerValues) => {
      runs++
      const url = search === '' ? target.path : `${target.path}?${search}`
      const request = `${target.method} ${url} ${JSON.stringify(headerValues)} ${String(payload).slice(0, 120)}`
      const before = await snapshot(database)
      const response = await app.inject({
        method: target.method as InjectOptions['method'],
        url,
        headers: Object.fromEntries(Object.entries(headerValues).filter(([, headerValue]) => headerValue !== '')),
        ...(payload === undefined ? {} : { payload }),
      })
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
      assert.ok(response.statusCode < 500, `${response.statusCode} for ${request}: ${response.body.slice(0, 200)}`)
      if (response.statusCode >= 400) {
        assertErrorShape(response.statusCode, response.body, request)
        assert.equal(
          await snapshot(database),
          before,
          `a refused request (${response.statusCode}) changed rows: ${request}`,
        )
      }
    }),
    { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false },
  )
  t.diagnostic(
    `fuzz: ${runs} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`,
  )
  assert.ok(!logs.some((line) => line.includes('"stack"')), 'no stack trace in the logs')
  assert.ok(!logs.some((line) => line.includes(owner) || line.includes(other)), 'no token in the logs')
})
