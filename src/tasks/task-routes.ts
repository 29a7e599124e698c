// The task routes of API.md "Endpoints", thin: validated input in, one store call, the store's answer out.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { StoredResponse } from '../idempotency/idempotency-store.ts'
import { answers, errorResponses } from '../http/answers.ts'
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

const security = [{ bearerAuth: [] }]
const tags = ['tasks']

/** The response schema of a single task, with its ETag header. */
const TaskWithEtag = {
  ...Task,
  headers: { ETag: Type.String({ description: 'Strong entity tag of this version of the task' }) },
}

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

/** 412 of the If-Match routes, described for the OpenAPI document. */
const preconditionFailed = {
  412: { ...errorResponses(412)[412], description: 'If-Match names a version the task no longer has: nothing changed' },
}

/**
 * POST and PUT: a missing body is 422, and `title` is trimmed before it is validated (API.md "The task resource").
 * A callback hook, not an async one: it awaits nothing, and a promise per request is measurable (bench/README.md).
 */
function requireBodyAndTrimTitle(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  if (request.body === undefined) return done(answers.bodyMissing)
  const body: unknown = request.body
  if (typeof body === 'object' && body !== null && 'title' in body && typeof body.title === 'string')
    body.title = body.title.trim()
  done()
}

/** Registers the task routes; mount with `prefix: '/api/tasks'` inside the authenticated scope. */
export const taskRoutes: FastifyPluginAsyncTypebox<{ taskStore: TaskStore }> = async (app, { taskStore }) => {
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
      const key = request.headers['idempotency-key']
      if (key === undefined) {
        const created = await taskStore.createForOwner(request.userId, request.body)
        if (created === 'limit-reached') throw answers.taskLimitReached
        return sendStored(reply, createdResponse(created))
      }
      const outcome = await taskStore.createForOwnerOnce(request.userId, key, request.body, createdResponse)
      if (outcome === 'limit-reached') throw answers.taskLimitReached
      if (outcome.kind === 'mismatch') throw answers.idempotencyKeyReused
      if (outcome.kind === 'in-progress') throw answers.idempotencyKeyInProgress
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
      if (task === null) throw answers.taskNotFound
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
      writtenOrThrow(
        await taskStore.deleteForOwner(
          request.userId,
          request.params.id,
          versionsOfIfMatch(request.headers['if-match']),
        ),
      )
      return reply.code(204).send(null)
    },
  )
}
