// Message framing rules of RFC 9112 that Node's HTTP server leaves to the application: no request runs after a
// response that closes its connection, an oversized or unread body is never read, `100 Continue` only for a request
// that will be read, and a missing Host is a 400 with API.md's error body.
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyHttpOptions, FastifyInstance } from 'fastify'
import { BODY_TOO_LARGE_DETAIL } from './errors.ts'
import { applySecurityHeaders, BODY_LIMIT_BYTES } from './security.ts'

type RequestHandler = (request: IncomingMessage, response: ServerResponse) => void

/** The requests of one connection: whether one is being answered, those waiting behind it, and whether it closes. */
interface ConnectionState {
  answering: boolean
  closing: boolean
  waiting: [IncomingMessage, ServerResponse][]
}

const connections = new WeakMap<Socket, ConnectionState>()

/** The responses whose request asked for `100 Continue` and has not got it yet. */
const awaitingContinue = new WeakSet<ServerResponse>()

/**
 * Fastify's `serverFactory`: the HTTP/1.1 server Fastify would build from the same options (`http`, `keepAliveTimeout`,
 * `requestTimeout`, `connectionTimeout`), with Host left to `installRequestFraming` (Node's own 400 has no body), and
 * every request passed to Fastify's `handler` one at a time per connection:
 * - a pipelined request waits until the response before it has been sent, and is dropped without running when that
 *   response closed the connection (`Connection: close`, or Node's `shouldKeepAlive` false): RFC 9112 §9.6 forbids
 *   processing further requests after `close`, and their answers could never be written;
 * - `Expect: 100-continue` is not answered by Node at once ('checkContinue'): `100 Continue` is sent by the
 *   preParsing hook, once every onRequest check (authentication included) has let the request through.
 */
export function createFramedServer(handler: RequestHandler, options: FastifyHttpOptions<Server>): Server {
  const serverOptions: ServerOptions = { ...(options.http ?? {}), requireHostHeader: false }
  const dispatch: RequestHandler = (request, response) => {
    const socket = request.socket
    let state = connections.get(socket)
    if (state === undefined) {
      state = { answering: false, closing: false, waiting: [] }
      connections.set(socket, state)
    }
    if (state.closing) return
    if (state.answering) state.waiting.push([request, response])
    else answer(state, request, response)
  }
  const answer = (state: ConnectionState, request: IncomingMessage, response: ServerResponse): void => {
    state.answering = true
    let settled = false
    const settle = (): void => {
      if (settled) return
      settled = true
      state.answering = false
      if (!response.writableFinished || closesConnection(response)) state.closing = true
      const next = state.closing ? undefined : state.waiting.shift()
      if (state.closing) state.waiting.length = 0
      if (next !== undefined) answer(state, ...next)
    }
    response.once('finish', settle).once('close', settle)
    handler(request, response)
  }
  const server = createServer(serverOptions, dispatch)
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    awaitingContinue.add(response)
    dispatch(request, response)
  })
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout
  if (options.requestTimeout !== undefined) server.requestTimeout = options.requestTimeout
  if (options.connectionTimeout !== undefined) server.setTimeout(options.connectionTimeout)
  return server
}

/** True when a sent response ended its connection: `Connection: close` set by a hook, or decided by Node. */
function closesConnection(response: ServerResponse): boolean {
  const connection = response.getHeader('connection')
  return !response.shouldKeepAlive || (typeof connection === 'string' && /\bclose\b/i.test(connection))
}

/** Detail of the 400 for an HTTP/1.1 request without Host (RFC 9112 §3.2). */
export const HOST_MISSING_DETAIL = 'Missing Host header'

/**
 * The framing rules, as the first onRequest hook (before CORS and authentication) and two later ones:
 * - an HTTP/1.1 request without `Host` is 400 `{"detail": "Missing Host header"}` (RFC 9112 §3.2); that answer sets
 *   the request id and security headers itself, since the hook that sets them has not run yet;
 * - `100 Continue` is sent just before the body is parsed (preParsing), never to a request already answered;
 * - a response sent before its request's body was read in full (a 401, 404, 413…) carries `Connection: close`, and
 *   the rest of the body is never read (`closeWithoutReading`): Node would read it all to reuse the connection.
 */
export function installRequestFraming(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    if (request.raw.httpVersion !== '1.1' || request.headers.host !== undefined) return done()
    applySecurityHeaders(request, reply)
    void reply.code(400).send({ detail: HOST_MISSING_DETAIL })
  })
  app.addHook('preParsing', (_request, reply, payload, done) => {
    if (awaitingContinue.delete(reply.raw) && !reply.raw.headersSent) reply.raw.writeContinue()
    done(null, payload)
  })
  app.addHook('onSend', (request, reply, payload, done) => {
    // `complete` is a boolean on Node's requests only (an injected request has none, and no socket to close).
    if (request.raw.complete === false) closeWithoutReading(reply.raw)
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
    void reply.code(413).send({ detail: BODY_TOO_LARGE_DETAIL })
  })
}
