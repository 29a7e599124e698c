// Database faults on the real PostgreSQL server, caused for real: a TCP proxy between the service and the server is
// cut, paused and restored; the service's backends are killed with pg_terminate_backend mid-statement and while
// idle; statements are made slow with pg_sleep and with a lock. Each test asserts the statuses, Retry-After, the
// recovery without a restart, that the rows are exactly the acknowledged writes, and the log rules.
//
// These tests are registered only when TEST_DATABASE_URL is set (the second CI pass): PGlite has no network, no
// other sessions and no statement timeout to fault. Everything is on loopback, each test is bounded in time, and
// proxies, apps, databases and child processes are closed after each test.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { buildApp } from '../../src/app.ts'
import { openDatabase, type Database } from '../../src/db/database.ts'
import {
  CANCEL_GRACE_MS,
  limitStatements,
  mayRetry,
  StatementNotSentError,
  StatementTimeoutError,
} from '../../src/db/pg-pool.ts'
import { startServer, temporaryDirectory, waitUntil } from '../helpers/child-server.ts'
import { createTestDatabase, databaseNameOf, TEST_DATABASE_URL, withAdmin } from '../helpers/databases.ts'
import { assertEach503LoggedOnce, assertNoTokenNorStack } from '../helpers/logs.ts'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'
import { captureLogs, testConfig } from '../helpers/test-app.ts'
import { tokenFor } from '../helpers/tokens.ts'

/** The limits the service runs with in these tests (ms): short, so that each fault shows within a second or two. */
const STATEMENT_TIMEOUT_MS = 1000
const CONNECT_TIMEOUT_MS = 1000

/** What one request got, and how long it took. */
interface Answer {
  status: number
  body: unknown
  retryAfter: string | undefined
  requestId: string
  ms: number
}

/** The service on its own database, reached through a proxy; `direct` queries the same database around the proxy. */
interface FaultyService {
  app: FastifyInstance
  database: Database
  proxy: TcpProxy
  logs: string[]
  databaseName: string
  idleErrors: Error[]
  /** Sends a request as the test's user; a 503's request id is remembered for the log check. */
  call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object): Promise<Answer>
  /** Titles of the rows in the database, read around the proxy. */
  titles(): Promise<string[]>
  /** Runs SQL on a connection of its own to the test database, around the proxy. */
  direct<T extends pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<T[]>
  /** The service's backends (by the proxy's upstream ports) as pg_stat_activity shows them. */
  backends(): Promise<{ pid: number; state: string | null; wait_event_type: string | null; query: string }[]>
  /** Request ids of every 503 answered. */
  unavailable: string[]
  tokens: string[]
}

