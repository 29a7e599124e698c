// The only place that reads the environment: every setting of docs/contract.md's configuration table, checked at once.

/** docs/contract.md's development value of `BETTER_AUTH_SECRET`: public, so refused when `NODE_ENV=production`. */
export const DEVELOPMENT_SECRET = 'zF4Gr5uYTUtVZVcyXGLFaTyskJhewCl5'

/** Where the tasks live: embedded PGlite (a directory or memory) or a PostgreSQL server. */
export type DatabaseTarget =
  { kind: 'pglite'; dataDir: string } | { kind: 'pglite-memory' } | { kind: 'postgres'; url: string }

/** The service's settings, as docs/contract.md's configuration table defines them. */
export interface Config {
  /** `NODE_ENV === 'production'`: stricter secret rules. */
  production: boolean
  /** TCP port to listen on (`PORT`, default 8000). */
  port: number
  /** Address to listen on (`HOST`, default `0.0.0.0`). */
  host: string
  /** `DATABASE_URL`: unset → PGlite in `./.data`, `memory://` → PGlite in memory, `postgres(ql)://` → server. */
  database: DatabaseTarget
  /**
   * HS256 shared secret (`BETTER_AUTH_SECRET`), as its raw UTF-8 bytes' source string; null turns HS256 off: when
   * `JWT_JWKS_URL` is set and the secret is not, so the public development value never opens a JWKS deployment.
   */
  betterAuthSecret: string | null
  /** True when `betterAuthSecret` is the public development value (a warning is logged at start). */
  usingDevelopmentSecret: boolean
  /** `JWT_JWKS_URL`: where asymmetric keys come from; null disables asymmetric tokens. */
  jwksUrl: URL | null
  /** `JWT_ISSUER`: the required `iss`, or null. */
  issuer: string | null
  /** `JWT_AUDIENCE` split on commas: any one matches; empty when unset. */
  audiences: readonly string[]
  /** `JWT_CLOCK_TOLERANCE` in seconds (default 30): leeway for `exp`, `nbf`, `iat`. */
  clockToleranceS: number
  /** `CORS_ORIGINS` split on commas (default `http://localhost:3000`). */
  corsOrigins: readonly string[]
  /** `LOG_LEVEL` (default `info`). */
  logLevel: LogLevel
  /** `DATABASE_POOL_MAX` (default 10): connections per process to a PostgreSQL server. */
  poolMax: number
  /**
   * `DATABASE_STATEMENT_TIMEOUT_MS` (default 5000): per-statement limit; past it the statement is cancelled on the
   * server.
   */
  statementTimeoutMs: number
  /** `DATABASE_CONNECT_TIMEOUT_MS` (default 5000): limit on opening a connection. */
  connectTimeoutMs: number
  /**
   * `DATABASE_PREPARED_STATEMENTS` (default true): the routes' statements are named prepared statements, parsed and
   * planned once per connection. Set false behind a transaction-mode pooler that does not support them (PgBouncer
   * before 1.21, or with `max_prepared_statements = 0`); Neon's pooler supports them.
   */
  preparedStatements: boolean
  /** `MAX_TASKS_PER_USER` (default 10000, 0 = no cap): a create when the user already owns this many tasks is 409. */
  maxTasksPerUser: number
  /**
   * `DATABASE_MAX_IN_FLIGHT_PER_USER` (default half of `DATABASE_POOL_MAX`, at least 1): one user's `/api` requests
   * running at once in this process, so one user cannot take every pooled connection; the rest wait (see below).
   */
  maxInFlightPerUser: number
  /**
   * `DATABASE_PER_USER_WAIT_MS` (default 1000): how long a user's request over `maxInFlightPerUser` waits for one of
   * theirs to finish before it is refused with 429 and `Retry-After: 1` (0: refused at once).
   */
  perUserWaitMs: number
  /** `SHUTDOWN_TIMEOUT_MS` (default 10000): how long SIGTERM waits for in-flight requests. */
  shutdownTimeoutMs: number
  /** True when npm runs the process (`npm start`; npm sets `npm_lifecycle_event`): it stops when npm is gone. */
  startedByNpm: boolean
  /**
   * `HTTP_HEADERS_TIMEOUT_MS` (default 10000): a connection must deliver a request's whole header section within this.
   */
  headersTimeoutMs: number
  /** `HTTP_REQUEST_TIMEOUT_MS` (default 30000): a client must deliver a whole request, body included, within this. */
  requestTimeoutMs: number
  /** `HTTP_KEEP_ALIVE_TIMEOUT_MS` (default 72000): an idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number
  /**
   * `HTTP_MAX_PIPELINED_REQUESTS` (default 32): requests one connection may have sent and not yet been answered (the
   * one being served included); one more closes the connection. A connection's requests are served one at a time.
   */
  maxPipelinedRequests: number
  /**
   * `HTTP_SEND_TIMEOUT_MS` (default 30000): a reply must be written to the network in full within this of its first
   * byte.
   */
  sendTimeoutMs: number
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Thrown by `loadConfig` when any variable is bad; `problems` has one line per bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

/**
 * `loadConfig` for a process entry point: on a ConfigError, prints its message (no stack) and exits 1.
 */
export function loadConfigOrExit(env: Readonly<Record<string, string | undefined>>): Readonly<Config> {
  try {
    return loadConfig(env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`${error.message}\n`)
    process.exit(1)
  }
}

/**
 * Reads the configuration from an environment (normally `process.env`).
 * @throws ConfigError naming every bad variable at once.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): Readonly<Config> {
  const problems: string[] = []
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim()
    return value === undefined || value === '' ? undefined : value
  }
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name)
    if (raw === undefined) return fallback
    const value = Number(raw)
    if (!/^\d+$/.test(raw) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got "${raw}")`)
      return fallback
    }
    return value
  }
  const boolean = (name: string, fallback: boolean): boolean => {
    const raw = read(name)?.toLowerCase()
    if (raw === undefined) return fallback
    if (raw === 'true' || raw === '1') return true
    if (raw === 'false' || raw === '0') return false
    problems.push(`${name} must be true or false (got "${raw}")`)
    return fallback
  }
  const list = (name: string, fallback: string): string[] =>
    (read(name) ?? fallback)
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '')

  const production = read('NODE_ENV')?.toLowerCase() === 'production'

  let database: DatabaseTarget = { kind: 'pglite', dataDir: './.data' }
  const databaseUrl = read('DATABASE_URL')
  if (databaseUrl !== undefined) {
    if (databaseUrl === 'memory://') database = { kind: 'pglite-memory' }
    else if (/^postgres(ql)?:\/\//.test(databaseUrl) && URL.canParse(databaseUrl))
      database = { kind: 'postgres', url: databaseUrl }
    else problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL, or memory://')
  }

  let jwksUrl: URL | null = null
  const rawJwksUrl = read('JWT_JWKS_URL')
  if (rawJwksUrl !== undefined) {
    if (URL.canParse(rawJwksUrl) && ['http:', 'https:'].includes(new URL(rawJwksUrl).protocol))
      jwksUrl = new URL(rawJwksUrl)
    else problems.push(`JWT_JWKS_URL must be an http(s) URL (got "${rawJwksUrl}")`)
  }

  // An empty value counts as unset, as for every variable (an uncommented `BETTER_AUTH_SECRET=` in .env). Unset, HS256
  // uses the development value, unless a key set is configured: then HS256 is off (hs256-only-when-configured.md).
  const givenSecret = env.BETTER_AUTH_SECRET === '' ? undefined : env.BETTER_AUTH_SECRET
  const secret = givenSecret ?? (jwksUrl === null ? DEVELOPMENT_SECRET : null)
  if (production && secret === DEVELOPMENT_SECRET) {
    problems.push('BETTER_AUTH_SECRET must be set in production (the development value is public)')
  } else if (production && secret !== null && secret.length < 32) {
    problems.push('BETTER_AUTH_SECRET must be at least 32 characters in production')
  }

  const corsOrigins = list('CORS_ORIGINS', 'http://localhost:3000')
  for (const origin of corsOrigins) {
    if (!URL.canParse(origin) || new URL(origin).origin !== origin) {
      problems.push(`CORS_ORIGINS entries must be origins like https://app.example.com (got "${origin}")`)
    }
  }

  const logLevel = (read('LOG_LEVEL') ?? 'info').toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`)
  }

  const poolMax = integer('DATABASE_POOL_MAX', 10, 1, 1000)
  const config: Config = {
    production,
    port: integer('PORT', 8000, 0, 65535),
    host: read('HOST') ?? '0.0.0.0',
    database,
    betterAuthSecret: secret,
    usingDevelopmentSecret: secret === DEVELOPMENT_SECRET,
    jwksUrl,
    issuer: read('JWT_ISSUER') ?? null,
    audiences: list('JWT_AUDIENCE', ''),
    clockToleranceS: integer('JWT_CLOCK_TOLERANCE', 30, 0, 3600),
    corsOrigins,
    logLevel: logLevel as LogLevel,
    poolMax,
    statementTimeoutMs: integer('DATABASE_STATEMENT_TIMEOUT_MS', 5000, 1, 600_000),
    connectTimeoutMs: integer('DATABASE_CONNECT_TIMEOUT_MS', 5000, 1, 600_000),
    preparedStatements: boolean('DATABASE_PREPARED_STATEMENTS', true),
    maxTasksPerUser: integer('MAX_TASKS_PER_USER', 10_000, 0, 2_147_483_647),
    // Half the pool: a user flooding with requests leaves the other half of the connections to everyone else.
    maxInFlightPerUser: integer('DATABASE_MAX_IN_FLIGHT_PER_USER', Math.max(1, Math.floor(poolMax / 2)), 1, 1000),
    perUserWaitMs: integer('DATABASE_PER_USER_WAIT_MS', 1000, 0, 600_000),
    shutdownTimeoutMs: integer('SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    startedByNpm: env.npm_lifecycle_event !== undefined,
    headersTimeoutMs: integer('HTTP_HEADERS_TIMEOUT_MS', 10_000, 1, 600_000),
    requestTimeoutMs: integer('HTTP_REQUEST_TIMEOUT_MS', 30_000, 1, 600_000),
    // Above the 60 s idle timeout of common load balancers, so they never send on a connection being closed.
    keepAliveTimeoutMs: integer('HTTP_KEEP_ALIVE_TIMEOUT_MS', 72_000, 1, 600_000),
    maxPipelinedRequests: integer('HTTP_MAX_PIPELINED_REQUESTS', 32, 1, 10_000),
    sendTimeoutMs: integer('HTTP_SEND_TIMEOUT_MS', 30_000, 1, 600_000),
  }
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    problems.push(
      `HTTP_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}) must not exceed HTTP_REQUEST_TIMEOUT_MS (${config.requestTimeoutMs})`,
    )
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return Object.freeze(config)
}
