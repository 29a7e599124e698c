// RFC 9112 framing over real loopback sockets against the app listening on 127.0.0.1, on the pass's database: nothing
// pipelined after a closing response runs, a body over the limit or unread is never read (413 before authentication),
// `100 Continue` only for a request that will be read, and a missing Host is docs/contract.md's 400.
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { test, type TestContext } from 'node:test'
import { buildTestApp, listenOnLoopback, rawExchange } from './helpers/test-app.ts'
import { tokenFor } from './helpers/tokens.ts'

const LIMIT_DETAIL = { detail: 'Request body too large (limit 65536 bytes)' }

/** Every response in raw HTTP/1.1 text (bodies by Content-Length), interim 1xx ones included. */
function parseResponses(text: string): { status: number; headers: string; body: unknown }[] {
  const responses = []
  let rest = text
  while (rest.startsWith('HTTP/1.1 ')) {
    const split = rest.indexOf('\r\n\r\n')
    const headers = rest.slice(0, split)
    const length = Number(/^content-length: (\d+)$/im.exec(headers)?.[1] ?? 0)
    const body = rest.slice(split + 4, split + 4 + length)
    responses.push({
      status: Number(headers.slice(9, 12)),
      headers,
      body: body === '' ? null : (JSON.parse(body) as unknown),
    })
    rest = rest.slice(split + 4 + length)
  }
  return responses
}

/** A request's raw text: `lines` are the request line and headers. */
function rawRequest(lines: string[], body = ''): string {
  return `${lines.join('\r\n')}\r\n\r\n${body}`
}

async function userTasks(port: number, token: string): Promise<{ id: string; title: string }[]> {
  const response = await fetch(`http://127.0.0.1:${port}/api/tasks`, { headers: { authorization: `Bearer ${token}` } })
  assert.equal(response.status, 200)
  return (await response.json()) as { id: string; title: string }[]
}

for (const framing of ['content-length', 'chunked'] as const) {
  test(`requests pipelined behind a 413 (body sent with ${framing}) never run: the task is not deleted, none is created`, async (t) => {
    const { app } = await buildTestApp(t)
    const port = await listenOnLoopback(app)
    const token = await tokenFor(`user_pipelined_${framing}`)
    const created = await fetch(`http://127.0.0.1:${port}/api/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'keep me' }),
    })
    const { id } = (await created.json()) as { id: string }
    const auth = `Authorization: Bearer ${token}`
    const host = 'Host: localhost'
    const big = `{"title": "${'x'.repeat(70_000)}"}`
    const first =
      framing === 'content-length'
        ? rawRequest(
            ['POST /api/tasks HTTP/1.1', host, auth, 'Content-Type: application/json', `Content-Length: ${big.length}`],
            big,
          )
        : rawRequest(
            ['POST /api/tasks HTTP/1.1', host, auth, 'Content-Type: application/json', 'Transfer-Encoding: chunked'],
            `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
          )
    const create = '{"title": "duplicate"}'
    const pipelined =
      rawRequest([`DELETE /api/tasks/${id} HTTP/1.1`, host, auth]) +
      rawRequest(
        ['POST /api/tasks HTTP/1.1', host, auth, 'Content-Type: application/json', `Content-Length: ${create.length}`],
        create,
      )
    const responses = parseResponses((await rawExchange(port, first + pipelined)).toString('latin1'))
    assert.deepEqual(
      responses.map((response) => response.status),
      [413],
    )
    assert.match(responses[0]?.headers ?? '', /^connection: close$/im)
    assert.deepEqual(
      (await userTasks(port, token)).map((task) => [task.id, task.title]),
      [[id, 'keep me']],
    )
  })
}

/**
 * Sends `head` then an endless body as fast as the server takes it (a client that does not stop at the answer), until
 * the server closes the connection, 3 s pass or 256 MiB are written; the answer and the bytes the server took.
 */
/**
 * Sends `head`, then body bytes as fast as the server takes them, up to `maxBytes` (default 256 MiB) or for 3 s, and
 * reports what came back. `pauseAfterHeadMs` lets the server answer from the head alone before any body byte arrives.
 */
