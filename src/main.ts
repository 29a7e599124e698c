// Process entry: loadConfig → openDatabase → applyMigrations → buildApp → listen; SIGTERM, SIGINT and SIGHUP drain
// and exit. A failure at start (a locked, read-only or unusable data directory, a port in use) is one line on stderr
// and exit 1, never a stack trace.
// A PostgreSQL server that cannot be reached at start does not stop the start: the process listens (/health 200,
// /ready and /api 503) and applies the migrations in the background as soon as the server answers.
import { existsSync } from 'node:fs'
import { buildApp } from './app.ts'
import { logTokenSettings } from './auth/token-settings.ts'
import { loadConfigOrExit } from './config.ts'
import { DataDirLockedError } from './db/data-dir-lock.ts'
import { openDatabase, type Database } from './db/database.ts'
import { applyMigrations, applyMigrationsWhenReachable } from './db/migrate.ts'
import { isDatabaseUnavailable } from './db/pg-errors.ts'

if (existsSync('.env')) process.loadEnvFile('.env')

/** Ends the process with a one-paragraph message on stderr (no stack trace): for mistakes of configuration or setup. */
function exitWith(message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

const config = loadConfigOrExit(process.env)
// Idle pool errors (a server restart, Neon suspending) are logged, never thrown; the app's logger once it exists.
let logIdleError = (error: Error): void =>
  void process.stderr.write(`idle database connection failed: ${error.message}\n`)

/** An error's own words on one line: Node's system errors carry their code; PGlite's file errors only an errno. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const errno = (error as { errno?: unknown }).errno
  const text = error.message === '' && typeof errno === 'number' ? `${error.name} (errno ${errno})` : error.message
  return text.replace(/\s*\n\s*/g, ' ')
}

async function openDatabaseOrExit(): Promise<Database> {
  const dataDir = config.database.kind === 'pglite' ? config.database.dataDir : 'memory'
  try {
    return await openDatabase(config.database, {
      poolMax: config.poolMax,
      statementTimeoutMs: config.statementTimeoutMs,
      connectTimeoutMs: config.connectTimeoutMs,
      onIdleError: (error) => logIdleError(error),
      onEmbeddedEnded: (error) =>
        exitWith(
          `The embedded database (${dataDir}) stopped and cannot continue in this process: ${describe(error)}. ` +
            'What it acknowledged is on disk and is recovered at the next start: ' +
            'fix the cause (on a full disk: free space) and start again.',
        ),
    })
  } catch (error) {
    if (error instanceof DataDirLockedError) exitWith(error.message)
    // A PostgreSQL server is not contacted here; anything else is the embedded database's directory.
    exitWith(`Cannot open the embedded database directory ${dataDir}: ${describe(error)}`)
  }
}
const database = await openDatabaseOrExit()

// The embedded database is in this process: a failing migration there is a bug, so it stops the start.
let migrated = database.kind === 'pglite'
if (database.kind === 'pglite') await applyMigrations(database)

const app = await buildApp({ config, database, databaseReady: () => migrated })
logIdleError = (error) => app.log.warn({ cause: error.message }, 'idle database connection failed')

logTokenSettings(app.log, config)
if (config.database.kind !== 'postgres') {
  app.log.info(
    { database: config.database.kind === 'pglite' ? config.database.dataDir : 'memory' },
    'using embedded PostgreSQL (PGlite)',
  )
}

const stopMigrating = new AbortController()
if (!migrated) {
  applyMigrationsWhenReachable(database, isDatabaseUnavailable, {
    signal: stopMigrating.signal,
    onRetry: (error, retryInMs) =>
      app.log.warn(
        { cause: error instanceof Error ? error.message : String(error), retryInMs },
        'database unreachable: migrations not applied yet, /ready and /api answer 503 until they are',
      ),
  }).then(
    () => {
      migrated = true
      app.log.info('database migrations applied')
    },
    (error: unknown) => {
      if (stopMigrating.signal.aborted) return
      // Not unreachability: refused credentials, a missing database, a failing migration. Restarting will not help.
      app.log.fatal({ cause: error instanceof Error ? error.message : String(error) }, 'database migrations failed')
      process.exit(1)
    },
  )
}

let shuttingDown = false
async function shutDown(signal: string): Promise<void> {
  if (shuttingDown) return
  shuttingDown = true
  app.log.info({ signal }, 'shutting down: finishing in-flight requests')
  const timer = setTimeout(() => {
    app.log.error({ timeoutMs: config.shutdownTimeoutMs }, 'in-flight requests did not finish in time')
    process.exit(1)
  }, config.shutdownTimeoutMs)
  stopMigrating.abort()
  await app.close()
  await database.close()
  clearTimeout(timer)
  app.log.info('stopped')
  process.exit(0)
}
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void shutDown(signal))

// Run by npm (`npm start`, exec'd by its script), the parent is npm, which forwards SIGTERM and SIGINT but dies of
// SIGHUP, or of SIGKILL, without a word to its child: once the parent is gone, this process drains as on SIGTERM.
if (config.startedByNpm) {
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) void shutDown('parent npm exited')
  }, 1000).unref()
}

try {
  await app.listen({ port: config.port, host: config.host })
} catch (error) {
  await app.close()
  await database.close()
  const inUse = (error as NodeJS.ErrnoException).code === 'EADDRINUSE'
  const cause = inUse ? 'the port is already in use (EADDRINUSE)' : describe(error)
  exitWith(`Cannot listen on ${config.host}:${config.port}: ${cause}`)
}
