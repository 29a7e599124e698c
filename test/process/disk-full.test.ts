// A full disk under the embedded database (PGlite in ./.data on a small tmpfs, filled for real). PostgreSQL PANICs
// when the WAL cannot grow; PGlite cannot restart its backend, so the process must end cleanly, not spin.
import assert from 'node:assert/strict'
import { closeSync, existsSync, ftruncateSync, fstatSync, openSync, writeSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { startServer, type ChildServer } from '../helpers/child-server.ts'
import { mountTmpfs } from '../helpers/mounts.ts'
import { tokenFor } from '../helpers/tokens.ts'

/** Writes zeros to `path` until the file system is full (ENOSPC, at most 256 MiB), then frees `leaveMiB` of it. */
function fillDisk(path: string, leaveMiB: number): void {
  const fd = openSync(path, 'w')
  const chunk = Buffer.alloc(64 * 1024)
  try {
    for (let written = 0; written < 256 * 16; written++) writeSync(fd, chunk)
    assert.fail('the file system did not fill up')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
    ftruncateSync(fd, fstatSync(fd).size - leaveMiB * 1024 * 1024)
  } finally {
    closeSync(fd)
  }
}

/** Resolves with the exit, or fails if the process is still running after `timeoutMs`. */
async function exitWithin(server: ChildServer, timeoutMs: number): Promise<{ code: number | null }> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms: ${server.stderr()}`)), timeoutMs)
  })
  try {
    return await Promise.race([server.exited, timeout])
  } finally {
    clearTimeout(timer)
  }
}

test('a full disk: the WAL that cannot grow ends the process with exit 1 and one line; a restart has every acknowledged write', async (t) => {
  const directory = await mountTmpfs(t, 64)
  const server = await startServer(t, { cwd: directory })
  const headers = { authorization: `Bearer ${await tokenFor('disk-user')}`, 'content-type': 'application/json' }
  const created = await fetch(`${server.url}/api/tasks`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ title: 'fill' }),
  })
  assert.equal(created.status, 201)
  const { id } = (await created.json()) as { id: number }

  // A table that cannot grow: 503, /health still answers, and writes work again once space is freed.
  fillDisk(join(directory, 'filler'), 0)
  let refused = 0
  for (let i = 0; i < 500 && refused === 0; i++) {
    const body = JSON.stringify({ title: `full ${i}`, description: 'd'.repeat(1000) })
    const response = await fetch(`${server.url}/api/tasks`, {
      method: 'POST',
      headers,
      body,
      signal: AbortSignal.timeout(10_000),
    })
    assert.ok(response.status === 201 || response.status === 503, `201 or 503, not ${response.status}`)
    if (response.status === 503) refused++
    await response.arrayBuffer()
  }
  assert.equal(refused, 1, 'a write that meets the full disk is 503')
  assert.equal((await fetch(`${server.url}/health`)).status, 200)
  await rm(join(directory, 'filler'))
  const afterSpace = await fetch(`${server.url}/api/tasks`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ title: 'space again' }),
  })
  assert.equal(afterSpace.status, 201, 'space freed: writes work again, no restart')

  // Each update of one row writes ~1 KiB of WAL; the table and its indexes grow far less (old versions are pruned),
  // so the 4 MiB left absorb their growth while the WAL fills its 16 MiB segment and cannot create the next one.
  fillDisk(join(directory, 'filler'), 4)
  const statuses = new Map<number, number>()
  let acknowledged: string | undefined
  for (let i = 0; i < 30_000 && server.running(); i++) {
    const description = `${i} `.padEnd(1000, `${i * 7919}`)
    let response: Response
    try {
      response = await fetch(`${server.url}/api/tasks/${id}`, {
        method: 'PUT',
        headers,
        body: JSON.stringify({ description }),
        signal: AbortSignal.timeout(10_000),
      })
    } catch {
      break // the process ended under the request, or (the old failure) the request never got an answer
    }
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
    if (response.status === 200) acknowledged = description
    await response.arrayBuffer()
  }
  assert.equal((await exitWithin(server, 10_000)).code, 1, 'the process exits 1 instead of spinning')
  assert.deepEqual(
    [...statuses.keys()].filter((status) => status !== 200 && status !== 503),
    [],
    'every answer was 200 or 503',
  )
  const lines = server.stderr().trim().split('\n')
  assert.equal(lines.length, 1, `one line on stderr: ${server.stderr()}`)
  assert.match(lines[0] ?? '', /The embedded database \(\.\/\.data\) stopped .*No space left on device/)
  assert.equal(existsSync(join(directory, '.data', 'tasks-api.lock')), false, 'the data directory is unlocked')

  await rm(join(directory, 'filler'))
  const restarted = await startServer(t, { cwd: directory })
  const task = (await (await fetch(`${restarted.url}/api/tasks/${id}`, { headers })).json()) as { description: string }
  assert.equal(task.description, acknowledged, 'the last acknowledged write survived')
  const write = await fetch(`${restarted.url}/api/tasks/${id}`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({ completed: true }),
  })
  assert.equal(write.status, 200, 'writes work again once there is space')
  await restarted.stop()
  assert.equal((await restarted.exited).code, 0)
})
