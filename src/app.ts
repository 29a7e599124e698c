// buildApp: the whole HTTP service over a given configuration and database, never listening (tests inject).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { authenticate } from './auth/authenticate.ts'
import { createTokenVerifier, type TokenVerifier } from './auth/token-verifier.ts'
import type { Config } from './config.ts'
import type { Database } from './db/database.ts'
import { healthRoutes } from './health/health-routes.ts'
import { answers } from './http/answers.ts'
import { installBodyParsing } from './http/body-parsing.ts'
import { closeConnectionsWhileClosing } from './http/draining.ts'
import { installErrorHandlers } from './http/error-handler.ts'
import { installOpenApi } from './http/openapi.ts'
import { installRequestFraming, refuseDeclaredOversizedBodies } from './http/request-framing.ts'
import { installSecurityHeaders } from './http/security-headers.ts'
import { serverOptions } from './http/server-options.ts'
import { installUserFairness } from './http/user-fairness.ts'
import { installValidators } from './http/validation.ts'
import { createIdempotencyStore } from './idempotency/idempotency-store.ts'
import { createTaskStore } from './tasks/task-store.ts'
import { taskRoutes } from './tasks/task-routes.ts'

/** What the app is built from. `logStream` receives the JSON log lines (tests capture them); default stdout. */
export interface AppDependencies {
  config: Readonly<Config>
  database: Database
  logStream?: DestinationStream
  /** A verifier to use instead of one made from `config` (tests inject one with a fake clock). */
  tokenVerifier?: TokenVerifier
  /** The clock of Idempotency-Key retention (tests move it past 24 hours); default the system clock. */
  now?: () => Date
  /**
   * False while the database schema is not migrated yet (the server was unreachable at start and migrations are
   * retried in the background): `/ready` and every authenticated `/api` request answer 503 until it is true.
   */
  databaseReady?: () => boolean
}

/** Why the database counts as unavailable while `databaseReady()` is false, as logged. */
const MIGRATIONS_PENDING = {
  name: 'MigrationsPending',
  message: 'the database schema is not migrated yet: the database has been unreachable since start',
}

/** Answers every request of `api` with 503 + Retry-After until `databaseReady()` is true. */
function refuseWhileMigrationsPending(api: FastifyInstance, databaseReady: () => boolean): void {
  api.addHook('onRequest', (request, _reply, done) => {
    if (databaseReady()) return done()
    request.log.warn({ cause: MIGRATIONS_PENDING }, 'database unavailable: answered 503')
    done(answers.serviceUnavailable)
  })
}

/** Builds the Fastify instance with every route registered and ready; the caller listens or injects, and closes it. */
export async function buildApp({
  config,
  database,
  logStream,
  tokenVerifier,
  now,
  databaseReady = () => true,
}: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify(serverOptions(config, logStream)).withTypeProvider<TypeBoxTypeProvider>()

  closeConnectionsWhileClosing(app)
  installErrorHandlers(app)
  installValidators(app)
  installBodyParsing(app)
  // Before CORS: a request without Host is refused first. A declared body over the limit is refused after CORS (so a
  // browser can read the 413) and before authentication (so no token makes the server read it).
  installRequestFraming(app)
  await installSecurityHeaders(app, config)
  refuseDeclaredOversizedBodies(app)
  await installOpenApi(app)

  const verifier =
    tokenVerifier ??
    createTokenVerifier(config, {
      onJwksFetchError: (error) =>
        app.log.warn({ cause: error instanceof Error ? error.message : String(error) }, 'JWKS fetch failed'),
    })
  const taskStore = createTaskStore(database.db, {
    preparedStatements: config.preparedStatements,
    maxTasksPerUser: config.maxTasksPerUser,
  })
  const idempotency = createIdempotencyStore(database.db, {
    ...(now === undefined ? {} : { now }),
    // A repeat of an in-flight Idempotency-Key waits at most half the statement timeout, then gets 409 (not 503).
    inFlightWaitMs: config.statementTimeoutMs / 2,
  })

  await app.register(healthRoutes, {
    ping: async () => {
      if (!databaseReady()) throw new Error(MIGRATIONS_PENDING.message)
      await database.ping()
    },
  })
  await app.register(
    async (api) => {
      authenticate(api, verifier)
      // After authentication, so a request without a valid token is a 401 whatever the database's state.
      refuseWhileMigrationsPending(api, databaseReady)
      // One user's share of the database in this process (docs/operations.md "Failure behaviour": fairness).
      installUserFairness(api, { maxInFlight: config.maxInFlightPerUser, maxWaitMs: config.perUserWaitMs })
      await api.register(taskRoutes, { prefix: '/tasks', taskStore, idempotency })
    },
    { prefix: '/api' },
  )
  await app.ready()
  return app
}
