// Connections while the app closes (SIGTERM): every answer finished from then on ends its connection.
import type { FastifyInstance } from 'fastify'

/**
 * Sets `Connection: close` on every response sent once closing has started. Otherwise a request routed before
 * SIGTERM leaves a kept-alive connection that holds the drain open until HTTP_KEEP_ALIVE_TIMEOUT_MS: Node closes
 * idle connections once, when closing starts, and Fastify sets Connection: close only on requests routed after it.
 */
export function closeConnectionsWhileClosing(app: FastifyInstance): void {
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })
}
