// Issue 10, findings 1 and 2, measured: the server (tsx src/main.ts, a child process on 127.0.0.1) under hostile
// connections that pipeline requests and never read a reply (half GET /openapi.json without a token, half 500-task
// pages of control characters), while a well-behaved client asks GET /health and GET /api/tasks/{id}.
// Two phases: the floods far past the server's limit on pipelined requests ("deep"), then only 8 deep ("shallow").
// Prints the server's peak RSS, whether it survived, and the well-behaved client's latency before and during each.
//
//   npx tsx bench/hostile-pipelining.ts [--connections 200] [--seconds 30] [--admin-url postgres://postgres@127.0.0.1:5432/postgres]
//
// Without --admin-url the server runs on PGlite in memory; with it, on a database of its own on that server, dropped
// at the end. Everything stops by itself after --seconds.
import { parseArgs } from 'node:util'
import { createServerDatabase } from './lib/bench-database.ts'
import { startServer, temporaryDirectory } from '../test/helpers/child-server.ts'
import {
  percentile,
  probeLatency,
  sampleRss,
  seedControlCharacterTasks,
  startPipeliningAttack,
  type ProbeResult,
} from '../test/helpers/pipelining-attack.ts'
import { tokenFor } from '../test/helpers/tokens.ts'

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '30' },
    'admin-url': { type: 'string' },
  },
})
const connections = Number(values.connections)
const seconds = Number(values.seconds)

const cleanups: (() => unknown)[] = []
const scope = { after: (cleanup: () => unknown) => void cleanups.push(cleanup) }
const describe = (probe: ProbeResult): string =>
  `p50 ${percentile(probe.latenciesMs, 50).toFixed(1)} ms, p99 ${percentile(probe.latenciesMs, 99).toFixed(1)} ms, ` +
  `max ${Math.max(...probe.latenciesMs).toFixed(1)} ms, ${probe.latenciesMs.length} answered, ${probe.failures.length} failed` +
  (probe.failures.length > 0 ? ` (first: ${probe.failures[0]})` : '')

try {
  let databaseUrl = 'memory://'
  if (values['admin-url'] !== undefined) {
    const database = await createServerDatabase(values['admin-url'])
    scope.after(() => database.drop())
    databaseUrl = database.url
  }
  const server = await startServer(scope, {
    cwd: await temporaryDirectory(scope),
    env: { DATABASE_URL: databaseUrl },
  })
  // The access log (a line per request and per response) is read and dropped: this process keeps no copy of it.
  const started = { pages: 0, openapi: 0 }
  const dropLogs = setInterval(() => {
    for (const line of server.logs.splice(0)) {
      if (!line.includes('"incoming request"')) continue
      if (line.includes('limit=500')) started.pages++
      else if (line.includes('/openapi.json')) started.openapi++
    }
  }, 200)
  scope.after(() => clearInterval(dropLogs))
  const pid = server.child.pid ?? 0
  const lister = await tokenFor('hostile-lister')
  const taskId = await seedControlCharacterTasks(server.url, lister, 500)
  const page = await fetch(`${server.url}/api/tasks?limit=500`, { headers: { authorization: `Bearer ${lister}` } })
  const pageBytes = (await page.arrayBuffer()).byteLength
  const polite = await tokenFor('hostile-lister')

  const before = await probeLatency(server.url, polite, taskId, 3000)
  console.log(
    `${connections} hostile connections per phase, ${seconds} s each; a page of 500 tasks is ${pageBytes} bytes`,
  )
  console.log(`well-behaved client before: ${describe(before)}`)
  let alive = true
  for (const phase of ['deep', 'shallow'] as const) {
    const rss = sampleRss(pid)
    const idleRss = rss.peakMiB()
    const counted = { ...started }
    const attack = startPipeliningAttack(server.port, lister, connections, phase)
    const during = await probeLatency(server.url, polite, taskId, seconds * 1000)
    const counts = await attack.stop()
    const peak = rss.stop()
    alive = server.running()
    console.log(
      `phase ${phase}: server RSS ${idleRss.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB during; alive after: ${alive}`,
    )
    console.log(
      `  hostile: ${counts.opened} connections opened, ${counts.closedByServer} closed by the server, ${counts.requests} requests sent`,
    )
    console.log(
      `  hostile requests the server started: ${started.pages - counted.pages} pages, ${started.openapi - counted.openapi} /openapi.json`,
    )
    console.log(`  well-behaved client during: ${describe(during)}`)
    for (const path of ['/health', '/api/tasks/']) {
      const only = during.latenciesMs.filter((_, n) => during.paths[n]?.startsWith(path))
      console.log(`    ${path}: p50 ${percentile(only, 50).toFixed(1)} ms, p99 ${percentile(only, 99).toFixed(1)} ms`)
    }
    if (!alive) break
    // The closed connections' last work, before the next phase.
    await new Promise((resolve) => setTimeout(resolve, 2000))
  }
  if (!alive)
    console.log(`server exit: ${JSON.stringify(await server.exited)}; stderr tail: ${server.stderr().slice(-300)}`)
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup()
}
