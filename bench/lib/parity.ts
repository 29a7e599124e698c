// The parity check: the baseline must do the service's work, no less. One request per route to each
// server on the same seed: the same statuses, the same bodies, and exactly the same SQL text on the wire.
import { readFileSync } from 'node:fs'
import type { LoadUser } from './load.ts'

/** What one request to one server gave. */
export interface RouteProbe {
  route: string
  status: number
  body: unknown
  statements: string[]
}

/** Sends one request per route the benchmark drives, as `user`, noting the SQL each one sent (from `captureFile`). */
export async function probeRoutes(baseUrl: string, user: LoadUser, captureFile: string): Promise<RouteProbe[]> {
  const [first, second, third] = user.taskIds
  const routes: [string, string, string, object | undefined][] = [
    ['list', 'GET', '/api/tasks?limit=20', undefined],
    ['get', 'GET', `/api/tasks/${first}`, undefined],
    ['update', 'PUT', `/api/tasks/${second}`, { title: 'Parity check', completed: true }],
    ['toggle', 'PATCH', `/api/tasks/${third}/complete`, undefined],
    ['create', 'POST', '/api/tasks', { title: 'Parity check' }],
  ]
  const captured = (): string[] =>
    readFileSync(captureFile, { encoding: 'utf8', flag: 'a+' })
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as string)
  const probes: RouteProbe[] = []
  for (const [route, method, path, body] of routes) {
    const before = captured().length
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: user.authorization,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    })
    const responseBody: unknown = await response.json()
    probes.push({ route, status: response.status, body: responseBody, statements: captured().slice(before) })
  }
  return probes
}

/** Timestamps set by the clock at write time differ between two runs; everything else must be equal. */
const CLOCK_FIELDS = new Set(['created_at', 'updated_at'])

function canonical(value: unknown, dropClock: boolean): unknown {
  if (Array.isArray(value)) return value.map((item) => canonical(item, dropClock))
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key]) => !(dropClock && CLOCK_FIELDS.has(key)))
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, item]) => [key, canonical(item, dropClock)]),
    )
  }
  return value
}

/** The differences between the service's and the baseline's probes; empty when they match. */
export function compareProbes(service: readonly RouteProbe[], baseline: readonly RouteProbe[]): string[] {
  const problems: string[] = []
  for (const ours of service) {
    const theirs = baseline.find((probe) => probe.route === ours.route)
    if (theirs === undefined) {
      problems.push(`${ours.route}: the baseline was not probed`)
      continue
    }
    if (ours.status !== theirs.status)
      problems.push(`${ours.route}: status ${ours.status} (service) vs ${theirs.status} (baseline)`)
    const dropClock = ours.route !== 'list' && ours.route !== 'get'
    if (JSON.stringify(canonical(ours.body, dropClock)) !== JSON.stringify(canonical(theirs.body, dropClock))) {
      problems.push(
        `${ours.route}: bodies differ\n  service:  ${JSON.stringify(ours.body)}\n  baseline: ${JSON.stringify(theirs.body)}`,
      )
    }
    if (JSON.stringify(ours.statements) !== JSON.stringify(theirs.statements)) {
      problems.push(
        `${ours.route}: SQL differs (update bench/baseline/statements.ts)\n  service:  ${ours.statements.join('\n            ')}\n  baseline: ${theirs.statements.join('\n            ')}`,
      )
    }
  }
  return problems
}
