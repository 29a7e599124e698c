// Liveness and readiness for load balancers and orchestrators: public, outside the /api scope.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { answers } from '../http/answers.ts'

const Status = Type.Object({ status: Type.Enum(['ok', 'unavailable'], { type: 'string' }) })

/** `/health`: the process answers (no database). `/ready`: the database answers `select 1`, else 503. */
export const healthRoutes: FastifyPluginAsyncTypebox<{ ping: () => Promise<void> }> = async (app, { ping }) => {
  app.get('/health', { schema: { summary: 'Liveness', tags: ['health'], response: { 200: Status } } }, async () => ({
    status: 'ok' as const,
  }))

  app.get(
    '/ready',
    { schema: { summary: 'Readiness: checks the database', tags: ['health'], response: { 200: Status, 503: Status } } },
    async (request, reply) => {
      try {
        await ping()
        return { status: 'ok' as const }
      } catch (error) {
        request.log.warn(
          { cause: error instanceof Error ? error.message : String(error) },
          'database unavailable: /ready answered 503',
        )
        // The 503 of every other route, with this route's own body.
        const { status, headers } = answers.serviceUnavailable
        return reply
          .code(status)
          .headers(headers)
          .send({ status: 'unavailable' as const })
      }
    },
  )
}
