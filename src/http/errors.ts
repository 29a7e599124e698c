// The one place errors become responses: every error body is {"detail": …} (API.md "Errors").
import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { isDatabaseUnavailable } from '../db/pg-errors.ts'

/** An error that is an answer: `status` and `detail` go to the client as they are, with `headers`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string | ValidationIssue[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(typeof detail === 'string' ? detail : 'validation failed')
    this.name = 'HttpError'
  }
}

/** Seconds a client should wait before retrying after a 503. */
export const RETRY_AFTER_S = 5

/** 503 for a fault that is not the client's: the database or the key set could not be reached. */
export function serviceUnavailable(): HttpError {
  return new HttpError(503, 'Service unavailable', { 'retry-after': String(RETRY_AFTER_S) })
}

/** One entry of a 422 body, in FastAPI's shape: where, what, and a machine-readable type. */
export interface ValidationIssue {
  loc: (string | number)[]
  msg: string
  type: string
}

interface AjvIssue {
  keyword: string
  instancePath: string
  params: Record<string, unknown>
  message?: string
}

const LOCATION_OF_PART: Record<string, string> = {
  body: 'body',
  querystring: 'query',
  params: 'path',
  headers: 'header',
}

const TYPE_OF_KEYWORD: Record<string, string> = {
  required: 'missing',
  additionalProperties: 'extra_forbidden',
  maxLength: 'string_too_long',
  minLength: 'string_too_short',
  pattern: 'string_pattern_mismatch',
  minimum: 'greater_than_equal',
  maximum: 'less_than_equal',
  enum: 'enum',
}

/** At most this many entries in a 422: a 64 KiB body of unknown keys must not answer with megabytes. */
export const MAX_VALIDATION_ISSUES = 20

/**
 * Maps Ajv's errors of one request part to FastAPI-style `{loc, msg, type}` entries: the first per location, 20 at
 * most.
 */
export function toValidationIssues(part: string, issues: readonly AjvIssue[]): ValidationIssue[] {
  const where = LOCATION_OF_PART[part] ?? part
  const entries = issues.map((issue) => {
    const loc: (string | number)[] = [where, ...issue.instancePath.split('/').slice(1).map(decodePointer)]
    if (issue.keyword === 'required') loc.push(String(issue.params.missingProperty))
    if (issue.keyword === 'additionalProperties') loc.push(String(issue.params.additionalProperty))
    // Ajv names a type list (`description`: string or null) as "string,null": the type is its first non-null one.
    const types = String(issue.params.type).split(',')
    const type =
      issue.keyword === 'type'
        ? `${types.find((name) => name !== 'null') ?? types[0]}_type`
        : (TYPE_OF_KEYWORD[issue.keyword] ?? issue.keyword)
    const msg =
      issue.keyword === 'required'
        ? 'Field required'
        : issue.keyword === 'additionalProperties'
          ? 'Extra inputs are not permitted'
          : issue.keyword === 'pattern'
            ? (patternMessages.get(String(issue.params.pattern)) ?? 'String has an invalid format')
            : issue.keyword === 'type'
              ? `Must be ${types.join(' or ')}`
              : capitalize(issue.message ?? 'Invalid value')
    return { loc, msg, type }
  })
  // One entry per location, the first Ajv found (a repeated ?status=a&status=b is "not a string", and not
  // also "not one of the values"), and at most MAX_VALIDATION_ISSUES of them.
  const firstByLocation = new Map<string, ValidationIssue>()
  for (const entry of entries) {
    const where = JSON.stringify(entry.loc)
    if (!firstByLocation.has(where)) firstByLocation.set(where, entry)
  }
  return [...firstByLocation.values()].slice(0, MAX_VALIDATION_ISSUES)
}

const patternMessages = new Map<string, string>()

/** A JSON Schema `pattern` with the message its 422 shows, registered once where the schema is defined. */
export function describedPattern(pattern: string, message: string): string {
  patternMessages.set(pattern, message)
  return pattern
}

function decodePointer(segment: string): string | number {
  const text = segment.replace(/~1/g, '/').replace(/~0/g, '~')
  return /^\d+$/.test(text) ? Number(text) : text
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** Detail of the 413 for a body over BODY_LIMIT_BYTES, declared or streamed. */
export const BODY_TOO_LARGE_DETAIL = 'Request body too large (limit 65536 bytes)'

/** Details for Fastify's own 4xx errors (body parsing): fixed words, never the parser's message. */
const DETAIL_OF_FASTIFY_CODE: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'Malformed JSON body',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'Malformed JSON body',
  FST_ERR_CTP_BODY_TOO_LARGE: BODY_TOO_LARGE_DETAIL,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length does not match the body',
  FST_ERR_BAD_URL: 'Malformed URL',
  FST_ERR_MAX_PARAM_LENGTH: 'URL path segment too long',
}

/**
 * Fastify's `frameworkErrors` option, for the errors it raises before routing (a URL it cannot decode, a path
 * segment past `maxParamLength`). Without it Fastify answers those in its own `{statusCode, error, message}`
 * envelope, echoing the path; the error handler is never reached from there, so this answers them itself.
 */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode ?? 500
  if (status >= 400 && status < 500) {
    void reply.code(status).send({ detail: DETAIL_OF_FASTIFY_CODE[error.code] ?? 'Bad request' })
    return
  }
  request.log.error({ cause: describeCause(error) }, 'unexpected framework error: answered 500')
  void reply.code(500).send({ detail: 'Internal server error' })
}

/** What the HTTP parser's errors become, before any request exists: status and detail. */
const CLIENT_ERRORS: Record<string, [number, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request timeout'],
  HPE_HEADER_OVERFLOW: [431, 'Request header fields too large'],
}

