// The load: autocannon, closed loop over keep-alive connections, each request built by the scenario so that
// requests rotate through the users and each reads or writes the caller's own rows.
import autocannon from 'autocannon'
import type { Scenario } from './options.ts'

/** One user of the seed as the load sees it: the Authorization header value and the ids of its tasks. */
export interface LoadUser {
  authorization: string
  taskIds: number[]
}

/** One HTTP request of the load, as autocannon's setupRequest takes it. */
export interface LoadRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH'
  path: string
  headers: Record<string, string>
  body?: string
}

type Operation = 'list' | 'get' | 'update' | 'create' | 'toggle'

/** The mixed scenario's cycle of 20: 35 % list, 35 % get, 15 % create, 15 % update, interleaved. */
const MIXED =
  'list get create list get update list get list get create list get update list get create list get update'.split(
    ' ',
  ) as Operation[]

const JSON_TYPE = 'application/json'

/**
 * Gives the next request of a scenario on every call: user `k % users`, so consecutive requests (and
 * the 32 connections) spread over all users; a task of that user chosen by `k`, so reads and writes spread
 * over its rows too. `listQuery` is the list's query string (the scaling run uses deep pages).
 */
export function requestSequence(
  scenario: Scenario,
  users: readonly LoadUser[],
  listQuery = 'limit=20',
): () => LoadRequest {
  let k = 0
  return () => {
    const n = k++
    const user = users[n % users.length] as LoadUser
    const round = Math.floor(n / users.length)
    const taskId = user.taskIds[(round * 7 + n) % user.taskIds.length] ?? 1
    const operation: Operation = scenario === 'mixed' ? (MIXED[n % MIXED.length] as Operation) : scenario
    const headers: Record<string, string> = { authorization: user.authorization }
    switch (operation) {
      case 'list':
        return { method: 'GET', path: `/api/tasks?${listQuery}`, headers }
      case 'get':
        return { method: 'GET', path: `/api/tasks/${taskId}`, headers }
      case 'update':
        return {
          method: 'PUT',
          path: `/api/tasks/${taskId}`,
          headers: { ...headers, 'content-type': JSON_TYPE },
          body: JSON.stringify({ title: `Updated task ${n}`, completed: n % 2 === 0 }),
        }
      case 'create':
        return {
          method: 'POST',
          path: '/api/tasks',
          headers: { ...headers, 'content-type': JSON_TYPE },
          body: JSON.stringify({ title: `New task ${n}` }),
        }
      case 'toggle':
        return { method: 'PATCH', path: `/api/tasks/${taskId}/complete`, headers }
    }
  }
}

/** What one load period gave: counts, the rate, and latency percentiles from every response's own time. */
export interface LoadResult {
  seconds: number
  requests: number
  ok2xx: number
  non2xx: number
  statusCounts: Record<string, number>
  errors: number
  timeouts: number
  rps: number
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number }
}

/**
 * Runs a closed loop of `connections` keep-alive connections against `url` for `seconds`. Latencies are
 * taken from autocannon's per-response times (sub-millisecond), not its histogram, which keeps whole ms.
 */
export async function runLoad(
  url: string,
  connections: number,
  seconds: number,
  next: () => LoadRequest,
): Promise<LoadResult> {
  const latencies: number[] = []
  const statusCounts: Record<string, number> = {}
  let ok2xx = 0
  let non2xx = 0
  const startedAt = performance.now()
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      { url, connections, pipelining: 1, duration: seconds, timeout: 10, requests: [{ setupRequest: () => next() }] },
      (error, result) =>
        error === null || error === undefined
          ? resolve(result)
          : reject(error instanceof Error ? error : new Error(String(error))),
    )
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1
      if (statusCode >= 200 && statusCode < 300) {
        ok2xx++
        latencies.push(responseTime)
      } else non2xx++
    })
  })
  const elapsed = (performance.now() - startedAt) / 1000
  latencies.sort((a, b) => a - b)
  const at = (q: number): number =>
    round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0)
  return {
    seconds: round(elapsed),
    requests: ok2xx + non2xx,
    ok2xx,
    non2xx,
    statusCounts,
    errors: result.errors,
    timeouts: result.timeouts,
    rps: round(ok2xx / elapsed),
    latencyMs: {
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: round(latencies.at(-1) ?? 0),
      mean: round(latencies.reduce((sum, value) => sum + value, 0) / Math.max(1, latencies.length)),
    },
  }
}

const round = (value: number): number => Math.round(value * 100) / 100
