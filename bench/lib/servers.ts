// How each server under test is started: the service as production runs it (the compiled build, plain node) on
// PostgreSQL or on a PGlite directory, and the bare baseline, compiled too; each in a directory of the run's own,
// so no .env is read.
import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, startChild, stopChild, tail, waitUntilReady, type Child } from './processes.ts'
import { REPO_ROOT } from './options.ts'

export type Target = 'service' | 'baseline' | 'service-pglite'

/** tsx's loader, resolved from the repository (the children run in other directories). */
const TSX_LOADER = import.meta.resolve('tsx')
export const TSX_CLI = join(REPO_ROOT, 'node_modules/tsx/dist/cli.mjs')
/** What `npm start` runs (under tsx): the startup measurement's entry. */
export const SERVICE_MAIN = join(REPO_ROOT, 'src/main.ts')
/** What `npm run start:prod` runs: the measured service's entry, compiled by `buildServers`. */
const SERVICE_BUILD = join(REPO_ROOT, 'dist/src/main.js')
const BASELINE_BUILD = join(REPO_ROOT, 'dist/bench/baseline/server.js')
const CAPTURE_SQL = fileURLToPath(new URL('./capture-sql.ts', import.meta.url))

/** The HS256 secret of one run: random, and long enough for NODE_ENV=production. */
export const BENCH_SECRET = randomBytes(36).toString('base64url')

/** Settings shared by every server of a run. */
export interface ServerSettings {
  /** The run's database on the PostgreSQL server. */
  databaseUrl: string
  /** The directory holding `.data` (PGlite) for the service-pglite target. */
  pgliteDir: string
  /** A scratch directory for logs and working directories. */
  workDir: string
  poolMax: number
  logLevel: string
  profileDir: string | null
}

export interface RunningServer {
  target: Target
  child: Child
  url: string
  /** Milliseconds from spawn to the first 200 from /ready (the baseline: /health). */
  startMs: number
  stop(): Promise<number | string | null>
}

/** The environment of the service as production would run it; only what is set here (plus PATH) reaches it. */
export function serviceEnv(
  port: number,
  settings: ServerSettings,
  databaseUrl: string | undefined,
): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    BETTER_AUTH_SECRET: BENCH_SECRET,
    LOG_LEVEL: settings.logLevel,
    DATABASE_POOL_MAX: String(settings.poolMax),
    ...(databaseUrl === undefined ? {} : { DATABASE_URL: databaseUrl }),
  }
}

/**
 * Compiles the service (`npm run build`, as for production) and the baseline (bench/baseline/tsconfig.json) into
 * dist/, once at the start of a run, so that the measured processes run the checked-out code without a loader:
 * tsx alone holds ~100 MiB and a thread of its own. Each compiler's output goes to a file in `workDir`.
 * @throws Error naming the command that failed, with the end of its output.
 */
export async function buildServers(workDir: string): Promise<void> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  )
  const builds = [
    { command: 'npm', args: ['run', 'build'] },
    {
      command: process.execPath,
      args: [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'bench/baseline/tsconfig.json'],
    },
  ]
  for (const [i, { command, args }] of builds.entries()) {
    const logFile = join(workDir, `build-${i}.log`)
    const code = await startChild({ command, args, cwd: REPO_ROOT, env, logFile }).exited
    if (code !== 0)
      throw new Error(
        `the build failed: \`${[command, ...args].join(' ')}\` exited with ${String(code)}:\n${tail(logFile)}`,
      )
  }
}

let serial = 0

/**
 * Starts one server and waits until it is ready (/ready; the baseline: /health). `captureSqlFile` preloads the SQL
 * capture (parity check). Its output (the access log) goes to a file in the work directory, removed when it stops
 * cleanly.
 */
export async function startServer(
  target: Target,
  settings: ServerSettings,
  options: { captureSqlFile?: string } = {},
): Promise<RunningServer> {
  const port = await freePort()
  const name = `${target}-${++serial}`
  const logFile = join(settings.workDir, `${name}.log`)
  // The capture is TypeScript: only the parity check, which is not measured, runs under tsx's loader.
  const capture = options.captureSqlFile === undefined ? [] : ['--import', TSX_LOADER, '--import', CAPTURE_SQL]
  const captureEnv: Record<string, string> =
    options.captureSqlFile === undefined ? {} : { BENCH_CAPTURE_SQL: options.captureSqlFile }
  // One directory per measured process (not the parity check's), so that each server's profiles stay apart.
  const profile =
    settings.profileDir === null || options.captureSqlFile !== undefined
      ? []
      : ['--cpu-prof', `--cpu-prof-dir=${join(settings.profileDir, name)}`]
  let args: string[]
  let cwd: string
  let env: Record<string, string>
  if (target === 'baseline') {
    cwd = settings.workDir
    args = [...profile, ...capture, BASELINE_BUILD]
    env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOST: '127.0.0.1',
      PORT: String(port),
      BETTER_AUTH_SECRET: BENCH_SECRET,
      DATABASE_URL: settings.databaseUrl,
      DATABASE_POOL_MAX: String(settings.poolMax),
      ...captureEnv,
    }
  } else {
    if (target === 'service') {
      cwd = join(settings.workDir, name)
      mkdirSync(cwd, { recursive: true })
    } else cwd = settings.pgliteDir
    args = [...profile, ...capture, SERVICE_BUILD]
    env = { ...serviceEnv(port, settings, target === 'service' ? settings.databaseUrl : undefined), ...captureEnv }
  }
  const startedAt = performance.now()
  const child = startChild({ command: process.execPath, args, cwd, env, logFile })
  const url = `http://127.0.0.1:${port}`
  let startMs: number
  try {
    // The service is ready once /ready answers (its migrations applied); the baseline has /health only.
    startMs = await waitUntilReady(child, `${url}${target === 'baseline' ? '/health' : '/ready'}`, 120_000, startedAt)
  } catch (error) {
    await stopChild(child, 1000)
    throw error
  }
  return {
    target,
    child,
    url,
    startMs: Math.round(startMs),
    async stop() {
      const code = await stopChild(child)
      if (code === 0) rmSync(logFile, { force: true })
      if (target === 'service') rmSync(cwd, { recursive: true, force: true })
      return code
    },
  }
}
