// The commands the README tells people to run, `npm start` and `npm run start:prod`, signalled as a process manager
// or a container runtime does it: to the pid it started (npm's). The server must drain ("stopped"), exit 0, free the
// port and unlock ./.data; npm must exit 0 on SIGTERM and SIGINT, which it forwards. SIGHUP kills npm itself (it
// forwards only SIGTERM and SIGINT), and the server must then drain on its own.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { copyFileSync, existsSync, symlinkSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { temporaryDirectory, waitUntil, type Scope } from '../helpers/child-server.ts'
import { TEST_SECRET, tokenFor } from '../helpers/tokens.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

// start:prod serves the build: built once for this file, as the README's production steps do.
before(() => execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' }))

/** A project directory of the test's own (so ./.data lands there) running this repository's code and scripts. */
async function projectDirectory(t: Scope): Promise<string> {
  const directory = await temporaryDirectory(t)
  copyFileSync(join(ROOT, 'package.json'), join(directory, 'package.json'))
  for (const entry of ['src', 'dist', 'migrations', 'node_modules'])
    symlinkSync(join(ROOT, entry), join(directory, entry))
  return directory
}

/** True when nothing listens on the port any more (binding it succeeds). */
async function portIsFree(port: number): Promise<boolean> {
  const server = createServer()
  return new Promise((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** `promise`, or a failure naming `what` once `timeoutMs` have passed. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

for (const script of ['start', 'start:prod']) {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    test(`${signal} to \`npm run ${script}\` drains the server, exits, frees the port and unlocks ./.data`, async (t) => {
      const directory = await projectDirectory(t)
      const npm = spawn('npm', ['run', script], {
        cwd: directory,
        env: {
          PATH: process.env.PATH ?? '',
          HOST: '127.0.0.1',
          PORT: '0',
          LOG_LEVEL: 'info',
          BETTER_AUTH_SECRET: TEST_SECRET,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let serverPid = 0
      t.after(() => {
        npm.kill('SIGKILL')
        if (serverPid !== 0 && isRunning(serverPid)) process.kill(serverPid, 'SIGKILL')
      })
      let stdout = ''
      let stderr = ''
      npm.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))
      npm.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text))
      // The pipe closes once every process holding it (npm, and the server it started) has exited.
      const pipeClosed = new Promise<void>((resolve) => npm.stdout.once('close', resolve))
      const npmExited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        npm.once('exit', (code, exitSignal) => resolve({ code, signal: exitSignal })),
      )

      await waitUntil('the server listens', () => /Server listening at http:\/\/127\.0\.0\.1:\d+/.test(stdout), 60_000)
      const port = Number(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)?.[1])
      serverPid = Number(/"pid":(\d+)/.exec(stdout)?.[1])
      const created = await fetch(`http://127.0.0.1:${port}/api/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await tokenFor('npm-user')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'before the signal' }),
      })
      assert.equal(created.status, 201)

      npm.kill(signal)
      const npmExit = await within(npmExited, 20_000, 'npm has exited')
      if (signal === 'SIGHUP') assert.equal(npmExit.signal, 'SIGHUP', 'npm itself dies of SIGHUP')
      else assert.deepEqual(npmExit, { code: 0, signal: null }, `npm exits 0: ${stderr}`)
      await waitUntil('the server has exited', () => !isRunning(serverPid), 20_000)
      await within(pipeClosed, 20_000, 'every process holding npm’s output has exited')
      assert.match(stdout, /"msg":"stopped"/, 'the server drained and logged "stopped"')
      assert.equal(await portIsFree(port), true, 'the port is free')
      assert.equal(existsSync(join(directory, '.data', 'tasks-api.lock')), false, 'the data directory is unlocked')
    })
  }
}
