// Process entry: loadConfig → openDatabase → applyMigrations → buildApp → listen; SIGTERM drains and exits.
import { existsSync } from 'node:fs'
import { buildApp } from './app.ts'
import { loadConfigOrExit } from './config.ts'
import { openDatabase } from './db/database.ts'
import { applyMigrations } from './db/migrate.ts'

if (existsSync('.env')) process.loadEnvFile('.env')

const config = loadConfigOrExit(process.env)
// Idle pool errors (a server restart, Neon suspending) are logged, never thrown; the app's logger once it exists.
let logIdleError = (error: Error): void => void process.stderr.write(`idle database connection failed: ${error.message}\n`)

const database = await openDatabase(config.database, {
  poolMax: config.poolMax,
  statementTimeoutMs: config.statementTimeoutMs,
  connectTimeoutMs: config.connectTimeoutMs,
  onIdleError: (error) => logIdleError(error),
})
await applyMigrations(database)
const app = await buildApp({ config, database })
logIdleError = (error) => app.log.warn({ cause: error.message }, 'idle database connection failed')

if (config.usingDevelopmentSecret) {
  app.log.warn(
    'BETTER_AUTH_SECRET is the public development value: set your Better Auth secret before real use (refused with NODE_ENV=production)',
  )
}
if (config.database.kind !== 'postgres') {
  app.log.info({ database: config.database.kind === 'pglite' ? config.database.dataDir : 'memory' }, 'using embedded PostgreSQL (PGlite)')
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
  await app.close()
  await database.close()
  clearTimeout(timer)
  app.log.info('stopped')
  process.exit(0)
}
process.on('SIGTERM', () => void shutDown('SIGTERM'))
process.on('SIGINT', () => void shutDown('SIGINT'))

await app.listen({ port: config.port, host: config.host })
