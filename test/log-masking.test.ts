// Issue 10, finding 7: a client that puts its token where the service never reads it (the path, a query key or value,
// a fragment, a header other than Authorization), in any percent-encoding, must not put it in the logs. The real app
// listens on loopback and gets each request as raw bytes, so every placement reaches the server exactly as written.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTestApp, listenOnLoopback, rawExchange } from './helpers/test-app.ts'
import { authHeaderFor, nowS, signHs256 } from './helpers/tokens.ts'
import { serializeRequestForLog } from '../src/http/request-log.ts'

/** Every character of `text` as %XX, upper- or lower-case hex, or alternating (`%6A%4b`). */
function percentEncodeAll(text: string, hexCase: 'upper' | 'lower' | 'mixed'): string {
  return [...Buffer.from(text)]
    .map((byte, index) => {
      const hex = byte.toString(16).padStart(2, '0')
      const upper = hexCase === 'upper' || (hexCase === 'mixed' && index % 2 === 0)
      return `%${upper ? hex.toUpperCase() : hex}`
    })
    .join('')
}

/** The ways a client (or a proxy, or a framework that encodes twice) may write a token into a URL. */
function encodingsOf(token: string): Record<string, string> {
  return {
    'as is': token,
    'dots as %2E': token.replaceAll('.', '%2E'),
    'dots as %2e': token.replaceAll('.', '%2e'),
    'dots double-encoded (%252E)': token.replaceAll('.', '%252E'),
    'dots triple-encoded (%25252e)': token.replaceAll('.', '%25252e'),
    'dots encoded four times (%2525252E)': token.replaceAll('.', '%2525252E'),
    'dots as overlong UTF-8 (%C0%AE)': token.replaceAll('.', '%C0%AE'),
    'dots as slashes': token.replaceAll('.', '/'),
    'every character %XX': percentEncodeAll(token, 'upper'),
    'every character %xx': percentEncodeAll(token, 'lower'),
    'every character in mixed-case hex': percentEncodeAll(token, 'mixed'),
    'every character double-encoded': percentEncodeAll(token, 'upper').replaceAll('%', '%25'),
    'after Bearer+': `Bearer+${token}`,
    'after an encoded space': `Bearer%20${token}`,
  }
}

/** Where a client may put `encoded` in a request target. */
function placementsOf(encoded: string): Record<string, string> {
  return {
    'a path segment': `/api/tasks/${encoded}`,
    'the first path segment': `/${encoded}`,
    'a segment after a route': `/api/tasks/1/complete/${encoded}`,
    'a matrix parameter': `/api/tasks;jsessionid=${encoded}`,
    'a query key without a value': `/api/tasks?${encoded}`,
    'a query key with a value': `/api/tasks?${encoded}=1`,
    'a query key after a list parameter': `/api/tasks?status=pending&${encoded}`,
    'an unknown query value': `/api/tasks?access_token=${encoded}`,
    'an empty key': `/api/tasks?=${encoded}`,
    'a list parameter': `/api/tasks?status=${encoded}`,
    'a repeated list parameter': `/api/tasks?status=pending&status=${encoded}`,
    'a list item': `/api/tasks?sort=created_at,${encoded}`,
    'after a ; in a list value': `/api/tasks?limit=5;token=${encoded}`,
    'an array-style key': `/api/tasks?token%5B%5D=${encoded}`,
    'a fragment': `/api/tasks#${encoded}`,
    'a fragment after a query': `/api/tasks?status=pending#${encoded}`,
    'a route outside /api': `/health?${encoded}`,
  }
}

/** `text` with its %XX sequences decoded, byte by byte, as many times as they decode (at most 8). */
function decodings(text: string): string[] {
  const forms = [text]
  for (let round = 0; round < 8; round += 1) {
    const decoded = forms[forms.length - 1]!.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    )
    if (decoded === forms[forms.length - 1]) break
    forms.push(decoded)
  }
  return forms
}

/** A valid token whose signature starts with a base64url edge character (`-` or `_`) and holds both. */
async function edgyToken(): Promise<string> {
  for (let attempt = 0; attempt < 5000; attempt += 1) {
    const token = await signHs256({ sub: 'user_logs', iat: nowS(), exp: nowS() + 300, jti: String(attempt) })
    const signature = token.split('.')[2]!
    if (/^[-_]/.test(signature) && signature.includes('-') && signature.includes('_')) return token
  }
  throw new Error('no signature with both edge characters in 5,000 attempts')
}

