// The memory soak: the mixed load on PostgreSQL for minutes, in 10-second periods, with the service's
// RSS after each, to show whether it grows (issue 6: "no growth over a 5-minute mixed run").
import { seed, type ServerDatabase } from './bench-database.ts'
import { loadUsers, pgRunner, type Problems } from './compare.ts'
import { loadAverage } from './environment.ts'
import { requestSequence } from './load.ts'
import { measureServer } from './measure.ts'
import type { BenchOptions } from './options.ts'
import { fixed, markdownTable, median, type ResultsFile } from './report.ts'
import { BENCH_SECRET, startServer, type ServerSettings } from './servers.ts'
import { bearerTokens } from './tokens.ts'

const PERIOD_S = 10

export async function runSoak(
  options: BenchOptions,
  database: ServerDatabase,
  settings: ServerSettings,
  results: ResultsFile,
  problems: Problems,
): Promise<void> {
  const seeded = await seed(pgRunner(database), options.users, options.tasksPerUser)
  const users = loadUsers(seeded, await bearerTokens(seeded.userIds, BENCH_SECRET))
  const server = await startServer('service', settings)
  const samples: { atS: number; rps: number; p99Ms: number; rssMiB: number; peakRssMiB: number }[] = []
  try {
    const periods = Math.max(1, Math.round(options.soakS / PERIOD_S))
    for (let i = 0; i < periods; i++) {
      // No warm-up between periods: the load goes on; only the first period warms up.
      const period = await measureServer(
        server,
        options.connections,
        i === 0 ? options.warmupS : 0,
        PERIOD_S,
        () => requestSequence('mixed', users),
        () => database.backendPids(),
      )
      const sample = {
        atS: (i + 1) * PERIOD_S,
        rps: period.rps,
        p99Ms: period.latencyMs.p99,
        rssMiB: period.rssMiB,
        peakRssMiB: period.peakRssMiB,
      }
      samples.push(sample)
      results.write({
        kind: 'soak-sample',
        ...sample,
        non2xx: period.non2xx,
        errors: period.errors,
        loadAverage: loadAverage(),
      })
      process.stdout.write(
        `${String(sample.atS).padStart(4)} s  ${fixed(sample.rps, 0)} req/s  p99 ${fixed(sample.p99Ms, 2)} ms  rss ${fixed(sample.rssMiB, 0)} MiB\n`,
      )
      if (period.non2xx + period.errors + period.timeouts > 0)
        problems.push(`soak period ${i + 1}: ${period.non2xx} non-2xx, ${period.errors} errors`)
    }
  } finally {
    const code = await server.stop()
    if (code !== 0) problems.push(`the service exited with ${String(code)}`)
  }
  const minute = Math.min(samples.length, Math.ceil(60 / PERIOD_S))
  const firstMinute = median(samples.slice(0, minute).map((sample) => sample.rssMiB))
  const lastMinute = median(samples.slice(-minute).map((sample) => sample.rssMiB))
  const summary = {
    kind: 'soak',
    seconds: samples.length * PERIOD_S,
    rssFirstMinuteMiB: firstMinute,
    rssLastMinuteMiB: lastMinute,
    rssGrowthMiB: Math.round((lastMinute - firstMinute) * 10) / 10,
    peakRssMiB: Math.max(...samples.map((sample) => sample.peakRssMiB)),
    rpsMedian: median(samples.map((sample) => sample.rps)),
  }
  results.write(summary)
  process.stdout.write(
    `\n${markdownTable(
      [
        'mixed soak',
        'seconds',
        'req/s median',
        'RSS first minute MiB',
        'RSS last minute MiB',
        'growth MiB',
        'peak RSS MiB',
      ],
      [
        [
          'service (PostgreSQL)',
          String(summary.seconds),
          fixed(summary.rpsMedian, 0),
          fixed(firstMinute, 0),
          fixed(lastMinute, 0),
          fixed(summary.rssGrowthMiB, 1),
          fixed(summary.peakRssMiB, 0),
        ],
      ],
    )}\n`,
  )
}