async function floodAfter(
  t: TestContext,
  port: number,
  head: string,
  { maxBytes = 256 * 1024 * 1024, pauseAfterHeadMs = 0 } = {},
): Promise<{ text: string; written: number; closed: boolean }> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  t.after(() => socket.destroy())
  let text = ''
  socket.setEncoding('latin1').on('data', (chunk: string) => (text += chunk))
  let closed = false
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('error', () => (closed = true)) // EPIPE / ECONNRESET: the server closed while this was still sending
  void ended.then(() => (closed = true))
  socket.write(head)
  await delay(pauseAfterHeadMs)
  const deadline = Date.now() + 3000
  let written = 0
  while (!closed && Date.now() < deadline && written < maxBytes) {
    const chunk = Buffer.alloc(Math.min(64 * 1024, maxBytes - written), 'x')
    if (socket.write(chunk)) written += chunk.length
    else {
      written += chunk.length
      await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), ended, delay(50)])
    }
  }
  socket.end()
  await Promise.race([ended, delay(2000)])
  return { text, written, closed }
}

for (const withToken of [false, true]) {
  test(`a declared body over 64 KiB ${withToken ? 'with' : 'without'} a token is 413 at once, and none of it is read`, async (t) => {
    const { app } = await buildTestApp(t)
    const port = await listenOnLoopback(app)
    const head = rawRequest([
      'POST /api/tasks HTTP/1.1',
      'Host: localhost',
      'Origin: http://localhost:3000',
      ...(withToken ? [`Authorization: Bearer ${await tokenFor('user_oversized')}`] : []),
      'Content-Type: application/json',
      'Content-Length: 10000000000',
    ])
    const { text, written, closed } = await floodAfter(t, port, head)
    const [answer] = parseResponses(text)
    assert.equal(answer?.status, 413)
    assert.deepEqual(answer.body, LIMIT_DETAIL)
    assert.match(answer.headers, /^connection: close$/im)
    assert.match(answer.headers, /^x-request-id: /im)
    assert.match(answer.headers, /^x-content-type-options: nosniff$/im)
    assert.match(answer.headers, /^access-control-allow-origin: http:\/\/localhost:3000$/im)
    assert.ok(closed, 'the server closed the connection')
    // The kernel's socket buffers are all the client can fill (a few MB): the server reads none of the body.
    assert.ok(written < 16 * 1024 * 1024, `the client could write ${written} bytes`)
    t.diagnostic(
      `413 ${withToken ? 'with' : 'without'} a token: the client wrote ${written} bytes before the server closed`,
    )
  })
}

test('a request answered before its body is read (401) closes the connection instead of reading the body', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  const head = rawRequest([
    'POST /api/tasks HTTP/1.1',
    'Host: localhost',
    'Content-Type: application/json',
    'Content-Length: 60000',
  ])
  // The body is sent as declared, after the head has been answered: a client that keeps sending what it announced.
  const { text, closed } = await floodAfter(t, port, `${head}{"title": "`, {
    maxBytes: 60000 - 11,
    pauseAfterHeadMs: 200,
  })
  const [answer] = parseResponses(text)
  assert.equal(answer?.status, 401)
  assert.match(answer.headers, /^connection: close$/im)
  assert.ok(closed, 'the server closed the connection')
})

test('Expect: 100-continue: no 100 before a 401 or a 413, a 100 before the body of an authenticated request', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  const token = await tokenFor('user_expecting')
  const body = '{"title": "after 100"}'
  const post = ['POST /api/tasks HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', 'Expect: 100-continue']
  const refused = async (lines: string[]): Promise<number[]> =>
    parseResponses((await rawExchange(port, rawRequest(lines))).toString('latin1')).map((response) => response.status)
  assert.deepEqual(await refused([...post, `Content-Length: ${body.length}`]), [401])
  assert.deepEqual(await refused([...post, `Authorization: Bearer ${token}`, 'Content-Length: 70000']), [413])

  const socket = connect(port, '127.0.0.1')
  t.after(() => socket.destroy())
  let text = ''
  socket.setEncoding('latin1').on('data', (chunk: string) => (text += chunk))
  socket.write(
    rawRequest([...post, `Authorization: Bearer ${token}`, `Content-Length: ${body.length}`, 'Connection: close']),
  )
  await new Promise<void>((resolve) => socket.once('data', () => resolve()))
  assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\n$/)
  socket.write(body)
  await new Promise<void>((resolve) => socket.once('close', () => resolve()))
  assert.deepEqual(
    parseResponses(text.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, '')).map((response) => response.status),
    [201],
  )
})

