// The task routes of docs/contract.md "Endpoints", thin: validated input in, one store call, the store's answer out.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { TasksDb } from '../db/database.ts'
import type { IdempotencyStore, StoredResponse } from '../idempotency/idempotency-store.ts'
import { answers } from '../http/answers.ts'
import { etagOf, versionsOfIfMatch } from './task-etag.ts'
import { completeTask, createTask, deleteTask, getTask, listTasks, updateTask } from './task-contracts.ts'
import type { Task } from './task-schemas.ts'
import type { TaskStore, WriteOutcome } from './task-store.ts'

/** The task a write gave, or the 404 / 412 it stands for. */
function writtenOrThrow<T>(outcome: WriteOutcome<T>): T {
  if (outcome === 'not-found') throw answers.taskNotFound
  if (outcome === 'stale') throw answers.preconditionFailed
  return outcome
}

/** The response of a created task, as sent and as stored for Idempotency-Key replays. */
function createdResponse(task: Task): StoredResponse {
  return { status: 201, headers: { location: `/api/tasks/${task.id}`, etag: etagOf(task) }, body: task }
}

/**
 * Sends a response built by `createdResponse`, fresh or as stored for a replay: status, headers and body as they are.
 */
async function sendStored(reply: FastifyReply, response: StoredResponse): Promise<FastifyReply> {
  return reply.code(response.status).headers(response.headers).send(response.body)
}

/**
 * POST and PUT: a missing body is 422, and `title` is trimmed before it is validated (docs/contract.md "The task
 * resource"). A callback hook, not an async one: it awaits nothing, and a promise per request is measurable
 * (bench/README.md).
 */
function requireBodyAndTrimTitle(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  if (request.body === undefined) return done(answers.bodyMissing)
  const body: unknown = request.body
  if (typeof body === 'object' && body !== null && 'title' in body && typeof body.title === 'string')
    body.title = body.title.trim()
  done()
}

/** Registers the task routes; mount with `prefix: '/api/tasks'` inside the authenticated scope. */
type TaskRouteStores = { taskStore: TaskStore; idempotency: IdempotencyStore }
export const taskRoutes: FastifyPluginAsyncTypebox<TaskRouteStores> = async (app, { taskStore, idempotency }) => {
  app.get('/', { schema: listTasks }, async (request, reply) => {
    const page = await taskStore.listForOwner(request.userId, request.query)
    reply.header('x-total-count', page.total)
    return page.tasks
  })

  app.post(
    '/',
    {
      preValidation: requireBodyAndTrimTitle,
      schema: createTask,
    },
    async (request, reply) => {
      // Inside an Idempotency-Key's transaction the throw also rolls back the key's claim, so a retry runs afresh.
      const create = async (tx?: TasksDb): Promise<StoredResponse> => {
        const created = await taskStore.createForOwner(request.userId, request.body, tx)
        if (created === 'limit-reached') throw answers.taskLimitReached
        return createdResponse(created)
      }
      const key = request.headers['idempotency-key']
      if (key === undefined) return sendStored(reply, await create())
      const outcome = await idempotency.once(request.userId, key, request.body, create)
      if (outcome.kind === 'mismatch') throw answers.idempotencyKeyReused
      if (outcome.kind === 'in-progress') throw answers.idempotencyKeyInProgress
      if (outcome.kind === 'replay') reply.header('idempotent-replayed', 'true')
      return sendStored(reply, outcome.response)
    },
  )

  app.get('/:id', { schema: getTask }, async (request, reply) => {
    const task = await taskStore.getForOwner(request.userId, request.params.id)
    if (task === null) throw answers.taskNotFound
    return reply.header('etag', etagOf(task)).send(task)
  })

  app.put(
    '/:id',
    {
      preValidation: requireBodyAndTrimTitle,
      schema: updateTask,
    },
    async (request, reply) => {
      const expected = versionsOfIfMatch(request.headers['if-match'])
      const task = writtenOrThrow(
        await taskStore.updateForOwner(request.userId, request.params.id, request.body, expected),
      )
      return reply.header('etag', etagOf(task)).send(task)
    },
  )

  app.patch(
    '/:id/complete',
    {
      // No body (or an empty one with Content-Type: application/json) means toggle.
      preValidation: (request, _reply, done) => {
        if (request.body === undefined) request.body = {}
        done()
      },
      schema: completeTask,
    },
    async (request, reply) => {
      const expected = versionsOfIfMatch(request.headers['if-match'])
      const task = writtenOrThrow(
        await taskStore.completeForOwner(request.userId, request.params.id, request.body.completed, expected),
      )
      return reply.header('etag', etagOf(task)).send(task)
    },
  )

  app.delete('/:id', { schema: deleteTask }, async (request, reply) => {
    writtenOrThrow(
      await taskStore.deleteForOwner(request.userId, request.params.id, versionsOfIfMatch(request.headers['if-match'])),
    )
    return reply.code(204).send(null)
  })
}
