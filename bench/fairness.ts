// One user floods, another user's GET /api/tasks/{id} is timed: the fairness figures of docs/operations.md "Failure
// behaviour". The server (src/main.ts, a child process) runs on a database of its own on the PostgreSQL server at
// --admin-url (default the local one), with the server variables given by flags, e.g.
//   npx tsx bench/fairness.ts                               # the defaults (share 5 of a pool of 10)
//   npx tsx bench/fairness.ts --max-in-flight-per-user 1000 # no share: what one user could take before
// --connections (120), --seconds (10) and --limit (500) shape the flood; --pool and --per-user-wait-ms set the
// server's DATABASE_POOL_MAX and DATABASE_PER_USER_WAIT_MS. Prints one JSON line: the other user's median and p99
// latency (ms), and both users' status counts.
import autocannon from 'autocannon'
import pg from 'pg'
import { startServer, temporaryDirectory } from '../test/helpers/child-server.ts'
import { createScratchDatabase } from '../test/helpers/databases.ts'
import { authHeaderFor } from '../test/helpers/tokens.ts'
import { parseFairnessOptions } from './lib/options.ts'

const { adminUrl, connections, durationS, floodLimit, serverEnv } = parseFairnessOptions(process.argv.slice(2))

const cleanups: Array<() => unknown> = []
const scope = { after: (cleanup: () => unknown) => cleanups.push(cleanup) }
const database = await createScratchDatabase(adminUrl, { prefix: 'tasks_bench_fairness' })
try {
  const env: Record<string, string> = { DATABASE_URL: database.url, ...serverEnv }
  const server = await startServer(scope, { env, cwd: await temporaryDirectory(scope), startTimeoutMs: 20_000 })

  // The flooder lists --limit of its 2,000 tasks per request; the other user has one task.
  const seed = new pg.Client({ connectionString: database.url })
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
  await database.drop()
}
