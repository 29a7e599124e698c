// Message framing rules of RFC 9112 that Node's HTTP server leaves to the application: an oversized or unread body
// is never read, `100 Continue` only for a request that will be read, and a missing Host is a 400 with
// docs/contract.md's error body. (No request runs after a response that closes its connection: connection-limits.ts.)
import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { answers, type HttpError, sendAnswer } from './answers.ts'
import { BODY_LIMIT_BYTES } from './body-parsing.ts'
import { applySecurityHeaders } from './security-headers.ts'

/** The responses whose request asked for `100 Continue` and has not got it yet. */
const awaitingContinue = new WeakSet<ServerResponse>()

/**
 * Marks a request that came with `Expect: 100-continue` (the server's 'checkContinue', for which Node sends nothing
 * itself): `installRequestFraming`'s preParsing hook sends `100 Continue` once every onRequest check has let it
 * through.
 */
export function awaitContinue(response: ServerResponse): void {
  awaitingContinue.add(response)
}

/** The responses whose request carries an `Expect` other than `100-continue` (the server's 'checkExpectation'). */
const unmetExpectations = new WeakSet<ServerResponse>()

/**
 * Marks a request whose `Expect` this server cannot meet: Node would answer 417 itself, bodiless and outside the
 * connection's queue; `installRequestFraming`'s first hook answers it instead, in turn and with docs/contract.md's
 * body.
 */
export function refuseExpectation(response: ServerResponse): void {
  unmetExpectations.add(response)
}

/** The answer to a framing error, given before CORS and authentication (RFC 9112 §3.2, RFC 9110 §10.1.1). */
function framingRefusal(request: FastifyRequest, response: ServerResponse): HttpError | undefined {
  if (unmetExpectations.has(response)) return answers.expectationFailed
  let hosts = 0
  const raw = request.raw.rawHeaders
  for (let index = 0; index < raw.length; index += 2)
    if (raw[index]?.length === 4 && raw[index]?.toLowerCase() === 'host') hosts += 1
  if (hosts > 1) return answers.hostDuplicated
  if (hosts === 0 && request.raw.httpVersion === '1.1') return answers.hostMissing
  return undefined
}

/**
 * The framing rules, as the first onRequest hook (before CORS and authentication) and two later ones:
 * - an HTTP/1.1 request without `Host` is 400, one with two `Host` lines 400 (RFC 9112 §3.2: a proxy in front may
 *   read the other), and an `Expect` other than `100-continue` 417 (`answers.hostMissing`, `hostDuplicated`,
 *   `expectationFailed`); these answers set the request id and security headers themselves, since the hook that sets
 *   them has not run yet;
 * - `100 Continue` is sent just before the body is parsed (preParsing), never to a request already answered;
 * - a response sent before its request's body was read in full (a 401, 404, 413…) carries `Connection: close`, and
 *   the rest of the body is never read (`closeWithoutReading`): Node would read it all to reuse the connection.
 */
export function installRequestFraming(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    const refusal = framingRefusal(request, reply.raw)
    if (refusal === undefined) return done()
    applySecurityHeaders(request, reply)
    void sendAnswer(reply, refusal)
  })
  app.addHook('preParsing', (_request, reply, payload, done) => {
    if (awaitingContinue.delete(reply.raw) && !reply.raw.headersSent) reply.raw.writeContinue()
    done(null, payload)
  })
  app.addHook('onSend', (request, reply, payload, done) => {
    // `complete` is a boolean on Node's requests only (an injected request has none, and no socket to close). A 413
    // closes too when its body happens to be all in already (a larger socket read, as on Node 24): the requests
    // pipelined behind a refused body must not run (RFC 9112 §9.6), and the client learns so from `close`.
    if (request.raw.complete === false || (reply.statusCode === 413 && typeof request.raw.complete === 'boolean')) {
      closeWithoutReading(reply.raw)
    }
    done(null, payload)
  })
}

/** How long a connection whose request body was not read stays open after the answer, reading nothing (ms). */
const LINGER_MS = 2000

/**
 * Ends the connection of a response sent before its request's body was read, with a lingering close that reads
 * nothing more: `Connection: close`, a FIN right after the response, the socket paused (Node would otherwise read and
 * drop the rest of the body, at wire speed), and destroyed after LINGER_MS. Closing at once, with the client's unsent
 * body arriving, would reset the connection: a client busy writing gets the write error and drops the unread answer.
 * While it is paused, its unread bytes stop it within the sockets' buffers, and it reads the answer.
 */
function closeWithoutReading(response: ServerResponse): void {
  response.setHeader('connection', 'close')
  const socket = response.socket
  if (socket === null) return
  // Node's HTTP server ends a Connection: close response's socket with destroySoon(), once the response is sent.
  socket.destroySoon = () => {
    socket.end()
    // Node resumes the socket to drain the unread body (IncomingMessage._dump): every resume is undone.
    const stopReading = (): void => void socket.pause()
    stopReading()
    socket.on('resume', stopReading)
    const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref()
    socket.once('close', () => clearTimeout(timer))
  }
}

/**
 * A declared `Content-Length` over BODY_LIMIT_BYTES is 413 at once, whatever the token: registered after CORS (a
 * browser can read the 413) and before authentication. None of the body is read, and the connection closes after the
 * answer (`installRequestFraming`'s onSend): an unauthenticated client cannot make the server read gigabytes.
 */
export function refuseDeclaredOversizedBodies(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    if (!(Number(request.headers['content-length']) > BODY_LIMIT_BYTES)) return done()
    void sendAnswer(reply, answers.bodyTooLarge)
  })
}
