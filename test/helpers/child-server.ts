// The real server (src/main.ts) as a child process listening on 127.0.0.1, for the faults only a process shows:
// slow and hostile clients on a real socket, SIGTERM, kill -9, a second process on one data directory. Every child
// is killed (SIGKILL) after its test if still running, and every temporary directory removed.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TEST_SECRET } from './tokens.ts'

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url))
/** tsx's loader, by absolute URL: the child runs in a temporary directory, where `--import tsx` would not resolve. */
const TSX_LOADER = import.meta.resolve('tsx')

/** A start takes 2–5 s on an idle machine (tsx compiles src/, PGlite initialises); CI machines can be far busier. */
const START_TIMEOUT_MS = 120_000

/** How the child ended. */
export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface ChildServer {
  /** `http://127.0.0.1:<port>` once listening. */
  url: string
  port: number
  child: ChildProcess
  /** Every stdout line so far (JSON log lines). */
  logs: string[]
  /** Everything written to stderr so far. */
  stderr(): string
  /** Resolves when the process has exited. */
  exited: Promise<ChildExit>
  /** True until the process has exited. */
  running(): boolean
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` (default 10 s); resolves once it has exited. */
  stop(graceMs?: number): Promise<void>
}

/** Where cleanups go: a test's context (`t`), or a file's scope (`{ after }` from node:test) for a shared server. */
export interface Scope {
  after(cleanup: () => unknown): void
}

/** A temporary directory of the test's own (a child's working directory, so `./.data` lands there); removed after. */
export async function temporaryDirectory(t: Scope): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'tasks-api-test-'))
  t.after(() => rm(directory, { recursive: true, force: true }))
  return directory
}

/**
 * Starts `src/main.ts` with a clean environment (PORT=0 on 127.0.0.1, TEST_SECRET, info logs) plus `env`, in `cwd`.
 * Resolves once it logs that it listens; rejects if it exits first or takes over `startTimeoutMs` (default 120 s).
 * Then waits until /ready is 200, unless `waitForReady: false`. With `waitForListening: false` it resolves at once
 * (port 0 and an empty url: for a start that must fail). With `exactEnv: true` the child's environment is `env` alone,
 * without those defaults (a start whose refusal depends on what is unset).
 */
export async function startServer(
  t: Scope,
  options: {
    env?: Record<string, string>
    exactEnv?: boolean
    cwd: string
    waitForListening?: boolean
    waitForReady?: boolean
    startTimeoutMs?: number
  },
): Promise<ChildServer> {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, MAIN], {
    cwd: options.cwd,
    env: options.exactEnv
      ? { ...options.env }
      : {
          PATH: process.env.PATH ?? '',
          HOST: '127.0.0.1',
          PORT: '0',
          LOG_LEVEL: 'info',
          BETTER_AUTH_SECRET: TEST_SECRET,
          ...options.env,
        },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: string[] = []
  let stderr = ''
  let pending = ''
  let running = true
  const exited = new Promise<ChildExit>((resolve) =>
    child.once('exit', (code, signal) => {
      running = false
      resolve({ code, signal })
    }),
  )
  t.after(async () => {
    if (running) {
      child.kill('SIGKILL')
      await exited
    }
  })
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))

  const stop = async (graceMs = 10_000): Promise<void> => {
    if (!running) return
    child.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        if (running) child.kill('SIGKILL')
        resolve()
      }, graceMs)
    })
    await Promise.race([exited, killed])
    clearTimeout(timer)
    await exited
  }
  const server: ChildServer = {
    url: '',
    port: 0,
    child,
    logs,
    stderr: () => stderr,
    exited,
    running: () => running,
    stop,
  }
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`server did not listen within ${options.startTimeoutMs ?? START_TIMEOUT_MS} ms: ${stderr}`)),
      options.startTimeoutMs ?? START_TIMEOUT_MS,
    )
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`server exited (${code ?? signal}) before listening: ${stderr}`))
    })
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      const lines = (pending + text).split('\n')
      pending = lines.pop() ?? ''
      for (const line of lines.filter((l) => l !== '')) {
        logs.push(line)
        const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line)
        if (match?.[1] !== undefined && server.port === 0) {
          server.port = Number(match[1])
          server.url = `http://127.0.0.1:${server.port}`
          clearTimeout(timer)
          resolve()
        }
      }
    })
  })
  if (options.waitForListening === false) {
    listening.catch(() => undefined)
    return server
  }
  await listening
  // On a PostgreSQL server the migrations run in the background after the start: /ready says when they are done.
  if (options.waitForReady !== false) {
    await waitUntil(
      'the server is ready',
      async () => (await fetch(`${server.url}/ready`)).status === 200,
      options.startTimeoutMs ?? START_TIMEOUT_MS,
      50,
    )
  }
  return server
}

/** Waits until `predicate` holds, checking every `intervalMs`; fails after `timeoutMs` with `what`. */
export async function waitUntil(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<number> {
  const started = Date.now()
  for (;;) {
    if (await predicate()) return Date.now() - started
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
