// The configuration table of docs/contract.md: defaults, every variable's parsing, the production rules for the secret,
// and one ConfigError naming every bad variable. The real entry point's refusals are in test/process/start-failures.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { pino } from 'pino'
import { logTokenSettings, tokenSettingWarnings } from '../src/auth/token-settings.ts'
import { ConfigError, DEVELOPMENT_SECRET, loadConfig, type Config } from '../src/config.ts'
import { parseLogLines } from './helpers/logs.ts'
import { captureLogs, SEVERAL_BAD_VARIABLES } from './helpers/test-app.ts'

/** A secret of exactly `length` characters. */
const secretOf = (length: number): string => 'k'.repeat(length)

/** The ConfigError `loadConfig(env)` throws (fails the test when it does not throw one). */
function configErrorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env)
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error
  }
  assert.fail(`loadConfig accepted ${JSON.stringify(env)}`)
}

/** The problems of a ConfigError that name `variable`. */
const problemsAbout = (error: ConfigError, variable: string): string[] =>
  error.problems.filter((problem) => problem.includes(variable))

void test('with no variables set, every setting has the default of docs/contract.md', () => {
  const config = loadConfig({})
  const expected: Config = {
    production: false,
    port: 8000,
    host: '0.0.0.0',
    database: { kind: 'pglite', dataDir: './.data' },
    betterAuthSecret: DEVELOPMENT_SECRET,
    usingDevelopmentSecret: true,
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
  }
  assert.deepEqual(config, expected)
  assert.ok(Object.isFrozen(config))
})

void test("the development secret is the plan's fixed value", () => {
  assert.equal(DEVELOPMENT_SECRET, 'zF4Gr5uYTUtVZVcyXGLFaTyskJhewCl5')
})

void test('empty and blank variables count as unset', () => {
  const blank = {
    PORT: '',
    HOST: ' ',
    DATABASE_URL: '',
    JWT_JWKS_URL: '',
    JWT_ISSUER: ' ',
    JWT_AUDIENCE: '',
    LOG_LEVEL: '',
    CORS_ORIGINS: '',
  }
  const config = loadConfig(blank)
  assert.equal(config.port, 8000)
  assert.equal(config.host, '0.0.0.0')
  assert.deepEqual(config.database, { kind: 'pglite', dataDir: './.data' })
  assert.equal(config.jwksUrl, null)
  assert.equal(config.issuer, null)
  assert.deepEqual(config.audiences, [])
  assert.equal(config.logLevel, 'info')
  assert.deepEqual(config.corsOrigins, ['http://localhost:3000'])
})

void test('every variable is read', () => {
  const config = loadConfig({
    PORT: '9001',
    HOST: '127.0.0.1',
    DATABASE_URL: 'postgres://tasks:pw@db.internal:5433/tasks',
    BETTER_AUTH_SECRET: secretOf(40),
    JWT_JWKS_URL: 'https://auth.example.com/api/auth/jwks',
    JWT_ISSUER: 'https://auth.example.com',
    JWT_AUDIENCE: 'https://app.example.com',
    JWT_CLOCK_TOLERANCE: '5',
    CORS_ORIGINS: 'https://app.example.com',
    LOG_LEVEL: 'WARN',
    DATABASE_POOL_MAX: '3',
    DATABASE_STATEMENT_TIMEOUT_MS: '1500',
    DATABASE_CONNECT_TIMEOUT_MS: '2500',
    SHUTDOWN_TIMEOUT_MS: '0',
    HTTP_HEADERS_TIMEOUT_MS: '2000',
    HTTP_REQUEST_TIMEOUT_MS: '4000',
    HTTP_KEEP_ALIVE_TIMEOUT_MS: '6000',
    HTTP_MAX_PIPELINED_REQUESTS: '4',
    HTTP_SEND_TIMEOUT_MS: '8000',
    DATABASE_PREPARED_STATEMENTS: 'false',
    MAX_TASKS_PER_USER: '50',
    DATABASE_MAX_IN_FLIGHT_PER_USER: '2',
    DATABASE_PER_USER_WAIT_MS: '250',
    npm_lifecycle_event: 'start',
  })
  assert.deepEqual(
    { ...config, jwksUrl: config.jwksUrl?.href },
    {
      production: false,
      port: 9001,
      host: '127.0.0.1',
      database: { kind: 'postgres', url: 'postgres://tasks:pw@db.internal:5433/tasks' },
      betterAuthSecret: secretOf(40),
      usingDevelopmentSecret: false,
      jwksUrl: 'https://auth.example.com/api/auth/jwks',
      issuer: 'https://auth.example.com',
      audiences: ['https://app.example.com'],
      clockToleranceS: 5,
      corsOrigins: ['https://app.example.com'],
      logLevel: 'warn',
      poolMax: 3,
      statementTimeoutMs: 1500,
      connectTimeoutMs: 2500,
      preparedStatements: false,
      maxTasksPerUser: 50,
      maxInFlightPerUser: 2,
      perUserWaitMs: 250,
      shutdownTimeoutMs: 0,
      startedByNpm: true,
      headersTimeoutMs: 2000,
      requestTimeoutMs: 4000,
      keepAliveTimeoutMs: 6000,
      maxPipelinedRequests: 4,
      sendTimeoutMs: 8000,
    },
  )
})

