// The catalogue of every error answer the service gives: status, detail and headers, in one place (docs/contract.md
// "Errors": every error body is {"detail": …}). Whoever answers with an error takes it from here; the OpenAPI error
// responses are built from the same shapes.
import type { FastifyReply } from 'fastify'
import { Type, type TSchema } from 'typebox'

/** One entry of a 422 body, in FastAPI's shape: where, what, and a machine-readable type. */
export interface ValidationIssue {
  loc: (string | number)[]
  msg: string
  type: string
}

/**
 * An error that is an answer: `status` and `detail` go to the client as they are, with `headers`. `Status` keeps the
 * literal status for a route whose response schema names it.
 */
export class HttpError<Status extends number = number> extends Error {
  constructor(
    readonly status: Status,
    readonly detail: string | ValidationIssue[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(typeof detail === 'string' ? detail : 'validation failed')
    this.name = 'HttpError'
  }
}

/** Seconds a client should wait before retrying after a 503 (header `Retry-After`, RFC 9110 §10.2.3). */
const RETRY_AFTER_S = 5

/** RFC 6750 §3: the `WWW-Authenticate` of a request without credentials, and of one with an unusable token. */
const BEARER_CHALLENGE = { 'www-authenticate': 'Bearer' }
const INVALID_TOKEN_CHALLENGE = { 'www-authenticate': 'Bearer error="invalid_token"' }

/** Every error answer by name. A 422 of a schema is built by `validationFailed`; these are the fixed ones. */
export const answers = {
  /** 400: the body is not JSON (or holds `__proto__` / `constructor.prototype`); never the parser's message. */
  malformedJson: new HttpError(400, 'Malformed JSON body'),
  /** 400: a JSON body whose bytes are not valid UTF-8 (RFC 8259 §8.1). */
  bodyNotUtf8: new HttpError(400, 'Request body is not valid UTF-8'),
  /** 400: fewer or more body bytes than `Content-Length` declared. */
  contentLengthMismatch: new HttpError(400, 'Content-Length does not match the body'),
  /** 400: a URL Fastify cannot decode. */
  malformedUrl: new HttpError(400, 'Malformed URL'),
  /** 400: the client went away before its request was read (an aborted upload). */
  requestAborted: new HttpError(400, 'Request aborted'),
  /** 400: an HTTP/1.1 request without Host (RFC 9112 §3.2). */
  hostMissing: new HttpError(400, 'Missing Host header'),
  /** 400: two Host lines (RFC 9112 §3.2): a proxy in front may have read the other. */
  hostDuplicated: new HttpError(400, 'Duplicate Host header'),
  /** 400: two Authorization headers: Node keeps the first, a proxy may keep the other (RFC 6750 §3.1). */
  credentialsAmbiguous: new HttpError(400, 'Send exactly one Authorization header', {
    'www-authenticate': 'Bearer error="invalid_request"',
  }),
  /** 401: no `Authorization: Bearer <token>` (an empty bearer included). docs/contract.md "Authentication". */
  notAuthenticated: new HttpError(401, 'Not authenticated', BEARER_CHALLENGE),
  /** 401: a token that does not verify (signature, issuer, audience, claims). */
  invalidToken: new HttpError(401, 'Invalid token', INVALID_TOKEN_CHALLENGE),
  /** 401: a token past its `exp` (beyond the clock tolerance). */
  tokenExpired: new HttpError(401, 'Token expired', INVALID_TOKEN_CHALLENGE),
  /** 404: a route that does not exist, with or without a token. */
  routeNotFound: new HttpError(404, 'Not Found'),
  /** 404: the caller's task does not exist; another user's is the same answer (docs/contract.md "Errors"). */
  taskNotFound: new HttpError(404, 'Task not found'),
  /** 408: the header section or the request was not received within its time limit (HTTP_*_TIMEOUT_MS). */
  requestTimeout: new HttpError(408, 'Request timeout'),
  /** 409: a create when the user already owns MAX_TASKS_PER_USER tasks (docs/contract.md "Errors"). */
  taskLimitReached: new HttpError(409, 'Task limit reached'),
  /** 409: a repeat of an Idempotency-Key whose first request is still running. */
  idempotencyKeyInProgress: new HttpError(
    409,
    'A request with this Idempotency-Key is still in progress; retry it later',
    { 'retry-after': '1' },
  ),
  /** 412: If-Match names a version the task no longer has (RFC 9110 §13.1.1). */
  preconditionFailed: new HttpError(412, 'Precondition failed'),
  /** 413: a body over BODY_LIMIT_BYTES, declared or streamed (docs/contract.md "Errors"). */
  bodyTooLarge: new HttpError(413, 'Request body too large (limit 65536 bytes)'),
  /** 414: a path segment longer than Fastify's `maxParamLength`. */
  pathSegmentTooLong: new HttpError(414, 'URL path segment too long'),
  /** 415: a body that is not JSON in UTF-8 (another media type, charset, or a Content-Encoding). */
  unsupportedMediaType: new HttpError(415, 'Unsupported media type: send application/json in UTF-8'),
  /** 417: an `Expect` other than `100-continue` (RFC 9110 §10.1.1). */
  expectationFailed: new HttpError(417, 'Expectation failed'),
  /** 422: a POST or PUT without a body (FastAPI's entry for a missing body). */
  bodyMissing: new HttpError(422, [{ loc: ['body'], msg: 'Field required', type: 'missing' }]),
  /** 422: a JSON body that is not an object (`null`, an array, a scalar): the entry Ajv gives for one. */
  bodyNotObject: new HttpError(422, [{ loc: ['body'], msg: 'Must be object', type: 'object_type' }]),
  /** 422 in the validation shape, so a client handles every 422 alike: one key, two different bodies. */
  idempotencyKeyReused: new HttpError(422, [
    {
      loc: ['header', 'idempotency-key'],
      msg: 'This Idempotency-Key was already used with a different request body',
      type: 'idempotency_key_reused',
    },
  ]),
  /** 429: one user's requests over their share (docs/contract.md "Rate limits"); nothing was written. */
  tooManyRequests: new HttpError(429, 'Too many requests', { 'retry-after': '1' }),
  /** 431: a header section over Node's limit. */
  headerFieldsTooLarge: new HttpError(431, 'Request header fields too large'),
  /** 500: anything unexpected; nothing of the cause goes to the client. */
  internalError: new HttpError(500, 'Internal server error'),
  /** 503: the database or the key set cannot be reached; the client should retry, not sign its user out. */
  serviceUnavailable: new HttpError(503, 'Service unavailable', { 'retry-after': String(RETRY_AFTER_S) }),
} as const

/** A 422 listing a request part's problems (see `toValidationIssues`). */
export function validationFailed(issues: ValidationIssue[]): HttpError {
  return new HttpError(422, issues)
}

/** The fixed answers to Fastify's own 4xx errors, by their code: fixed words, never the parser's message. */
const ANSWER_OF_FASTIFY_CODE: Readonly<Record<string, HttpError>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: answers.malformedJson,
  FST_ERR_CTP_EMPTY_JSON_BODY: answers.malformedJson,
  FST_ERR_CTP_BODY_TOO_LARGE: answers.bodyTooLarge,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: answers.contentLengthMismatch,
  FST_ERR_BAD_URL: answers.malformedUrl,
  FST_ERR_MAX_PARAM_LENGTH: answers.pathSegmentTooLong,
}

