// The HTTP server, with a bound on what one connection can make the process hold (docs/operations.md "Failure
// behaviour"): each connection's requests run one at a time, at most HTTP_MAX_PIPELINED_REQUESTS deep, each reply
// written within HTTP_SEND_TIMEOUT_MS, none after a reply that closes the connection (RFC 9112 §9.6); closing ends the
// connections with no request started. Why Node's server needs this: docs/decisions/one-request-per-connection.md.
import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type ServerOptions,
  type ServerResponse,
} from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyServerFactory } from 'fastify'
import { awaitContinue, refuseExpectation } from './request-framing.ts'

/** The limits, from `Config` (HTTP_MAX_PIPELINED_REQUESTS, HTTP_SEND_TIMEOUT_MS). */
export interface ConnectionLimits {
  /** Requests one connection may have received and not yet been answered (the one being served included). */
  maxPipelinedRequests: number
  /** Ms a reply may take to be written to the network in full once its head is written; then the connection closes. */
  sendTimeoutMs: number
}

/** How often the replies being sent are checked against `sendTimeoutMs`: a cut comes within this much of it. */
const SEND_CHECK_INTERVAL_MS = 1000

/** One connection's requests: the one being served (if any) and those parsed behind it, in order. */
interface ConnectionQueue {
  /** True while a request is with the handler (until its reply is written in full). */
  serving: boolean
  /** True between the first request of a read and the serving of it (see below). */
  starting: boolean
  /** True once a reply closed the connection: nothing more is served on it. */
  closing: boolean
  waiting: [IncomingMessage, ServerResponse][]
}

/** A reply being served, and when its head was first seen written (ms since the epoch; 0 while not yet). */
interface Sending {
  socket: Socket
  headSeenAt: number
}

/**
 * Fastify's `serverFactory`: the HTTP/1.1 server Fastify would make (`options.http`, `keepAliveTimeout`,
 * `requestTimeout`, `connectionTimeout`, as lib/server.js sets them), with every connection's requests served one
 * at a time under `limits`. Also used for the extra bindings of `localhost` (IPv4 and IPv6), which Fastify makes
 * through the same factory. Two framing rules are left to `installRequestFraming`'s hooks: a missing Host
 * (`requireHostHeader: false`, since Node's own 400 has no body) and `Expect: 100-continue` ('checkContinue': Node
 * sends no `100` by itself, and the request joins its connection's queue like any other), as does any other `Expect`
 * ('checkExpectation': refused with 417 by the hook, where Node's own 417 would bypass the queue and its bounds).
 */
export function connectionLimitedServerFactory(limits: ConnectionLimits): FastifyServerFactory {
  return (handler, rawOptions) => {
    // Fastify passes its own options, defaults filled in; typed loosely by Fastify, so read as they are documented.
    const options = rawOptions as {
      http?: ServerOptions
      keepAliveTimeout: number
      requestTimeout: number
      connectionTimeout: number
    }
    const { listener, hasRequest } = limitConnections(handler, limits)
    const server = createServer({ ...options.http, requireHostHeader: false }, listener)
    const sockets = new Set<Socket>()
    server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    // Called by server.close() (lib/_http_server.js: httpServerPreClose) and by Fastify's close
    // (forceCloseConnections 'idle'), before the listening socket closes, in the same tick.
    server.closeIdleConnections = () => {
      for (const socket of sockets) if (!hasRequest(socket)) socket.destroy()
    }
    server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
      awaitContinue(response)
      listener(request, response)
    })
    server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
      refuseExpectation(response)
      listener(request, response)
    })
    server.keepAliveTimeout = options.keepAliveTimeout
    server.requestTimeout = options.requestTimeout
    server.setTimeout(options.connectionTimeout)
    return server
  }
}

/**
 * Wraps a 'request' listener so that each connection's requests reach it one at a time, under `limits`;
 * `hasRequest(socket)` is true while a request of that connection is being served or waits to be.
 */
function limitConnections(
  handler: RequestListener,
  limits: ConnectionLimits,
): { listener: RequestListener; hasRequest: (socket: Socket) => boolean } {
  const queues = new WeakMap<Socket, ConnectionQueue>()
  const sending = new Map<ServerResponse, Sending>()
  let checker: NodeJS.Timeout | undefined

  const checkSends = (): void => {
    const now = Date.now()
    for (const [response, send] of sending) {
      if (send.headSeenAt === 0) {
        if (response.headersSent) send.headSeenAt = now
      } else if (now - send.headSeenAt >= limits.sendTimeoutMs) {
        sending.delete(response)
        send.socket.destroy()
      }
    }
    if (sending.size === 0) {
      clearInterval(checker)
      checker = undefined
    }
  }

  const serveNext = (socket: Socket, queue: ConnectionQueue): void => {
    if (queue.closing) queue.waiting.length = 0
    const next = queue.waiting.shift()
    queue.serving = next !== undefined && !socket.destroyed
    if (!queue.serving || next === undefined) return
    const [request, response] = next
    let done = false
    // 'finish': the whole reply is in the kernel's buffer (Node calls it back from the socket write of its last
    // byte); 'close' also comes when the connection is lost first.
    const finished = (): void => {
      if (done) return
      done = true
      sending.delete(response)
      if (!response.writableFinished || closesConnection(response)) queue.closing = true
      serveNext(socket, queue)
    }
    response.once('finish', finished).once('close', finished)
    sending.set(response, { socket, headSeenAt: 0 })
    // unref: a reply still being sent does not keep the process alive (the server's connections do, if they must).
    checker ??= setInterval(checkSends, SEND_CHECK_INTERVAL_MS).unref()
    handler(request, response)
  }

  const hasRequest = (socket: Socket): boolean => {
    const queue = queues.get(socket)
    return queue !== undefined && (queue.serving || queue.waiting.length > 0)
  }

  const listener: RequestListener = (request, response) => {
    const socket = request.socket
    if (socket.destroyed) return // the rest of a read whose connection was closed for pipelining too deep
    let queue = queues.get(socket)
    if (queue === undefined) {
      queue = { serving: false, starting: false, closing: false, waiting: [] }
      queues.set(socket, queue)
    }
    if (queue.closing) return
    if (queue.waiting.length + (queue.serving ? 1 : 0) >= limits.maxPipelinedRequests) {
      // Only a broken or hostile client pipelines this deep (browsers do not pipeline): its replies cannot be
      // written in order without holding them, so the connection is closed.
      queue.waiting.length = 0
      socket.destroy()
      return
    }
    queue.waiting.push([request, response])
    if (queue.serving || queue.starting) return
    // Started once Node has parsed the whole read (setImmediate runs after the I/O callbacks): a read that holds more
    // requests than the limit closes the connection before any of them has cost a database query or a reply.
    queue.starting = true
    setImmediate(() => {
      queue.starting = false
      serveNext(socket, queue)
    })
  }
  return { listener, hasRequest }
}

/** True when a sent reply ended its connection: `Connection: close` set by a hook, or decided by Node. */
function closesConnection(response: ServerResponse): boolean {
  const connection = response.getHeader('connection')
  return !response.shouldKeepAlive || (typeof connection === 'string' && /\bclose\b/i.test(connection))
}
