// Issue 12: every refused token is logged once, at info, by the request's logger, as `token refused` with a reason
// code (and the claim, or the expected and received values, where they help), and never with the token or its
// signature; a request without credentials is not logged as a refused token. HS256 is refused in a JWKS-only
// deployment (JWT_JWKS_URL without BETTER_AUTH_SECRET), even signed with the public development secret.
// Tokens are really signed; the key set is a real HTTP server on loopback, or the real Better Auth.
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { after, before, describe, test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { SignJWT, type JWTPayload } from 'jose'
import { DEVELOPMENT_SECRET, loadConfig, type Config } from '../src/config.ts'
import { startBetterAuth } from './helpers/better-auth.ts'
import { assertNoTokenNorStack, parseLogLines } from './helpers/logs.ts'
import { buildTestApp } from './helpers/test-app.ts'
import { createTestKey, nowS, signHs256, signWithKey, startJwksServer, type TestKey } from './helpers/tokens.ts'

/** Every Authorization value sent in this file, searched for in every log line at the end. */
const sentTokens = new Set<string>()
const allLogs: string[][] = []

/** The log lines of one request (by its request id), parsed. */
function linesOf(logs: readonly string[], requestId: string): Record<string, unknown>[] {
  return parseLogLines(logs).filter((line) => line.reqId === requestId)
}

/**
 * Sends `GET /api/tasks` with `authorization`; the status and the `token refused` lines of that request, each without
 * the fields every line has (level, time, pid, hostname, reqId, msg), after checking they are info lines.
 */
async function refusalLinesOf(
  app: FastifyInstance,
  logs: string[],
  authorization: string | undefined,
): Promise<{ status: number; detail: unknown; refusals: Record<string, unknown>[] }> {
  if (authorization !== undefined) sentTokens.add(authorization.replace(/^Bearer\s+/i, ''))
  const response = await app.inject({
    method: 'GET',
    url: '/api/tasks',
    headers: authorization === undefined ? {} : { authorization },
  })
  const refusals = linesOf(logs, String(response.headers['x-request-id']))
    .filter((line) => line.msg === 'token refused')
    .map(({ level, time, pid, hostname, reqId, msg, ...fields }) => {
      assert.equal(level, 30, 'logged at info')
      void [time, pid, hostname, reqId, msg]
      return fields
    })
  return { status: response.statusCode, detail: response.json<{ detail: unknown }>().detail, refusals }
}

/** Asserts that the request is refused with `detail` and logged once with exactly `fields`. */
async function expectLogged(
  app: FastifyInstance,
  logs: string[],
  authorization: string,
  fields: Record<string, unknown>,
  detail = 'Invalid token',
): Promise<void> {
  const result = await refusalLinesOf(app, logs, authorization)
  assert.deepEqual(result, { status: 401, detail, refusals: [fields] })
}

const claims = (extra: JWTPayload = {}): JWTPayload => ({ sub: 'alice', iat: nowS(), exp: nowS() + 300, ...extra })

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** A compact JWS assembled by hand, for headers jose will not sign (`alg: none`); optionally HMAC-SHA256-signed. */
function handMade(header: object, payload: object, hmacSecret?: string): string {
  const input = `${base64url(header)}.${base64url(payload)}`
  return `${input}.${hmacSecret === undefined ? '' : createHmac('sha256', hmacSecret).update(input).digest('base64url')}`
}

/** A describe block's TestContext: its cleanups run with the block's `after`. */
function blockScope(): TestContext {
  const cleanups: (() => unknown)[] = []
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })
  return { after: (cleanup: () => unknown) => void cleanups.push(cleanup) } as unknown as TestContext
}

