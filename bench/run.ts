// npm run bench: the benchmark of issue 6. Builds the service and the baseline into dist/, creates a database of
// its own on the PostgreSQL server, starts and stops the servers as child processes, loads them on loopback,
// writes JSON lines to bench/results/ and prints the tables; every child and the database are removed at the end,
// and the whole run has a time limit.
// `npm run bench -- --help` lists the flags; bench/README.md explains the method and holds the results.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServerDatabase, type ServerDatabase } from './lib/bench-database.ts'
import { runCompare, type Problems } from './lib/compare.ts'
import { describeEnvironment, loadAverage } from './lib/environment.ts'
import { parseOptions } from './lib/options.ts'
import { killAllChildren } from './lib/processes.ts'
import { ResultsFile } from './lib/report.ts'
import { runScaling } from './lib/scaling.ts'
import { buildServers, type ServerSettings } from './lib/servers.ts'
import { runSoak } from './lib/soak.ts'

const argv = process.argv.slice(2)
const options = parseOptions(argv, process.env)
const workDir = mkdtempSync(join(tmpdir(), 'tasks-bench-'))
let database: ServerDatabase | undefined

async function cleanUp(): Promise<void> {
  killAllChildren()
  await database
    ?.drop()
    .catch((error: unknown) => process.stderr.write(`could not drop the bench database: ${String(error)}\n`))
  rmSync(workDir, { recursive: true, force: true })
}

async function abort(reason: string, code: number): Promise<never> {
  process.stderr.write(`\nbench: ${reason}\n`)
  await cleanUp()
  process.exit(code)
}

// Bounded in time whatever happens: past the limit every child is killed and the run fails.
setTimeout(
  () => void abort(`stopped after the time limit of ${options.maxMinutes} minutes (--max-minutes)`, 3),
  options.maxMinutes * 60_000,
).unref()
process.on('SIGINT', () => void abort('interrupted', 130))
process.on('SIGTERM', () => void abort('terminated', 143))

const problems: Problems = []
try {
  // Every mode measures the compiled service: build it from the checked-out code first, never trust an old dist/.
  await buildServers(workDir)
  database = await createServerDatabase(options.adminUrl)
  const version =
    (await database.pool.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? 'unknown'
  const environment = describeEnvironment(argv, version, options.label)
  const results = new ResultsFile(options.outDir, options.mode, environment)
  const settings: ServerSettings = {
    databaseUrl: database.url,
    pgliteDir: join(workDir, 'pglite'),
    workDir,
    poolMax: options.poolMax,
    logLevel: options.logLevel,
    profileDir: options.profileDir,
  }
  process.stdout.write(
    `${environment.command}\n${environment.date}  commit ${environment.commit}  ${environment.machine.cores} cores, ${environment.machine.memoryGiB} GiB  ` +
      `node ${environment.versions.node}  PostgreSQL ${version}  PGlite ${environment.versions.pglite}  load average ${loadAverage().join(' ')}\n` +
      `${options.connections} connections, ${options.warmupS} s warm-up + ${options.durationS} s measured, ${options.users} users × ${options.tasksPerUser} tasks\n\n`,
  )
  if (options.mode === 'compare') await runCompare(options, database, settings, results, problems)
  else if (options.mode === 'soak') await runSoak(options, database, settings, results, problems)
  else await runScaling(options, database, settings, results, problems)
  process.stdout.write(`\nresults: ${results.path}\n`)
} catch (error) {
  problems.push(error instanceof Error ? (error.stack ?? error.message) : String(error))
} finally {
  await cleanUp()
}
if (problems.length > 0) {
  process.stderr.write(
    `\nbench: ${problems.length} problem(s):\n${problems.map((problem) => `  - ${problem}`).join('\n')}\n`,
  )
  process.exit(1)
}
