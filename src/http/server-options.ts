// The options Fastify is constructed with: logging, request ids, limits on bodies and slow clients, the server, and
// the answers to errors raised before any hook runs.
import type { Server } from 'node:http'
import type { FastifyHttpOptions } from 'fastify'
import type { DestinationStream } from 'pino'
import type { Config } from '../config.ts'
import { BODY_LIMIT_BYTES } from './body-parsing.ts'
import { connectionLimitedServerFactory } from './connection-limits.ts'
import { answerFrameworkError } from './error-handler.ts'
import { clientErrorAnswerer } from './raw-answers.ts'
import { requestIdOf, serializeRequestForLog } from './request-log.ts'
import { applySecurityHeaders, SECURITY_HEADER_LINES } from './security-headers.ts'

/** How often Node checks the header and request time limits: they are enforced within this much of their value. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000

/** Fastify's constructor options for `config`; log lines go to `logStream` (default stdout). */
export function serverOptions(config: Readonly<Config>, logStream?: DestinationStream): FastifyHttpOptions<Server> {
  return {
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
    // not refused: the database is still there, and Fastify's own 503 would not have docs/contract.md's body.
    return503OnClosing: false,
    // Errors of the HTTP parser (431, 408, 400) get {"detail": …} like every other error.
    clientErrorHandler: clientErrorAnswerer(SECURITY_HEADER_LINES),
    // Errors raised before routing (an undecodable URL, an over-long path segment) get {"detail": …} too.
    frameworkErrors: (error, request, reply) => {
      // No hook runs before these answers: the request id and the security headers are set here (docs/contract.md:
      // every response).
      applySecurityHeaders(request, reply)
      answerFrameworkError(error, request, reply)
    },
  }
}