void test('DATABASE_URL: memory:// is embedded in memory; postgres:// and postgresql:// are a server, sslmode kept', () => {
  assert.deepEqual(loadConfig({ DATABASE_URL: 'memory://' }).database, { kind: 'pglite-memory' })
  for (const url of [
    'postgres://postgres@127.0.0.1:5432/postgres',
    'postgresql://user:secret@ep-cool-name-123456.eu-central-1.aws.neon.tech/neondb?sslmode=require',
    'postgresql://localhost/tasks?sslmode=disable',
  ]) {
    assert.deepEqual(loadConfig({ DATABASE_URL: url }).database, { kind: 'postgres', url }, url)
  }
  for (const url of ['mysql://x', 'http://localhost:5432/db', 'postgres', 'sqlite://tasks.db', 'memory:']) {
    const error = configErrorOf({ DATABASE_URL: url })
    assert.equal(problemsAbout(error, 'DATABASE_URL').length, 1, url)
  }
})

void test('JWT_AUDIENCE is a comma-separated list: blanks and surrounding spaces dropped', () => {
  assert.deepEqual(loadConfig({ JWT_AUDIENCE: 'https://app.example.com' }).audiences, ['https://app.example.com'])
  assert.deepEqual(
    loadConfig({ JWT_AUDIENCE: ' https://a.example.com , tasks-api,,https://b.example.com ,' }).audiences,
    ['https://a.example.com', 'tasks-api', 'https://b.example.com'],
  )
  assert.deepEqual(loadConfig({}).audiences, [])
})

void test('CORS_ORIGINS is a comma-separated list of exact origins; a path, "*" or "null" is refused', () => {
  assert.deepEqual(loadConfig({ CORS_ORIGINS: 'http://localhost:3000, https://app.example.com' }).corsOrigins, [
    'http://localhost:3000',
    'https://app.example.com',
  ])
  for (const bad of [
    '*',
    'null',
    'localhost:3000',
    'https://app.example.com/',
    'https://app.example.com/app',
    'not-an-origin',
  ]) {
    const error = configErrorOf({ CORS_ORIGINS: `http://localhost:3000,${bad}` })
    assert.equal(problemsAbout(error, 'CORS_ORIGINS').length, 1, bad)
  }
})

void test('JWT_JWKS_URL must be an http(s) URL', () => {
  assert.equal(
    loadConfig({ JWT_JWKS_URL: 'http://localhost:3000/api/auth/jwks' }).jwksUrl?.href,
    'http://localhost:3000/api/auth/jwks',
  )
  for (const bad of ['notaurl', 'ftp://example.com/jwks', 'file:///etc/passwd', '/api/auth/jwks']) {
    assert.equal(problemsAbout(configErrorOf({ JWT_JWKS_URL: bad }), 'JWT_JWKS_URL').length, 1, bad)
  }
})

