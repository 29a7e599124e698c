// The scaling run: list and get for one user holding 50 … 100,000 tasks, first page and a deep page, while
// the table holds 50 k, 1 M and 5 M rows in all; then EXPLAIN ANALYZE of list and get at the largest.
import { insertUsers, type ServerDatabase } from './bench-database.ts'
import { pgRunner, type Problems } from './compare.ts'
import { requestSequence, runLoad, type LoadUser } from './load.ts'
import { measureServer } from './measure.ts'
import type { BenchOptions } from './options.ts'
import { fixed, markdownTable, type ResultsFile } from './report.ts'
import { BENCH_SECRET, startServer, type ServerSettings } from './servers.ts'
import { bearerTokens } from './tokens.ts'
import { GET, LIST } from '../baseline/statements.ts'

const PAGE = 20
/** Background users are inserted this many at a time, so no statement runs for minutes. */
const USERS_PER_INSERT = 20_000

const probeUserId = (size: number): string => `probe-user-${String(size).padStart(6, '0')}`

export async function runScaling(
  options: BenchOptions,
  database: ServerDatabase,
  settings: ServerSettings,
  results: ResultsFile,
  problems: Problems,
): Promise<void> {
  const runner = pgRunner(database)
  const totals = [...options.scalingTotals].sort((a, b) => a - b)
  const sizes = [...options.scalingUserSizes].sort((a, b) => a - b)
  const tokens = await bearerTokens(sizes.map(probeUserId), BENCH_SECRET)
  const present = new Set<number>()
  let backgroundUsers = 0
  const table: string[][] = []
  await runner.query('TRUNCATE tasks RESTART IDENTITY')
  const probeUser = async (size: number): Promise<LoadUser> => {
    const userId = probeUserId(size)
    const ids = (
      await runner.query<{ id: string }>('SELECT id FROM tasks WHERE user_id = $1 ORDER BY id', [userId])
    ).rows.map((row) => Number(row.id))
    return { authorization: tokens.get(userId) ?? '', taskIds: ids }
  }

  for (const totalK of totals) {
    const totalRows = totalK * 1000
    // A probe user may hold at most a quarter of the table, so the others are still most of it.
    const probes = sizes.filter((size) => size <= totalRows / 4)
    const seedStarted = performance.now()
    for (const size of probes.filter((size) => !present.has(size))) {
      await insertUsers(runner, size, 1, size, 'probe-user-')
      present.add(size)
    }
    const probeRows = [...present].reduce((sum, size) => sum + size, 0)
    const needed = Math.max(0, Math.floor((totalRows - probeRows) / options.tasksPerUser))
    while (backgroundUsers < needed) {
      const count = Math.min(USERS_PER_INSERT, needed - backgroundUsers)
      await insertUsers(runner, backgroundUsers, count, options.tasksPerUser)
      backgroundUsers += count
    }
    await runner.query('VACUUM ANALYZE tasks, task_counts')
    await runner.query('CHECKPOINT')
    const seedS = Math.round((performance.now() - seedStarted) / 100) / 10
    const [counted] = (
      await runner.query<{ rows: string; bytes: string }>(
        `SELECT count(*) AS rows, pg_total_relation_size('tasks') AS bytes FROM tasks`,
      )
    ).rows
    const rows = Number(counted?.rows ?? 0)
    const tableMiB = Math.round(Number(counted?.bytes ?? 0) / 2 ** 20)
    process.stdout.write(`\n${rows} rows (${tableMiB} MiB with indexes), seeded in ${seedS} s\n`)
    results.write({ kind: 'scaling-seed', totalRows: rows, tableMiB, seedS })

    const server = await startServer('service', settings)
    try {
      // A fresh process: warm its JIT on every kind of request first, so the first case measured is not the slowest.
      const warmUsers = await Promise.all(probes.map(async (size) => probeUser(size)))
      for (const scenario of ['list', 'get'] as const) {
        await runLoad(server.url, options.connections, options.warmupS, requestSequence(scenario, warmUsers))
      }
      for (const size of probes) {
        const user = await probeUser(size)
        const deepOffset = Math.max(0, size - PAGE)
        const cases = [
          { name: 'list, first page', scenario: 'list', query: `limit=${PAGE}` },
          { name: `list, offset ${deepOffset}`, scenario: 'list', query: `limit=${PAGE}&offset=${deepOffset}` },
          { name: 'get', scenario: 'get', query: '' },
        ] as const
        for (const { name, scenario, query } of cases) {
          const measured = await measureServer(
            server,
            options.connections,
            options.warmupS,
            options.durationS,
            () => requestSequence(scenario, [user], query),
            () => database.backendPids(),
          )
          results.write({ kind: 'scaling', totalRows: rows, userTasks: size, case: name, ...measured })
          table.push([
            String(rows),
            String(size),
            name,
            fixed(measured.rps, 0),
            fixed(measured.latencyMs.p50, 2),
            fixed(measured.latencyMs.p99, 2),
          ])
          process.stdout.write(
            `  user with ${size} tasks, ${name}: ${fixed(measured.rps, 0)} req/s  p50 ${fixed(measured.latencyMs.p50, 2)} ms  p99 ${fixed(measured.latencyMs.p99, 2)} ms\n`,
          )
          if (measured.non2xx + measured.errors + measured.timeouts > 0)
            problems.push(`scaling ${rows} rows, ${size} tasks, ${name}: not all 2xx`)
        }
      }
    } finally {
      const code = await server.stop()
      if (code !== 0) problems.push(`the service exited with ${String(code)}`)
    }
  }

  process.stdout.write(
    `\n${markdownTable(['rows in all', "the user's tasks", 'request', 'req/s', 'p50 ms', 'p99 ms'], table)}\n`,
  )

  // The plans at the largest size, for the largest and the smallest probe user, with the service's own statements.
  const largest = sizes.filter((size) => present.has(size))
  const plans: string[] = []
  for (const size of [largest.at(-1), largest[0]]) {
    if (size === undefined) continue
    const userId = probeUserId(size)
    const [middle] = (
      await runner.query<{ id: string }>('SELECT id FROM tasks WHERE user_id = $1 ORDER BY id OFFSET $2 LIMIT 1', [
        userId,
        Math.floor(size / 2),
      ])
    ).rows
    const statements: [string, string, unknown[]][] = [
      [`list, first page (user with ${size} tasks)`, LIST, [userId, userId, PAGE, 0]],
      [
        `list, offset ${Math.max(0, size - PAGE)} (user with ${size} tasks)`,
        LIST,
        [userId, userId, PAGE, Math.max(0, size - PAGE)],
      ],
      [`get (user with ${size} tasks)`, GET, [userId, Number(middle?.id ?? 1)]],
    ]
    for (const [name, text, values] of statements) {
      const plan = (await runner.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, values)).rows
        .map((row) => row['QUERY PLAN'])
        .join('\n')
      // Every scan must be a range of this user's rows: no sequential scan, user_id in every index scan's
      // condition, and a bitmap heap scan only over exact blocks of such an index scan, rechecked on user_id.
      const indexScans = (plan.match(/(?:Index Scan|Index Only Scan|Bitmap Index Scan)/g) ?? []).length
      const ownIndexConds = (plan.match(/Index Cond: \(*\(?user_id\)?(?:::text)? = /g) ?? []).length
      const heapScans = (plan.match(/Bitmap Heap Scan/g) ?? []).length
      const ownRechecks = (plan.match(/Recheck Cond: \(*\(?user_id\)?(?:::text)? = /g) ?? []).length
      const ownRowsOnly = !/Seq Scan|lossy/.test(plan) && ownIndexConds >= indexScans && ownRechecks >= heapScans
      results.write({ kind: 'plan', name, sql: text, values, plan, ownRowsOnly })
      plans.push(
        `${name}${ownRowsOnly ? '' : ' (SCANS MORE THAN THE USER’S ROWS)'}\n\n    ${text}\n\n${plan.replace(/^/gm, '    ')}`,
      )
      if (!ownRowsOnly) problems.push(`plan of ${name} scans more than the user's rows`)
    }
  }
  process.stdout.write(`\nEXPLAIN (ANALYZE, BUFFERS) at ${totals.at(-1)} k rows\n\n${plans.join('\n\n')}\n`)
}
