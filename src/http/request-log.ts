// What the log says about a request: the request id it is logged under, and its URL with anything token-like masked.
import { randomUUID } from 'node:crypto'
import type { RawRequestDefaultExpression } from 'fastify'

/** An incoming X-Request-Id is echoed only when it is short and plain, so it cannot forge log lines. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Query parameters whose values are worth logging; any other value (`?access_token=…`, say) is masked. */
const LOGGED_QUERY_PARAMETERS = new Set(['status', 'sort', 'order', 'limit', 'offset'])

/**
 * A JWT-shaped run of text (three dot-separated base64url parts), wherever a client put one. It starts only where a
 * run of word characters starts (the lookbehind): tried from every character of a long run, the pattern backtracked
 * to the run's end each time, quadratic in the URL (a 16 KB path cost about half a second of CPU). The matches are
 * the same, since a run long enough from its middle is long enough from its start, and the third part may be empty.
 */
const JWT_SHAPED = /(?<![\w-])[\w-]{8,}\.[\w-]{8,}\./

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

/** Longest text taken from a request (a claim, an origin) into a log line, in code points. */
const MAX_LOGGED_TEXT = 200

/**
 * `text` as a log line may carry it, for values a client chose (a token's `iss`, an `Origin` header): at most 200 code
 * points (longer is cut and ends with `…`), and `[redacted]` when it could be a credential by `looksLikeCredential`.
 * An http(s) URL written in its normal form (lower-case host, no user or password) is kept when its path, query and
 * fragment pass that test: `https://accounts.example.com` would look JWT-shaped, but a token in a host would not be
 * in normal form.
 */
export function loggableText(text: string): string {
  const codePoints = Array.from(text)
  const capped = codePoints.length > MAX_LOGGED_TEXT ? `${codePoints.slice(0, MAX_LOGGED_TEXT).join('')}…` : text
  return isPlainUrl(capped) || !looksLikeCredential(capped) ? capped : '[redacted]'
}

/** True for an http(s) URL with no user or password, written as parsed up to its host, with a harmless rest. */
function isPlainUrl(text: string): boolean {
  if (!URL.canParse(text)) return false
  const url = new URL(text)
  return (
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    url.username === '' &&
    url.password === '' &&
    text.startsWith(`${url.protocol}//${url.host}`) &&
    !looksLikeCredential(text.slice(`${url.protocol}//${url.host}`.length))
  )
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
