// Slow, oversized and numerous clients against the real server (src/main.ts as a child process on 127.0.0.1), over
// raw sockets: trickled headers and bodies are cut at their time limits, idle kept-alive connections are closed,
// a body over 64 KiB is refused with 413 while it streams (chunked or not) and never read to its end, an oversized
// header section is 431, and 1,000 idle connections do not stop /health. Every answer has docs/contract.md's error
// body. Runs in both passes, on the pass's database (memory:// for PGlite, a fresh database on the server otherwise).
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, describe, test, type TestContext } from 'node:test'
import { startServer, temporaryDirectory, waitUntil, type ChildServer, type Scope } from '../helpers/child-server.ts'
import { createTestDatabase } from '../helpers/databases.ts'
import { assertNoTokenNorStack } from '../helpers/logs.ts'
import { seedControlCharacterTasks } from '../helpers/pipelining-attack.ts'
import { tokenFor } from '../helpers/tokens.ts'

/** The limits of the server under test (ms): short, so that each cut shows within a few seconds. */
const HEADERS_TIMEOUT_MS = 1000
const REQUEST_TIMEOUT_MS = 2000
const KEEP_ALIVE_TIMEOUT_MS = 1000
const SEND_TIMEOUT_MS = 2000
const MAX_PIPELINED_REQUESTS = 8
/** Node checks the limits once a second: a cut comes within this much after its limit (plus scheduling slack). */
const CHECK_SLACK_MS = 1000 + 2000

/** A database URL for a child server: memory:// on the PGlite pass, a fresh database of its own on the server pass. */
async function suiteDatabaseUrl(t: Scope): Promise<string> {
  const testDatabase = await createTestDatabase()
  t.after(() => testDatabase.drop())
  return testDatabase.url ?? 'memory://'
}

let limitedServer: Promise<ChildServer> | undefined
/**
 * The shared server's cleanups, run after the file's last test (an `after` registered inside a test would run after
 * that test).
 */
const fileCleanups: (() => unknown)[] = []
after(async () => {
  for (const cleanup of fileCleanups.reverse()) await cleanup()
})

/**
 * The server with short limits, started once for the file (a start costs seconds on a busy machine) and stopped
 * after its last test; each test uses connections of its own, and a user of its own where it counts tasks.
 */
async function startLimitedServer(): Promise<ChildServer> {
  const scope: Scope = { after: (cleanup) => fileCleanups.push(cleanup) }
  limitedServer ??= (async () =>
    startServer(scope, {
      cwd: await temporaryDirectory(scope),
      env: {
        DATABASE_URL: await suiteDatabaseUrl(scope),
        HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
        HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        HTTP_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
        HTTP_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
        HTTP_MAX_PIPELINED_REQUESTS: String(MAX_PIPELINED_REQUESTS),
      },
    }))()
  return limitedServer
}

/** A raw connection that records what the server sends and when it closes. */
interface RawConnection {
  socket: Socket
  received(): string
  /** Resolves with the ms from opening to the close. */
  closed: Promise<number>
}

async function openRaw(t: TestContext, server: ChildServer): Promise<RawConnection> {
  const socket = connect(server.port, '127.0.0.1')
  t.after(() => socket.destroy())
  const opened = Date.now()
  let received = ''
  socket.setEncoding('latin1').on('data', (text: string) => (received += text))
  socket.on('error', () => undefined) // writes after the server closed: EPIPE / ECONNRESET are expected here
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)))
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return { socket, received: () => received, closed }
}

/** The status and JSON body of the first response in raw HTTP text. */
/**
 * An answer written by the HTTP parser's error handler (no request, no hook) still has what docs/contract.md puts on
 * every response: the security headers and an X-Request-Id.
 */
function assertParserAnswerHeaders(headers: string): void {
  for (const header of [
    /^x-request-id: [0-9a-f-]{36}$/im,
    /^x-content-type-options: nosniff$/im,
    /^referrer-policy: no-referrer$/im,
    /^x-frame-options: DENY$/im,
    /^content-security-policy: default-src 'none';frame-ancestors 'none'/im,
    /^strict-transport-security: /im,
  ]) {
    assert.match(headers, header)
  }
}

function parseResponse(text: string): { status: number; body: unknown; headers: string } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
  const split = text.indexOf('\r\n\r\n')
  const headers = text.slice(0, split)
  let body = text.slice(split + 4)
  if (/transfer-encoding: chunked/i.test(headers))
    body = body.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '')
  return { status, body: body === '' ? null : (JSON.parse(body) as unknown), headers }
}

/** Writes `chunk` every `everyMs` until the socket closes (or `limit` writes). */
function trickle(connection: RawConnection, chunk: string, everyMs: number, limit = 200): void {
  let writes = 0
  const timer = setInterval(() => {
    if (connection.socket.destroyed || ++writes > limit) clearInterval(timer)
    else connection.socket.write(chunk)
  }, everyMs)
  void connection.closed.then(() => clearInterval(timer))
}

