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

/** Requests as one user: every call carries a freshly signed token for `userId`, plus `headers`. */
export function asUser(app: FastifyInstance, userId: string) {
  const request = async (
    method: Method,
    url: string,
    payload?: object,
    headers: Record<string, string> = {},
  ): Promise<LightMyRequestResponse> =>
    app.inject({ method, url, headers: { ...(await authHeaderFor(userId)), ...headers }, ...(payload === undefined ? {} : { payload }) })
  return {
    userId,
    request,
    /** POST /api/tasks, asserting 201. */
    async create(body: object, headers: Record<string, string> = {}): Promise<TaskJson> {
      const response = await request('POST', '/api/tasks', body, headers)
      assert.equal(response.statusCode, 201, response.body)
      return response.json<TaskJson>()
    },
    /** GET /api/tasks/{id}, asserting 200; the task and its ETag. */
    async get(id: number): Promise<{ task: TaskJson; etag: string }> {
      const response = await request('GET', `/api/tasks/${id}`)
      assert.equal(response.statusCode, 200, response.body)
      return { task: response.json<TaskJson>(), etag: String(response.headers.etag) }
    },
    /** GET /api/tasks?limit=500, asserting 200: the tasks and X-Total-Count. */
    async list(): Promise<{ tasks: TaskJson[]; total: number }> {
      const response = await request('GET', '/api/tasks?limit=500')
      assert.equal(response.statusCode, 200, response.body)
      return { tasks: response.json<TaskJson[]>(), total: Number(response.headers['x-total-count']) }
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
