// SIGTERM under load, on the real server as a child process: it stops accepting connections, lets in-flight requests
// finish within SHUTDOWN_TIMEOUT_MS, closes the database and exits 0; past the bound it exits non-zero. Answered
// requests are counted against the rows stored. Runs in both passes: PGlite in a data directory of the test's own,
// or a fresh database on the server.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import pg from 'pg'
import { LOCK_FILE_NAME } from '../../src/db/data-dir-lock.ts'
import { openDatabase } from '../../src/db/database.ts'
import { startServer, temporaryDirectory, waitUntil, type ChildServer } from '../helpers/child-server.ts'
import { createTestDatabase } from '../helpers/databases.ts'
import { assertNoTokenNorStack, parseLogLines } from '../helpers/logs.ts'
import { tokenFor } from '../helpers/tokens.ts'

/** A server on the pass's database, and a way to read the stored titles once it has stopped. */
async function startOnSuiteDatabase(
  t: TestContext,
  env: Record<string, string>,
): Promise<{ server: ChildServer; directory: string; storedTitles: () => Promise<string[]> }> {
  const directory = await temporaryDirectory(t)
  const testDatabase = await createTestDatabase()
  t.after(() => testDatabase.drop())
  const url = testDatabase.url
  const server = await startServer(t, {
    cwd: directory,
    env: { ...(url === null ? {} : { DATABASE_URL: url }), ...env },
  })
  return {
    server,
    directory,
    async storedTitles() {
      if (url !== null) {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        const { rows } = await client.query<{ title: string }>('select title from tasks')
        await client.end()
        return rows.map((row) => row.title)
      }
      // PGlite: open the directory the stopped server used (its lock is gone or stale by now).
      const database = await openDatabase(
        { kind: 'pglite', dataDir: join(directory, '.data') },
        { poolMax: 1, statementTimeoutMs: 5000, connectTimeoutMs: 5000 },
      )
      try {
        if (database.kind !== 'pglite') assert.fail('PGlite')
        const { rows } = await database.client.query<{ title: string }>('select title from tasks')
        return rows.map((row) => row.title)
      } finally {
        await database.close()
      }
    },
  }
}

/**
 * A POST whose headers and first half of the body are sent now, resolved once the server has logged it as an
 * incoming request (before that, a closing server counts its connection as idle and closes it); `finish()` sends
 * the rest; `answer` is the raw response.
 */
async function startSlowPost(
  t: TestContext,
  server: ChildServer,
  token: string,
  title: string,
): Promise<{ finish(): void; answer: Promise<string> }> {
  const requestId = `slow-${randomUUID()}`
  const socket = connect(server.port, '127.0.0.1')
  t.after(() => socket.destroy())
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const body = JSON.stringify({ title })
  socket.write(
    `POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
      `X-Request-Id: ${requestId}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 5)}`,
  )
  let received = ''
  socket.setEncoding('utf8').on('data', (text: string) => (received += text))
  socket.on('error', () => undefined)
  const answer = new Promise<string>((resolve) => socket.once('close', () => resolve(received)))
  await waitUntil(
    'the slow request is being served',
    () => server.logs.some((line) => line.includes(`"reqId":"${requestId}"`)),
    10_000,
  )
  return { finish: () => socket.write(body.slice(5)), answer }
}

/** True when a new TCP connection to the port is refused. */
async function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

test('SIGTERM under load: new connections are refused, in-flight requests finish, the database is closed, exit 0, no acknowledged write lost', async (t) => {
  const { server, directory, storedTitles } = await startOnSuiteDatabase(t, { SHUTDOWN_TIMEOUT_MS: '30000' })
  const token = await tokenFor('draining')
  const acknowledged = new Set<string>()
  const attempted = new Set<string>()
  let failures = 0
  let stopping = false

  // Eight clients posting as fast as they can, until the server is gone.
  const worker = async (id: number): Promise<void> => {
    for (let n = 0; !stopping || server.running(); n++) {
      const title = `worker ${id} write ${n}`
      attempted.add(title)
      try {
        const response = await fetch(`${server.url}/api/tasks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ title }),
          signal: AbortSignal.timeout(20_000),
        })
        if (response.status === 201) acknowledged.add(title)
        else assert.fail(`a request during the drain got ${response.status}: ${await response.text()}`)
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error
        failures++ // refused or reset: not acknowledged, and the row count below shows it was not stored either
        if (stopping) return
      }
    }
  }
  const workers = Array.from({ length: 8 }, (_, id) => worker(id))
  await waitUntil('the load is flowing', () => acknowledged.size >= 40, 60_000)
  const slow = await startSlowPost(t, server, token, 'in flight at SIGTERM')

  stopping = true
  const signalled = Date.now()
  server.child.kill('SIGTERM')
  await waitUntil('new connections are refused', () => refusesConnections(server.port), 10_000, 20)
  assert.equal(server.running(), true, 'still draining: the slow request is in flight')
  slow.finish()
  const answer = await slow.answer
  assert.match(answer, /^HTTP\/1\.1 201 /, 'the request in flight at SIGTERM is answered')
  assert.match(answer, /connection: close/i)
  acknowledged.add('in flight at SIGTERM')
  attempted.add('in flight at SIGTERM')

  assert.deepEqual(
    await server.exited,
    { code: 0, signal: null },
    `${server.logs.slice(-5).join('\n')}\n${server.stderr()}`,
  )
  const drained = Date.now() - signalled
  await Promise.all(workers)
  t.diagnostic(
    `SIGTERM: exit 0 after ${drained} ms; ${acknowledged.size} acknowledged writes, ${failures} refused or reset requests`,
  )

  const messages = parseLogLines(server.logs).map((line) => line.msg)
  assert.ok(messages.includes('shutting down: finishing in-flight requests') && messages.includes('stopped'))
  assertNoTokenNorStack(server.logs, [token])
  if (existsSync(join(directory, '.data')))
    assert.equal(existsSync(join(directory, '.data', LOCK_FILE_NAME)), false, 'the database was closed')

  const stored = await storedTitles()
  assert.equal(new Set(stored).size, stored.length, 'nothing stored twice')
  assert.deepEqual(new Set(stored), acknowledged, 'the rows are exactly the acknowledged writes')
})

