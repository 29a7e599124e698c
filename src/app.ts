// buildApp: the whole HTTP service over a given configuration and database, never listening (tests inject).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { authenticate } from './auth/authenticate.ts'
import { createTokenVerifier, type TokenVerifier } from './auth/token-verifier.ts'
import type { Config } from './config.ts'
import type { Database } from './db/database.ts'
import { healthRoutes } from './health/health-routes.ts'
import { answerFrameworkError, installErrorHandlers, serviceUnavailable } from './http/errors.ts'
import { installOpenApi } from './http/openapi.ts'
import {
  BODY_LIMIT_BYTES,
  installBodyParsing,
  installSecurity,
  installValidators,
  requestIdOf,
  serializeRequestForLog,
} from './http/security.ts'
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
}

/** Builds the Fastify instance with every route registered and ready; the caller listens or injects, and closes it. */
export async function buildApp({ config, database, logStream, tokenVerifier, now }: AppDependencies): Promise<FastifyInstance> {
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
    // A client gets this long to send a whole request; idle keep-alive connections close after 72 s.
    requestTimeout: 30_000,
    // Requests that arrive while closing get our own 503 (below), in the {"detail": …} shape.
    return503OnClosing: false,
    // Errors raised before routing (an undecodable URL, an over-long path segment) get {"detail": …} too.
    frameworkErrors: answerFrameworkError,
  }).withTypeProvider<TypeBoxTypeProvider>()

  installErrorHandlers(app)
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return
    reply.header('connection', 'close')
    throw serviceUnavailable()
  })
  installValidators(app)
  installBodyParsing(app)
  await installSecurity(app, config)
  await installOpenApi(app)

  const verifier =
    tokenVerifier ??
    createTokenVerifier(config, {
      onJwksFetchError: (error) => app.log.warn({ cause: error instanceof Error ? error.message : String(error) }, 'JWKS fetch failed'),
    })
  const taskStore = createTaskStore(database.db, {
    ...(now === undefined ? {} : { now }),
    // A repeat of an in-flight Idempotency-Key waits at most half the statement timeout, then gets 409 (not 503).
    inFlightWaitMs: config.statementTimeoutMs / 2,
  })

  await app.register(healthRoutes, { ping: () => database.ping() })
  await app.register(
    async (api) => {
      authenticate(api, verifier)
      await api.register(taskRoutes, { prefix: '/tasks', taskStore })
    },
    { prefix: '/api' },
  )
  await app.ready()
  return app
}
