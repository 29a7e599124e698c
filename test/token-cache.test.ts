// The verifier remembers HS256 tokens it has accepted (issue 6: verifying each one again was ~15 % of a
// request's CPU). Remembering must never change an answer: these check that a remembered token still expires
// on time, and that a token differing from a remembered one in any byte is verified in full. The memory it holds is
// bounded in bytes (issue 10: 10,000 cookie-cache tokens of 15 KB were 150 MB under a bound by count).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { AuthError, createTokenVerifier, type TokenVerifier } from '../src/auth/token-verifier.ts'
import { createVerifiedTokenCache, VERIFIED_TOKEN_CACHE_BYTES } from '../src/auth/verified-token-cache.ts'
import { testConfig } from './helpers/test-app.ts'
import { signHs256 } from './helpers/tokens.ts'

const seconds = (ms: number): number => Math.floor(ms / 1000)

/** The reason `verify` refuses `token` with, or 'accepted'. */
async function outcome(verifier: TokenVerifier, token: string): Promise<string> {
  try {
    return `accepted as ${(await verifier.verify(token)).userId}`
  } catch (error) {
    if (error instanceof AuthError) return error.reason
    throw error
  }
}

void test('a remembered token is refused as expired once its exp (plus the 30 s leeway) has passed', async () => {
  let clockMs = Date.UTC(2026, 0, 1)
  const verifier = createTokenVerifier(testConfig(), { now: () => clockMs })
  const token = await signHs256({ sub: 'alice', iat: seconds(clockMs), exp: seconds(clockMs) + 60 })
  assert.equal(await outcome(verifier, token), 'accepted as alice')
  clockMs += 89_000
  assert.equal(await outcome(verifier, token), 'accepted as alice', '29 s past exp: within the leeway')
  clockMs += 1_000
  assert.equal(await outcome(verifier, token), 'expired', '30 s past exp: expired, as jose says on a first sight')
  assert.equal(await outcome(verifier, token), 'expired', 'and stays so')
})

void test('a token that differs from a remembered one in its signature, payload or secret is verified in full and refused', async () => {
  const nowMs = Date.now()
  const verifier = createTokenVerifier(testConfig(), { now: () => nowMs })
  const claims = { sub: 'alice', iat: seconds(nowMs), exp: seconds(nowMs) + 300 }
  const token = await signHs256(claims)
  assert.equal(await outcome(verifier, token), 'accepted as alice')

  const [header, payload, signature] = token.split('.') as [string, string, string]
  const flipped = `${signature.slice(0, -2)}${signature.at(-2) === 'A' ? 'B' : 'A'}${signature.at(-1)}`
  assert.equal(await outcome(verifier, `${header}.${payload}.${flipped}`), 'invalid', 'a changed signature')
  const mallory = Buffer.from(JSON.stringify({ ...claims, sub: 'mallory' })).toString('base64url')
  assert.equal(
    await outcome(verifier, `${header}.${mallory}.${signature}`),
    'invalid',
    'a changed payload with the old signature',
  )
  assert.equal(
    await outcome(verifier, await signHs256(claims, { secret: 'another-secret-0123456789-abcdefghij' })),
    'invalid',
    'another secret',
  )
  assert.equal(await outcome(verifier, token), 'accepted as alice', 'the original is still accepted')
})

void test('two verifiers with different secrets share nothing', async () => {
  const nowMs = Date.now()
  const token = await signHs256({ sub: 'alice', iat: seconds(nowMs), exp: seconds(nowMs) + 300 })
  const right = createTokenVerifier(testConfig(), { now: () => nowMs })
  const wrong = createTokenVerifier(testConfig({ betterAuthSecret: 'a-different-secret-0123456789-abcdefgh' }), {
    now: () => nowMs,
  })
  assert.equal(await outcome(right, token), 'accepted as alice')
  assert.equal(await outcome(wrong, token), 'invalid')
})

