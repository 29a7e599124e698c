// Clients that pipeline many requests on a connection and never read a reply, held open
// against a real server on loopback, while a well-behaved client measures its latency and the server's RSS is sampled.
// Shared by test/process/hostile-pipelining.test.ts (which asserts bounds) and bench/hostile-pipelining.ts (which
// reports).
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'

/**
 * The longest text the API stores of each field (task-schemas.ts), filled with U+0001: JSON spells each as `\u0001`.
 */
const TITLE_LENGTH = 200
const DESCRIPTION_LENGTH = 1000

/**
 * Creates `count` tasks for the token's user whose title and description are all control characters (6 bytes each in
 * JSON: a 500-task page is ~3.7 MB). Returns the id of the first, for a well-behaved client's GET /api/tasks/{id}.
 */
export async function seedControlCharacterTasks(url: string, token: string, count: number): Promise<number> {
  const body = JSON.stringify({
    title: '\u0001'.repeat(TITLE_LENGTH),
    description: '\u0001'.repeat(DESCRIPTION_LENGTH),
  })
  let firstId = 0
  for (let created = 0; created < count; created += 20) {
    const batch = Array.from({ length: Math.min(20, count - created) }, async () => {
      const response = await fetch(`${url}/api/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      })
      if (response.status !== 201) throw new Error(`seeding a task answered ${response.status}`)
      return ((await response.json()) as { id: number }).id
    })
    const ids = await Promise.all(batch)
    firstId ||= Math.min(...ids)
  }
  return firstId
}

/** What the hostile connections sent, and how the server treated them. */
export interface AttackCounts {
  /** Connections opened (a connection the server closed is opened again while the attack lasts). */
  opened: number
  /** Connections the server closed (or reset) while the attack lasted. */
  closedByServer: number
  /** Requests written. */
  requests: number
}

/** A running attack; `stop()` destroys every hostile connection and resolves with the counts. */
export interface Attack {
  counts: AttackCounts
  stop(): Promise<AttackCounts>
}

/**
 * The attack's kinds of connection. `deep`: the issue's two floods, ~120 KB of `GET /openapi.json` without a token
 * (finding 1) and 180 pages of 500 tasks (finding 2), far past the server's limit on pipelined requests. `shallow`:
 * each flood only 8 requests deep, under that limit, so the server serves them and must hold what it cannot send.
 */
export const ATTACKS = {
  deep: [
    { path: '/openapi.json', authorized: false, depth: Math.ceil((120 * 1024) / 47) },
    { path: '/api/tasks?limit=500', authorized: true, depth: 180 },
  ],
  shallow: [
    { path: '/openapi.json', authorized: false, depth: 8 },
    { path: '/api/tasks?limit=500', authorized: true, depth: 8 },
  ],
} as const

type Kind = (typeof ATTACKS)[keyof typeof ATTACKS][number]

/**
 * Keeps `connections` hostile connections open to 127.0.0.1:`port`, of `attack`'s kinds in turn: each pipelines its
 * `depth` of `GET /openapi.json` without a token, or of `GET /api/tasks?limit=500` with `token`, then one more request
 * every second, and never reads a byte. A connection the server closes (seen at the next write) is opened again,
 * until `stop()` (call it: the attack is bounded by its caller's time limit).
 */
export function startPipeliningAttack(
  port: number,
  token: string,
  connections: number,
  attack: keyof typeof ATTACKS,
): Attack {
  const requestOf = (kind: Kind): string =>
    `GET ${kind.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${kind.authorized ? `Authorization: Bearer ${token}\r\n` : ''}\r\n`
  const counts: AttackCounts = { opened: 0, closedByServer: 0, requests: 0 }
  const sockets = new Set<Socket>()
  let stopped = false

  const open = (kind: Kind): void => {
    if (stopped) return
    const socket = connect(port, '127.0.0.1')
    sockets.add(socket)
    counts.opened++
    socket.pause() // never read: the replies pile up on the server's side
    socket.on('error', () => undefined) // a reset by the server is what the fix does
    let more: NodeJS.Timeout | undefined
    socket.once('connect', () => {
      socket.write(requestOf(kind).repeat(kind.depth))
      counts.requests += kind.depth
      // A socket that never reads learns that the server closed it only by writing.
      more = setInterval(() => {
        socket.write(requestOf(kind))
        counts.requests++
      }, 1000)
    })
    socket.once('close', () => {
      clearInterval(more)
      sockets.delete(socket)
      if (stopped) return
      counts.closedByServer++
      // Not at once: a refused connection must not spin.
      setTimeout(() => open(kind), 50)
    })
  }
  for (let n = 0; n < connections; n++) open(ATTACKS[attack][n % 2] ?? ATTACKS[attack][0])

  return {
    counts,
    stop: async () => {
      stopped = true
      for (const socket of sockets) socket.destroy()
      return counts
    },
  }
}

/** Samples a process's RSS (/proc/<pid>/status VmRSS) every `everyMs`; `stop()` gives the highest sample in MiB. */
export function sampleRss(pid: number, everyMs = 100): { peakMiB(): number; stop(): number } {
  let peak = 0
  const sample = (): void => {
    try {
      const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
      peak = Math.max(peak, kib / 1024)
    } catch {
      // The process is gone: the peak so far stands.
    }
  }
  sample()
  const timer = setInterval(sample, everyMs)
  return {
    peakMiB: () => peak,
    stop: () => {
      clearInterval(timer)
      sample()
      return peak
    },
  }
}

/** Latencies of a well-behaved client's requests (ms), and the requests that failed or took over the time limit. */
export interface ProbeResult {
  latenciesMs: number[]
  /** The path of each answered request, in the order of `latenciesMs`. */
  paths: string[]
  failures: string[]
}

/**
 * A well-behaved client: one request at a time (fetch's kept-alive connections), alternating `GET /health` and
 * `GET /api/tasks/{id}`, each with a `timeoutMs` limit, for `durationMs`.
 */
export async function probeLatency(
  url: string,
  token: string,
  taskId: number,
  durationMs: number,
  timeoutMs = 5000,
): Promise<ProbeResult> {
  const result: ProbeResult = { latenciesMs: [], paths: [], failures: [] }
  const until = Date.now() + durationMs
  for (let n = 0; Date.now() < until; n++) {
    const path = n % 2 === 0 ? '/health' : `/api/tasks/${taskId}`
    const started = performance.now()
    try {
      const response = await fetch(`${url}${path}`, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(timeoutMs),
      })
      await response.arrayBuffer()
      if (response.status !== 200) result.failures.push(`${path}: ${response.status}`)
      else {
        result.latenciesMs.push(performance.now() - started)
        result.paths.push(path)
      }
    } catch (error) {
      result.failures.push(`${path}: ${error instanceof Error ? error.message : String(error)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return result
}

/** The `p`-th percentile (0–100) of `values`, by nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN
}
