// The headers every response carries whatever its route: the request id, helmet's security headers, and CORS.
import type { IncomingMessage, ServerResponse } from 'node:http'
import cors from '@fastify/cors'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import helmet from 'helmet'
import type { Config } from '../config.ts'
import { installCorsRefusalLog } from './cors-refusal-log.ts'

// helmet's middleware, built once: none of these headers depends on the request (docs/decisions/helmet-built-once.md).
const setSecurityHeaders = helmet({
  // An API serves no pages but /docs (which sets its own policy): forbid everything, including framing.
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
  },
  frameguard: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
})

/**
 * The same security headers as raw `Name: value\r\n` lines, for the answers written straight to the socket (errors
 * of the HTTP parser, before any request exists): helmet's middleware run once against a recorder.
 */
export const SECURITY_HEADER_LINES: string = (() => {
  let lines = ''
  const recorder = {
    setHeader: (name: string, value: string) => void (lines += `${name}: ${value}\r\n`),
    removeHeader: () => undefined,
  }
  setSecurityHeaders({} as IncomingMessage, recorder as unknown as ServerResponse, () => undefined)
  return lines
})()

/**
 * Sets the request id and the security headers on a response (docs/contract.md "Cross-cutting": on every response).
 * Called by the first onRequest hook, and by the answers to errors raised before routing (`frameworkErrors`), where no
 * hook runs.
 */
export function applySecurityHeaders(
  request: FastifyRequest,
  reply: FastifyReply,
  done: (error?: Error) => void = () => undefined,
): void {
  reply.header('x-request-id', request.id)
  setSecurityHeaders(request.raw, reply.raw, (error?: unknown) => done(error instanceof Error ? error : undefined))
}

/**
 * CORS for the configured origins, security headers, and the request id on every response. The headers are set
 * before CORS's hook runs, because CORS answers preflights in its own onRequest hook and hooks run in
 * registration order: so the preflight's 204 carries the security headers too. A request from an origin CORS refuses
 * is logged (`installCorsRefusalLog`), and still answered as before: no CORS headers, a preflight's 204 included.
 */
export async function installSecurityHeaders(app: FastifyInstance, config: Pick<Config, 'corsOrigins'>): Promise<void> {
  app.addHook('onRequest', (request, reply, done) => {
    applySecurityHeaders(request, reply, done)
  })
  // Before CORS's hook, which ends a preflight: a refused origin is logged on preflights too.
  installCorsRefusalLog(app, config.corsOrigins)
  await app.register(cors, {
    origin: [...config.corsOrigins],
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id', 'Idempotency-Key', 'If-Match'],
    // WWW-Authenticate lets a page tell an expired or refused token (refresh it) from a missing one (RFC 6750 §3).
    exposedHeaders: [
      'X-Total-Count',
      'Location',
      'X-Request-Id',
      'Retry-After',
      'ETag',
      'Idempotent-Replayed',
      'WWW-Authenticate',
    ],
    // Bearer tokens travel in a header, never in cookies: no credentialed CORS needed.
    credentials: false,
    maxAge: 600,
    // An OPTIONS without Origin gets a 204 like any preflight (no Access-Control-Allow-Origin), not the
    // plugin's text/plain 400, which would break the rule that every error body is {"detail": …}.
    strictPreflight: false,
  })
}