async function startFaultyService(
  t: TestContext,
  options: { poolMax?: number; statementTimeoutMs?: number } = {},
): Promise<FaultyService> {
  const testDatabase = await createTestDatabase()
  const url = testDatabase.url ?? assert.fail('a server database has a URL')
  const target = new URL(url)
  const proxy = await startTcpProxy(t, { host: target.hostname, port: Number(target.port || 5432) })
  const idleErrors: Error[] = []
  const statementTimeoutMs = options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS
  const database = await openDatabase(
    { kind: 'postgres', url: proxy.urlThrough(url) },
    {
      poolMax: options.poolMax ?? 4,
      statementTimeoutMs,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      onIdleError: (error) => idleErrors.push(error),
    },
  )
  const { logStream, logs } = captureLogs()
  const app = await buildApp({
    config: testConfig({ statementTimeoutMs, connectTimeoutMs: CONNECT_TIMEOUT_MS }),
    database,
    logStream,
  })
  const direct = new pg.Client({ connectionString: url })
  await direct.connect()
  t.after(async () => {
    await app.close()
    await database.close()
    await direct.end()
    await testDatabase.drop()
  })
  const unavailable: string[] = []
  const tokens: string[] = []
  const databaseName = databaseNameOf(url)
  return {
    app,
    database,
    proxy,
    logs,
    databaseName,
    idleErrors,
    unavailable,
    tokens,
    async call(method, url, payload) {
      const token = await tokenFor('fault-user')
      tokens.push(token)
      const started = Date.now()
      const response = await app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${token}` },
        ...(payload === undefined ? {} : { payload }),
      })
      const answer: Answer = {
        status: response.statusCode,
        body: response.body === '' ? null : response.json(),
        retryAfter: response.headers['retry-after'],
        requestId: String(response.headers['x-request-id']),
        ms: Date.now() - started,
      }
      if (answer.status === 503) unavailable.push(answer.requestId)
      return answer
    },
    async titles() {
      const { rows } = await direct.query<{ title: string }>('select title from tasks order by id')
      return rows.map((row) => row.title)
    },
    async direct(sql, values) {
      return (await direct.query(sql, values)).rows
    },
    async backends() {
      const { rows } = await direct.query<{
        pid: number
        state: string | null
        wait_event_type: string | null
        query: string
      }>(
        'select pid, state, wait_event_type, query from pg_stat_activity where datname = $1 and client_port = any($2::int[])',
        [databaseName, proxy.upstreamPorts()],
      )
      return rows
    },
  }
}

/** A 503 exactly as docs/contract.md has it. */
function assertUnavailable(answer: Answer, what: string): void {
  assert.equal(answer.status, 503, `${what}: ${JSON.stringify(answer.body)}`)
  assert.deepEqual(answer.body, { detail: 'Service unavailable' }, what)
  assert.match(answer.retryAfter ?? '', /^[1-9]\d*$/, `${what}: Retry-After`)
}

/** The log rules, at the end of each test. */
function assertLogRules(service: FaultyService): void {
  assertNoTokenNorStack(service.logs, service.tokens)
  assertEach503LoggedOnce(service.logs, service.unavailable)
}

/** A second session to the test database holding `ACCESS EXCLUSIVE` on tasks: the service's statements wait on it. */
async function lockTasks(t: TestContext, url: string): Promise<{ release(): Promise<void> }> {
  const holder = new pg.Client({ connectionString: url })
  await holder.connect()
  await holder.query('begin')
  await holder.query('lock table tasks in access exclusive mode')
  let released = false
  const release = async (): Promise<void> => {
    if (released) return
    released = true
    await holder.query('rollback')
    await holder.end()
  }
  t.after(release)
  return { release }
}

/** Logs recovery times so the test output shows them (the closing note of issue 4 quotes them). */
function report(t: TestContext, what: string, ms: number): void {
  t.diagnostic(`${what}: ${ms} ms`)
}

// The retry rule on its own (no server needed, so in both passes): a statement is sent again only when that is safe.
describe('which statements are sent again after their connection failed', () => {
  const terminated = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })
  const unexpected = new Error('Connection terminated unexpectedly')
  const cancelled = Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' })
  test('a read that lost its connection is retried; a write is not; a statement never sent always is', () => {
    assert.equal(mayRetry({ text: 'select "id" from "tasks" where "user_id" = $1' }, terminated), true)
    assert.equal(mayRetry('SELECT 1', unexpected), true)
    assert.equal(mayRetry({ text: 'insert into "tasks" ("title") values ($1) returning *' }, terminated), false)
    assert.equal(mayRetry({ text: 'update "tasks" set "completed" = not "completed"' }, unexpected), false)
    assert.equal(mayRetry({ text: 'delete from "tasks" where "id" = $1' }, new StatementNotSentError()), true)
  })
  test('a statement that timed out, or failed for any other reason, is not retried', () => {
    assert.equal(mayRetry('select pg_sleep(30)', cancelled), false)
    assert.equal(mayRetry('select pg_sleep(30)', new StatementTimeoutError(1000)), false)
    assert.equal(mayRetry('select 1', Object.assign(new Error('syntax error'), { code: '42601' })), false)
  })
})

if (TEST_DATABASE_URL !== undefined) {
  describe('a statement asked of a connection that is already closed', () => {
    test('is refused without being sent (StatementNotSentError), so it can safely run elsewhere', async (t) => {
      const testDatabase = await createTestDatabase()
      t.after(() => testDatabase.drop())
      const client = new pg.Client({ connectionString: testDatabase.url ?? assert.fail('a server database has a URL') })
      client.on('error', () => undefined)
      limitStatements(client, { statementTimeoutMs: STATEMENT_TIMEOUT_MS, connectTimeoutMs: CONNECT_TIMEOUT_MS })
      await client.connect()
      ;(client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
      await assert.rejects(
        client.query(`insert into tasks (user_id, title) values ('u', 'never sent')`),
        StatementNotSentError,
      )
      const check = new pg.Client({ connectionString: testDatabase.url ?? '' })
      await check.connect()
      const { rows } = await check.query('select count(*)::int as n from tasks')
      await check.end()
      assert.deepEqual(rows, [{ n: 0 }])
    })
  })

  describe('the network to the database is cut, then restored', () => {
    test('every /api request is 503 with Retry-After at once, /ready 503, /health 200; after restore, 200 without a restart', async (t) => {
      const service = await startFaultyService(t)
      assert.equal((await service.call('POST', '/api/tasks', { title: 'before the cut' })).status, 201)

      service.proxy.cut()
      for (const [method, url] of [
        ['GET', '/api/tasks'],
        ['POST', '/api/tasks'],
        ['GET', '/api/tasks/1'],
        ['PUT', '/api/tasks/1'],
        ['DELETE', '/api/tasks/1'],
      ] as const) {
        const answer = await service.call(
          method,
          url,
          method === 'POST' || method === 'PUT' ? { title: `during the cut ${method}` } : undefined,
        )
        assertUnavailable(answer, `${method} ${url}`)
        assert.ok(answer.ms < 3000, `a refused connection answers at once (${answer.ms} ms)`)
      }
      const ready = await service.app.inject({ method: 'GET', url: '/ready' })
      assert.deepEqual([ready.statusCode, ready.json()], [503, { status: 'unavailable' }])
      assert.ok(ready.headers['retry-after'])
      service.unavailable.push(String(ready.headers['x-request-id']))
      assert.equal((await service.app.inject({ method: 'GET', url: '/health' })).statusCode, 200)

      service.proxy.restore()
      const restored = Date.now()
      const after = await service.call('POST', '/api/tasks', { title: 'after the restore' })
      assert.equal(after.status, 201, 'the first request after the restore succeeds, on a fresh connection')
      report(t, 'cut: first request after restore answered 201 in', Date.now() - restored)
      assert.equal((await service.app.inject({ method: 'GET', url: '/ready' })).statusCode, 200)
      assert.deepEqual(
        await service.titles(),
        ['before the cut', 'after the restore'],
        'rows are exactly the acknowledged writes',
      )
      assertLogRules(service)
    })
  })

  describe('the network to the database is paused (packets go nowhere), then restored', () => {
    test('a statement that gets no answer is 503 after the statement limit and the cancel grace, never a hung request', async (t) => {
      const service = await startFaultyService(t)
      assert.equal((await service.call('POST', '/api/tasks', { title: 'before the pause' })).status, 201)

      service.proxy.pause()
      const read = await service.call('GET', '/api/tasks')
      assertUnavailable(read, 'a read on a connection that stopped answering')
      assert.ok(read.ms >= STATEMENT_TIMEOUT_MS - 100, `not before the statement limit (${read.ms} ms)`)
      assert.ok(read.ms < STATEMENT_TIMEOUT_MS + CANCEL_GRACE_MS + CONNECT_TIMEOUT_MS + 3000, `bounded (${read.ms} ms)`)
      report(t, 'pause: a read answered 503 after', read.ms)
      const write = await service.call('POST', '/api/tasks', { title: 'during the pause' })
      assertUnavailable(write, 'a write while paused')
      assert.ok(
        write.ms < STATEMENT_TIMEOUT_MS + CANCEL_GRACE_MS + CONNECT_TIMEOUT_MS + 3000,
        `bounded (${write.ms} ms)`,
      )

      service.proxy.restore()
      const restored = Date.now()
      assert.equal((await service.call('POST', '/api/tasks', { title: 'after the pause' })).status, 201)
      report(t, 'pause: first request after restore answered 201 in', Date.now() - restored)
      // The write held during the pause died with its connection: it never reached the server.
      assert.deepEqual(
        await service.titles(),
        ['before the pause', 'after the pause'],
        'rows are exactly the acknowledged writes',
      )
      assertLogRules(service)
    })

    test('with no connection open yet, a request is 503 after DATABASE_CONNECT_TIMEOUT_MS', async (t) => {
      const service = await startFaultyService(t)
      service.proxy.pause()
      const answer = await service.call('GET', '/api/tasks')
      assertUnavailable(answer, 'a request whose connection cannot be opened')
      assert.ok(
        answer.ms >= CONNECT_TIMEOUT_MS - 100 && answer.ms < CONNECT_TIMEOUT_MS + 3000,
        `about the connect limit (${answer.ms} ms)`,
      )
      report(t, 'pause before connecting: answered 503 after', answer.ms)
      service.proxy.restore()
      assert.equal((await service.call('GET', '/api/tasks')).status, 200)
      assertLogRules(service)
    })
  })

  describe('the service’s connections are killed (pg_terminate_backend, as Neon does when it suspends)', () => {
    test('idle connections killed: the pool drops them without crashing, and the next requests are served on fresh ones', async (t) => {
      const service = await startFaultyService(t)
      const warm = await Promise.all([1, 2, 3].map((n) => service.call('POST', '/api/tasks', { title: `warm ${n}` })))
      assert.deepEqual(
        warm.map((answer) => answer.status),
        [201, 201, 201],
      )
      const before = service.proxy.upstreamPorts().length
      assert.ok(before >= 1)
      await withAdmin((admin) =>
        admin.query(
          'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and client_port = any($2::int[])',
          [service.databaseName, service.proxy.upstreamPorts()],
        ),
      )
      const noticed = await waitUntil(
        'the pool has dropped every killed connection',
        () => service.database.kind === 'postgres' && service.database.pool.totalCount === 0,
        10_000,
      )
      report(t, 'killed idle connections: pool dropped them within', noticed)
      assert.ok(service.idleErrors.length >= 1, 'the idle errors were reported, not thrown')

      const answers = [
        await service.call('GET', '/api/tasks'),
        await service.call('POST', '/api/tasks', { title: 'after the kill' }),
      ]
      assert.deepEqual(
        answers.map((answer) => answer.status),
        [200, 201],
      )
      assert.deepEqual((await service.titles()).sort(), ['after the kill', 'warm 1', 'warm 2', 'warm 3'])
      assertLogRules(service)
    })

    test('a read whose connection is killed mid-statement is sent again on a fresh connection: 200, not 503', async (t) => {
      const service = await startFaultyService(t, { statementTimeoutMs: 20_000 })
      assert.equal((await service.call('POST', '/api/tasks', { title: 'listed' })).status, 201)
      const lock = await lockTasks(t, await directUrl(service))
      const pending = service.call('GET', '/api/tasks')
      const [waiting] = await waitForBackends(service, (backend) => backend.wait_event_type === 'Lock', 1)
      await withAdmin((admin) => admin.query('select pg_terminate_backend($1)', [waiting?.pid]))
      // The retry waits on the lock again, on a connection of its own; then the lock goes.
      await waitForBackends(service, (backend) => backend.wait_event_type === 'Lock' && backend.pid !== waiting?.pid, 1)
      await lock.release()
      const answer = await pending
      assert.equal(answer.status, 200, JSON.stringify(answer.body))
      assert.deepEqual(
        (answer.body as { title: string }[]).map((task) => task.title),
        ['listed'],
      )
      assertLogRules(service)
    })

    test('writes whose connections are killed mid-statement are 503, never 500 nor written twice; retried, each is written once', async (t) => {
      const service = await startFaultyService(t, { statementTimeoutMs: 20_000 })
      const lock = await lockTasks(t, await directUrl(service))
      const titles = ['w1', 'w2', 'w3']
      const pending = titles.map((title) => service.call('POST', '/api/tasks', { title }))
      const waiting = await waitForBackends(service, (backend) => backend.wait_event_type === 'Lock', titles.length)
      await withAdmin((admin) =>
        admin.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [
          waiting.map((backend) => backend.pid),
        ]),
      )
      const answers = await Promise.all(pending)
      for (const answer of answers) assertUnavailable(answer, 'a write whose connection died under it')
      await lock.release()
      assert.deepEqual(await service.titles(), [], 'a 503 write was rolled back with its connection')

      const retried = await Promise.all(titles.map((title) => service.call('POST', '/api/tasks', { title })))
      assert.deepEqual(
        retried.map((answer) => answer.status),
        [201, 201, 201],
      )
      assert.deepEqual((await service.titles()).sort(), titles, 'rows are exactly the acknowledged writes, each once')
      assertLogRules(service)
    })
  })

  describe('slow statements', () => {
    test('an INSERT slowed by pg_sleep past DATABASE_STATEMENT_TIMEOUT_MS is 503, cancelled on the server, and not written', async (t) => {
      const service = await startFaultyService(t)
      await service.direct(`
        create function slow_titles() returns trigger language plpgsql as $$
        begin
          if new.title like 'slow%' then perform pg_sleep(30); end if;
          return new;
        end $$`)
      await service.direct(
        'create trigger slow_titles before insert on tasks for each row execute function slow_titles()',
      )

      const answer = await service.call('POST', '/api/tasks', { title: 'slow one' })
      assertUnavailable(answer, 'a statement past the limit')
      assert.ok(
        answer.ms >= STATEMENT_TIMEOUT_MS - 100 && answer.ms < STATEMENT_TIMEOUT_MS + CANCEL_GRACE_MS + 3000,
        `about the limit (${answer.ms} ms)`,
      )
      report(t, 'pg_sleep: answered 503 after', answer.ms)
      const gone = await waitUntil(
        'no statement of the service runs pg_sleep on the server any more',
        async () =>
          (
            await service.direct(
              `select 1 from pg_stat_activity where datname = $1 and state = 'active' and query like 'insert into%'`,
              [service.databaseName],
            )
          ).length === 0,
        5000,
      )
      report(t, 'pg_sleep: statement gone from pg_stat_activity within', gone)
      assert.deepEqual(await service.titles(), [])
      assert.equal(
        (await service.call('POST', '/api/tasks', { title: 'quick one' })).status,
        201,
        'the next statement is served',
      )
      assert.deepEqual(await service.titles(), ['quick one'])
      assertLogRules(service)
    })

    test('a read waiting on a lock past the limit is 503, and its wait is cancelled on the server', async (t) => {
      const service = await startFaultyService(t)
      const lock = await lockTasks(t, await directUrl(service))
      const answer = await service.call('GET', '/api/tasks')
      assertUnavailable(answer, 'a read past the limit')
      assert.ok(answer.ms < STATEMENT_TIMEOUT_MS + CANCEL_GRACE_MS + 3000, `bounded (${answer.ms} ms)`)
      // Any session of this database, not only those still behind the proxy: a dropped connection leaves its backend
      // behind.
      await waitUntil(
        'no backend waits on the lock any more',
        async () =>
          (
            await service.direct(`select 1 from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'`, [
              service.databaseName,
            ])
          ).length === 0,
        5000,
      )
      await lock.release()
      assert.equal((await service.call('GET', '/api/tasks')).status, 200)
      assertLogRules(service)
    })

    test('with every pooled connection busy, a further request waits at most DATABASE_CONNECT_TIMEOUT_MS, then 503', async (t) => {
      const service = await startFaultyService(t, { poolMax: 2, statementTimeoutMs: 4000 })
      const lock = await lockTasks(t, await directUrl(service))
      const busy = [service.call('GET', '/api/tasks'), service.call('GET', '/api/tasks?status=pending')]
      await waitForBackends(service, (backend) => backend.wait_event_type === 'Lock', 2)
      const third = await service.call('GET', '/api/tasks/1')
      assertUnavailable(third, 'a request that found no free connection')
      assert.ok(
        third.ms >= CONNECT_TIMEOUT_MS - 100 && third.ms < CONNECT_TIMEOUT_MS + 3000,
        `about the connect limit (${third.ms} ms)`,
      )
      await lock.release()
      assert.deepEqual(
        (await Promise.all(busy)).map((answer) => answer.status),
        [200, 200],
      )
      assertLogRules(service)
    })
  })

  describe('the database is unreachable when the process starts (real child process)', () => {
    test('it still listens: /health 200, /ready and /api 503; when the database comes back, migrations run and requests succeed', async (t) => {
      const testDatabase = await createTestDatabase({ migrate: false })
      t.after(() => testDatabase.drop())
      const url = testDatabase.url ?? assert.fail('a server database has a URL')
      const target = new URL(url)
      const proxy = await startTcpProxy(t, { host: target.hostname, port: Number(target.port || 5432) })
      proxy.cut()
      const server = await startServer(t, {
        cwd: await temporaryDirectory(t),
        env: {
          DATABASE_URL: proxy.urlThrough(url),
          DATABASE_CONNECT_TIMEOUT_MS: '1000',
          DATABASE_STATEMENT_TIMEOUT_MS: '2000',
        },
        waitForReady: false,
      })
      const token = await tokenFor('early-user')
      const unavailable: string[] = []
      const get = async (path: string, authorized = true): Promise<Response> =>
        fetch(`${server.url}${path}`, {
          headers: authorized ? { authorization: `Bearer ${token}` } : {},
          signal: AbortSignal.timeout(10_000),
        })

      assert.deepEqual(await (await get('/health')).json(), { status: 'ok' })
      const ready = await get('/ready')
      assert.deepEqual([ready.status, await ready.json()], [503, { status: 'unavailable' }])
      unavailable.push(ready.headers.get('x-request-id') ?? '')
      for (const path of ['/api/tasks', '/api/tasks/1']) {
        const response = await get(path)
        assert.deepEqual([response.status, await response.json()], [503, { detail: 'Service unavailable' }], path)
        assert.match(response.headers.get('retry-after') ?? '', /^[1-9]\d*$/)
        unavailable.push(response.headers.get('x-request-id') ?? '')
      }
      assert.equal((await get('/api/tasks', false)).status, 401, 'no token is still a 401')

      proxy.restore()
      const recovery = await waitUntil(
        '/ready answers 200',
        async () => (await get('/ready')).status === 200,
        30_000,
        200,
      )
      report(t, 'unreachable at start: /ready 200 after the restore within', recovery)
      const created = await fetch(`${server.url}/api/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'first task' }),
      })
      assert.equal(created.status, 201)
      assert.equal(server.running(), true, 'the same process: no restart')
      // The /ready polls while the database was still away are 503s too; every one must have been logged.
      const polled503 = server.logs
        .map((line) => JSON.parse(line) as { reqId?: string; res?: { statusCode?: number } })
        .filter((line) => line.res?.statusCode === 503 && line.reqId !== undefined)
        .map((line) => line.reqId as string)
      assertNoTokenNorStack(server.logs, [token])
      assertEach503LoggedOnce(server.logs, new Set([...unavailable, ...polled503]))

      server.child.kill('SIGTERM')
      assert.deepEqual(await server.exited, { code: 0, signal: null })
    })
  })
}

/** The test database's URL around the proxy (the service's own URL goes through it). */
async function directUrl(service: FaultyService): Promise<string> {
  const [row] = await service.direct<{ name: string }>('select current_database() as name')
  const url = new URL(TEST_DATABASE_URL ?? '')
  url.pathname = `/${row?.name ?? service.databaseName}`
  return url.toString()
}

/** Waits until at least `count` of the service's backends match, and returns them. */
async function waitForBackends(
  service: FaultyService,
  matches: (backend: { pid: number; wait_event_type: string | null }) => boolean,
  count: number,
): Promise<{ pid: number }[]> {
  let found: { pid: number }[] = []
  await waitUntil(
    `${count} backend(s) of the service are in the expected state`,
    async () => {
      found = (await service.backends()).filter(matches)
      return found.length >= count
    },
    10_000,
    25,
  )
  return found
}
