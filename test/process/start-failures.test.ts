// Failures at start, each caused for real, must end with exit 1 and one line on stderr naming the cause (no stack
// trace); a configuration docs/contract.md refuses stops the start with a message naming every bad variable; a
// symbolically linked ./.data is followed. Real child processes (src/main.ts); mounts need root.
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, symlinkSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { DEVELOPMENT_SECRET } from '../../src/config.ts'
import { startServer, temporaryDirectory, type ChildServer } from '../helpers/child-server.ts'
import { TEST_DATABASE_URL, withAdmin } from '../helpers/databases.ts'
import { mountTmpfs, remountReadOnly } from '../helpers/mounts.ts'
import { SEVERAL_BAD_VARIABLES } from '../helpers/test-app.ts'
import { signHs256, tokenFor } from '../helpers/tokens.ts'

/** The server's exit code and its stderr, which must be exactly one line without a stack trace. */
async function oneLineExit(server: ChildServer): Promise<{ code: number | null; line: string }> {
  const { code } = await server.exited
  const lines = server.stderr().trim().split('\n')
  assert.equal(lines.length, 1, `one line on stderr: ${server.stderr()}`)
  assert.doesNotMatch(server.stderr(), /\n\s+at |ErrnoError \{/, 'no stack trace')
  return { code, line: lines[0] ?? '' }
}

/**
 * Starts src/main.ts with exactly `env` in an empty directory (so no `.env` is read); its exit code (null when it has
 * not exited by itself within 30 s), stderr, and stdout.
 */
async function refusedStart(
  t: TestContext,
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const server = await startServer(t, {
    cwd: await temporaryDirectory(t),
    env,
    exactEnv: true,
    waitForListening: false,
  })
  const exit = await Promise.race([server.exited, sleep(30_000, null, { ref: false })])
  return { code: exit?.code ?? null, stderr: server.stderr(), stdout: server.logs.join('\n') }
}

test('the server refuses to start in production without a secret, naming BETTER_AUTH_SECRET', async (t) => {
  const { code, stderr, stdout } = await refusedStart(t, {
    NODE_ENV: 'production',
    PORT: '0',
    DATABASE_URL: 'memory://',
  })
  assert.notEqual(code, null, 'it exits by itself')
  assert.notEqual(code, 0)
  assert.match(stderr, /BETTER_AUTH_SECRET/, stderr)
  assert.doesNotMatch(stderr, /\n\s+at /, 'a message, not a stack trace')
  assert.doesNotMatch(stdout, /listening/i)
})

test('the server refuses to start in production on the development secret or a short one', async (t) => {
  for (const secret of [DEVELOPMENT_SECRET, 'k'.repeat(31)]) {
    const { code, stderr } = await refusedStart(t, {
      NODE_ENV: 'production',
      BETTER_AUTH_SECRET: secret,
      PORT: '0',
      DATABASE_URL: 'memory://',
    })
    assert.ok(code !== null && code !== 0, `exit code ${code}`)
    assert.match(stderr, /BETTER_AUTH_SECRET/, stderr)
    assert.ok(!stderr.includes(secret), 'the secret is not printed')
  }
})

test('in production with JWT_JWKS_URL and no secret the server starts with HS256 off: its start log says so, and a development-secret token is refused', async (t) => {
  const server = await startServer(t, {
    cwd: await temporaryDirectory(t),
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      NODE_ENV: 'production',
      DATABASE_URL: 'memory://',
      JWT_JWKS_URL: 'http://127.0.0.1:9/api/auth/jwks',
      JWT_ISSUER: 'http://localhost:3000/',
    },
    exactEnv: true,
  })
  const lines = server.logs.map((line) => JSON.parse(line) as Record<string, unknown>)
  const algorithms = lines.find((line) => line.msg === 'accepted token algorithms')
  assert.equal(algorithms?.hs256, 'off: JWT_JWKS_URL is set and BETTER_AUTH_SECRET is not')
  assert.ok(Array.isArray(algorithms.accepted_algorithms) && !algorithms.accepted_algorithms.includes('HS256'))
  assert.ok(
    lines.some((line) => line.level === 40 && String(line.msg).includes('tokens with iss=http://localhost:3000 will')),
    'the issuer warning',
  )
  const development = await signHs256(
    { sub: 'alice', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60 },
    { secret: DEVELOPMENT_SECRET },
  )
  const response = await fetch(`${server.url}/api/tasks`, { headers: { authorization: `Bearer ${development}` } })
  assert.equal(response.status, 401)
  assert.deepEqual(await response.json(), { detail: 'Invalid token' })
})