describe('a key set with JWT_ISSUER and JWT_AUDIENCE, and HS256 with its secret', () => {
  const scope = blockScope()
  const issuer = 'https://auth.example.com'
  let app: FastifyInstance
  let logs: string[]
  let ed: TestKey
  before(async () => {
    ed = await createTestKey('EdDSA', 'ed-1')
    const jwks = await startJwksServer(scope, [ed])
    const config: Partial<Config> = { jwksUrl: jwks.url, issuer, audiences: [issuer] }
    ;({ app, logs } = await buildTestApp(scope, { config }))
    allLogs.push(logs)
  })
  const good = (extra: JWTPayload = {}): JWTPayload => claims({ iss: issuer, aud: issuer, ...extra })

  test('an accepted token, no token, and another scheme log no "token refused" line', async () => {
    for (const authorization of [`Bearer ${await signWithKey(ed, good())}`, undefined, 'Basic YTpi', 'Bearer']) {
      const { refusals } = await refusalLinesOf(app, logs, authorization)
      assert.deepEqual(refusals, [], String(authorization))
    }
  })

  const malformed: [string, () => string][] = [
    ['a Bearer credential with a space inside', () => 'Bearer abc def'],
    ['a word that is not a JWT', () => 'Bearer garbage'],
    ['three segments of garbage', () => 'Bearer a.b.c'],
  ]
  for (const [what, header] of malformed) {
    test(`${what}: reason malformed`, async () => {
      await expectLogged(app, logs, header(), { reason: 'malformed' })
    })
  }

  test('a payload that is not JSON under a valid HMAC: reason malformed', async () => {
    const input = `${base64url({ alg: 'HS256' })}.${Buffer.from('not json').toString('base64url')}`
    const secret = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
    const token = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
    await expectLogged(app, logs, `Bearer ${token}`, { reason: 'malformed' })
  })

  test('alg none, HS512 and an unknown alg: reason alg_not_allowed, with the alg', async () => {
    await expectLogged(app, logs, `Bearer ${handMade({ alg: 'none' }, good())}`, {
      reason: 'alg_not_allowed',
      alg: 'none',
    })
    const hs512 = await new SignJWT(good()).setProtectedHeader({ alg: 'HS512' }).sign(new Uint8Array(64))
    await expectLogged(app, logs, `Bearer ${hs512}`, { reason: 'alg_not_allowed', alg: 'HS512' })
    await expectLogged(app, logs, `Bearer ${handMade({ alg: 'XY999' }, good())}`, {
      reason: 'alg_not_allowed',
      alg: 'XY999',
    })
    await expectLogged(app, logs, `Bearer ${handMade({}, good())}`, { reason: 'alg_not_allowed', alg: '(undefined)' })
  })

  test('a changed signature, and a key-set token signed by another key with a known kid: reason bad_signature', async () => {
    const valid = await signWithKey(ed, good())
    const [header, payload, signature = ''] = valid.split('.')
    const changed = `${header}.${payload}.${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`
    await expectLogged(app, logs, `Bearer ${changed}`, { reason: 'bad_signature' })
    const impostor = await createTestKey('EdDSA', 'ed-1')
    await expectLogged(app, logs, `Bearer ${await signWithKey(impostor, good())}`, { reason: 'bad_signature' })
    await expectLogged(app, logs, `Bearer ${await signHs256(claims(), { secret: 'another-secret' })}`, {
      reason: 'bad_signature',
    })
  })

  test('a kid that is not in the key set: reason unknown_kid, with the kid', async () => {
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good(), { kid: 'not-in-the-set' })}`, {
      reason: 'unknown_kid',
      kid: 'not-in-the-set',
    })
  })

  test('an expired token: reason expired, answered "Token expired"', async () => {
    const token = await signWithKey(ed, good({ iat: nowS() - 600, exp: nowS() - 120 }))
    await expectLogged(app, logs, `Bearer ${token}`, { reason: 'expired' }, 'Token expired')
  })

  test('nbf or iat in the future: reason not_yet_valid, with the claim', async () => {
    for (const claim of ['nbf', 'iat']) {
      const token = await signWithKey(ed, good({ [claim]: nowS() + 600 }))
      await expectLogged(app, logs, `Bearer ${token}`, { reason: 'not_yet_valid', claim })
    }
  })

  test('no exp, and no iss on a key-set token: reason missing_claim, with the claim', async () => {
    const { exp, ...noExp } = good()
    void exp
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, noExp)}`, { reason: 'missing_claim', claim: 'exp' })
    const { iss, ...noIss } = good()
    void iss
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, noIss)}`, { reason: 'missing_claim', claim: 'iss' })
  })

  test('an exp that is not a number: reason invalid_claim, with the claim', async () => {
    const token = await signWithKey(ed, good({ exp: 'tomorrow' as unknown as number }))
    await expectLogged(app, logs, `Bearer ${token}`, { reason: 'invalid_claim', claim: 'exp' })
  })

  test('another issuer: reason issuer_mismatch, with what was expected and received', async () => {
    const token = await signWithKey(ed, good({ iss: 'http://127.0.0.1:3999' }))
    await expectLogged(app, logs, `Bearer ${token}`, {
      reason: 'issuer_mismatch',
      expected: issuer,
      received: 'http://127.0.0.1:3999',
    })
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good({ iss: `${issuer}/` }))}`, {
      reason: 'issuer_mismatch',
      expected: issuer,
      received: `${issuer}/`,
    })
  })

  test('a received value is capped at 200 characters, and one that looks like a credential is not logged', async () => {
    const long = `https://auth.example.com/${'p'.repeat(500)}`
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good({ iss: long }))}`, {
      reason: 'issuer_mismatch',
      expected: issuer,
      received: `${long.slice(0, 200)}…`,
    })
    const credential = await signHs256(claims())
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good({ iss: credential }))}`, {
      reason: 'issuer_mismatch',
      expected: issuer,
      received: '[redacted]',
    })
    sentTokens.add(credential)
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good({ iss: 42 as unknown as string }))}`, {
      reason: 'issuer_mismatch',
      expected: issuer,
      received: '(number)',
    })
  })

  test('another audience: reason audience_mismatch, with what was expected and received', async () => {
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good({ aud: ['x', 'y'] }))}`, {
      reason: 'audience_mismatch',
      expected: [issuer],
      received: ['x', 'y'],
    })
    await expectLogged(app, logs, `Bearer ${await signHs256(claims({ aud: 'http://localhost:3000' }))}`, {
      reason: 'audience_mismatch',
      expected: [issuer],
      received: 'http://localhost:3000',
    })
  })

  test('no usable user id: reason no_user_id', async () => {
    for (const extra of [{ sub: '' }, { sub: 'u'.repeat(256) }, { sub: undefined, user: { id: 42 } }]) {
      await expectLogged(app, logs, `Bearer ${await signWithKey(ed, good(extra))}`, { reason: 'no_user_id' })
    }
  })
})

