// What every result line records about where and how it was measured: date, commit, machine, versions, command.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from './options.ts'

export interface Environment {
  date: string
  commit: string
  machine: { cores: number; cpu: string; memoryGiB: number; kernel: string }
  versions: Record<string, string>
  command: string
  label: string
}

/** The version of an installed package, read from its package.json (some packages do not export it). */
function packageVersion(name: string): string {
  try {
    return (
      JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }
    ).version
  } catch {
    return 'unknown'
  }
}

/** The checked-out commit, with `-dirty` when tracked files differ from it. */
function commitOf(): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8' }).trim()
    const commit = git('rev-parse', '--short=12', 'HEAD')
    return git('status', '--porcelain', '--untracked-files=no') === '' ? commit : `${commit}-dirty`
  } catch {
    return 'unknown'
  }
}

/** Collects the environment once per run; `postgresVersion` comes from the server (SHOW server_version). */
export function describeEnvironment(argv: readonly string[], postgresVersion: string, label: string): Environment {
  const viaNpm = process.env.npm_lifecycle_event === 'bench'
  const args = argv.map((arg) => (/^[\w./=:,@-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`)).join(' ')
  return {
    date: new Date().toISOString(),
    commit: commitOf(),
    machine: {
      cores: cpus().length,
      cpu: cpus()[0]?.model.trim() ?? 'unknown',
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      kernel: release(),
    },
    versions: {
      node: process.version,
      postgres: postgresVersion,
      pglite: packageVersion('@electric-sql/pglite'),
      fastify: packageVersion('fastify'),
      pg: packageVersion('pg'),
      'drizzle-orm': packageVersion('drizzle-orm'),
      jose: packageVersion('jose'),
      autocannon: packageVersion('autocannon'),
    },
    command: viaNpm ? `npm run bench${args === '' ? '' : ` -- ${args}`}` : `tsx bench/run.ts ${args}`.trim(),
    label,
  }
}

/** The 1-, 5- and 15-minute load averages, rounded: recorded with every measurement, since the machine is shared. */
export const loadAverage = (): number[] => loadavg().map((value) => Math.round(value * 100) / 100)