test('with several bad variables the server stops with one message naming them all', async (t) => {
  const bad = SEVERAL_BAD_VARIABLES
  const { code, stderr } = await refusedStart(t, { ...bad, NODE_ENV: 'production' })
  assert.ok(code !== null && code !== 0, `exit code ${code}`)
  for (const name of [...Object.keys(bad), 'BETTER_AUTH_SECRET'])
    assert.match(stderr, new RegExp(name), `${name} in: ${stderr}`)
  assert.doesNotMatch(stderr, /\n\s+at /, 'a message, not a stack trace')
})

test('a symbolic link as ./.data is followed: the database lives in its target', async (t) => {
  const directory = await temporaryDirectory(t)
  mkdirSync(join(directory, 'elsewhere'))
  symlinkSync(join(directory, 'elsewhere'), join(directory, '.data'))
  const server = await startServer(t, { cwd: directory })
  const headers = { authorization: `Bearer ${await tokenFor('link-user')}`, 'content-type': 'application/json' }
  const created = await fetch(`${server.url}/api/tasks`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ title: 'linked' }),
  })
  assert.equal(created.status, 201)
  assert.equal(existsSync(join(directory, 'elsewhere', 'PG_VERSION')), true, 'the files are in the target')
  await server.stop()
  assert.equal((await server.exited).code, 0)
})

test('a read-only data directory: exit 1, one line naming the directory and EROFS', async (t) => {
  const directory = await mountTmpfs(t, 8)
  mkdirSync(join(directory, '.data'))
  remountReadOnly(directory)
  const server = await startServer(t, { cwd: directory, waitForListening: false })
  const { code, line } = await oneLineExit(server)
  assert.equal(code, 1)
  assert.match(line, /^Cannot open the embedded database directory \.\/\.data: EROFS: read-only file system/)
})

test('a port already in use: exit 1, one line naming the address and EADDRINUSE; ./.data is unlocked', async (t) => {
  const directory = await temporaryDirectory(t)
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.after(() => holder.close())
  const { port } = holder.address() as AddressInfo
  const server = await startServer(t, { cwd: directory, env: { PORT: String(port) }, waitForListening: false })
  const { code, line } = await oneLineExit(server)
  assert.equal(code, 1)
  assert.equal(line, `Cannot listen on 127.0.0.1:${port}: the port is already in use (EADDRINUSE)`)
  assert.equal(existsSync(join(directory, '.data', 'tasks-api.lock')), false, 'the data directory is unlocked')
})

const serverUrl = TEST_DATABASE_URL
if (serverUrl !== undefined) {
  test('a SQL_ASCII database on the server: refused at start with exit 1 and one line naming server_encoding', async (t) => {
    const name = `tasks_ascii_${process.pid}`
    await withAdmin((admin) =>
      admin.query(`CREATE DATABASE "${name}" WITH ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`),
    )
    t.after(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)))
    const url = new URL(serverUrl)
    url.pathname = `/${name}`
    const directory = await temporaryDirectory(t)
    const server = await startServer(t, {
      cwd: directory,
      env: { DATABASE_URL: url.toString() },
      waitForListening: false,
    })
    const exit = await Promise.race([
      server.exited,
      new Promise((resolve) => setTimeout(resolve, 60_000, 'still running').unref()),
    ])
    assert.deepEqual(exit, { code: 1, signal: null }, 'refused at start')
    const lines = server.logs.filter((line) => line.includes('server_encoding'))
    assert.equal(lines.length, 1, `one line names server_encoding: ${server.logs.join('\n')}`)
    assert.match(lines[0] ?? '', /server_encoding is SQL_ASCII, not UTF8/)
    // Nothing was created in it: the check comes before the migrations.
    const client = new pg.Client({ connectionString: url.toString() })
    await client.connect()
    const { rows } = await client
      .query<{ count: string }>(`select count(*) from pg_tables where schemaname = 'public'`)
      .finally(() => client.end())
    assert.equal(rows[0]?.count, '0')
  })
}