async function taskCount(server: ChildServer, token: string): Promise<number> {
  const response = await fetch(`${server.url}/api/tasks`, { headers: { authorization: `Bearer ${token}` } })
  assert.equal(response.status, 200)
  return Number(response.headers.get('x-total-count'))
}

describe('slow clients are cut at their time limits', () => {
  test('headers trickled a line at a time: 408 {"detail": …} at HTTP_HEADERS_TIMEOUT_MS, connection closed', async (t) => {
    const server = await startLimitedServer()
    const connection = await openRaw(t, server)
    connection.socket.write('GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n')
    trickle(connection, 'X-Slow: 1\r\n', 200)
    const closedAfter = await connection.closed
    assert.ok(
      closedAfter >= HEADERS_TIMEOUT_MS - 100 && closedAfter < HEADERS_TIMEOUT_MS + CHECK_SLACK_MS,
      `closed after ${closedAfter} ms`,
    )
    assert.deepEqual(parseResponse(connection.received()).status, 408)
    assert.deepEqual(parseResponse(connection.received()).body, { detail: 'Request timeout' })
    assertParserAnswerHeaders(parseResponse(connection.received()).headers)
    t.diagnostic(`trickled headers: cut after ${closedAfter} ms`)
  })

  test('a connection that sends nothing is closed at HTTP_HEADERS_TIMEOUT_MS', async (t) => {
    const server = await startLimitedServer()
    const connection = await openRaw(t, server)
    const closedAfter = await connection.closed
    assert.ok(
      closedAfter >= HEADERS_TIMEOUT_MS - 100 && closedAfter < HEADERS_TIMEOUT_MS + CHECK_SLACK_MS,
      `closed after ${closedAfter} ms`,
    )
  })

  test('a body trickled a byte at a time: 408 at HTTP_REQUEST_TIMEOUT_MS, and nothing is created', async (t) => {
    const server = await startLimitedServer()
    const token = await tokenFor('slow-body')
    const connection = await openRaw(t, server)
    connection.socket.write(
      `POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"title": "`,
    )
    trickle(connection, 'a', 100)
    const closedAfter = await connection.closed
    assert.ok(
      closedAfter >= REQUEST_TIMEOUT_MS - 100 && closedAfter < REQUEST_TIMEOUT_MS + CHECK_SLACK_MS,
      `closed after ${closedAfter} ms`,
    )
    const answer = parseResponse(connection.received())
    assert.equal(answer.status, 408)
    assert.deepEqual(answer.body, { detail: 'Request timeout' })
    assert.equal(await taskCount(server, token), 0)
    assertNoTokenNorStack(server.logs, [token])
    t.diagnostic(`trickled body: cut after ${closedAfter} ms`)
  })

  test('an idle kept-alive connection is closed at HTTP_KEEP_ALIVE_TIMEOUT_MS after its last response', async (t) => {
    const server = await startLimitedServer()
    const connection = await openRaw(t, server)
    connection.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n')
    await waitUntil('the /health response arrived', () => connection.received().includes('{"status":"ok"}'), 5000, 10)
    const answered = Date.now()
    await connection.closed
    const idle = Date.now() - answered
    assert.ok(
      idle >= KEEP_ALIVE_TIMEOUT_MS - 100 && idle < KEEP_ALIVE_TIMEOUT_MS + CHECK_SLACK_MS,
      `closed ${idle} ms after the response`,
    )
  })
})