describe('HS256 only when asked for', () => {
  const scope = blockScope()
  let ed: TestKey
  let jwksUrl: string
  before(async () => {
    ed = await createTestKey('EdDSA', 'ed-1')
    jwksUrl = (await startJwksServer(scope, [ed])).url.href
  })

  /** An app configured from environment variables, as the service reads them. */
  async function appFrom(env: Record<string, string>): Promise<{ app: FastifyInstance; logs: string[] }> {
    const { betterAuthSecret, jwksUrl: url } = loadConfig(env)
    const built = await buildTestApp(scope, { config: { betterAuthSecret, jwksUrl: url } })
    allLogs.push(built.logs)
    return built
  }

  test('JWT_JWKS_URL without BETTER_AUTH_SECRET: HS256 is refused (alg_not_allowed), even with the development secret; key-set tokens work', async () => {
    const { app, logs } = await appFrom({ JWT_JWKS_URL: jwksUrl })
    const development = await signHs256(claims(), { secret: DEVELOPMENT_SECRET })
    await expectLogged(app, logs, `Bearer ${development}`, { reason: 'alg_not_allowed', alg: 'HS256' })
    // The cookie-cache shape too (user.id, no sub), as Better Auth would sign it with the development secret.
    const cookieCache = await signHs256(
      { ...claims(), sub: undefined, user: { id: 'alice' } },
      {
        secret: DEVELOPMENT_SECRET,
      },
    )
    await expectLogged(app, logs, `Bearer ${cookieCache}`, { reason: 'alg_not_allowed', alg: 'HS256' })
    const { status } = await refusalLinesOf(app, logs, `Bearer ${await signWithKey(ed, claims())}`)
    assert.equal(status, 200)
  })

  test('JWT_JWKS_URL with BETTER_AUTH_SECRET: HS256 with that secret works, as before', async () => {
    const secret = 'a-better-auth-secret-of-32-characters-or-more'
    const { app, logs } = await appFrom({ JWT_JWKS_URL: jwksUrl, BETTER_AUTH_SECRET: secret })
    assert.equal((await refusalLinesOf(app, logs, `Bearer ${await signHs256(claims(), { secret })}`)).status, 200)
    assert.equal((await refusalLinesOf(app, logs, `Bearer ${await signWithKey(ed, claims())}`)).status, 200)
  })

  test('without JWT_JWKS_URL: the development secret still works, and asymmetric algs are refused', async () => {
    const { app, logs } = await appFrom({})
    const development = await signHs256(claims(), { secret: DEVELOPMENT_SECRET })
    assert.equal((await refusalLinesOf(app, logs, `Bearer ${development}`)).status, 200)
    await expectLogged(app, logs, `Bearer ${await signWithKey(ed, claims())}`, {
      reason: 'alg_not_allowed',
      alg: 'EdDSA',
    })
  })
})

test('the issue’s misconfiguration with the real Better Auth: JWT_ISSUER=http://localhost:<port> and tokens from http://127.0.0.1:<port> log issuer_mismatch with both', async (t) => {
  const betterAuth = await startBetterAuth(t)
  const origin = new URL(betterAuth.baseURL).origin
  assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/)
  const misconfigured = origin.replace('127.0.0.1', 'localhost')
  const user = await betterAuth.signUp({ email: 'erin@example.com', name: 'Erin' })
  const { app, logs } = await buildTestApp(t, {
    config: { jwksUrl: betterAuth.jwksUrl, issuer: misconfigured, audiences: [origin] },
  })
  allLogs.push(logs)
  await expectLogged(app, logs, `Bearer ${user.jwt}`, {
    reason: 'issuer_mismatch',
    expected: misconfigured,
    received: origin,
  })
  sentTokens.add(user.sessionData)
})

// After every test of the file that ran (all of them, or those a name pattern chose): no token sent, nor its
// signature, appears in any log line they produced.
after(() => {
  assertNoTokenNorStack(allLogs.flat(), sentTokens)
})
