// buildTestApp(t): the real app on the test file's database, emptied for the test, with its log lines captured.
// The file's database is made on first use and dropped after the file's last test.
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import { after, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import type { TokenVerifier } from '../../src/auth/token-verifier.ts'
import type { Config } from '../../src/config.ts'
import type { Database } from '../../src/db/database.ts'
import { createTestDatabase, type TestDatabase } from './databases.ts'
import { TEST_SECRET } from './tokens.ts'

let fileDatabase: { testDatabase: Promise<TestDatabase>; closedByTest: boolean } | undefined

// Registered when this module is imported (the test file's top level), so it runs once, after the file's last test.
// An `after` called inside a running test attaches to that test: the database would go under the next test.
after(async () => {
  const testDatabase = await fileDatabase?.testDatabase.catch(() => undefined)
  await testDatabase?.drop()
})

/**
 * The test file's database, emptied: every table truncated and its identities restarted, so a test sees what a
 * fresh migrated database shows (task ids from 1) at the cost of one statement. Tests in a file run one at a time.
 * A test that closes it gets it replaced for the next one.
 */
async function emptiedFileDatabase(): Promise<Database> {
  if (fileDatabase?.closedByTest === true) {
    const spent = await fileDatabase.testDatabase
    await spent.drop()
    fileDatabase = undefined
  }
  const current = (fileDatabase ??= { testDatabase: createTestDatabase(), closedByTest: false })
  const { database } = await current.testDatabase
  const truncate = await truncateStatements(database)
  if (database.kind === 'pglite') await database.client.exec(truncate)
  else await database.pool.query(truncate)
  return {
    ...database,
    async close() {
      current.closedByTest = true
      await database.close()
    },
  }
}

let truncates: string | undefined

/**
 * One TRUNCATE per migrated table (drizzle's own bookkeeping lives in its `drizzle` schema). One statement each: a
 * table's TRUNCATE trigger may empty another table (tasks empties task_counts), which one statement naming both
 * refuses.
 */
async function truncateStatements(database: Database): Promise<string> {
  const query =
    "select format('TRUNCATE %I RESTART IDENTITY;', tablename) as name from pg_tables where schemaname = 'public'"
  truncates ??= (
    database.kind === 'pglite'
      ? (await database.client.query<{ name: string }>(query)).rows
      : (await database.pool.query<{ name: string }>(query)).rows
  )
    .map((row) => row.name)
    .join(' ')
  return truncates
}

/** A configuration for tests: memory database (ignored: the test database is passed in), TEST_SECRET, info logs. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    production: false,
    port: 0,
    host: '127.0.0.1',
    database: { kind: 'pglite-memory' },
    betterAuthSecret: TEST_SECRET,
    usingDevelopmentSecret: false,
    jwksUrl: null,
    issuer: null,
    audiences: [],
    clockToleranceS: 30,
    corsOrigins: ['http://localhost:3000'],
    logLevel: 'info',
    poolMax: 10,
    statementTimeoutMs: 5000,
    connectTimeoutMs: 5000,
    preparedStatements: true,
    maxTasksPerUser: 10_000,
    maxInFlightPerUser: 5,
    perUserWaitMs: 1000,
    shutdownTimeoutMs: 10_000,
    startedByNpm: false,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 72_000,
    maxPipelinedRequests: 32,
    sendTimeoutMs: 30_000,
    ...overrides,
  }
}

/** Six variables loadConfig refuses, each for a different rule: a start with them must name every one. */
export const SEVERAL_BAD_VARIABLES: Readonly<Record<string, string>> = {
  PORT: 'abc',
  DATABASE_URL: 'mysql://x',
  JWT_JWKS_URL: 'notaurl',
  LOG_LEVEL: 'loud',
  DATABASE_POOL_MAX: '0',
  CORS_ORIGINS: 'not-an-origin',
}

/** The app under test, its database, and every log line it wrote (JSON text). */
export interface TestApp {
  app: FastifyInstance
  database: Database
  logs: string[]
}

/** A log stream for `buildApp` and the lines written to it, as JSON text. */
export function captureLogs(): { logStream: Writable; logs: string[] } {
  const logs: string[] = []
  const logStream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((line) => line !== ''),
      )
      callback()
    },
  })
  return { logStream, logs }
}

/** What a test may change in the app it builds (the rest is testConfig()). */
interface TestAppOptions {
  config?: Partial<Config>
  tokenVerifier?: TokenVerifier
  now?: () => Date
}

/**
 * Builds the app on the file's database, emptied now; the caller closes it. For a describe block whose tests share
 * one app: `before(async () => ({ app } = await openTestApp()))` and `after(() => app.close())`.
 */
export async function openTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const database = await emptiedFileDatabase()
  const { logStream, logs } = captureLogs()
  const app = await buildApp({
    config: testConfig(options.config),
    database,
    logStream,
    ...(options.tokenVerifier ? { tokenVerifier: options.tokenVerifier } : {}),
    ...(options.now ? { now: options.now } : {}),
  })
  return { app, database, logs }
}

/** Builds the app for one test, on the file's database emptied for it; the app is closed after the test. */
export async function buildTestApp(t: TestContext, options: TestAppOptions = {}): Promise<TestApp> {
  const testApp = await openTestApp(options)
  t.after(() => testApp.app.close())
  return testApp
}

/**
 * Makes `app` listen on a free loopback port, for the tests that need a real socket (inject never has one); its port.
 */
export async function listenOnLoopback(app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address !== 'object') throw new Error('the app is not listening on a TCP port')
  return address.port
}

/**
 * Writes `request` on a new loopback connection to `port`; everything the server sent until it ended the connection.
 */
export async function rawExchange(port: number, request: string | Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => resolve(Buffer.concat(chunks)))
    socket.on('error', reject)
    socket.write(request)
  })
}
