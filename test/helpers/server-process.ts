// The service as a real child process (`node --import tsx src/main.ts`), as production runs it, on a given
// database: for tests of several processes sharing one PostgreSQL server.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { TEST_SECRET } from './tokens.ts'

const REPOSITORY_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** A running server process. */
export interface ServerProcess {
  /** `http://127.0.0.1:<port>` */
  baseUrl: string
  /** What it wrote on stdout and stderr so far (warnings and errors: it runs with LOG_LEVEL=warn). */
  output(): string
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>
}

/** A port nobody listens on right now: the kernel's pick for port 0, released again for the child to take. */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

async function exited(child: ChildProcess, withinMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true
  const timeout = AbortSignal.timeout(withinMs)
  try {
    await once(child, 'exit', { signal: timeout })
    return true
  } catch {
    return false
  }
}

/**
 * Starts the service on `databaseUrl` (BETTER_AUTH_SECRET = TEST_SECRET, LOG_LEVEL=warn, a free loopback port)
 * and resolves once `/ready` answers 200.
 * @throws when it exits early or is not ready within `readyWithinMs` (it is stopped first).
 */
export async function startServerProcess(
  databaseUrl: string,
  options: { poolMax?: number; readyWithinMs?: number } = {},
): Promise<ServerProcess> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPOSITORY_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      BETTER_AUTH_SECRET: TEST_SECRET,
      LOG_LEVEL: 'warn',
      DATABASE_POOL_MAX: String(options.poolMax ?? 5),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const server: ServerProcess = {
    baseUrl: `http://127.0.0.1:${port}`,
    output: () => output,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      if (await exited(child, graceMs)) return
      child.kill('SIGKILL')
      await exited(child, 5000)
    },
  }

  const deadline = Date.now() + (options.readyWithinMs ?? 60_000)
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the server process exited with ${child.exitCode}:\n${output}`)
    const ready = await fetch(`${server.baseUrl}/ready`, { signal: AbortSignal.timeout(2000) }).catch(() => null)
    if (ready?.status === 200) return server
    await sleep(100)
  }
  await server.stop()
  throw new Error(`the server process was not ready in time:\n${output}`)
}
