// One user floods, another user's GET /api/tasks/{id} is timed: the fairness figures of README "Failure behaviour".
// The server (src/main.ts, a child process) runs on a fresh database of the PostgreSQL server at BENCH_DATABASE_URL
// (default the local one), with the environment given on the command line, e.g.
//   npx tsx bench/fairness.ts                                      # the defaults (share 5 of a pool of 10)
//   DATABASE_MAX_IN_FLIGHT_PER_USER=1000 npx tsx bench/fairness.ts # no share: what one user could take before
// FLOOD_CONNECTIONS (120), FLOOD_SECONDS (10) and FLOOD_LIMIT (500) shape the flood. Prints one JSON line: the other
// user's median and p99 latency (ms), and both users' status counts.
import { randomBytes } from 'node:crypto'
import autocannon from 'autocannon'
import pg from 'pg'
import { startServer, temporaryDirectory } from '../test/helpers/child-server.ts'
import { authHeaderFor } from '../test/helpers/tokens.ts'

const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const connections = Number(process.env.FLOOD_CONNECTIONS ?? 120)
const durationS = Number(process.env.FLOOD_SECONDS ?? 10)
/** How many of its 2,000 tasks each of the flooder's list requests asks for (1–500). */
const floodLimit = Number(process.env.FLOOD_LIMIT ?? 500)
const passedOn = ['DATABASE_POOL_MAX', 'DATABASE_MAX_IN_FLIGHT_PER_USER', 'DATABASE_PER_USER_WAIT_MS']

const cleanups: Array<() => unknown> = []
const scope = { after: (cleanup: () => unknown) => cleanups.push(cleanup) }
const admin = new pg.Client({ connectionString: adminUrl })
await admin.connect()
const name = `tasks_bench_fairness_${randomBytes(4).toString('hex')}`
await admin.query(`CREATE DATABASE "${name}"`)
try {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  const env: Record<string, string> = { DATABASE_URL: url.toString() }
  for (const variable of passedOn) if (process.env[variable] !== undefined) env[variable] = process.env[variable]
  const server = await startServer(scope, { env, cwd: await temporaryDirectory(scope), startTimeoutMs: 20_000 })

  // The flooder lists FLOOD_LIMIT of its 2,000 tasks per request; the other user has one task.
  const seed = new pg.Client({ connectionString: url.toString() })
  await seed.connect()
  await seed.query(`insert into tasks (user_id, title) select 'flooder', 'task ' || g from generate_series(1, 2000) g`)
  const { rows } = await seed.query<{ id: string }>(
    `insert into tasks (user_id, title) values ('other', 'mine') returning id`,
  )
  await seed.end()
  const otherHeaders = await authHeaderFor('other')
  const path = `/api/tasks/${rows[0]?.id}`

  const flood = autocannon({
    url: `${server.url}/api/tasks?limit=${floodLimit}`,
    connections,
    duration: durationS,
    // In a worker thread: the other user's timings are taken on this thread's event loop, which the flood must not
    // load.
    workers: 1,
    headers: await authHeaderFor('flooder'),
  })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const latencies: number[] = []
  const otherStatuses: Record<number, number> = {}
  for (const end = Date.now() + (durationS - 2) * 1000; Date.now() < end;) {
    const startedAt = performance.now()
    const response = await fetch(`${server.url}${path}`, { headers: otherHeaders, signal: AbortSignal.timeout(30_000) })
    await response.arrayBuffer()
    latencies.push(performance.now() - startedAt)
    otherStatuses[response.status] = (otherStatuses[response.status] ?? 0) + 1
  }
  const flooded = await flood
  latencies.sort((a, b) => a - b)
  const at = (q: number): number =>
    Number((latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN).toFixed(1))
  console.log(
    JSON.stringify({
      settings: env,
      connections,
      durationS,
      floodLimit,
      other: { requests: latencies.length, medianMs: at(0.5), p99Ms: at(0.99), statuses: otherStatuses },
      flooder: { requests: flooded.requests.total, statuses: flooded.statusCodeStats },
    }),
  )
  await server.stop()
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup()
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  await admin.end()
}
