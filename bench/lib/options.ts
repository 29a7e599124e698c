// The benchmark's settings: command-line flags (node:util parseArgs). The main run's flags each have a BENCH_*
// environment variable as their fallback; bench/fairness.ts takes flags only.
import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** The repository root (bench/lib/ is two levels down). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** The local PostgreSQL server's superuser, where a run makes its database unless told another. */
const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres'

export const SCENARIOS = ['list', 'get', 'update', 'create', 'toggle', 'mixed'] as const
export type Scenario = (typeof SCENARIOS)[number]

/** What the run does: the interleaved comparison (default), the scaling run, or the memory soak. */
export type Mode = 'compare' | 'scaling' | 'soak'

export interface BenchOptions {
  mode: Mode
  /** Admin URL of the PostgreSQL server; the run creates and drops a database of its own there. */
  adminUrl: string
  rounds: number
  warmupS: number
  durationS: number
  connections: number
  scenarios: Scenario[]
  /** Run the baseline beside the service (the A B A B comparison). */
  baseline: boolean
  /** Also measure the service on PGlite (a file in a temporary directory), and for how many rounds. */
  pgliteRounds: number
  pgliteScenarios: Scenario[]
  /** Record the start time and RSS of an `npm start`-style process on PGlite. */
  startup: boolean
  users: number
  tasksPerUser: number
  /** DATABASE_POOL_MAX of the service, and the baseline's pool size. */
  poolMax: number
  /** LOG_LEVEL of the service (access logs are on at info). */
  logLevel: string
  /** Write a CPU profile (node --cpu-prof) of every measured server process into this directory. */
  profileDir: string | null
  /** Where the JSON lines go. */
  outDir: string
  /** Scaling run: total rows (thousands) and per-user sizes to probe. */
  scalingTotals: number[]
  scalingUserSizes: number[]
  /** Soak: how long the mixed load runs, and how often RSS is sampled. */
  soakS: number
  /** A hard limit on the whole run: past it, every child is killed and the run fails. */
  maxMinutes: number
  /** A free-text note recorded with every line (e.g. "after token cache"). */
  label: string
}

const HELP = `npm run bench -- [flags]     (each flag also reads BENCH_<FLAG> from the environment, e.g. BENCH_ROUNDS=1)

modes
  (default)               service vs baseline on PostgreSQL, interleaved A B / B A, plus the service on PGlite
  --scaling               list/get p50 and p99 for one user holding 50 … 100,000 tasks, at 50 k, 1 M and 5 M rows, and EXPLAIN ANALYZE
    --scaling-totals <k,…>  total rows in thousands (default 50,1000,5000)
    --scaling-sizes <n,…>   tasks of the probed users (default 50,1000,10000,100000)
  --soak <s>              the mixed load for <s> seconds (e.g. 300) on PostgreSQL, RSS sampled: does the service grow?

load
  --rounds <n>            interleaved rounds (default 3)
  --warmup <s>            warm-up before each measurement (default 3; 2 for --scaling)
  --duration <s>          measured period (default 10; 5 for --scaling)
  --connections <n>       keep-alive connections (default 32)
  --scenarios <a,b>       subset of ${SCENARIOS.join(',')} (default all)
  --no-baseline           measure the service only
  --pglite-rounds <n>     rounds of the service on PGlite (default 1; 0 skips)
  --pglite-scenarios <a,b> (default: the same as --scenarios)
  --no-startup            skip the npm-start time and RSS on PGlite

data and servers
  --users <n>             users seeded (default 1000)
  --tasks-per-user <n>    tasks per user (default 50)
  --pool <n>              DATABASE_POOL_MAX of the service and pool size of the baseline (default 10)
  --log-level <level>     the service's LOG_LEVEL (default info: access logs on)
  --admin-url <url>       PostgreSQL admin URL (default postgres://postgres@127.0.0.1:5432/postgres)
  --profile <dir>         node --cpu-prof of every measured server into <dir>/<server>-<n>/ (see bench/profile-summary.ts)

output
  --out <dir>             where the JSON lines go (default bench/results)
  --label <text>          a note recorded with every line
  --max-minutes <n>       hard limit on the whole run (default 90)
`

/**
 * Parses `argv` (without node and the script) with node:util's parseArgs, `env` (BENCH_<FLAG>) as fallbacks. Exits
 * with the help text on --help (0) or a bad flag (2).
 */
