// Answers written straight to a socket, where there is no request and no reply: the errors of Node's HTTP parser.
import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { answerOfParserError } from './answers.ts'

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
    const { status, detail } = answerOfParserError(error.code)
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
