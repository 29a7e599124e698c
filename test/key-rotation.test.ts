// Key rotation and key-set outages with a real Better Auth (`jwt({ jwks: { rotationInterval, gracePeriod } })`),
// behind a loopback proxy the test can count, slow down and stop. The service's clock is injected (the 30 s
// cooldown is crossed by moving it, never by waiting); Better Auth rotates on its own real clock, every second.
// Runs in both passes (the database does not matter here).
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { decodeProtectedHeader } from 'jose'
import { createTokenVerifier } from '../src/auth/token-verifier.ts'
import {
  startBetterAuth,
  startKeySetProxy,
  type BetterAuthServer,
  type BetterAuthUser,
  type KeySetProxy,
} from './helpers/better-auth.ts'
import { waitUntil } from './helpers/child-server.ts'
import { assertEach503LoggedOnce, assertNoTokenNorStack } from './helpers/logs.ts'
import { buildTestApp, testConfig } from './helpers/test-app.ts'

/** The service's bound on one key-set fetch in these tests (ms). */
const FETCH_TIMEOUT_MS = 1000

/**
 * A Better Auth that rotates keys every second and lists retired keys for an hour, a proxy before it, and the service.
 */
interface Rig {
  betterAuth: BetterAuthServer
  proxy: KeySetProxy
  app: FastifyInstance
  logs: string[]
  user: BetterAuthUser
  /** Moves the service's clock forward (ms). */
  advance(ms: number): void
  /** `GET /api/tasks` with the token: status, and the request id of a 503 is kept for the log check. */
  status(token: string): Promise<number>
  /** A token signed by a key other than every one in `kidsSeen` (waits for Better Auth's next rotation). */
  tokenOfNewKey(...kidsSeen: string[]): Promise<string>
  unavailable: string[]
  tokens: string[]
}

async function startRig(t: TestContext): Promise<Rig> {
  const betterAuth = await startBetterAuth(t, { rotation: { rotationInterval: 1, gracePeriod: 3600 } })
  const proxy = await startKeySetProxy(t, betterAuth.jwksUrl)
  let offsetMs = 0
  const config = testConfig({ jwksUrl: proxy.url })
  const tokenVerifier = createTokenVerifier(config, {
    now: () => Date.now() + offsetMs,
    jwksFetchTimeoutMs: FETCH_TIMEOUT_MS,
  })
  const { app, logs } = await buildTestApp(t, { config: { jwksUrl: proxy.url }, tokenVerifier })
  const user = await betterAuth.signUp({ email: 'rotating@example.com', name: 'Rotating' })
  const unavailable: string[] = []
  const tokens: string[] = [user.jwt]
  return {
    betterAuth,
    proxy,
    app,
    logs,
    user,
    unavailable,
    tokens,
    advance: (ms) => void (offsetMs += ms),
    async status(token) {
      const response = await app.inject({
        method: 'GET',
        url: '/api/tasks',
        headers: { authorization: `Bearer ${token}` },
      })
      if (response.statusCode === 503) {
        assert.deepEqual(response.json(), { detail: 'Service unavailable' })
        assert.match(String(response.headers['retry-after']), /^[1-9]\d*$/)
        unavailable.push(String(response.headers['x-request-id']))
      }
      return response.statusCode
    },
    async tokenOfNewKey(...kidsSeen) {
      let token = ''
      await waitUntil(
        'Better Auth signs with a new key',
        async () => {
          token = await betterAuth.issueToken(user)
          return !kidsSeen.includes(kidOf(token))
        },
        15_000,
        250,
      )
      tokens.push(token)
      return token
    },
  }
}

const kidOf = (token: string): string =>
  decodeProtectedHeader(token).kid ?? assert.fail('Better Auth tokens carry a kid')

/** The kids Better Auth lists now, read around the proxy (so the count of fetches stays the service's). */
async function listedKids(betterAuth: BetterAuthServer): Promise<string[]> {
  const set = (await (await fetch(betterAuth.jwksUrl)).json()) as { keys: { kid: string }[] }
  return set.keys.map((key) => key.kid)
}

function assertLogRules(rig: Rig): void {
  assertNoTokenNorStack(rig.logs, rig.tokens)
  assertEach503LoggedOnce(rig.logs, rig.unavailable)
}

