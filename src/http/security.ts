// What every request passes through before its route: request id, CORS, security headers, body parsing rules.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import cors from '@fastify/cors'
import type { FastifyInstance, FastifyReply, FastifyRequest, RawRequestDefaultExpression } from 'fastify'
import { Ajv } from 'ajv'
import helmet from 'helmet'
import type { Config } from '../config.ts'
import { BODY_NOT_OBJECT, BODY_NOT_UTF8, UNSUPPORTED_MEDIA_TYPE } from './errors.ts'

/** Largest accepted request body: 64 KiB (API.md "Errors": past it, 413). */
export const BODY_LIMIT_BYTES = 64 * 1024

/** An incoming X-Request-Id is echoed only when it is short and plain, so it cannot forge log lines. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Query parameters whose values are worth logging; any other value (`?access_token=…`, say) is masked. */
const LOGGED_QUERY_PARAMETERS = new Set(['status', 'sort', 'order', 'limit', 'offset'])

/** A JWT-shaped run of text (three dot-separated base64url parts), wherever a client put one. */
const JWT_SHAPED = /[\w-]{8,}\.[\w-]{8,}\.[\w-]*/

/**
 * A run of base64url characters long enough to be one part of a token on its own: a JWT's header is at least 20
 * (`eyJhbGciOiJIUzI1NiJ9`), an HS256 signature 43. It counts only when it mixes upper- and lower-case letters, as
 * base64 of JSON or of random bytes does (a 43-character signature lacks one of them with odds of about 4 in 10^10);
 * what this API's URLs carry never does: decimal ids, lower-case route words and list values (`created_at`),
 * lower-case file names under /docs, UUIDs in either case.
 */
const BASE64URL_RUN = /[\w-]{20,}/g