/** Heap in use after full collections (bytes): `gc` is exposed at run time, so the file runs with the usual flags. */
function heapUsedAfterGc(): number {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

void test('big distinct tokens stay within the byte budget of the cache, and an evicted one is verified again', async () => {
  const nowMs = Date.now()
  const verifier = createTokenVerifier(testConfig(), { now: () => nowMs })
  // Better Auth's cookie cache: the user object, whose name the user chooses, makes a token of about 15 KB.
  const cookieCache = (index: number) =>
    signHs256({
      session: { id: `session_${index}`, userId: `user_${index}`, expiresAt: new Date(nowMs + 300_000).toISOString() },
      user: { id: `user_${index}`, name: 'N'.repeat(11_000), email: `user_${index}@example.com` },
      iat: seconds(nowMs),
      exp: seconds(nowMs) + 300,
    })
  const first = await cookieCache(0)
  assert.ok(first.length > 14_000 && first.length < 16_000, `${first.length} characters`)
  // Verifying compiles code and fills jose's and WebCrypto's lazy caches once per process: not the cache's memory.
  const warmUp = createTokenVerifier(testConfig(), { now: () => nowMs })
  for (let index = 1; index <= 100; index += 1) await warmUp.verify(await cookieCache(-index))
  const before = heapUsedAfterGc()
  assert.equal(await outcome(verifier, first), 'accepted as user_0')
  const count = 1_100 // 16 MB of tokens: twice the budget
  for (let index = 1; index < count; index += 1)
    assert.equal(await outcome(verifier, await cookieCache(index)), `accepted as user_${index}`)
  const retained = heapUsedAfterGc() - before
  assert.ok(
    retained < VERIFIED_TOKEN_CACHE_BYTES + 1024 * 1024,
    `the verifier holds ${(retained / 2 ** 20).toFixed(1)} MiB after ${count} tokens of ${first.length} characters`,
  )
  assert.equal(
    await outcome(verifier, first),
    'accepted as user_0',
    'the first token, evicted long ago, is verified in full again',
  )
  const [header, payload, signature] = first.split('.') as [string, string, string]
  const other = signature.startsWith('A') ? 'B' : 'A'
  assert.equal(
    await outcome(verifier, `${header}.${payload}.${other}${signature.slice(1)}`),
    'invalid',
    'and a changed one still refused',
  )
})

void test('the cache counts each entry by its bytes, drops the oldest first, and counts a token remembered twice once', () => {
  const budget = 100_000
  const cache = createVerifiedTokenCache(budget)
  const token = (index: number) => `${String(index).padStart(6, '0')}.${'t'.repeat(9_000)}`
  for (let index = 0; index < 50; index += 1) {
    cache.set(token(index), `user_${index}`, Date.now() + 60_000)
    assert.ok(cache.bytes <= budget, `${cache.bytes} bytes after ${index + 1} tokens`)
  }
  assert.ok(cache.size >= 9 && cache.size <= 11, `${cache.size} tokens of 9 KB in 100 KB`)
  assert.equal(cache.get(token(49), Date.now()), 'user_49', 'the newest is kept')
  assert.equal(cache.get(token(0), Date.now()), undefined, 'the oldest went first')
  const [bytes, size] = [cache.bytes, cache.size]
  cache.set(token(49), 'user_49', Date.now() + 60_000)
  assert.deepEqual([cache.bytes, cache.size], [bytes, size], 'the same token again is counted once')
  assert.equal(cache.get(token(49), Date.now() + 60_000), undefined, 'expired: forgotten')
  assert.deepEqual([cache.size, cache.bytes < bytes], [size - 1, true], 'and its bytes given back')
  cache.set('x'.repeat(budget), 'user_big', Date.now() + 60_000)
  assert.equal(cache.size, size - 1, 'a token bigger than the whole budget is not remembered, and evicts nothing')
})