export function parseOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): BenchOptions {
  let parsed: ReturnType<typeof parseFlags>
  try {
    parsed = parseFlags(argv)
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error))
  }
  if (parsed.help === true) {
    process.stdout.write(HELP)
    process.exit(0)
  }
  const flags = new Map<string, string>()
  for (const [name, value] of Object.entries(parsed)) {
    if (value === undefined) continue
    // `--no-<flag>` sets <flag> to false (Node 20's parseArgs has no allowNegative).
    if (name.startsWith('no-')) flags.set(name.slice(3), 'false')
    else flags.set(name, String(value))
  }

  const read = (name: string): string | undefined =>
    flags.get(name) ?? (env[`BENCH_${name.toUpperCase().replaceAll('-', '_')}`] || undefined)
  const number = (name: string, fallback: number, min: number): number => {
    const raw = read(name)
    if (raw === undefined) return fallback
    const value = Number(raw)
    if (!Number.isFinite(value) || value < min) fail(`--${name} must be a number ≥ ${min} (got "${raw}")`)
    return value
  }
  const integer = (name: string, fallback: number, min: number): number => {
    const value = number(name, fallback, min)
    if (!Number.isInteger(value)) fail(`--${name} must be an integer`)
    return value
  }
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = read(name)
    return raw === undefined ? fallback : !['false', '0', 'no'].includes(raw)
  }
  const scenarioList = (name: string, fallback: Scenario[]): Scenario[] => {
    const raw = read(name)
    if (raw === undefined) return fallback
    const list = raw.split(',').filter((item) => item !== '')
    for (const item of list)
      if (!(SCENARIOS as readonly string[]).includes(item)) fail(`--${name}: unknown scenario "${item}"`)
    return list as Scenario[]
  }
  const numberList = (name: string, fallback: number[]): number[] => {
    const raw = read(name)
    if (raw === undefined) return fallback
    const list = raw.split(',').map(Number)
    if (list.some((value) => !Number.isInteger(value) || value < 1)) fail(`--${name} must be positive integers`)
    return list
  }
  const path = (raw: string): string => (isAbsolute(raw) ? raw : resolve(process.cwd(), raw))

  const soakS = number('soak', 0, 0)
  const mode: Mode = bool('scaling', false) ? 'scaling' : soakS > 0 ? 'soak' : 'compare'
  const scenarios = scenarioList('scenarios', [...SCENARIOS])
  const profile = read('profile')
  return {
    mode,
    adminUrl: read('admin-url') ?? DEFAULT_ADMIN_URL,
    rounds: integer('rounds', 3, 1),
    // The scaling run makes 33 measurements: shorter periods keep it within minutes.
    warmupS: number('warmup', mode === 'scaling' ? 2 : 3, 0),
    durationS: number('duration', mode === 'scaling' ? 5 : 10, 0.2),
    connections: integer('connections', 32, 1),
    scenarios,
    baseline: bool('baseline', true),
    pgliteRounds: integer('pglite-rounds', 1, 0),
    pgliteScenarios: scenarioList('pglite-scenarios', scenarios),
    startup: bool('startup', true),
    users: integer('users', 1000, 1),
    tasksPerUser: integer('tasks-per-user', 50, 1),
    poolMax: integer('pool', 10, 1),
    logLevel: read('log-level') ?? 'info',
    profileDir: profile === undefined ? null : path(profile),
    outDir: path(read('out') ?? resolve(REPO_ROOT, 'bench/results')),
    scalingTotals: numberList('scaling-totals', [50, 1000, 5000]),
    scalingUserSizes: numberList('scaling-sizes', [50, 1000, 10_000, 100_000]),
    soakS,
    maxMinutes: number('max-minutes', 90, 0.1),
    label: read('label') ?? '',
  }
}

/** The flags of HELP: booleans take no value, the rest one each (inline `--flag=value` too); no positionals. */
function parseFlags(argv: readonly string[]) {
  const text = { type: 'string' } as const
  const flag = { type: 'boolean' } as const
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      help: { type: 'boolean', short: 'h' },
      scaling: flag,
      'no-baseline': flag,
      'no-startup': flag,
      soak: text,
      rounds: text,
      warmup: text,
      duration: text,
      connections: text,
      scenarios: text,
      'pglite-rounds': text,
      'pglite-scenarios': text,
      users: text,
      'tasks-per-user': text,
      pool: text,
      'log-level': text,
      'admin-url': text,
      profile: text,
      out: text,
      label: text,
      'max-minutes': text,
      'scaling-totals': text,
      'scaling-sizes': text,
    },
  }).values
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n\n${HELP}`)
  process.exit(2)
}

/** The fairness run's settings (bench/fairness.ts). */
export interface FairnessOptions {
  /** Admin URL of the PostgreSQL server; the run creates and drops a database of its own there. */
  adminUrl: string
  /** The flooder's connections and how long it floods (s). */
  connections: number
  durationS: number
  /** How many of its 2,000 tasks each of the flooder's list requests asks for (1–500). */
  floodLimit: number
  /** The server's DATABASE_* variables given by flags; the others keep the server's defaults. */
  serverEnv: Record<string, string>
}

/** The server variables bench/fairness.ts may set, by flag. */
const FAIRNESS_SERVER_FLAGS = {
  pool: 'DATABASE_POOL_MAX',
  'max-in-flight-per-user': 'DATABASE_MAX_IN_FLIGHT_PER_USER',
  'per-user-wait-ms': 'DATABASE_PER_USER_WAIT_MS',
} as const

/**
 * Parses bench/fairness.ts's flags: --admin-url, --connections (120), --seconds (10), --limit (500), and the server's
 * --pool, --max-in-flight-per-user, --per-user-wait-ms. Throws on an unknown flag or a number that is not a positive
 * integer.
 */
export function parseFairnessOptions(argv: readonly string[]): FairnessOptions {
  const text = { type: 'string' } as const
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      'admin-url': text,
      connections: text,
      seconds: text,
      limit: text,
      pool: text,
      'max-in-flight-per-user': text,
      'per-user-wait-ms': text,
    },
  })
  const positive = (name: 'connections' | 'seconds' | 'limit', fallback: number): number => {
    const value = values[name] === undefined ? fallback : Number(values[name])
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`)
    return value
  }
  const serverEnv: Record<string, string> = {}
  for (const [flag, variable] of Object.entries(FAIRNESS_SERVER_FLAGS)) {
    const value = values[flag as keyof typeof FAIRNESS_SERVER_FLAGS]
    if (value !== undefined) serverEnv[variable] = value
  }
  return {
    adminUrl: values['admin-url'] ?? DEFAULT_ADMIN_URL,
    connections: positive('connections', 120),
    durationS: positive('seconds', 10),
    floodLimit: positive('limit', 500),
    serverEnv,
  }
}
