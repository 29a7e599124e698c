// The typed client against the real service over real HTTP: the app built in-process on the test database (PGlite,
// or the PostgreSQL server with TEST_DATABASE_URL), listening on loopback, and tokens really signed. Each test has
// users of its own, so the tests share one app. Last, the getToken the README recommends, with Better Auth's real
// browser client (`better-auth/client` and jwtClient()) against a real Better Auth server.
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { createAuthClient } from 'better-auth/client'
import { jwtClient } from 'better-auth/client/plugins'
import { SESSION_TOKEN_COOKIE, startBetterAuth } from '../../test/helpers/better-auth.ts'
import { buildTestApp, listenOnLoopback, openTestApp, type TestApp } from '../../test/helpers/test-app.ts'
import { nowS, signHs256, tokenFor } from '../../test/helpers/tokens.ts'
import { createTasksClient, etagOf, newIdempotencyKey, totalCountOf, type TasksClient } from '../src/index.ts'

/** A token for `userId` that expired two minutes ago (beyond the 30 s clock tolerance): refused as `Token expired`. */
async function expiredTokenFor(userId: string): Promise<string> {
  return signHs256({ sub: userId, iat: nowS() - 600, exp: nowS() - 120 })
}

/** What the client sent through its fetch: each request's Authorization, credentials and body. */
interface SentRequest {
  authorization: string | null
  credentials: Request['credentials']
  body: string
}