describe('oversized requests', () => {
  for (const chunked of [false, true]) {
    test(`a body over 64 KiB${chunked ? ', chunked,' : ' with its Content-Length'} is 413 while it streams, and the connection closes`, async (t) => {
      const server = await startLimitedServer()
      const token = await tokenFor('big-body')
      const connection = await openRaw(t, server)
      const lengthHeader = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${1024 ** 3}`
      connection.socket.write(
        `POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n${lengthHeader}\r\n\r\n`,
      )
      // A body that would never end (1 GiB announced, or endless chunks): written until the server answers or closes.
      const piece = `{"title": "${'x'.repeat(16 * 1024)}`
      const chunk = chunked ? `${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n` : piece
      let sent = 0
      while (!connection.received().includes('\r\n\r\n') && !connection.socket.destroyed && sent < 64 * 1024 * 1024) {
        sent += chunk.length
        if (!connection.socket.write(chunk)) {
          await Promise.race([
            new Promise((resolve) => connection.socket.once('drain', resolve)),
            connection.closed,
            delay(100),
          ])
        }
      }
      await waitUntil(
        'the 413 arrived',
        () => connection.received().includes('\r\n\r\n') && parseResponse(connection.received()).body !== null,
        10_000,
        10,
      )
      const answer = parseResponse(connection.received())
      assert.equal(answer.status, 413)
      assert.deepEqual(answer.body, { detail: 'Request body too large (limit 65536 bytes)' })
      assert.match(answer.headers, /connection: close/i)
      const closedAfter = await Promise.race([connection.closed, delay(10_000).then(() => -1)])
      assert.ok(
        closedAfter >= 0,
        'the server closes the connection (after a short linger): the client cannot keep streaming into it',
      )
      assert.ok(sent < 64 * 1024 * 1024, `answered long before the body ended (${sent} bytes sent)`)
      t.diagnostic(`413 ${chunked ? 'chunked' : 'content-length'}: answered after ${sent} bytes were written`)
      assert.equal(await taskCount(server, token), 0)
      assertNoTokenNorStack(server.logs, [token])
    })
  }

  test('a header section over the parser\'s limit is 431 {"detail": …}', async (t) => {
    const server = await startLimitedServer()
    const connection = await openRaw(t, server)
    connection.socket.write(`GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\n\r\n`)
    await connection.closed
    const answer = parseResponse(connection.received())
    assert.equal(answer.status, 431)
    assert.deepEqual(answer.body, { detail: 'Request header fields too large' })
    assertParserAnswerHeaders(answer.headers)
  })
})

describe('pipelined requests whose replies are not read (issue 10)', () => {
  const replies = (text: string): number => text.match(/HTTP\/1\.1 200 OK\r\n/g)?.length ?? 0

  test('more than HTTP_MAX_PIPELINED_REQUESTS unanswered requests close the connection before any is served', async (t) => {
    const server = await startLimitedServer()
    const health = 'GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n'
    const atTheLimit = await openRaw(t, server)
    atTheLimit.socket.write(health.repeat(MAX_PIPELINED_REQUESTS))
    await waitUntil(
      'every reply up to the limit arrived',
      () => replies(atTheLimit.received()) === MAX_PIPELINED_REQUESTS,
      5000,
      10,
    )
    assert.ok(!atTheLimit.socket.destroyed, 'a connection at the limit stays open')

    const pastTheLimit = await openRaw(t, server)
    pastTheLimit.socket.write(health.repeat(MAX_PIPELINED_REQUESTS + 1))
    const closedAfter = await Promise.race([pastTheLimit.closed, delay(5000).then(() => -1)])
    assert.ok(closedAfter >= 0, 'a connection past the limit is closed')
    assert.equal(pastTheLimit.received(), '', 'none of its requests was served')
  })

  test('a reply the client does not read is cut at HTTP_SEND_TIMEOUT_MS, and the connection closed', async (t) => {
    const server = await startLimitedServer()
    const token = await tokenFor('not-reading')
    await seedControlCharacterTasks(server.url, token, 200)
    // 8 pages of ~1.5 MB: more than the kernel's socket buffers on loopback take from a client that does not read.
    const connection = await openRaw(t, server)
    connection.socket.pause()
    connection.socket.write(
      `GET /api/tasks?limit=200 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`.repeat(
        MAX_PIPELINED_REQUESTS,
      ),
    )
    await delay(SEND_TIMEOUT_MS + CHECK_SLACK_MS)
    connection.socket.resume()
    const closedAfter = await Promise.race([connection.closed, delay(5000).then(() => -1)])
    assert.ok(closedAfter >= 0, 'the connection is closed')
    const answered = replies(connection.received())
    assert.ok(answered < MAX_PIPELINED_REQUESTS, `only the replies sent in time arrived (${answered})`)
    t.diagnostic(`not reading: ${answered} of ${MAX_PIPELINED_REQUESTS} replies arrived before the cut`)
    assertNoTokenNorStack(server.logs, [token])
  })
})

describe('many connections', () => {
  test('1,000 concurrent idle connections do not stop /health (nor an authenticated request) from answering', async (t) => {
    // The default limits: idle connections are cut only after 10 s, so all 1,000 stay open while /health is asked.
    const server = await startServer(t, {
      cwd: await temporaryDirectory(t),
      env: { DATABASE_URL: await suiteDatabaseUrl(t) },
    })
    const sockets: Socket[] = []
    t.after(() => sockets.forEach((socket) => socket.destroy()))
    let closedEarly = 0
    await Promise.all(
      Array.from(
        { length: 1000 },
        () =>
          new Promise<void>((resolve, reject) => {
            const socket = connect(server.port, '127.0.0.1')
            sockets.push(socket)
            socket.on('error', () => undefined)
            socket.once('close', () => closedEarly++)
            socket.once('connect', () => resolve())
            socket.once('error', reject)
          }),
      ),
    )
    const token = await tokenFor('crowded')
    for (let n = 0; n < 5; n++) {
      const started = Date.now()
      const health = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(5000) })
      assert.equal(health.status, 200)
      assert.ok(Date.now() - started < 5000)
      const api = await fetch(`${server.url}/api/tasks`, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(5000),
      })
      assert.equal(api.status, 200)
    }
    assert.equal(closedEarly, 0, 'all 1,000 connections were still open while the requests were answered')
  })
})

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
