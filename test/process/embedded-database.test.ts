// The embedded database (PGlite in ./.data) against process faults: a second process on the same directory, and
// kill -9 of the server. Real child processes (src/main.ts), each in a temporary directory of its own.
//
// The child-process tests are registered only in the PGlite pass (TEST_DATABASE_URL unset): they run the embedded
// database whatever the suite's database is, so running them twice would prove nothing more. The lock's own rules
// (no child process) run in both passes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { DataDirLockedError, LOCK_FILE_NAME, lockDataDir } from '../../src/db/data-dir-lock.ts'
import { startServer, temporaryDirectory, type ChildServer } from '../helpers/child-server.ts'
import { TEST_DATABASE_URL } from '../helpers/databases.ts'
import { assertNoTokenNorStack } from '../helpers/logs.ts'
import { tokenFor } from '../helpers/tokens.ts'

/** A pid that no process has now: a child that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  const pid = child.pid ?? assert.fail('spawned')
  await new Promise((resolve) => child.once('exit', resolve))
  return pid
}

describe('the data directory lock', () => {
  test('a directory can be locked once; a second lock, even from the same process, is refused by name and pid', async (t) => {
    const directory = await temporaryDirectory(t)
    const lock = lockDataDir(directory)
    assert.equal(readFileSync(join(directory, LOCK_FILE_NAME), 'utf8').trim(), String(process.pid))
    assert.throws(
      () => lockDataDir(directory),
      (error: unknown) =>
        error instanceof DataDirLockedError && error.ownerPid === process.pid && error.message.includes(directory),
    )
    lock.release()
    assert.equal(existsSync(join(directory, LOCK_FILE_NAME)), false, 'released: the file is gone')
    lockDataDir(directory).release()
  })

  test('a lock left by a process that no longer runs, or unreadable, is taken over', async (t) => {
    const directory = await temporaryDirectory(t)
    for (const stale of [`${await deadPid()}\n`, '', 'not a pid']) {
      writeFileSync(join(directory, LOCK_FILE_NAME), stale)
      const lock = lockDataDir(directory)
      assert.equal(
        readFileSync(join(directory, LOCK_FILE_NAME), 'utf8').trim(),
        String(process.pid),
        JSON.stringify(stale),
      )
      lock.release()
    }
  })

  test('a lock naming this process’s pid that this process does not hold is stale (a container restarted with the same pid)', async (t) => {
    const directory = await temporaryDirectory(t)
    writeFileSync(join(directory, LOCK_FILE_NAME), `${process.pid}\n`)
    lockDataDir(directory).release()
  })

  test('a lock held by a running process is refused', async (t) => {
    const directory = await temporaryDirectory(t)
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
    t.after(() => sleeper.kill('SIGKILL'))
    writeFileSync(join(directory, LOCK_FILE_NAME), `${sleeper.pid}\n`)
    assert.throws(() => lockDataDir(directory), DataDirLockedError)
  })
})

if (TEST_DATABASE_URL === undefined) {
  describe('the embedded database with real processes', () => {
    test('a second process on the same ./.data refuses to start with a clear error; the first keeps serving', async (t) => {
      const directory = await temporaryDirectory(t)
      const first = await startServer(t, { cwd: directory })
      const token = await tokenFor('embedded-user')
      assert.equal((await create(first, token, 'before the second process')).status, 201)

      const second = await startServer(t, { cwd: directory, waitForListening: false })
      const exit = await second.exited
      assert.equal(exit.code, 1, 'the second process exits non-zero')
      assert.match(second.stderr(), new RegExp(`in use by another process \\(pid ${first.child.pid}\\)`))
      assert.doesNotMatch(second.stderr(), /\n\s+at /, 'a message, not a stack trace')

      assert.equal((await create(first, token, 'after the second process')).status, 201)
      assert.deepEqual(await titles(first, token), ['before the second process', 'after the second process'])
      assertNoTokenNorStack(first.logs, [token])
    })

    test('kill -9 of the server loses no acknowledged write, and the next start takes over the stale lock', async (t) => {
      const directory = await temporaryDirectory(t)
      const first = await startServer(t, { cwd: directory })
      const token = await tokenFor('embedded-user')
      const acknowledged = new Set<string>()
      const track = async (title: string): Promise<void> => {
        const response = await create(first, token, title).catch(() => null)
        if (response?.status === 201) acknowledged.add(title)
      }
      for (let n = 0; n < 10; n++) await track(`sequential ${n}`)
      await Promise.all(Array.from({ length: 20 }, (_, n) => track(`concurrent ${n}`)))
      const completed = await fetch(`${first.url}/api/tasks?limit=1&sort=title`, {
        headers: { authorization: `Bearer ${token}` },
      })
      const [firstTask] = (await completed.json()) as { id: number; title: string }[]
      const toggle = await fetch(`${first.url}/api/tasks/${firstTask?.id}/complete`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${token}` },
      })
      assert.equal(toggle.status, 200, 'an acknowledged update')

      // Writes still in flight when the process is killed: the answered ones must survive, the others may or may not.
      const inFlight = Array.from({ length: 20 }, (_, n) => track(`in flight ${n}`))
      await new Promise((resolve) => setTimeout(resolve, 30))
      first.child.kill('SIGKILL')
      await Promise.all(inFlight)
      assert.deepEqual(await first.exited, { code: null, signal: 'SIGKILL' })
      assert.equal(
        readFileSync(join(directory, '.data', LOCK_FILE_NAME), 'utf8').trim(),
        String(first.child.pid),
        'the lock is left behind',
      )

      const second = await startServer(t, { cwd: directory })
      const stored = await titles(second, token)
      for (const title of acknowledged)
        assert.ok(stored.includes(title), `acknowledged write "${title}" survived kill -9`)
      assert.equal(new Set(stored).size, stored.length, 'nothing was written twice')
      assert.ok(stored.length >= acknowledged.size && stored.length <= 50)
      const reread = await fetch(`${second.url}/api/tasks/${firstTask?.id}`, {
        headers: { authorization: `Bearer ${token}` },
      })
      assert.equal(
        ((await reread.json()) as { completed: boolean }).completed,
        true,
        'the acknowledged update survived',
      )
      t.diagnostic(`kill -9: ${acknowledged.size} acknowledged writes, ${stored.length} rows after the restart`)
      assert.equal(readFileSync(join(directory, '.data', LOCK_FILE_NAME), 'utf8').trim(), String(second.child.pid))

      second.child.kill('SIGTERM')
      assert.equal((await second.exited).code, 0)
      assert.equal(existsSync(join(directory, '.data', LOCK_FILE_NAME)), false, 'a clean stop removes the lock')
    })
  })
}

async function create(server: ChildServer, token: string, title: string): Promise<Response> {
  return fetch(`${server.url}/api/tasks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title }),
    signal: AbortSignal.timeout(15_000),
  })
}

async function titles(server: ChildServer, token: string): Promise<string[]> {
  const response = await fetch(`${server.url}/api/tasks?limit=500&sort=created&order=asc`, {
    headers: { authorization: `Bearer ${token}` },
  })
  assert.equal(response.status, 200)
  return ((await response.json()) as { title: string }[]).map((task) => task.title)
}
