// DATABASE_PREPARED_STATEMENTS on the real PostgreSQL server: with it (the default) every route's statement is a
// named prepared statement on the connection, each one filtering by the owner; without it nothing is left on the
// connection (for a transaction-mode pooler without prepared-statement support). A connection lost between two
// requests is replaced and the statements are prepared again on the new one.
//
// Registered only when TEST_DATABASE_URL is set: PGlite has no sessions to look into.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { buildApp } from '../src/app.ts'
import type { Database } from '../src/db/database.ts'
import { asUser, type TaskJson } from './helpers/api-client.ts'
import { createTestDatabase, TEST_DATABASE_URL } from './helpers/databases.ts'
import { captureLogs, testConfig } from './helpers/test-app.ts'

/** The app over a pool of ONE connection, so that `pg_prepared_statements` through the pool shows the app's session. */
async function appOnOneConnection(
  t: TestContext,
  preparedStatements: boolean,
): Promise<{ app: FastifyInstance; database: Database }> {
  const testDatabase = await createTestDatabase({ poolMax: 1 })
  const app = await buildApp({
    config: testConfig({ preparedStatements }),
    database: testDatabase.database,
    logStream: captureLogs().logStream,
  })
  t.after(async () => {
    await app.close()
    await testDatabase.drop()
  })
  return { app, database: testDatabase.database }
}

/** Every route once, with every kind of write (a PUT of each field, a toggle, a set), as one user. */
async function useEveryRoute(app: FastifyInstance, userId: string): Promise<void> {
  const user = asUser(app, userId)
  const created = await user.create({ title: 'first' })
  await user.get(created.id)
  await user.list('?limit=5')
  await user.put(created.id, { title: 'renamed', description: 'd', completed: true })
  await user.put(created.id, { title: 'renamed again' })
  await user.complete(created.id)
  await user.complete(created.id, { completed: false })
  assert.equal((await user.request('DELETE', `/api/tasks/${created.id}`)).statusCode, 204)
  assert.equal((await user.request('GET', `/api/tasks/${created.id}`)).statusCode, 404)
}

/** The statements prepared on the pool's one connection: name → SQL text. */
async function preparedOn(database: Database): Promise<Map<string, string>> {
  assert.equal(database.kind, 'postgres')
  if (database.kind !== 'postgres') return new Map()
  const { rows } = await database.pool.query<{ name: string; statement: string }>(
    'select name, statement from pg_prepared_statements',
  )
  return new Map(rows.map((row) => [row.name, row.statement]))
}

if (TEST_DATABASE_URL !== undefined) {
  void test('by default each route’s statement is prepared once per connection, and every one is scoped by the owner', async (t) => {
    const { app, database } = await appOnOneConnection(t, true)
    await useEveryRoute(app, 'user-prepared-1')
    const prepared = await preparedOn(database)
    // The create below MAX_TASKS_PER_USER (on by default) is tasks_insert_capped; tasks_insert is the one without a
    // cap.
    for (const name of [
      'tasks_get',
      'tasks_insert_capped',
      'tasks_delete',
      'tasks_update_title_description_set',
      'tasks_update_title_keep',
    ]) {
      assert.ok(prepared.has(name), `${name} is prepared: ${[...prepared.keys()].join(', ')}`)
    }
    assert.ok(
      [...prepared.keys()].some((name) => name.startsWith('tasks_list')),
      'the list is prepared',
    )
    assert.ok(
      prepared.has('tasks_update_toggle') && prepared.has('tasks_update_set'),
      'the toggle and the set are two statements',
    )
    for (const [name, statement] of prepared) {
      if (!name.startsWith('tasks_')) continue
      if (name === 'tasks_insert_capped')
        assert.match(
          statement,
          /^with "counter" as \(insert into "task_counts" \("user_id", .*\) values \(\$1, .*\("id", "user_id",.*\) values \(default, \(select \$4 from "counter"/,
          'the owner is the counter row locked and the new row’s user_id',
        )
      else assert.match(statement, /where .*"user_id" = \$\d+/, `${name} filters by the owner`)
    }
    // A second user reuses the same statements on the same connection: nothing new is prepared, and answers are that
    // user's.
    const before = prepared.size
    await useEveryRoute(app, 'user-prepared-2')
    assert.equal((await preparedOn(database)).size, before)
  })

  void test('DATABASE_PREPARED_STATEMENTS=false leaves no prepared statement on the connection (pooler without support)', async (t) => {
    const { app, database } = await appOnOneConnection(t, false)
    await useEveryRoute(app, 'user-unnamed')
    assert.deepEqual([...(await preparedOn(database)).keys()], [])
  })

  void test('a connection lost between requests is replaced, and the statements are prepared again on the new one', async (t) => {
    const { app, database } = await appOnOneConnection(t, true)
    const user = asUser(app, 'user-reconnect')
    const created = await user.create({ title: 'kept' })
    await user.get(created.id)
    assert.equal(database.kind, 'postgres')
    if (database.kind !== 'postgres') return
    // The pool's only connection ends itself (as after a server restart or Neon suspending the compute).
    await database.pool.query('select pg_terminate_backend(pg_backend_pid())').catch(() => undefined)
    const again = await user.request('GET', `/api/tasks/${created.id}`)
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.json<TaskJson>().title, 'kept')
    assert.ok((await preparedOn(database)).has('tasks_get'), 'prepared again on the new connection')
  })
}

if (TEST_DATABASE_URL !== undefined) {
  void test('a migration that changes a column’s type under prepared statements costs no request a 500', async (t) => {
    // Another process (a rolling deploy) alters tasks while this one holds prepared statements on its connections:
    // PostgreSQL then refuses each of them once with "cached plan must not change result type" (0A000), at Bind, before
    // anything ran. Every connection of the pool holds them, so each must be dropped and the statement sent again.
    const testDatabase = await createTestDatabase({ poolMax: 3 })
    const app = await buildApp({
      config: testConfig(),
      database: testDatabase.database,
      logStream: captureLogs().logStream,
    })
    t.after(async () => {
      await app.close()
      await testDatabase.drop()
    })
    const user = asUser(app, 'user-altered')
    const created = await user.create({ title: 'kept', description: 'd' })
    // Three concurrent rounds, so that every connection of the pool has prepared every statement used below.
    const round = async (): Promise<number[]> =>
      (
        await Promise.all(
          Array.from({ length: 3 }, async () => [
            (await user.request('GET', `/api/tasks/${created.id}`)).statusCode,
            (await user.request('GET', '/api/tasks?limit=5')).statusCode,
            (await user.request('PUT', `/api/tasks/${created.id}`, { title: 'kept' })).statusCode,
          ]),
        )
      ).flat()
    assert.deepEqual(new Set(await round()), new Set([200]))
    assert.equal(testDatabase.database.kind, 'postgres')
    if (testDatabase.database.kind !== 'postgres') return
    const admin = new pg.Client({ connectionString: testDatabase.database.url })
    await admin.connect()
    try {
      await admin.query('alter table tasks alter column description type varchar(2000)')
    } finally {
      await admin.end()
    }
    assert.deepEqual(new Set(await round()), new Set([200]))
  })
}
