// Issue 12: a page on an origin CORS refuses gets "Failed to fetch" and the service answered its preflight 204: the
// log now names the origin (`CORS origin refused`, at info, with the request id), on preflights and on actual
// requests, at most once a minute per origin and 10 lines a minute in all, with a count of what was left out.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { createRefusalLogLimiter } from '../src/http/cors-refusal-log.ts'
import { parseLogLines } from './helpers/logs.ts'
import { buildTestApp } from './helpers/test-app.ts'
import { authHeaderFor, signHs256, nowS } from './helpers/tokens.ts'

const ALLOWED = 'http://localhost:5173'

/** A preflight from `origin`, as a browser sends it before a GET with Authorization. */
async function preflight(app: FastifyInstance, origin: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'OPTIONS',
    url: '/api/tasks',
    headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  })
}

/** The `CORS origin refused` lines, each as { reqId, level, origin, suppressed? }. */
function refusedOriginLines(logs: readonly string[]): Record<string, unknown>[] {
  return parseLogLines(logs)
    .filter((line) => line.msg === 'CORS origin refused')
    .map(({ reqId, level, origin, suppressed }) => ({
      reqId,
      level,
      origin,
      ...(suppressed === undefined ? {} : { suppressed }),
    }))
}

void test('a refused origin is logged at info with its request id, on the preflight and on the request, answered as before; an allowed, absent or same origin is not', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { corsOrigins: [ALLOWED] } })
  const refused = 'http://127.0.0.1:45678'
  const answered = await preflight(app, refused)
  assert.equal(answered.statusCode, 204)
  assert.equal(answered.headers['access-control-allow-origin'], undefined)
  const actual = await app.inject({
    method: 'GET',
    url: '/api/tasks',
    headers: { origin: 'http://127.0.0.1:45679', ...(await authHeaderFor('alice')) },
  })
  assert.equal(actual.statusCode, 200)
  assert.equal(actual.headers['access-control-allow-origin'], undefined)
  // Not logged: an allowed origin, no Origin, and a same-origin request (the /docs page needs no CORS).
  const allowed = await preflight(app, ALLOWED)
  assert.equal(allowed.headers['access-control-allow-origin'], ALLOWED)
  await app.inject({ method: 'GET', url: '/api/tasks', headers: await authHeaderFor('alice') })
  await app.inject({
    method: 'POST',
    url: '/api/tasks',
    headers: { origin: 'http://localhost:8000', host: 'localhost:8000', ...(await authHeaderFor('alice')) },
    payload: { title: 'from /docs' },
  })
  assert.deepEqual(refusedOriginLines(logs), [
    { reqId: answered.headers['x-request-id'], level: 30, origin: refused },
    { reqId: actual.headers['x-request-id'], level: 30, origin: 'http://127.0.0.1:45679' },
  ])
  assert.ok(
    logs.some(
      (line) => line.includes('"origin":"http://127.0.0.1:45678"') && line.includes('"msg":"CORS origin refused"'),
    ),
  )
})

void test('each origin is logged once a minute, and at most 10 lines a minute in all', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { corsOrigins: [ALLOWED] } })
  for (let i = 0; i < 3; i++) await preflight(app, 'https://scanner.example')
  for (let i = 0; i < 20; i++) await preflight(app, `https://scanner-${i}.example`)
  const lines = refusedOriginLines(logs)
  assert.equal(lines.length, 10)
  assert.deepEqual(
    lines.map((line) => line.origin),
    ['https://scanner.example', ...Array.from({ length: 9 }, (_, i) => `https://scanner-${i}.example`)],
  )
  // The two repeats of the first origin were left out, and counted in the next line.
  assert.equal(lines[1]?.suppressed, 2)
})

void test('the origin is logged as sent up to 200 characters; one that could be a token is not logged', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { corsOrigins: [ALLOWED] } })
  const long = `https://${'a'.repeat(300)}.example`
  await preflight(app, long)
  const token = await signHs256({ sub: 'alice', exp: nowS() + 60 })
  await preflight(app, token)
  await preflight(app, 'null')
  assert.deepEqual(
    refusedOriginLines(logs).map((line) => line.origin),
    [`${long.slice(0, 200)}…`, '[redacted]', 'null'],
  )
  const signature = token.split('.')[2] ?? token
  assert.ok(!logs.some((line) => line.includes(signature)), 'no log line holds the token')
})

void test('the limiter: once per origin and 10 lines per sliding minute; after a minute the origin is logged again, with the count left out', () => {
  let now = 0
  const limiter = createRefusalLogLimiter({ now: () => now })
  assert.equal(limiter.admit('https://a.example'), 0)
  assert.equal(limiter.admit('https://a.example'), null)
  now = 59_999
  assert.equal(limiter.admit('https://a.example'), null)
  for (let i = 0; i < 9; i++) assert.equal(limiter.admit(`https://b${i}.example`), i === 0 ? 2 : 0)
  assert.equal(limiter.admit('https://c.example'), null, 'the eleventh line within a minute is left out')
  now = 60_000
  assert.equal(limiter.admit('https://a.example'), 1, "a's line has left the window: logged with the count")
  assert.equal(limiter.admit('https://c.example'), null, 'the nine other lines are still in the window')
  now = 59_999 + 60_000
  assert.equal(limiter.admit('https://c.example'), 1)
})