test('an HTTP/1.1 request without Host is 400 {"detail": …} with the request id and the security headers', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  const [answer] = parseResponses(
    (
      await rawExchange(port, rawRequest(['GET /health HTTP/1.1', 'X-Request-Id: no-host-1', 'Connection: close']))
    ).toString('latin1'),
  )
  assert.equal(answer?.status, 400)
  assert.deepEqual(answer.body, { detail: 'Missing Host header' })
  assert.match(answer.headers, /^x-request-id: no-host-1$/im)
  assert.match(answer.headers, /^x-content-type-options: nosniff$/im)
  assert.match(answer.headers, /^content-security-policy: default-src 'none'/im)
  // HTTP/1.0 has no Host requirement.
  const [legacy] = parseResponses(
    (await rawExchange(port, rawRequest(['GET /health HTTP/1.0']))).toString('latin1').replace('HTTP/1.0', 'HTTP/1.1'),
  )
  assert.equal(legacy?.status, 200)
})

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

test('two Host lines are 400 {"detail": …} (RFC 9112 §3.2), in HTTP/1.1 and HTTP/1.0', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  for (const version of ['HTTP/1.1', 'HTTP/1.0']) {
    const lines = [`GET /health ${version}`, 'Host: localhost', 'host: attacker.example', 'Connection: close']
    const [answer] = parseResponses(
      (await rawExchange(port, rawRequest(lines))).toString('latin1').replace('HTTP/1.0', 'HTTP/1.1'),
    )
    assert.equal(answer?.status, 400, version)
    assert.deepEqual(answer.body, { detail: 'Duplicate Host header' }, version)
    assert.match(answer.headers, /^x-content-type-options: nosniff$/im, version)
  }
})

test('an Expect other than 100-continue is 417 {"detail": …} in its turn, and counts toward the pipelining cap', async (t) => {
  const { app } = await buildTestApp(t, { config: { maxPipelinedRequests: 8 } })
  const port = await listenOnLoopback(app)
  const expecting = rawRequest([
    'GET /health HTTP/1.1',
    'Host: localhost',
    'Expect: something-else',
    'X-Request-Id: expect-1',
  ])
  const plain = rawRequest(['GET /health HTTP/1.1', 'Host: localhost', 'Connection: close'])
  const answers = parseResponses((await rawExchange(port, expecting + plain)).toString('latin1'))
  assert.deepEqual(
    answers.map((answer) => [answer.status, answer.body]),
    [
      [417, { detail: 'Expectation failed' }],
      [200, { status: 'ok' }],
    ],
  )
  assert.match(answers[0]?.headers ?? '', /^x-request-id: expect-1$/im)
  assert.match(answers[0]?.headers ?? '', /^x-content-type-options: nosniff$/im)
  // Node's own 417s were answered outside the connection's queue: 100 of them pipelined were never closed.
  const flood = rawRequest(['GET /health HTTP/1.1', 'Host: localhost', 'Expect: z']).repeat(100)
  // A reset is the server closing the connection too.
  const received = await rawExchange(port, flood).catch(() => Buffer.alloc(0))
  assert.deepEqual(parseResponses(received.toString('latin1')), [], 'closed before any is answered')
})

test('bytes after a request that closes its connection are ignored: that request is answered, nothing after it runs', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  const token = await tokenFor('user_after_close')
  const body = '{"title": "before close"}'
  const post = rawRequest(
    [
      'POST /api/tasks HTTP/1.1',
      'Host: localhost',
      `Authorization: Bearer ${token}`,
      'Content-Type: application/json',
      `Content-Length: ${body.length}`,
    ],
    body,
  )
  const closing = rawRequest(['GET /health HTTP/1.1', 'Host: localhost', 'Connection: close'])
  const after = rawRequest(
    [
      'POST /api/tasks HTTP/1.1',
      'Host: localhost',
      `Authorization: Bearer ${token}`,
      'Content-Type: application/json',
      'Content-Length: 2',
    ],
    '{}',
  )
  for (const [label, head] of [
    ['Connection: close', closing],
    ['HTTP/1.0', 'GET /health HTTP/1.0\r\n\r\n'],
  ] as const) {
    const answers = parseResponses(
      (await rawExchange(port, post + head + after)).toString('latin1').replace('HTTP/1.0', 'HTTP/1.1'),
    )
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [201, 200],
      `${label}: the two requests before the close are answered, in order, and no 400 is written`,
    )
  }
  assert.deepEqual(
    (await userTasks(port, token)).map((task) => task.title),
    ['before close', 'before close'],
    'the request after the close never ran',
  )
})