/**
 * Fastify's `clientErrorHandler`, for what Node's HTTP parser refuses before there is a request to route: a header
 * section over its limit (431), a request not received within HTTP_HEADERS_TIMEOUT_MS / HTTP_REQUEST_TIMEOUT_MS
 * (408), anything unparsable (400). Answers `{"detail": …}` with `securityHeaderLines` (raw `Name: value\r\n` lines:
 * no hook runs here) and a new X-Request-Id, and closes the connection.
 */
export function clientErrorAnswerer(securityHeaderLines: string) {
  return function answerClientError(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return
    // Bytes after a request that closes its connection (`Connection: close`, HTTP/1.0) are no request (RFC 9112 §9.6):
    // ignored, so that the answers still due on the connection are written, in order, before Node closes it.
    if (error.code === 'HPE_CLOSED_CONNECTION') return
    // An answer already being written would be corrupted by a second status line: close without one, as Node does.
    if ((socket as { _httpMessage?: { headersSent: boolean } | null })._httpMessage?.headersSent === true) {
      socket.destroy()
      return
    }
    const [status, detail] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'Bad request']
    const requestId = randomUUID()
    this.log.debug({ code: error.code, status, reqId: requestId }, 'client error before routing')
    if (socket.writable) {
      const body = JSON.stringify({ detail })
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n${securityHeaderLines}Connection: close\r\n\r\n${body}`,
      )
    }
    socket.destroy()
  }
}

/**
 * Installs the error and not-found handlers on the root instance, so every route and plugin shares them:
 * validation → 422 with `[{loc, msg, type}]`; HttpError → its status; an unreachable database → 503 with
 * `Retry-After`; Fastify's own 4xx → a fixed detail; anything else → 500, logged with the request id,
 * and nothing of the cause in the body.
 */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ detail: 'Not Found' }))

  app.setErrorHandler(async (error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) {
      return reply.code(error.status).headers(error.headers).send({ detail: error.detail })
    }
    if (request.raw.destroyed && !request.raw.complete) {
      // The client went away mid-request (an aborted upload): nobody to answer, and no fault of ours. `destroyed`
      // alone is not that: Node destroys a request as soon as its body has been read in full (autoDestroy), so every
      // later error of a request with a body (a 422 of its schema, say) would be taken for an abort.
      request.log.info({ cause: describeCause(error) }, 'client closed the connection before the request was read')
      return reply.code(400).send({ detail: 'Request aborted' })
    }
    if (error.validation !== undefined) {
      return reply.code(422).send({ detail: toValidationIssues(error.validationContext ?? 'body', error.validation) })
    }
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ cause: describeCause(error) }, 'database unavailable: answered 503')
      const unavailable = serviceUnavailable()
      return reply.code(503).headers(unavailable.headers).send({ detail: unavailable.detail })
    }
    const status = error.statusCode ?? 500
    if (status >= 400 && status < 500) {
      // The JSON parser's syntax errors (malformed JSON, a forbidden __proto__) have no Fastify code.
      const code = error.name === 'SyntaxError' ? 'FST_ERR_CTP_INVALID_JSON_BODY' : error.code
      const detail = DETAIL_OF_FASTIFY_CODE[code] ?? 'Bad request'
      return reply.code(code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 400 : status).send({ detail })
    }
    request.log.error({ cause: describeCause(error) }, 'unexpected error: answered 500')
    return reply.code(500).send({ detail: 'Internal server error' })
  })
}

/** The innermost error's name, code and message: enough to diagnose, with no SQL parameters or stack. */
function describeCause(error: unknown): { name: string; code?: string; message: string } {
  let current = error
  while (current instanceof Error && current.cause instanceof Error) current = current.cause
  if (!(current instanceof Error)) return { name: typeof current, message: String(current) }
  const code = (current as { code?: unknown }).code
  return { name: current.name, ...(typeof code === 'string' ? { code } : {}), message: current.message }
}

/** Body of every error but 422 (API.md "Errors"). */
export const ErrorResponse = Type.Object({ detail: Type.String() })

/** Body of a 422: FastAPI's list of `{loc, msg, type}`. */
export const ValidationErrorResponse = Type.Object({
  detail: Type.Array(
    Type.Object({
      loc: Type.Array(Type.Unsafe<string | number>({ type: ['string', 'integer'] })),
      msg: Type.String(),
      type: Type.String(),
    }),
  ),
})

/** Response schemas of the given error statuses, for a route's `schema.response`. */
export function errorResponses(
  ...statuses: number[]
): Record<number, typeof ErrorResponse | typeof ValidationErrorResponse> {
  return Object.fromEntries(
    statuses.map((status) => [status, status === 422 ? ValidationErrorResponse : ErrorResponse]),
  )
}

/** 422 for a request that needs a body and sent none (FastAPI's shape for a missing body). */
export const BODY_MISSING = new HttpError(422, [{ loc: ['body'], msg: 'Field required', type: 'missing' }])

/** 415 for a body that is not JSON in UTF-8 (another media type, charset, or a Content-Encoding). */
export const UNSUPPORTED_MEDIA_TYPE = new HttpError(415, 'Unsupported media type: send application/json in UTF-8')

/** 400 for a JSON body whose bytes are not valid UTF-8 (RFC 8259 §8.1). */
export const BODY_NOT_UTF8 = new HttpError(400, 'Request body is not valid UTF-8')

/** 422 for a JSON body that is not an object (`null`, an array, a scalar): the entry Ajv gives for one. */
export const BODY_NOT_OBJECT = new HttpError(422, [{ loc: ['body'], msg: 'Must be object', type: 'object_type' }])
