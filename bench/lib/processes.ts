// The servers under test as child processes: started, waited for, watched through /proc, and stopped.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ: 100 on every Linux that matters). */
const CLOCK_TICKS = 100

/** Every child started and not yet exited, so a failing or interrupted run can kill them all. */
const running = new Set<ChildProcess>()

/** Kills every child still running (SIGKILL); used on a failure, an interrupt and the run's time limit. */
export function killAllChildren(): void {
  for (const child of running) child.kill('SIGKILL')
}

/** A free loopback port (the kernel picks it; it is released just before the server takes it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })
}

export interface StartOptions {
  command: string
  args: string[]
  cwd: string
  env: Record<string, string>
  /** stdout and stderr of the child go to this file (the access log, and any error). */
  logFile: string
}

/** A started child process. */
export interface Child {
  process: ChildProcess
  pid: number
  logFile: string
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<number | string | null>
}

/** Starts a child with its output in `logFile`. */
export function startChild(options: StartOptions): Child {
  const fd = openSync(options.logFile, 'a')
  const child = spawn(options.command, options.args, { cwd: options.cwd, env: options.env, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  running.add(child)
  const exited = new Promise<number | string | null>((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child)
      resolve(code ?? signal)
    })
    child.on('error', () => {
      running.delete(child)
      resolve('spawn error')
    })
  })
  if (child.pid === undefined) throw new Error(`could not start ${options.command}`)
  return { process: child, pid: child.pid, logFile: options.logFile, exited }
}

/**
 * Polls `url` until it answers 200; fails if the child exits first or `timeoutMs` passes. Gives the time it took (ms).
 */
export async function waitUntilReady(
  child: Child,
  url: string,
  timeoutMs: number,
  startedAt = performance.now(),
): Promise<number> {
  let exited = false
  void child.exited.then(() => (exited = true))
  while (performance.now() - startedAt < timeoutMs) {
    if (exited) throw new Error(`the server exited before it was ready; its output:\n${tail(child.logFile)}`)
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) })
      await response.arrayBuffer()
      if (response.status === 200) return performance.now() - startedAt
    } catch {
      // not listening yet
    }
    await sleep(20)
  }
  throw new Error(`the server was not ready within ${timeoutMs} ms; its output:\n${tail(child.logFile)}`)
}

/** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Gives the exit code or signal. */
export async function stopChild(child: Child, graceMs = 15_000): Promise<number | string | null> {
  child.process.kill('SIGTERM')
  const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs)
  const code = await child.exited
  clearTimeout(timer)
  return code
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no output)'
  }
}

/** User + system CPU time of a process in seconds (/proc/<pid>/stat fields 14 and 15), or null once it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: count fields from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return null
  }
}

/** VmRSS (now) and VmHWM (peak since start or since `resetPeakRss`) of a process, in MiB. */
export function memoryMiB(pid: number): { rss: number; peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
    return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 }
  } catch {
    return null
  }
}

/** Resets VmHWM to the current RSS (writing 5 to /proc/<pid>/clear_refs); false where the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** The pids of a process and all its descendants (/proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const pids = [pid]
  for (let i = 0; i < pids.length; i++) {
    const current = pids[i] as number
    try {
      for (const tid of readdirSync(`/proc/${current}/task`)) {
        const children = readFileSync(`/proc/${current}/task/${tid}/children`, 'utf8').trim()
        if (children !== '') pids.push(...children.split(' ').map(Number))
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

/** Total CPU seconds of the given processes (those gone meanwhile count as 0). */
export function totalCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0)
}

/** Busy and total jiffies of the whole machine (/proc/stat), to tell how loaded it was during a measurement. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
  const values = line.trim().split(/\s+/).slice(1).map(Number)
  const total = values.reduce((sum, value) => sum + value, 0)
  const idle = (values[3] ?? 0) + (values[4] ?? 0)
  return { busy: total - idle, total }
}

/** Samples a process's RSS every `intervalMs` and keeps the highest, for kernels where VmHWM cannot be reset. */
export function watchRss(pid: number, intervalMs = 100): { stop(): number } {
  let peak = 0
  const sample = (): void => {
    const memory = memoryMiB(pid)
    if (memory !== null && memory.rss > peak) peak = memory.rss
  }
  sample()
  const timer = setInterval(sample, intervalMs)
  return {
    stop() {
      clearInterval(timer)
      sample()
      return peak
    },
  }
}
