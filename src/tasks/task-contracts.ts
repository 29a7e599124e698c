// The contract of each task route (docs/contract.md "Endpoints"): what it takes (path, query, headers, body) and every
// answer it gives, as the Fastify schema that validates the request, serializes the response and writes the OpenAPI
// document.
import { Type } from 'typebox'
import { errorResponses } from '../http/answers.ts'
import { BODY_OPTIONAL } from '../http/openapi.ts'
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

const security = [{ bearerAuth: [] }]
const tags = ['tasks']

/** The response schema of a single task, with its ETag header. */
const TaskWithEtag = {
  ...Task,
  headers: { ETag: Type.String({ description: 'Strong entity tag of this version of the task' }) },
}

/** GET /api/tasks: the caller's tasks, filtered, sorted and paged; `X-Total-Count` counts the filter's matches. */
export const listTasks = {
  summary: "List the caller's tasks",
  tags,
  security,
  querystring: TaskListQuery,
  response: {
    200: {
      ...Type.Array(Task),
      headers: { 'X-Total-Count': Type.Integer({ description: 'Tasks matching the filter' }) },
    },
    // 400 on every /api route: two Authorization headers are refused before any route runs.
    ...errorResponses(400, 401, 422, 429, 503),
  },
}

/** POST /api/tasks: creates a task (201 with `Location` and `ETag`), safely retried with `Idempotency-Key`. */
export const createTask = {
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
            description: 'Present when this is the stored answer to an earlier request with the same Idempotency-Key',
          }),
        ),
      },
    },
    ...errorResponses(400, 401, 409, 413, 415, 422, 429, 503),
  },
}

/** GET /api/tasks/{id}: one of the caller's tasks, with its `ETag`. */
export const getTask = {
  summary: 'Get one task',
  tags,
  security,
  params: TaskIdParams,
  response: { 200: TaskWithEtag, ...errorResponses(400, 401, 404, 422, 429, 503) },
}

/** PUT /api/tasks/{id}: a partial update, conditional on `If-Match` when it is sent. */
export const updateTask = {
  summary: 'Update a task (partial)',
  tags,
  security,
  params: TaskIdParams,
  headers: TaskWriteHeaders,
  body: TaskUpdate,
  response: { 200: TaskWithEtag, ...errorResponses(400, 401, 404, 412, 413, 415, 422, 429, 503) },
}

/** PATCH /api/tasks/{id}/complete: no body (or `{}`) toggles `completed`, `{"completed": bool}` sets it. */
export const completeTask = {
  summary: 'Toggle or set completion',
  tags,
  security,
  params: TaskIdParams,
  headers: TaskWriteHeaders,
  body: TaskComplete,
  [BODY_OPTIONAL]: true,
  response: { 200: TaskWithEtag, ...errorResponses(400, 401, 404, 412, 413, 415, 422, 429, 503) },
}

/** DELETE /api/tasks/{id}: 204 with no body, conditional on `If-Match` when it is sent. */
export const deleteTask = {
  summary: 'Delete a task',
  tags,
  security,
  params: TaskIdParams,
  headers: TaskWriteHeaders,
  response: {
    204: Type.Null({ description: 'Deleted' }),
    ...errorResponses(400, 401, 404, 412, 422, 429, 503),
  },
}