void test('no log line holds a token put anywhere in a URL or a header, in any encoding; ordinary URLs are logged as sent', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { logLevel: 'trace' } })
  const port = await listenOnLoopback(app)
  const auth = (await authHeaderFor('user_logs')).authorization
  const send = async (target: string, headers: string[] = []): Promise<string> =>
    (
      await rawExchange(
        port,
        [`GET ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers, '', ''].join('\r\n'),
      )
    ).toString()

  // A short token (under X-Request-Id's 128 characters) and a usual one with base64url's edge characters in its
  // signature.
  const short = await signHs256({ sub: 'u', exp: nowS() + 300 })
  assert.ok(short.length <= 128, `${short.length} characters`)
  const tokens = [short, await edgyToken()]
  let requests = 0
  for (const token of tokens) {
    for (const encoded of Object.values(encodingsOf(token))) {
      for (const target of Object.values(placementsOf(encoded))) {
        await send(target, [`Authorization: ${auth}`])
        requests += 1
      }
    }
    const [, payloadPart = '', signaturePart = ''] = token.split('.')
    const inHeaders = [
      `X-Request-Id: ${token}`,
      // A part alone is enough to rebuild a development token (header and payload are guessable).
      `X-Request-Id: ${signaturePart}`,
      ...(payloadPart.length <= 128 ? [`X-Request-Id: ${payloadPart}`] : []),
      `Cookie: better-auth.session_data=${token}`,
      `Referer: http://localhost:3000/?token=${token}`,
      `User-Agent: ${token}`,
      `Idempotency-Key: ${token}`,
      `If-Match: "${token}"`,
      `X-Forwarded-Authorization: Bearer ${token}`,
    ]
    for (const header of inHeaders) {
      const response = await send('/api/tasks', [`Authorization: ${auth}`, header])
      const value = header.slice(header.indexOf(':') + 2)
      assert.ok(!response.includes(value), `the answer echoes ${header.slice(0, 60)}…: ${response.slice(0, 300)}`)
      requests += 1
    }
    for (const authorization of [
      `Token ${token}`,
      `Bearer ${token} extra`,
      `Basic ${Buffer.from(`u:${token}`).toString('base64')}`,
    ]) {
      await send('/api/tasks', [`Authorization: ${authorization}`])
      requests += 1
    }
  }
  const ordinary = [
    '/api/tasks?status=pending&sort=created_at&order=desc&limit=20&offset=40',
    '/api/tasks/123',
    '/api/tasks/9007199254740991/complete',
    '/api/tasks/3fa85f64-5717-4562-b3fc-2c963f66afa6',
    '/api/tasks?status=completed&status=pending&sort=title',
    '/docs/static/swagger-ui-standalone-preset.js',
    '/openapi.json',
  ]
  for (const target of ordinary) await send(target, [`Authorization: ${auth}`])

  const urls = logs
    .map((line) => (JSON.parse(line) as { req?: { url?: string } }).req?.url)
    .filter((url) => url !== undefined)
  assert.ok(urls.length >= requests, `${urls.length} requests logged of ${requests} sent`)
  for (const target of ordinary)
    assert.ok(urls.includes(target), `${target} is logged as sent: ${JSON.stringify(urls.slice(-10))}`)

  const secrets = tokens.flatMap((token) => {
    const [header = '', payload = '', signature = ''] = token.split('.')
    return [token, `${header}.${payload}`, payload, signature]
  })
  for (const line of logs) {
    for (const form of decodings(line)) {
      for (const secret of secrets)
        assert.ok(!form.includes(secret), `a log line holds a token or a part of one: ${line.slice(0, 400)}`)
    }
  }
})

test('the credential test of the access log runs in linear time on a long run of letters', () => {
  // The JWT-shaped test once tried every start in a run of word characters and backtracked to its end from each: a
  // 16 KB path (all Node's header limit lets through) cost about 500 ms of CPU per request, before any route or
  // token. A 300 KB URL makes the difference unmistakable: minutes for the quadratic test, milliseconds for a linear
  // one. The bound guards the complexity, not a speed.
  const url = `/${'a'.repeat(300_000)}`
  const started = performance.now()
  assert.equal(serializeRequestForLog({ method: 'GET', url }).url, url, 'the path is logged as sent')
  const elapsedMs = performance.now() - started
  assert.ok(elapsedMs < 10_000, `took ${Math.round(elapsedMs)} ms`)
})