/** The text between the URL's delimiters: a path segment, a matrix or query key or value, a list item, a fragment. */
const URL_PART = /[^/?#&;=,]+/g

/** A part still holding a %XX after this many rounds of decoding is masked: no client encodes a URL 4 times over. */
const MAX_DECODING_ROUNDS = 3
const PERCENT_ENCODED = /%[0-9A-Fa-f]{2}/
const ALL_PERCENT_ENCODED = /%([0-9A-Fa-f]{2})/g

/**
 * A part shorter than 18 characters cannot hold a JWT-shaped run (8 + 1 + 8 + 1) nor a base64url run of 20, even
 * before it is decoded: a URL without a longer part (most of them) is logged without looking at each part.
 */
const LONG_URL_PART = /[^/?#&;=,]{18}/

/**
 * Fastify's `req` log serializer: method and URL, with anything token-like masked, so that a client that puts
 * its token in the path, the query string (as a key or a value) or a fragment does not put it in the logs (only
 * `Authorization` is ever read). Every value of a query parameter that is not a list parameter is masked; every
 * other part of the URL is masked when it looks like a credential in any percent-encoding (`looksLikeCredential`),
 * whole, so that no piece of a token is left beside the mask.
 */
export function serializeRequestForLog(request: { method: string; url: string }): { method: string; url: string } {
  const queryStart = request.url.indexOf('?')
  if (queryStart === -1) return { method: request.method, url: maskCredentials(request.url) }
  const query = request.url
    .slice(queryStart + 1)
    .split('&')
    .map(maskQueryParameter)
    .join('&')
  return { method: request.method, url: `${maskCredentials(request.url.slice(0, queryStart))}?${query}` }
}

/** One `key=value` of a query string, masked; a key with no `=` (`?<token>`) is masked like any other part. */
function maskQueryParameter(parameter: string): string {
  const equals = parameter.indexOf('=')
  if (equals === -1) return maskCredentials(parameter)
  const key = parameter.slice(0, equals)
  const value = LOGGED_QUERY_PARAMETERS.has(key) ? maskCredentials(parameter.slice(equals + 1)) : '[redacted]'
  return `${maskCredentials(key)}=${value}`
}

/** `text` with each part between URL delimiters that looks like a credential replaced by `[redacted]`. */
function maskCredentials(text: string): string {
  if (!LONG_URL_PART.test(text)) return text
  return text.replace(URL_PART, (part) => (looksLikeCredential(part) ? '[redacted]' : part))
}

/**
 * True when `part`, percent-decoded repeatedly (`%2E`, `%2e`, `%252E`, every character encoded), holds a JWT-shaped
 * run or a base64url run that could be one of a token's parts (whatever stands between them: a `%C0%AE` or a `/`),
 * or when it is still percent-encoded after MAX_DECODING_ROUNDS. Decoding is bytewise and never throws: a malformed
 * or non-UTF-8 sequence (which Fastify answers with 400) is logged too, and must be checked too.
 */
function looksLikeCredential(part: string): boolean {
  if (!LONG_URL_PART.test(part)) return false
  let text = part
  for (let round = 0; round < MAX_DECODING_ROUNDS && PERCENT_ENCODED.test(text); round += 1) {
    text = text.replace(ALL_PERCENT_ENCODED, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
  }
  if (PERCENT_ENCODED.test(text) || JWT_SHAPED.test(text)) return true
  return (text.match(BASE64URL_RUN) ?? []).some((run) => /[A-Z]/.test(run) && /[a-z]/.test(run))
}

/** Fastify's `genReqId`: the caller's sane `X-Request-Id` (short, plain, not a token), else a new UUID. */
export function requestIdOf(request: RawRequestDefaultExpression): string {
  const incoming = request.headers['x-request-id']
  // An id that could be a token or a part of one is a client's credential in the wrong header: logged on every line
  // and echoed, it would leak (a signature alone rebuilds a development token, whose header and payload are guessable).
  return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) && !looksLikeCredential(incoming)
    ? incoming
    : randomUUID()
}

/**
 * Request validation with two Ajv instances, chosen deliberately (DESIGN.md): bodies are never coerced and
 * keep unknown fields (so they are refused with 422, not dropped); query strings and path parameters are
 * text by nature, so plain decimal text becomes the schema's number (`textCoercionsOf`), and their
 * defaults are applied.
 */
export function installValidators(app: FastifyInstance): void {
  const common = { allErrors: true, allowUnionTypes: true, removeAdditional: false } as const
  const bodyAjv = new Ajv({ ...common, coerceTypes: false, useDefaults: false })
  const textAjv = new Ajv({ ...common, coerceTypes: false, useDefaults: true })
  app.setValidatorCompiler(({ schema, httpPart }) => {
    if (httpPart === 'body') return bodyAjv.compile(schema)
    const validate = textAjv.compile(schema)
    const coercions = textCoercionsOf(schema)
    return (data: unknown) => {
      if (typeof data === 'object' && data !== null) {
        const values = data as Record<string, unknown>
        for (const [key, coerce] of coercions) {
          const text = values[key]
          const value = typeof text === 'string' ? coerce(text) : undefined
          if (value !== undefined) values[key] = value
        }
      }
      return validate(data) || { error: validate.errors ?? [] }
    }
  })
}

/** The only text a path or query value becomes a number from: plain decimal, as FastAPI takes it. */
const DECIMAL_INTEGER = /^-?\d+$/
const DECIMAL_NUMBER = /^-?\d+(?:\.\d+)?$/

/** Turns one text value into its schema's type, or gives undefined to leave it text (and let Ajv refuse it). */
type TextCoercion = (text: string) => number | boolean | undefined

/**
 * The coercion of each top-level property of a path or query schema that is not a string. Ajv's own
 * `coerceTypes` is not used for these: it takes `0x10`, ` 1` and `1e3` as numbers, and it turns `1e400` or
 * `Infinity` into Infinity, which then skips `minimum`/`maximum` and reaches the database (a 500, not a 422).
 * Any text that is not plain decimal stays text, so the schema refuses it with a 422.
 */
function textCoercionsOf(schema: unknown): [string, TextCoercion][] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {}
  return Object.entries(properties).flatMap(([key, property]): [string, TextCoercion][] => {
    const types: unknown[] = [property.type].flat()
    if (types.includes('number')) return [[key, (text) => (DECIMAL_NUMBER.test(text) ? Number(text) : undefined)]]
    if (types.includes('integer')) return [[key, (text) => (DECIMAL_INTEGER.test(text) ? Number(text) : undefined)]]
    if (types.includes('boolean'))
      return [[key, (text) => (text === 'true' ? true : text === 'false' ? false : undefined)]]
    return []
  })
}

/** Decodes UTF-8 strictly: invalid bytes throw instead of silently becoming U+FFFD. A BOM is dropped. */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Bodies: JSON in UTF-8 only (RFC 8259 §8.1), at most 64 KiB (413), `__proto__` and `constructor.prototype`
 * refused (400). Another media type, charset or a `Content-Encoding` is 415; bytes that are not UTF-8 are 400,
 * never stored altered. An empty body counts as no body whatever its Content-Type, as clients send on DELETE
 * (`fetch` with `body: ''` says text/plain). A body must be a JSON object, as every route's is: a top-level
 * `null`, array or scalar is refused here with the 422 schema validation would give, so no route can read a
 * `null` body as an absent one.
 */
export function installBodyParsing(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES },
    (request, body, done) => {
      if (body.length === 0) return done(null, undefined)
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase()
      if (
        (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') ||
        isEncoded(request.headers['content-encoding'])
      ) {
        return done(UNSUPPORTED_MEDIA_TYPE)
      }
      let text: string
      try {
        text = STRICT_UTF8.decode(body as Buffer)
      } catch {
        return done(BODY_NOT_UTF8)
      }
      void parseJson(request, text, (error, value: unknown) => {
        if (error === null && (typeof value !== 'object' || value === null || Array.isArray(value)))
          done(BODY_NOT_OBJECT)
        else done(error, value)
      })
    },
  )
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES }, (_request, body, done) => {
    if (body.length === 0) done(null, undefined)
    else done(UNSUPPORTED_MEDIA_TYPE)
  })
}