void test('numbers must be plain integers within their bounds', () => {
  const bad: [string, string][] = [
    ['PORT', 'abc'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['PORT', '1e3'],
    ['PORT', '0x50'],
    ['DATABASE_POOL_MAX', '0'],
    ['JWT_CLOCK_TOLERANCE', '-5'],
    ['DATABASE_STATEMENT_TIMEOUT_MS', '0'],
    ['DATABASE_CONNECT_TIMEOUT_MS', 'soon'],
    ['SHUTDOWN_TIMEOUT_MS', 'Infinity'],
    ['HTTP_HEADERS_TIMEOUT_MS', '0'],
    ['HTTP_REQUEST_TIMEOUT_MS', '1.5'],
    ['HTTP_KEEP_ALIVE_TIMEOUT_MS', 'forever'],
    ['HTTP_MAX_PIPELINED_REQUESTS', '0'],
    ['HTTP_SEND_TIMEOUT_MS', '-1'],
    ['DATABASE_PREPARED_STATEMENTS', 'yes'],
  ]
  for (const [name, value] of bad) {
    assert.equal(problemsAbout(configErrorOf({ [name]: value }), name).length, 1, `${name}=${value}`)
  }
  assert.equal(loadConfig({ PORT: '0' }).port, 0, 'port 0: any free port')
  const headersPastRequest = configErrorOf({ HTTP_HEADERS_TIMEOUT_MS: '5000', HTTP_REQUEST_TIMEOUT_MS: '4000' })
  assert.equal(
    problemsAbout(headersPastRequest, 'HTTP_HEADERS_TIMEOUT_MS').length,
    1,
    'the headers limit cannot exceed the request limit',
  )
  assert.equal(loadConfig({ PORT: ' 8080 ' }).port, 8080)
})

void test('LOG_LEVEL is one of pino levels, in any case', () => {
  assert.equal(loadConfig({ LOG_LEVEL: 'Debug' }).logLevel, 'debug')
  assert.equal(loadConfig({ LOG_LEVEL: 'silent' }).logLevel, 'silent')
  assert.equal(problemsAbout(configErrorOf({ LOG_LEVEL: 'loud' }), 'LOG_LEVEL').length, 1)
})

void test('outside production the development secret and short secrets are accepted, and flagged', () => {
  assert.equal(loadConfig({}).usingDevelopmentSecret, true)
  assert.equal(loadConfig({ BETTER_AUTH_SECRET: DEVELOPMENT_SECRET }).usingDevelopmentSecret, true)
  const short = loadConfig({ BETTER_AUTH_SECRET: 'short' })
  assert.deepEqual([short.betterAuthSecret, short.usingDevelopmentSecret], ['short', false])
  assert.equal(loadConfig({ NODE_ENV: 'development' }).production, false)
  // An empty BETTER_AUTH_SECRET (an uncommented line of .env.example) counts as unset, like every variable.
  assert.equal(loadConfig({ BETTER_AUTH_SECRET: '' }).usingDevelopmentSecret, true)
})

void test('NODE_ENV=production refuses the development secret, unset or given, and a secret shorter than 32 characters', () => {
  const envs: Record<string, string>[] = [
    { NODE_ENV: 'production' },
    { NODE_ENV: 'production', BETTER_AUTH_SECRET: DEVELOPMENT_SECRET },
    { NODE_ENV: 'production', BETTER_AUTH_SECRET: '' },
    { NODE_ENV: 'production', BETTER_AUTH_SECRET: 'short' },
    { NODE_ENV: 'production', BETTER_AUTH_SECRET: secretOf(31) },
    // NODE_ENV is compared without regard to case: "Production" must not slip through with the public secret.
    { NODE_ENV: 'Production' },
    { NODE_ENV: ' PRODUCTION ', BETTER_AUTH_SECRET: 'short' },
  ]
  for (const env of envs) {
    const error = configErrorOf(env)
    assert.equal(error.problems.length, 1, JSON.stringify(error.problems))
    assert.match(error.problems[0] ?? '', /^BETTER_AUTH_SECRET /)
    assert.match(error.message, /BETTER_AUTH_SECRET/)
    assert.ok(
      !error.message.includes(env.BETTER_AUTH_SECRET || DEVELOPMENT_SECRET),
      'the message never shows the secret',
    )
  }
  const config = loadConfig({ NODE_ENV: 'production', BETTER_AUTH_SECRET: secretOf(32) })
  assert.deepEqual(
    [config.production, config.betterAuthSecret, config.usingDevelopmentSecret],
    [true, secretOf(32), false],
  )
})

void test('JWT_JWKS_URL without BETTER_AUTH_SECRET turns HS256 off, and needs no secret in production', () => {
  const jwks = 'https://auth.example.com/api/auth/jwks'
  for (const env of [{ JWT_JWKS_URL: jwks }, { JWT_JWKS_URL: jwks, BETTER_AUTH_SECRET: '' }]) {
    const config = loadConfig(env)
    assert.deepEqual([config.betterAuthSecret, config.usingDevelopmentSecret], [null, false])
  }
  const production = loadConfig({ NODE_ENV: 'production', JWT_JWKS_URL: jwks })
  assert.deepEqual([production.betterAuthSecret, production.jwksUrl?.href], [null, jwks])
  // With the secret set, HS256 is on with it, and the production rules for it still hold.
  assert.equal(loadConfig({ JWT_JWKS_URL: jwks, BETTER_AUTH_SECRET: secretOf(40) }).betterAuthSecret, secretOf(40))
  const error = configErrorOf({ NODE_ENV: 'production', JWT_JWKS_URL: jwks, BETTER_AUTH_SECRET: DEVELOPMENT_SECRET })
  assert.deepEqual(error.problems.length, 1)
  assert.match(error.problems[0] ?? '', /^BETTER_AUTH_SECRET /)
})

void test('JWT_ISSUER and JWT_AUDIENCE: a value Better Auth would not sign is a start warning naming its rule', () => {
  const warningsOf = (env: Record<string, string>): string[] => tokenSettingWarnings(loadConfig(env))
  assert.deepEqual(warningsOf({ JWT_ISSUER: 'http://localhost:3000', JWT_AUDIENCE: 'https://app.example.com' }), [])
  assert.deepEqual(warningsOf({ JWT_AUDIENCE: 'better-auth:session-cache' }), [])
  assert.deepEqual(warningsOf({ JWT_ISSUER: 'http://localhost:3000/' }), [
    'JWT_ISSUER "http://localhost:3000/" is not an origin: Better Auth\'s `iss` is the origin of its base URL: no ' +
      'path, no trailing slash; tokens with iss=http://localhost:3000 will be refused',
  ])
  assert.deepEqual(warningsOf({ JWT_ISSUER: 'https://app.example.com/api/auth' }), [
    'JWT_ISSUER "https://app.example.com/api/auth" is not an origin: Better Auth\'s `iss` is the origin of its base ' +
      'URL: no path, no trailing slash; tokens with iss=https://app.example.com will be refused',
  ])
  assert.deepEqual(warningsOf({ JWT_ISSUER: 'my-app' }), [
    'JWT_ISSUER "my-app" is not an http(s) URL: Better Auth\'s `iss` is the origin of its base URL (like ' +
      'https://auth.example.com) unless its jwt() plugin sets jwt.issuer',
  ])
  const audiences = warningsOf({ JWT_AUDIENCE: 'http://localhost:3000, http://localhost:3000/,tasks' })
  assert.equal(audiences.length, 2, JSON.stringify(audiences))
  assert.match(audiences[0] ?? '', /^JWT_AUDIENCE entry "http:\/\/localhost:3000\/" is not an origin: .* aud=/)
  assert.match(audiences[1] ?? '', /^JWT_AUDIENCE entry "tasks" is not an http\(s\) URL: .* jwt\.audience$/)
  // Warnings, not errors: the start goes on.
  assert.doesNotThrow(() => loadConfig({ JWT_ISSUER: 'http://localhost:3000/', JWT_AUDIENCE: 'tasks' }))
})

void test('the start log names the accepted algorithms, says why HS256 is off, and carries the warnings', () => {
  const logged = (env: Record<string, string>): Record<string, unknown>[] => {
    const { logStream, logs } = captureLogs()
    logTokenSettings(pino(logStream), loadConfig(env))
    return parseLogLines(logs).map(({ level, msg, accepted_algorithms, hs256 }) => ({
      level,
      msg,
      ...(accepted_algorithms === undefined ? {} : { accepted_algorithms }),
      ...(hs256 === undefined ? {} : { hs256 }),
    }))
  }
  const jwks = 'https://auth.example.com/api/auth/jwks'
  const asymmetric = [
    'EdDSA',
    'Ed25519',
    'ES256',
    'ES384',
    'ES512',
    'RS256',
    'RS384',
    'RS512',
    'PS256',
    'PS384',
    'PS512',
  ]
  const jwksOnly = logged({ JWT_JWKS_URL: jwks, JWT_ISSUER: 'https://auth.example.com/' })
  assert.deepEqual(jwksOnly.slice(0, 1), [
    {
      level: 30,
      msg: 'accepted token algorithms',
      accepted_algorithms: asymmetric,
      hs256: 'off: JWT_JWKS_URL is set and BETTER_AUTH_SECRET is not',
    },
  ])
  assert.equal(jwksOnly.length, 2)
  assert.deepEqual(
    [jwksOnly[1]?.level, String(jwksOnly[1]?.msg).slice(0, 40)],
    [40, 'JWT_ISSUER "https://auth.example.com/" i'],
  )
  assert.deepEqual(logged({ JWT_JWKS_URL: jwks, BETTER_AUTH_SECRET: secretOf(32) }), [
    { level: 30, msg: 'accepted token algorithms', accepted_algorithms: ['HS256', ...asymmetric] },
  ])
  const development = logged({})
  assert.deepEqual(development[0], { level: 30, msg: 'accepted token algorithms', accepted_algorithms: ['HS256'] })
  assert.match(String(development[1]?.msg), /^BETTER_AUTH_SECRET is the public development value/)
  assert.equal(development.length, 2)
})

void test('several bad variables give one ConfigError naming every one of them', () => {
  const bad = SEVERAL_BAD_VARIABLES
  const error = configErrorOf({ ...bad, NODE_ENV: 'production' })
  assert.equal(error.name, 'ConfigError')
  assert.ok(error instanceof Error)
  for (const name of [...Object.keys(bad), 'BETTER_AUTH_SECRET']) {
    assert.equal(problemsAbout(error, name).length, 1, `${name}: ${JSON.stringify(error.problems)}`)
    assert.ok(error.message.includes(name), name)
  }
  assert.equal(error.problems.length, 7)
})

void test('the per-user share follows DATABASE_POOL_MAX unless set, and MAX_TASKS_PER_USER=0 means no cap', () => {
  assert.equal(loadConfig({ DATABASE_POOL_MAX: '1' }).maxInFlightPerUser, 1)
  assert.equal(loadConfig({ DATABASE_POOL_MAX: '40' }).maxInFlightPerUser, 20)
  assert.equal(loadConfig({ DATABASE_POOL_MAX: '40', DATABASE_MAX_IN_FLIGHT_PER_USER: '3' }).maxInFlightPerUser, 3)
  assert.equal(loadConfig({ MAX_TASKS_PER_USER: '0' }).maxTasksPerUser, 0)
  assert.equal(loadConfig({ DATABASE_PER_USER_WAIT_MS: '0' }).perUserWaitMs, 0)
  const error = configErrorOf({ MAX_TASKS_PER_USER: '-1', DATABASE_MAX_IN_FLIGHT_PER_USER: '0' })
  assert.equal(problemsAbout(error, 'MAX_TASKS_PER_USER').length, 1)
  assert.equal(problemsAbout(error, 'DATABASE_MAX_IN_FLIGHT_PER_USER').length, 1)
})