test('concurrent first requests share one fetch; a rotated-in key works on its first request once the last fetch is 30 s old; the old key keeps working while listed', async (t) => {
  const rig = await startRig(t)
  const oldToken = rig.user.jwt
  const oldKid = kidOf(oldToken)
  const first = await Promise.all(Array.from({ length: 10 }, () => rig.status(oldToken)))
  assert.deepEqual(new Set(first), new Set([200]))
  assert.equal(rig.proxy.requests(), 1, 'ten concurrent first requests, one fetch')

  const newToken = await rig.tokenOfNewKey(oldKid)
  assert.deepEqual(
    (await listedKids(rig.betterAuth)).sort(),
    [oldKid, kidOf(newToken)].sort(),
    'Better Auth lists both keys',
  )

  rig.advance(10_000)
  assert.equal(await rig.status(newToken), 401, 'within 30 s of the last fetch an unknown kid is not fetched for')
  assert.equal(rig.proxy.requests(), 1)

  rig.advance(21_000)
  assert.equal(await rig.status(newToken), 200, 'past 30 s, the first request with the new key is accepted')
  assert.equal(rig.proxy.requests(), 2, 'with exactly one refetch')
  const both = await Promise.all([
    ...Array.from({ length: 5 }, () => rig.status(newToken)),
    ...Array.from({ length: 5 }, () => rig.status(oldToken)),
  ])
  assert.deepEqual(new Set(both), new Set([200]), 'old-key tokens keep working while the set lists the old key')
  assert.equal(rig.proxy.requests(), 2)
  assertLogRules(rig)
})

test('a key removed from the key set keeps working until the next refetch, and stops working after it', async (t) => {
  const rig = await startRig(t)
  const oldToken = rig.user.jwt
  const oldKid = kidOf(oldToken)
  assert.equal(await rig.status(oldToken), 200)

  // Better Auth drops a key from its set once its grace period is over: end the old key's life that way.
  const stored = rig.betterAuth.storedKeys().find((key) => key.id === oldKid) ?? assert.fail('the old key is stored')
  stored.expiresAt = new Date(Date.now() - 3601_000)
  const newToken = await rig.tokenOfNewKey(oldKid)
  assert.deepEqual(await listedKids(rig.betterAuth), [kidOf(newToken)], 'the old key is no longer listed')

  assert.equal(
    await rig.status(oldToken),
    200,
    'until the service refetches, its copy of the set still has the old key',
  )
  rig.advance(31_000)
  assert.equal(await rig.status(newToken), 200, 'the new key triggers the refetch')
  assert.equal(rig.proxy.requests(), 2)
  assert.equal(await rig.status(oldToken), 401, 'after the refetch, the removed key is refused')
  assert.equal(rig.proxy.requests(), 2, 'and refusing it fetched nothing (cooldown)')
  assertLogRules(rig)
})

test('a slow key-set endpoint is bounded by the fetch timeout: 503 before the first set, then 401 for new keys and 200 for known ones', async (t) => {
  const rig = await startRig(t)
  const oldToken = rig.user.jwt
  rig.proxy.delayMs = 10_000

  let started = Date.now()
  assert.equal(
    await rig.status(oldToken),
    503,
    'no set yet and the endpoint too slow: the token may be valid, so 503, not 401',
  )
  const firstWait = Date.now() - started
  assert.ok(
    firstWait >= FETCH_TIMEOUT_MS - 100 && firstWait < FETCH_TIMEOUT_MS + 3000,
    `bounded by the fetch timeout (${firstWait} ms)`,
  )
  t.diagnostic(`slow key set, no set yet: 503 after ${firstWait} ms`)

  rig.proxy.delayMs = 0
  rig.advance(5_000) // the first fetch is retried at most every 5 s
  started = Date.now()
  assert.equal(await rig.status(oldToken), 200, 'the endpoint is fast again: accepted')
  t.diagnostic(`slow key set recovered: first 200 in ${Date.now() - started} ms`)

  const newToken = await rig.tokenOfNewKey(kidOf(oldToken))
  rig.proxy.delayMs = 10_000
  rig.advance(31_000)
  started = Date.now()
  assert.equal(await rig.status(newToken), 401, 'the refetch times out: an unknown kid is 401, not a hung request')
  const refetchWait = Date.now() - started
  assert.ok(refetchWait < FETCH_TIMEOUT_MS + 3000, `bounded by the fetch timeout (${refetchWait} ms)`)
  started = Date.now()
  assert.equal(await rig.status(oldToken), 200, 'the known key still works, without waiting')
  assert.ok(Date.now() - started < 5000, 'not held by the slow endpoint (10 s)')

  await rig.proxy.stop()
  rig.advance(31_000)
  assert.equal(await rig.status(oldToken), 200, 'endpoint down: the last good set is kept')
  assert.equal(await rig.status(newToken), 401, 'endpoint down: an unknown kid is 401')
  assertLogRules(rig)
})