/** True for a `Content-Encoding` other than identity: compressed bodies are not accepted. */
function isEncoded(contentEncoding: string | undefined): boolean {
  return (
    contentEncoding !== undefined &&
    contentEncoding.trim().toLowerCase() !== 'identity' &&
    contentEncoding.trim() !== ''
  )
}

// helmet's middleware is built once, at start: @fastify/helmet builds a new one on every request (about 3 % of the
// service's CPU in the benchmark's profile). None of these headers depends on the request.
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
 * Sets the request id and the security headers on a response (API.md "Cross-cutting": on every response). Called by
 * the first onRequest hook, and by the answers to errors raised before routing (`frameworkErrors`), where no hook runs.
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
 * registration order: so the preflight's 204 carries the security headers too.
 */
export async function installSecurity(app: FastifyInstance, config: Pick<Config, 'corsOrigins'>): Promise<void> {
  app.addHook('onRequest', (request, reply, done) => {
    applySecurityHeaders(request, reply, done)
  })
  await app.register(cors, {
    origin: [...config.corsOrigins],
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id', 'Idempotency-Key', 'If-Match'],
    exposedHeaders: ['X-Total-Count', 'Location', 'X-Request-Id', 'Retry-After', 'ETag', 'Idempotent-Replayed'],
    // Bearer tokens travel in a header, never in cookies: no credentialed CORS needed.
    credentials: false,
    maxAge: 600,
    // An OPTIONS without Origin gets a 204 like any preflight (no Access-Control-Allow-Origin), not the
    // plugin's text/plain 400, which would break the rule that every error body is {"detail": …}.
    strictPreflight: false,
  })
}
