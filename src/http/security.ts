// What every request passes through before its route: request id, CORS, security headers, body parsing rules.
import { randomUUID } from 'node:crypto'
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import type { FastifyInstance, RawRequestDefaultExpression } from 'fastify'
import { Ajv } from 'ajv'
import type { Config } from '../config.ts'

/** Largest accepted request body: 64 KiB (API.md "Errors": past it, 413). */
export const BODY_LIMIT_BYTES = 64 * 1024

/** An incoming X-Request-Id is echoed only when it is short and plain, so it cannot forge log lines. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Fastify's `genReqId`: the caller's sane `X-Request-Id`, else a new UUID. */
export function requestIdOf(request: RawRequestDefaultExpression): string {
  const incoming = request.headers['x-request-id']
  return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID()
}

/**
 * Request validation with two Ajv instances, chosen deliberately (DESIGN.md): bodies are never coerced and
 * keep unknown fields (so they are refused with 422, not dropped); query strings and path parameters are
 * text by nature, so they are coerced to the schema's numbers, and their defaults are applied.
 */
export function installValidators(app: FastifyInstance): void {
  const common = { allErrors: true, allowUnionTypes: true, removeAdditional: false } as const
  const bodyAjv = new Ajv({ ...common, coerceTypes: false, useDefaults: false })
  const textAjv = new Ajv({ ...common, coerceTypes: true, useDefaults: true })
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema))
}

/**
 * Bodies: JSON only (anything else is 415), at most 64 KiB (413), `__proto__` and `constructor` keys refused.
 * An empty body with `Content-Type: application/json` counts as no body, as many clients send on DELETE.
 */
export function installBodyParsing(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT_BYTES }, (request, body, done) => {
    if (body.length === 0) done(null, undefined)
    else void parseJson(request, body as string, done)
  })
}

/** CORS for the configured origins, security headers, and the request id on every response. */
export async function installSecurity(app: FastifyInstance, config: Pick<Config, 'corsOrigins'>): Promise<void> {
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
  await app.register(cors, {
    origin: [...config.corsOrigins],
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
    exposedHeaders: ['X-Total-Count', 'Location', 'X-Request-Id', 'Retry-After'],
    // Bearer tokens travel in a header, never in cookies: no credentialed CORS needed.
    credentials: false,
    maxAge: 600,
  })
  await app.register(helmet, {
    // An API serves no pages but /docs (which sets its own policy): forbid everything, including framing.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  })
}
