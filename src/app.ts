// buildApp: the whole HTTP service over a given configuration and database, never listening (tests inject).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { authenticate } from './auth/authenticate.ts'
import { createTokenVerifier, type TokenVerifier } from './auth/token-verifier.ts'
import type { Config } from './config.ts'
import type { Database } from './db/database.ts'
import { healthRoutes } from './health/health-routes.ts'
import { connectionLimitedServerFactory } from './http/connection-limits.ts'
import { answerFrameworkError, clientErrorAnswerer, installErrorHandlers, serviceUnavailable } from './http/errors.ts'
import { installOpenApi } from './http/openapi.ts'
import { installRequestFraming, refuseDeclaredOversizedBodies } from './http/request-framing.ts'
import {
  applySecurityHeaders,
  BODY_LIMIT_BYTES,
  installBodyParsing,
  installSecurity,
  installValidators,
  requestIdOf,
  SECURITY_HEADER_LINES,
  serializeRequestForLog,
} from './http/security.ts'
import { installUserFairness } from './http/user-fairness.ts'
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

/** How often Node checks the header and request time limits: they are enforced within this much of their value. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000

/** Builds the Fastify instance with every route registered and ready; the caller listens or injects, and closes it. */
export async function buildApp({
  config,
  database,
  logStream,
  tokenVerifier,
  now,
  databaseReady = () => true,
}: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      // Fastify's request serializer logs no headers; this keeps it so if anyone adds them.
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
      serializers: { req: serializeRequestForLog },
      ...(logStream === undefined ? {} : { stream: logStream }),
    },
    genReqId: requestIdOf,
    requestIdHeader: false,
    bodyLimit: BODY_LIMIT_BYTES,
    // Slow clients: the header section, the whole request and an idle kept-alive connection each have a limit
    // (HTTP_*_TIMEOUT_MS), so a client trickling bytes cannot hold a connection; past one, 408 and the connection
    // closes.
    http: {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_INTERVAL_MS, config.headersTimeoutMs),
    },
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Node's server with what it leaves to the application: each connection's requests one at a time, at most
    // HTTP_MAX_PIPELINED_REQUESTS deep, sent within HTTP_SEND_TIMEOUT_MS, none after a closing answer (RFC 9112 §9.6).
    serverFactory: connectionLimitedServerFactory(config),
    // While SIGTERM drains, a request that still arrives on an open connection is served (with Connection: close),
    // not refused: the database is still there, and Fastify's own 503 would not have API.md's body.
    return503OnClosing: false,
    // Errors of the HTTP parser (431, 408, 400) get {"detail": …} like every other error.
    clientErrorHandler: clientErrorAnswerer(SECURITY_HEADER_LINES),
    // Errors raised before routing (an undecodable URL, an over-long path segment) get {"detail": …} too.
    frameworkErrors: (error, request, reply) => {
      // No hook runs before these answers: the request id and the security headers are set here (API.md: every
      // response).
      applySecurityHeaders(request, reply)
      answerFrameworkError(error, request, reply)
    },
  }).withTypeProvider<TypeBoxTypeProvider>()

  // A response finished while the app closes ends its connection: otherwise a request that was routed before SIGTERM
  // leaves a kept-alive connection that holds the drain open until HTTP_KEEP_ALIVE_TIMEOUT_MS (Node closes idle
  // connections once, when closing starts; Fastify sets Connection: close only on requests routed after it).
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })

  installErrorHandlers(app)
  installValidators(app)
  installBodyParsing(app)
  // Before CORS: a request without Host is refused first. A declared body over the limit is refused after CORS (so a
  // browser can read the 413) and before authentication (so no token makes the server read it).
  installRequestFraming(app)
  await installSecurity(app, config)
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

  const migrationsPending = {
    name: 'MigrationsPending',
    message: 'the database schema is not migrated yet: the database has been unreachable since start',
  }
  await app.register(healthRoutes, {
    ping: async () => {
      if (!databaseReady()) throw new Error(migrationsPending.message)
      await database.ping()
    },
  })
  await app.register(
    async (api) => {
      authenticate(api, verifier)
      // After authentication, so a request without a valid token is a 401 whatever the database's state.
      api.addHook('onRequest', (request, _reply, done) => {
        if (databaseReady()) return done()
        request.log.warn({ cause: migrationsPending }, 'database unavailable: answered 503')
        done(serviceUnavailable())
      })
      // One user's share of the database in this process (README "Failure behaviour": fairness).
      installUserFairness(api, { maxInFlight: config.maxInFlightPerUser, maxWaitMs: config.perUserWaitMs })
      await api.register(taskRoutes, { prefix: '/tasks', taskStore, idempotency })
    },
    { prefix: '/api' },
  )
  await app.ready()
  return app
}
