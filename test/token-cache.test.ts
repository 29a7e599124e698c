// The verifier remembers HS256 tokens it has accepted (issue 6: verifying each one again was ~15 % of a
// request's CPU). Remembering must never change an answer: these check that a remembered token still expires
// on time, and that a token differing from a remembered one in any byte is verified in full.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AuthError, createTokenVerifier, type TokenVerifier } from '../src/auth/token-verifier.ts'
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
  assert.equal(await outcome(verifier, `${header}.${mallory}.${signature}`), 'invalid', 'a changed payload with the old signature')
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
  const wrong = createTokenVerifier(testConfig({ betterAuthSecret: 'a-different-secret-0123456789-abcdefgh' }), { now: () => nowMs })
  assert.equal(await outcome(right, token), 'accepted as alice')
  assert.equal(await outcome(wrong, token), 'invalid')
})
