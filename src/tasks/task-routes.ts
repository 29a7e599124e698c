// The task routes of API.md "Endpoints", thin: validated input in, one store call, the store's answer out.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { BODY_MISSING, errorResponses, HttpError } from '../http/errors.ts'
import { Task, TaskComplete, TaskCreate, TaskIdParams, TaskListQuery, TaskUpdate } from './task-schemas.ts'
import type { TaskStore } from './task-store.ts'

const TASK_NOT_FOUND = new HttpError(404, 'Task not found')
const security = [{ bearerAuth: [] }]
const tags = ['tasks']

/** POST and PUT: a missing body is 422, and `title` is trimmed before it is validated (API.md "The task resource"). */
async function requireBodyAndTrimTitle(request: FastifyRequest): Promise<void> {
  if (request.body === undefined) throw BODY_MISSING
  const body: unknown = request.body
  if (typeof body === 'object' && body !== null && 'title' in body && typeof body.title === 'string') body.title = body.title.trim()
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
        body: TaskCreate,
        response: { 201: Task, ...errorResponses(400, 401, 413, 415, 422, 503) },
      },
    },
    async (request, reply) => {
      const task = await taskStore.createForOwner(request.userId, request.body)
      return reply.code(201).header('location', `/api/tasks/${task.id}`).send(task)
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
        response: { 200: Task, ...errorResponses(401, 404, 422, 503) },
      },
    },
    async (request) => {
      const task = await taskStore.getForOwner(request.userId, request.params.id)
      if (task === null) throw TASK_NOT_FOUND
      return task
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
        body: TaskUpdate,
        response: { 200: Task, ...errorResponses(400, 401, 404, 413, 415, 422, 503) },
      },
    },
    async (request) => {
      const task = await taskStore.updateForOwner(request.userId, request.params.id, request.body)
      if (task === null) throw TASK_NOT_FOUND
      return task
    },
  )

  app.patch(
    '/:id/complete',
    {
      // No body (or an empty one with Content-Type: application/json) means toggle.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {}
      },
      schema: {
        summary: 'Toggle or set completion',
        tags,
        security,
        params: TaskIdParams,
        body: TaskComplete,
        response: { 200: Task, ...errorResponses(400, 401, 404, 413, 415, 422, 503) },
      },
    },
    async (request) => {
      const task = await taskStore.completeForOwner(request.userId, request.params.id, request.body.completed)
      if (task === null) throw TASK_NOT_FOUND
      return task
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
        response: { 204: Type.Null({ description: 'Deleted' }), ...errorResponses(401, 404, 422, 503) },
      },
    },
    async (request, reply) => {
      if (!(await taskStore.deleteForOwner(request.userId, request.params.id))) throw TASK_NOT_FOUND
      return reply.code(204).send(null)
    },
  )
}
