// Requests as one user through app.inject (tokens really signed), and small tools for racing many of them.
import assert from 'node:assert/strict'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { authHeaderFor } from './tokens.ts'

/** A task as the API shows it. */
export interface TaskJson {
  id: number
  title: string
  description: string | null
  completed: boolean
  user_id: string
  created_at: string
  updated_at: string
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** The Content-Type of every JSON answer. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'

/**
 * Requests as one user: every call carries a freshly signed token for `userId`, plus `headers`. With `checkHeaders`,
 * the helpers that assert a status also assert that the answer is JSON, and a list a decimal X-Total-Count.
 */
export function asUser(app: FastifyInstance, userId: string, { checkHeaders = false } = {}) {
  const request = async (
    method: Method,
    url: string,
    payload?: object,
    headers: Record<string, string> = {},
  ): Promise<LightMyRequestResponse> =>
    app.inject({
      method,
      url,
      headers: { ...(await authHeaderFor(userId)), ...headers },
      ...(payload === undefined ? {} : { payload }),
    })
  /** `request`, asserting `status` (and with `checkHeaders`, JSON). */
  const expecting = async (status: number, ...args: Parameters<typeof request>): Promise<LightMyRequestResponse> => {
    const response = await request(...args)
    assert.equal(response.statusCode, status, response.body)
    if (checkHeaders) assert.equal(response.headers['content-type'], JSON_CONTENT_TYPE)
    return response
  }
  return {
    userId,
    request,
    /** POST /api/tasks, asserting 201. */
    async create(body: object, headers: Record<string, string> = {}): Promise<TaskJson> {
      return (await expecting(201, 'POST', '/api/tasks', body, headers)).json<TaskJson>()
    },
    /** GET /api/tasks/{id}, asserting 200; the task and its ETag. */
    async get(id: number): Promise<{ task: TaskJson; etag: string }> {
      const response = await expecting(200, 'GET', `/api/tasks/${id}`)
      return { task: response.json<TaskJson>(), etag: String(response.headers.etag) }
    },
    /** PUT /api/tasks/{id}, asserting 200. */
    async put(id: number, body: object): Promise<TaskJson> {
      return (await expecting(200, 'PUT', `/api/tasks/${id}`, body)).json<TaskJson>()
    },
    /** PATCH /api/tasks/{id}/complete with `body` (none when undefined), asserting 200. */
    async complete(id: number, body?: object): Promise<TaskJson> {
      return (await expecting(200, 'PATCH', `/api/tasks/${id}/complete`, body)).json<TaskJson>()
    },
    /** GET /api/tasks`query` (`?limit=500` by default, `''` for none), asserting 200: the tasks and X-Total-Count. */
    async list(query = '?limit=500'): Promise<{ tasks: TaskJson[]; total: number }> {
      const response = await expecting(200, 'GET', `/api/tasks${query}`)
      const total = response.headers['x-total-count']
      if (checkHeaders) {
        assert.equal(typeof total, 'string', `X-Total-Count missing on ${query}`)
        assert.match(String(total), /^\d+$/)
      }
      return { tasks: response.json<TaskJson[]>(), total: Number(total) }
    },
  }
}

/** How many responses had each status, e.g. `{ 200: 1, 412: 9 }`. */
export function statusCounts(responses: readonly { statusCode: number }[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const response of responses) counts[response.statusCode] = (counts[response.statusCode] ?? 0) + 1
  return counts
}

/** `times` requests, all started before any is awaited. */
export async function race<T>(times: number, request: (i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: times }, (_, i) => request(i)))
}