/** The answer to a Fastify 4xx error (`status`: its statusCode): its fixed answer, else `status` "Bad request". */
export function answerOfFastifyError(code: string, status: number): HttpError {
  return ANSWER_OF_FASTIFY_CODE[code] ?? new HttpError(status, 'Bad request')
}

/** The answers to errors of Node's HTTP parser, by error code, before any request exists; any other is 400. */
const ANSWER_OF_PARSER_CODE: Readonly<Record<string, HttpError>> = {
  ERR_HTTP_REQUEST_TIMEOUT: answers.requestTimeout,
  HPE_HEADER_OVERFLOW: answers.headerFieldsTooLarge,
}

/** The answer to an error of Node's HTTP parser (`code`: Node's error code, if any). */
export function answerOfParserError(code: string | undefined): HttpError {
  return ANSWER_OF_PARSER_CODE[code ?? ''] ?? new HttpError(400, 'Bad request')
}

/** Sends `answer` on `reply`: its status, its headers, and `{"detail": …}`. */
export function sendAnswer(reply: FastifyReply, answer: HttpError): FastifyReply {
  return reply.code(answer.status).headers(answer.headers).send({ detail: answer.detail })
}

/** Body of every error but 422 (docs/contract.md "Errors"). */
const ErrorResponse = Type.Object({ detail: Type.String() })

