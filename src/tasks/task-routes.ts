// The task routes of API.md "Endpoints", thin: validated input in, one store call, the store's answer out.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { TasksDb } from '../db/database.ts'
import type { IdempotencyStore, StoredResponse } from '../idempotency/idempotency-store.ts'
import { BODY_MISSING, errorResponses, HttpError } from '../http/errors.ts'
import { etagOf, versionsOfIfMatch } from './task-etag.ts'
import {
  Task,
  TaskComplete,
  TaskCreate,
  TaskCreateHeaders,
  TaskIdParams,
  TaskListQuery,
  TaskUpdate,
  TaskWriteHeaders,
} from './task-schemas.ts'
import type { TaskStore, WriteOutcome } from './task-store.ts'

const TASK_NOT_FOUND = new HttpError(404, 'Task not found')
const PRECONDITION_FAILED = new HttpError(412, 'Precondition failed')
/** A 422 in the validation shape, so a client handles every 422 alike. */
const KEY_REUSED = new HttpError(422, [
  {
    loc: ['header', 'idempotency-key'],
    msg: 'This Idempotency-Key was already used with a different request body',
    type: 'idempotency_key_reused',
  },
])
const KEY_IN_PROGRESS = new HttpError(409, 'A request with this Idempotency-Key is still in progress; retry it later', {
  'retry-after': '1',
})
/** API.md "Errors": a create when the user already owns `MAX_TASKS_PER_USER` tasks. */
const TASK_LIMIT_REACHED = new HttpError(409, 'Task limit reached')
const security = [{ bearerAuth: [] }]
const tags = ['tasks']

/** The response schema of a single task, with its ETag header. */
const TaskWithEtag = {
  ...Task,
  headers: { ETag: Type.String({ description: 'Strong entity tag of this version of the task' }) },
}

/** The task a write gave, or the 404 / 412 it stands for. */
function writtenOrThrow<T>(outcome: WriteOutcome<T>): T {
  if (outcome === 'not-found') throw TASK_NOT_FOUND
  if (outcome === 'stale') throw PRECONDITION_FAILED
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

/** 412 of the If-Match routes, described for the OpenAPI document. */
const preconditionFailed = {
  412: { ...errorResponses(412)[412], description: 'If-Match names a version the task no longer has: nothing changed' },
}

/**
 * POST and PUT: a missing body is 422, and `title` is trimmed before it is validated (API.md "The task resource").
 * A callback hook, not an async one: it awaits nothing, and a promise per request is measurable (bench/README.md).
 */
function requireBodyAndTrimTitle(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  if (request.body === undefined) return done(BODY_MISSING)
  const body: unknown = request.body
  if (typeof body === 'object' && body !== null && 'title' in body && typeof body.title === 'string')
    body.title = body.title.trim()
  done()
}

/** Registers the task routes; mount with `prefix: '/api/tasks'` inside the authenticated scope. */
type TaskRouteStores = { taskStore: TaskStore; idempotency: IdempotencyStore }
export const taskRoutes: FastifyPluginAsyncTypebox<TaskRouteStores> = async (app, { taskStore, idempotency }) => {
  app.get(
    '/',
    {
      schema: {
        summary: "List the caller's tasks",
        tags,
        security,
        querystring: TaskListQuery,
        response: {
          200: {
            ...Type.Array(Task),
            headers: { 'X-Total-Count': Type.Integer({ description: 'Tasks matching the filter' }) },
          },
          ...errorResponses(401, 422, 503),
        },
      },
    },
    async (request, reply) => {
      const page = await taskStore.listForOwner(request.userId, request.query)
      reply.header('x-total-count', page.total)
      return page.tasks
    },
  )

  app.post(
    '/',
    {
      preValidation: requireBodyAndTrimTitle,
      schema: {
        summary: 'Create a task',
        tags,
        security,
        headers: TaskCreateHeaders,
        body: TaskCreate,
        response: {
          201: {
            ...Task,
            headers: {
              Location: Type.String({ description: 'The new task: /api/tasks/{id}' }),
              ETag: Type.String({ description: 'Strong entity tag of the new task' }),
              'Idempotent-Replayed': Type.Optional(
                Type.Literal('true', {
                  description:
                    'Present when this is the stored answer to an earlier request with the same Idempotency-Key',
                }),
              ),
            },
          },
          409: {
            ...errorResponses(409)[409],
            description:
              'The user already owns MAX_TASKS_PER_USER tasks, or a request with the same Idempotency-Key is still in progress',
          },
          ...errorResponses(400, 401, 413, 415, 422, 503),
        },
      },
    },
    async (request, reply) => {
      // Inside an Idempotency-Key's transaction the throw also rolls back the key's claim, so a retry runs afresh.
      const create = async (tx?: TasksDb): Promise<StoredResponse> => {
        const created = await taskStore.createForOwner(request.userId, request.body, tx)
        if (created === 'limit-reached') throw TASK_LIMIT_REACHED
        return createdResponse(created)
      }
      const key = request.headers['idempotency-key']
      if (key === undefined) return sendStored(reply, await create())
      const outcome = await idempotency.once(request.userId, key, request.body, create)
      if (outcome.kind === 'mismatch') throw KEY_REUSED
      if (outcome.kind === 'in-progress') throw KEY_IN_PROGRESS
      if (outcome.kind === 'replay') reply.header('idempotent-replayed', 'true')
      return sendStored(reply, outcome.response)
    },
  )

  app.get(
    '/:id',
    {
      schema: {
        summary: 'Get one task',
        tags,
        security,
        params: TaskIdParams,
        response: { 200: TaskWithEtag, ...errorResponses(401, 404, 422, 503) },
      },
    },
    async (request, reply) => {
      const task = await taskStore.getForOwner(request.userId, request.params.id)
      if (task === null) throw TASK_NOT_FOUND
      return reply.header('etag', etagOf(task)).send(task)
    },
  )

  app.put(
    '/:id',
    {
      preValidation: requireBodyAndTrimTitle,
      schema: {
        summary: 'Update a task (partial)',
        tags,
        security,
        params: TaskIdParams,
        headers: TaskWriteHeaders,
        body: TaskUpdate,
        response: { 200: TaskWithEtag, ...preconditionFailed, ...errorResponses(400, 401, 404, 413, 415, 422, 503) },
      },
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
      schema: {
        summary: 'Toggle or set completion',
        tags,
        security,
        params: TaskIdParams,
        headers: TaskWriteHeaders,
        body: TaskComplete,
        response: { 200: TaskWithEtag, ...preconditionFailed, ...errorResponses(400, 401, 404, 413, 415, 422, 503) },
      },
    },
    async (request, reply) => {
      const expected = versionsOfIfMatch(request.headers['if-match'])
      const task = writtenOrThrow(
        await taskStore.completeForOwner(request.userId, request.params.id, request.body.completed, expected),
      )
      return reply.header('etag', etagOf(task)).send(task)
    },
  )

  app.delete(
    '/:id',
    {
      schema: {
        summary: 'Delete a task',
        tags,
        security,
        params: TaskIdParams,
        headers: TaskWriteHeaders,
        response: {
          204: Type.Null({ description: 'Deleted' }),
          ...preconditionFailed,
          ...errorResponses(401, 404, 422, 503),
        },
      },
    },
    async (request, reply) => {
      const expected = versionsOfIfMatch(request.headers['if-match'])
      writtenOrThrow(await taskStore.deleteForOwner(request.userId, request.params.id, expected))
      return reply.code(204).send(null)
    },
  )
}