test('SIGTERM with a slowloris connection (a header section a byte a second): it is closed, the request in flight is answered, exit 0 at once', async (t) => {
  const { server, directory } = await startOnSuiteDatabase(t, { SHUTDOWN_TIMEOUT_MS: '10000' })
  const token = await tokenFor('slowloris')
  const slowloris = connect(server.port, '127.0.0.1')
  t.after(() => slowloris.destroy())
  await new Promise<void>((resolve, reject) => slowloris.once('connect', resolve).once('error', reject))
  slowloris.on('error', () => undefined)
  let slowlorisClosed = false
  slowloris.once('close', () => (slowlorisClosed = true))
  slowloris.write('GET /health HTTP/1.1\r\nHost: localhost\r\nX-Padding: ')
  // One byte a second, at most 30 of them: the header section never ends while the test runs.
  let bytes = 0
  const drip = setInterval(() => {
    if (slowlorisClosed || ++bytes > 30) clearInterval(drip)
    else slowloris.write('a')
  }, 1000)
  t.after(() => clearInterval(drip))
  const slow = await startSlowPost(t, server, token, 'in flight beside a slowloris')

  const signalled = Date.now()
  server.child.kill('SIGTERM')
  await waitUntil('the slowloris connection is closed', () => slowlorisClosed, 3000)
  assert.equal(server.running(), true, 'still draining: the slow request is in flight')
  slow.finish()
  assert.match(await slow.answer, /^HTTP\/1\.1 201 /, 'the request in flight at SIGTERM is answered')
  assert.deepEqual(
    await server.exited,
    { code: 0, signal: null },
    `${server.logs.slice(-5).join('\n')}\n${server.stderr()}`,
  )
  const took = Date.now() - signalled
  assert.ok(took < 5000, `exits well before SHUTDOWN_TIMEOUT_MS (${took} ms)`)
  t.diagnostic(`SIGTERM beside a slowloris: exit 0 after ${took} ms`)
  if (existsSync(join(directory, '.data')))
    assert.equal(existsSync(join(directory, '.data', LOCK_FILE_NAME)), false, 'the database was closed')
})

test('past SHUTDOWN_TIMEOUT_MS with a request still in flight, the process exits non-zero; what was acknowledged is stored', async (t) => {
  const { server, storedTitles } = await startOnSuiteDatabase(t, {
    SHUTDOWN_TIMEOUT_MS: '1000',
    HTTP_REQUEST_TIMEOUT_MS: '60000',
  })
  const token = await tokenFor('stuck')
  for (const title of ['one', 'two']) {
    const response = await fetch(`${server.url}/api/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title }),
    })
    assert.equal(response.status, 201)
  }
  await startSlowPost(t, server, token, 'never finished') // its body never completes

  const signalled = Date.now()
  server.child.kill('SIGTERM')
  assert.deepEqual(await server.exited, { code: 1, signal: null })
  const took = Date.now() - signalled
  assert.ok(took >= 900 && took < 15_000, `exits at the bound (${took} ms)`)
  t.diagnostic(`SIGTERM past the bound: exit 1 after ${took} ms`)
  assert.ok(parseLogLines(server.logs).some((line) => line.msg === 'in-flight requests did not finish in time'))
  assertNoTokenNorStack(server.logs, [token])
  assert.deepEqual((await storedTitles()).sort(), ['one', 'two'])
})