void describe('the typed client, against the service over HTTP', () => {
  let service: TestApp
  let baseUrl: string
  before(async () => {
    service = await openTestApp()
    baseUrl = `http://127.0.0.1:${await listenOnLoopback(service.app)}`
  })
  after(() => service.app.close())

  /**
   * A client whose getToken answers `getToken(n)` on its n-th call (from 0), counting the calls; every request goes
   * through the real fetch and is recorded first (from a copy: the original is what is sent).
   */
  function clientWith(getToken: (call: number) => Promise<string | null>): {
    api: TasksClient
    getTokenCalls: () => number
    sent: SentRequest[]
  } {
    let calls = 0
    const sent: SentRequest[] = []
    const api = createTasksClient({
      baseUrl,
      getToken: () => getToken(calls++),
      fetch: async (input, init) => {
        const request = new Request(input, init)
        const body = await request.clone().text()
        sent.push({ authorization: request.headers.get('authorization'), credentials: request.credentials, body })
        return fetch(request)
      },
    })
    return { api, getTokenCalls: () => calls, sent }
  }

  /** A client for `userId` whose getToken always returns a valid token. */
  const clientFor = (userId: string) => clientWith(() => tokenFor(userId))

  void test('lists the caller tasks with X-Total-Count readable, typed query and body', async () => {
    const { api, getTokenCalls, sent } = clientFor('client-list')
    for (const title of ['one', 'two', 'three']) {
      const { response } = await api.POST('/api/tasks', { body: { title } })
      assert.equal(response.status, 201)
    }
    const { data, response } = await api.GET('/api/tasks', { params: { query: { limit: 2, sort: 'title' } } })
    assert.equal(response.status, 200)
    assert.deepEqual(
      data?.map((task) => task.title),
      ['one', 'three'],
    )
    assert.equal(totalCountOf(response), 3, 'X-Total-Count counts every match, not the page')
    assert.equal(getTokenCalls(), 1, 'the token is asked for once and then held')
    assert.ok(
      sent.every((request) => request.credentials === 'omit'),
      'no request carries cookies',
    )
    assert.ok(sent.every((request) => request.authorization?.startsWith('Bearer ')))
  })

  void test('a create repeated with the same Idempotency-Key makes one task and replays the first answer', async () => {
    const { api } = clientFor('client-idempotent')
    const key = newIdempotencyKey()
    const send = () =>
      api.POST('/api/tasks', { body: { title: 'Once' }, params: { header: { 'idempotency-key': key } } })
    const first = await send()
    const second = await send()
    assert.equal(first.response.status, 201)
    assert.equal(first.response.headers.get('Idempotent-Replayed'), null)
    assert.equal(second.response.status, 201)
    assert.equal(second.response.headers.get('Idempotent-Replayed'), 'true')
    assert.deepEqual(second.data, first.data)
    const list = await api.GET('/api/tasks')
    assert.equal(totalCountOf(list.response), 1)
  })

  void test('a write with a stale If-Match is 412 and changes nothing; with the current ETag it succeeds', async () => {
    const { api } = clientFor('client-if-match')
    const created = await api.POST('/api/tasks', { body: { title: 'Draft' } })
    const id = created.data?.id ?? assert.fail('no task created')
    const staleEtag = etagOf(created.response)
    const edited = await api.PUT('/api/tasks/{id}', { params: { path: { id } }, body: { title: 'Edited elsewhere' } })
    const currentEtag = etagOf(edited.response)

    const stale = await api.PUT('/api/tasks/{id}', {
      params: { path: { id }, header: { 'if-match': staleEtag } },
      body: { title: 'Lost update' },
    })
    assert.equal(stale.response.status, 412)
    assert.deepEqual(stale.error, { detail: 'Precondition failed' })
    assert.equal((await api.GET('/api/tasks/{id}', { params: { path: { id } } })).data?.title, 'Edited elsewhere')

    const toggled = await api.PATCH('/api/tasks/{id}/complete', {
      params: { path: { id }, header: { 'if-match': currentEtag } }, // no body: a toggle
    })
    assert.equal(toggled.response.status, 200)
    assert.equal(toggled.data?.completed, true)
  })

  void test('an expired token: getToken is called once more and the POST is resent with its body', async () => {
    const user = 'client-expired'
    const { api, getTokenCalls, sent } = clientWith((call) => (call === 0 ? expiredTokenFor(user) : tokenFor(user)))
    const { data, response } = await api.POST('/api/tasks', { body: { title: 'Survives a refresh', completed: true } })
    assert.equal(response.status, 201)
    assert.equal(data?.title, 'Survives a refresh')
    assert.equal(data?.completed, true)
    assert.equal(getTokenCalls(), 2)
    assert.equal(sent.length, 2, 'one retry')
    assert.equal(sent[1]?.body, sent[0]?.body, 'the retry carries the same body')
    assert.notEqual(sent[1]?.authorization, sent[0]?.authorization, 'the retry carries the new token')
    assert.equal(sent[1]?.credentials, 'omit')

    // The fresh token is held: the next request asks for none.
    assert.equal((await api.GET('/api/tasks')).response.status, 200)
    assert.equal(getTokenCalls(), 2)
  })

  void test('a refreshed token that is refused again: that 401 is returned, after exactly one more getToken', async () => {
    const user = 'client-expired-twice'
    const { api, getTokenCalls, sent } = clientWith(() => expiredTokenFor(user))
    const { error, response } = await api.GET('/api/tasks')
    assert.equal(response.status, 401)
    assert.deepEqual(error, { detail: 'Token expired' })
    assert.equal(response.headers.get('WWW-Authenticate'), 'Bearer error="invalid_token"')
    assert.equal(getTokenCalls(), 2, 'the first token, then one refresh')
    assert.equal(sent.length, 2, 'the request and one retry, no more')
  })

  void test('a refreshed token of null (signed out meanwhile): resent without Authorization, Not authenticated', async () => {
    const user = 'client-signed-out-meanwhile'
    const { api, getTokenCalls, sent } = clientWith(async (call) => (call === 0 ? expiredTokenFor(user) : null))
    const { error, response } = await api.GET('/api/tasks')
    assert.equal(response.status, 401)
    assert.deepEqual(error, { detail: 'Not authenticated' })
    assert.equal(getTokenCalls(), 2)
    assert.equal(sent.length, 2)
    assert.equal(sent[1]?.authorization, null, 'the refused token is not sent again')
  })

  void test('requests refused together with one expired token share one getToken call', async () => {
    const user = 'client-concurrent'
    // The refresh takes a while, so the other requests' 401s arrive while it is in flight.
    const { api, getTokenCalls, sent } = clientWith(async (call) => {
      if (call === 0) return expiredTokenFor(user)
      await delay(100)
      return tokenFor(user)
    })
    const requests = Array.from({ length: 4 }, () => api.GET('/api/tasks'))
    const answers = await Promise.all(requests)
    assert.deepEqual(
      answers.map(({ response }) => response.status),
      [200, 200, 200, 200],
    )
    assert.equal(getTokenCalls(), 2, 'one call for the first token, one shared refresh')
    assert.equal(sent.length, 8, 'each request sent once and retried once')
  })

  void test('a getToken that throws on the refresh: the error reaches the caller, the refused answer is released, and the next request asks again', async () => {
    const user = 'client-refresh-throws'
    let calls = 0
    const answers: Response[] = []
    const api = createTasksClient({
      baseUrl,
      getToken: async () => {
        calls += 1
        if (calls === 1) return expiredTokenFor(user)
        if (calls === 2) throw new Error('the session store is down')
        return tokenFor(user)
      },
      fetch: async (request) => {
        const response = await fetch(request)
        answers.push(response)
        return response
      },
    })
    await assert.rejects(api.GET('/api/tasks'), /the session store is down/)
    assert.equal(answers.length, 1, 'no retry without a token')
    // An unread body holds its connection until it is garbage-collected: the 401 must be released even so.
    assert.equal(answers[0]?.bodyUsed, true, 'the refused answer is cancelled')
    assert.equal((await api.GET('/api/tasks')).response.status, 200, 'the failed refresh is not remembered')
    assert.equal(calls, 3)
  })

  void test('a 401 without error="invalid_token" (no token) is returned as is; null is not held', async () => {
    const user = 'client-signed-out'
    let signedIn = false
    const { api, getTokenCalls, sent } = clientWith(async () => (signedIn ? tokenFor(user) : null))
    const { error, response } = await api.GET('/api/tasks')
    assert.equal(response.status, 401)
    assert.deepEqual(error, { detail: 'Not authenticated' })
    assert.equal(sent.length, 1, 'no retry')
    assert.equal(sent[0]?.authorization, null, 'no Authorization header without a token')

    signedIn = true
    assert.equal((await api.GET('/api/tasks')).response.status, 200, 'after sign-in, the next request asks again')
    assert.equal(getTokenCalls(), 2)
  })

  void test('a 401 to a token whose challenge is not invalid_token (a proxy, say) is returned without a retry', async (t) => {
    // A server on loopback that refuses every request the way a gateway in front of the API might.
    const gateway = createServer((_request, response) =>
      response.writeHead(401, { 'www-authenticate': 'Bearer realm="gateway"' }).end('{"detail":"Not authenticated"}'),
    )
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve))
    t.after(() => {
      gateway.closeAllConnections()
      gateway.close()
    })
    let calls = 0
    const api = createTasksClient({
      baseUrl: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`,
      getToken: async () => (calls++, tokenFor('client-gateway')),
    })
    const { response } = await api.GET('/api/tasks')
    assert.equal(response.status, 401)
    assert.equal(calls, 1, 'no refresh')
  })

  void test('a user cannot see another user task: 404, and an empty list', async () => {
    const alice = clientFor('client-alice').api
    const bob = clientFor('client-bob').api
    const created = await alice.POST('/api/tasks', { body: { title: 'Private' } })
    const id = created.data?.id ?? assert.fail('no task created')

    const read = await bob.GET('/api/tasks/{id}', { params: { path: { id } } })
    assert.equal(read.response.status, 404)
    assert.deepEqual(read.error, { detail: 'Task not found' })
    assert.throws(() => etagOf(read.response), /404 response .* carries no readable ETag/, 'no If-Match from a 404')
    const deleted = await bob.DELETE('/api/tasks/{id}', { params: { path: { id } } })
    assert.equal(deleted.response.status, 404)
    const list = await bob.GET('/api/tasks')
    assert.deepEqual(list.data, [])
    assert.equal(totalCountOf(list.response), 0)
    assert.equal((await alice.GET('/api/tasks/{id}', { params: { path: { id } } })).response.status, 200)
  })

  void test('/health needs no token: getToken is not called', async () => {
    const { api, getTokenCalls, sent } = clientWith(() => assert.fail('getToken called for /health'))
    const { data } = await api.GET('/health')
    assert.deepEqual(data, { status: 'ok' })
    assert.equal(getTokenCalls(), 0)
    assert.equal(sent[0]?.authorization, null)
  })
})

void test("getToken as authClient.token() of Better Auth's client: tasks are created and listed as that user", async (t) => {
  const betterAuth = await startBetterAuth(t)
  const user = await betterAuth.signUp({ email: 'client-ba@example.com', name: 'Ada' })
  const { app } = await buildTestApp(t, { config: { jwksUrl: betterAuth.jwksUrl } })
  const baseUrl = `http://127.0.0.1:${await listenOnLoopback(app)}`

  // In a browser the session cookie rides along by itself (credentials: 'include'); Node's fetch keeps no cookies.
  const authClient = createAuthClient({
    baseURL: betterAuth.baseURL,
    plugins: [jwtClient()],
    fetchOptions: { headers: { cookie: `${SESSION_TOKEN_COOKIE}=${user.sessionTokenCookie}` } },
  })
  let calls = 0
  const api = createTasksClient({
    baseUrl,
    getToken: async () => (calls++, (await authClient.token()).data?.token ?? null),
  })
  const created = await api.POST('/api/tasks', { body: { title: 'From Better Auth' } })
  assert.equal(created.response.status, 201)
  assert.equal(created.data?.user_id, user.id)
  const list = await api.GET('/api/tasks')
  assert.equal(totalCountOf(list.response), 1)
  assert.equal(calls, 1)
})
