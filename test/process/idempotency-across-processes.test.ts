// Safe retries of POST /api/tasks (docs/contract.md "Retries and concurrent edits") across two real server processes
// (src/main.ts as child processes) sharing one PostgreSQL database: one Idempotency-Key creates one task whichever
// process answers. Registered only when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { count, eq } from 'drizzle-orm'
import { tasks } from '../../src/db/schema.ts'
import { race, statusCounts, type TaskJson } from '../helpers/api-client.ts'
import { startServer, temporaryDirectory, type ChildServer } from '../helpers/child-server.ts'
import { createTestDatabase, TEST_DATABASE_URL } from '../helpers/databases.ts'
import { tokenFor } from '../helpers/tokens.ts'

if (TEST_DATABASE_URL !== undefined) {
  void test(
    'two server processes on one PostgreSQL database: 10 concurrent POSTs with one key create exactly one task, and every answer is that task or 409 (PostgreSQL only)',
    { timeout: 180_000 },
    async (t) => {
      const testDatabase = await createTestDatabase({ poolMax: 2 })
      const servers: ChildServer[] = []
      try {
        if (testDatabase.url === null) throw new Error('server only')
        const env = { DATABASE_URL: testDatabase.url, DATABASE_POOL_MAX: '5' }
        const start = async () => startServer(t, { cwd: await temporaryDirectory(t), env })
        servers.push(...(await Promise.all([start(), start()])))
        const token = await tokenFor('idem-two-processes')
        const post = async (i: number, key: string) => {
          const server = servers[i % servers.length]!
          const response = await fetch(`${server.url}/api/tasks`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
            body: JSON.stringify({ title: 'Bought on the train', description: 'sent once, retried by the phone' }),
            signal: AbortSignal.timeout(30_000),
          })
          return {
            statusCode: response.status,
            body: await response.text(),
            location: response.headers.get('location'),
            etag: response.headers.get('etag'),
            replayed: response.headers.get('idempotent-replayed'),
            server: i % servers.length,
          }
        }
        // Warm both processes up (connections, compiled code), so the 10 requests really overlap.
        for (const [i, server] of servers.entries()) {
          const warm = await fetch(`${server.url}/api/tasks`, { headers: { authorization: `Bearer ${token}` } })
          assert.equal(warm.status, 200, `server ${i}: ${server.stderr()}${server.logs.join('\n')}`)
        }

        const rounds = 3
        for (let round = 0; round < rounds; round++) {
          const key = `two-processes-${round}`
          const answers = await race(10, (i) => post(i, key))
          const counts = statusCounts(answers)
          assert.deepEqual(
            Object.keys(counts).filter((status) => status !== '201' && status !== '409'),
            [],
            JSON.stringify(answers),
          )
          const created = answers.filter((answer) => answer.statusCode === 201)
          const firsts = created.filter((answer) => answer.replayed === null)
          assert.equal(firsts.length, 1, `exactly one request created it: ${JSON.stringify(answers)}`)
          const first = firsts[0]!
          const task = JSON.parse(first.body) as TaskJson
          assert.equal(first.location, `/api/tasks/${task.id}`)
          for (const answer of created) {
            assert.deepEqual([answer.body, answer.location, answer.etag], [first.body, first.location, first.etag])
          }
          for (const answer of answers.filter((a) => a.statusCode === 409))
            assert.equal(typeof JSON.parse(answer.body).detail, 'string')
          // Both processes answered, and a later retry to either one replays the same task.
          assert.deepEqual(new Set(answers.map((answer) => answer.server)), new Set([0, 1]))
          for (const i of [0, 1]) {
            const later = await post(i, key)
            assert.deepEqual([later.statusCode, later.body, later.replayed], [201, first.body, 'true'])
          }
          t.diagnostic(
            `round ${round}: ${firsts.length} created (on process ${first.server}), ${created.length - 1} replayed, ${counts[409] ?? 0} answered 409`,
          )
        }
        const [tasksCreated] = await testDatabase.database.db
          .select({ n: count() })
          .from(tasks)
          .where(eq(tasks.userId, 'idem-two-processes'))
        assert.equal(tasksCreated?.n, rounds, 'one task per key')
        const [allTasks] = await testDatabase.database.db.select({ n: count() }).from(tasks)
        assert.equal(allTasks?.n, rounds)
      } finally {
        await Promise.all(servers.map((server) => server.stop()))
        await testDatabase.drop()
      }
    },
  )
}