/** Body of a 422: FastAPI's list of `{loc, msg, type}`. */
const ValidationErrorResponse = Type.Object({
  detail: Type.Array(
    Type.Object({
      loc: Type.Array(Type.Unsafe<string | number>({ type: ['string', 'integer'] })),
      msg: Type.String(),
      type: Type.String(),
    }),
  ),
})

/** What each error status means to a client, as /openapi.json describes it (instead of "Default Response"). */
const ERROR_DESCRIPTIONS: Readonly<Record<number, string>> = {
  400:
    'Malformed request: a body that is not JSON or not UTF-8 (or holds `__proto__`), a Content-Length that does not ' +
    'match the body, or two Authorization headers',
  401:
    'No usable bearer token. `detail` is exactly one of the examples. `WWW-Authenticate: Bearer` means no credentials ' +
    '(sign in); `Bearer error="invalid_token"` means an expired or refused token: get a fresh one and retry once',
  404: "No such task for this user: another user's task gets the same answer",
  409:
    'The user already owns MAX_TASKS_PER_USER tasks, or a request with the same Idempotency-Key is still in progress ' +
    '(retry after `Retry-After`)',
  412: 'If-Match names a version the task no longer has: nothing changed. GET the task again, reconcile, retry',
  413: 'The body is over 65536 bytes, as declared by Content-Length or as sent',
  415: 'The body is not application/json in UTF-8 (another media type or charset, or a Content-Encoding)',
  422: 'Validation failed: `detail` lists each problem as `{loc, msg, type}` (at most 20)',
  429: "Over this user's share of concurrent requests: nothing was written; retry after `Retry-After` seconds",
  503:
    'The database or the key set cannot be reached: retry after `Retry-After` seconds. Not a sign-out: the token may ' +
    'be valid',
}

/** A named OpenAPI example of `answer`'s body. */
const exampleOf = (
  answer: HttpError,
  summary: string,
): { summary: string; value: { detail: HttpError['detail'] } } => ({
  summary,
  value: { detail: answer.detail },
})

/** The 401 bodies a client tells apart (docs/contract.md "Authentication"), as named OpenAPI examples, each named by
 * its body. */
const UNAUTHORIZED_EXAMPLES = {
  'Not authenticated': exampleOf(
    answers.notAuthenticated,
    'No Authorization header, another scheme, or `Bearer` with no token: sign in',
  ),
  'Token expired': exampleOf(answers.tokenExpired, 'The token is past its `exp`: get a fresh token and retry'),
  'Invalid token': exampleOf(
    answers.invalidToken,
    'The token was refused (signature, algorithm, claims, issuer, audience, user id, form): get a fresh one, retry once',
  ),
}

/** Response headers of the statuses that carry one, for the OpenAPI document. */
const ERROR_HEADERS: Readonly<Record<number, Record<string, TSchema>>> = {
  400: {
    'WWW-Authenticate': Type.String({
      description: 'Only for two Authorization headers: `Bearer error="invalid_request"` (RFC 6750 §3.1)',
    }),
  },
  401: {
    'WWW-Authenticate': Type.String({ description: '`Bearer`, or `Bearer error="invalid_token"` (RFC 6750 §3)' }),
  },
  429: { 'Retry-After': Type.String({ description: 'Seconds to wait before retrying' }) },
  503: { 'Retry-After': Type.String({ description: 'Seconds to wait before retrying' }) },
}

/**
 * Response schemas of the given error statuses, for a route's `schema.response`: the body, a description, the headers
 * a client reads, and for 401 the three bodies as named examples (`x-examples`, which @fastify/swagger turns into the
 * media type's `examples`). A status without a description here is a programming error.
 */
export function errorResponses(
  ...statuses: number[]
): Record<number, typeof ErrorResponse | typeof ValidationErrorResponse> {
  return Object.fromEntries(
    statuses.map((status) => {
      const description = ERROR_DESCRIPTIONS[status]
      if (description === undefined) throw new Error(`no description of error status ${status} in answers.ts`)
      const headers = ERROR_HEADERS[status]
      return [
        status,
        {
          ...(status === 422 ? ValidationErrorResponse : ErrorResponse),
          description,
          ...(headers === undefined ? {} : { headers }),
          ...(status === 401 ? { 'x-examples': UNAUTHORIZED_EXAMPLES } : {}),
        },
      ]
    }),
  )
}
