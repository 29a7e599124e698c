// The authentication matrix of docs/contract.md "Authentication": every way a bearer token can be missing, malformed,
// forged, expired or refused, each answered with the table's exact status, body and WWW-Authenticate.
// Tokens are really signed (jose, or by hand where jose refuses to, as for `alg: none`); nothing is mocked.
import assert from 'node:assert/strict'
import { createHmac, randomUUID } from 'node:crypto'
import { after, before, describe, test, type TestContext } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { exportSPKI, importJWK, SignJWT, type JWTHeaderParameters, type JWTPayload } from 'jose'
import { createTokenVerifier, type TokenVerifier } from '../src/auth/token-verifier.ts'
import type { Config } from '../src/config.ts'
import { buildTestApp, testConfig } from './helpers/test-app.ts'
import {
  createTestKey,
  signHs256,
  signWithKey,
  startJwksServer,
  TEST_SECRET,
  type JwksServer,
  type TestKey,
} from './helpers/tokens.ts'

// ── The answers of docs/contract.md's table ────────────────────────────────────────────────────────────────────────

/** What a refused request gets back: status, JSON body and WWW-Authenticate, compared as one value. */
interface Refusal {
  status: number
  body: unknown
  wwwAuthenticate: string | undefined
}

const NOT_AUTHENTICATED: Refusal = { status: 401, body: { detail: 'Not authenticated' }, wwwAuthenticate: 'Bearer' }
const INVALID_TOKEN: Refusal = {
  status: 401,
  body: { detail: 'Invalid token' },
  wwwAuthenticate: 'Bearer error="invalid_token"',
}
const TOKEN_EXPIRED: Refusal = {
  status: 401,
  body: { detail: 'Token expired' },
  wwwAuthenticate: 'Bearer error="invalid_token"',
}
const UNAVAILABLE: Refusal = { status: 503, body: { detail: 'Service unavailable' }, wwwAuthenticate: undefined }

// ── Requests, and what they leave behind (checked for tokens at the end of the file) ─────────────────────

/** Every Authorization value sent, every response body, and every app's log lines. */
const sentCredentials = new Set<string>()
const responseBodies: string[] = []
const appLogs: string[][] = []

async function send(
  app: FastifyInstance,
  method: 'GET' | 'POST',
  authorization: string | undefined,
  payload?: object,
): Promise<LightMyRequestResponse> {
  if (authorization !== undefined) sentCredentials.add(authorization)
  const response = await app.inject({
    method,
    url: '/api/tasks',
    headers: authorization === undefined ? {} : { authorization },
    ...(payload === undefined ? {} : { payload }),
  })
  responseBodies.push(response.body)
  return response
}

/** Asserts that `GET /api/tasks` with this Authorization header (none when undefined) is refused as `expected`. */
async function expectRefused(
  app: FastifyInstance,
  authorization: string | undefined,
  expected: Refusal,
): Promise<void> {
  const response = await send(app, 'GET', authorization)
  const wwwAuthenticate = response.headers['www-authenticate']
  const answer: Refusal = {
    status: response.statusCode,
    body: response.json<unknown>(),
    wwwAuthenticate: wwwAuthenticate === undefined ? undefined : String(wwwAuthenticate),
  }
  assert.deepEqual(answer, expected)
  if (expected.status === 503)
    assert.match(String(response.headers['retry-after']), /^[1-9]\d*$/, 'a 503 carries Retry-After')
  else assert.equal(response.headers['retry-after'], undefined)
}

/** Asserts that `GET /api/tasks` with `Bearer <token>` is 200 with a list. */
async function expectAccepted(app: FastifyInstance, token: string): Promise<void> {
  const response = await send(app, 'GET', `Bearer ${token}`)
  assert.equal(response.statusCode, 200, response.body)
  assert.ok(Array.isArray(response.json<unknown>()))
  assert.equal(response.headers['www-authenticate'], undefined)
}

interface TaskBody {
  id: number
  user_id: string
}

/** Creates a task with `token` and returns the owner the service gave it (after checking the token lists it). */
async function ownerOfTaskCreatedWith(app: FastifyInstance, token: string): Promise<string> {
  const created = await send(app, 'POST', `Bearer ${token}`, { title: 'Whose task is this?' })
  assert.equal(created.statusCode, 201, created.body)
  const task = created.json<TaskBody>()
  const list = await send(app, 'GET', `Bearer ${token}`)
  assert.ok(
    list.json<TaskBody[]>().some((listed) => listed.id === task.id),
    'the new task is in its owner’s list',
  )
  return task.user_id
}

// ── Tokens ───────────────────────────────────────────────────────────────────────────────────────────────

const seconds = (ms: number): number => Math.floor(ms / 1000)

/** A valid claim set for `sub` at `nowMs`: issued now, expiring in 5 minutes. */
function claimsFor(sub: string, nowMs = Date.now()): JWTPayload {
  return { sub, iat: seconds(nowMs), exp: seconds(nowMs) + 300 }
}

/** Claims with the usual iat/exp of `nowMs` and no `sub` (for the user-id cases). */
function timesOnly(nowMs = Date.now()): JWTPayload {
  return { iat: seconds(nowMs), exp: seconds(nowMs) + 300 }
}

const base64url = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

/**
 * A compact JWS assembled by hand, for headers jose will not sign (`alg: none`, a lower-case alg, no alg).
 * With `hmacSecret`, the signature is a real HMAC-SHA256 of the signing input with that secret.
 */
function handMade(header: object, claims: object, options: { hmacSecret?: string; signature?: string } = {}): string {
  const input = `${base64url(header)}.${base64url(claims)}`
  const signature =
    options.hmacSecret === undefined
      ? (options.signature ?? '')
      : createHmac('sha256', options.hmacSecret).update(input).digest('base64url')
  return `${input}.${signature}`
}

/** Signs with an HMAC algorithm and any key bytes (jose's SignJWT; signHs256 covers HS256 with a string). */
function signHmac(
  alg: 'HS256' | 'HS384' | 'HS512',
  claims: JWTPayload,
  key: Uint8Array | string,
  kid?: string,
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid === undefined ? {} : { kid }) })
    .sign(typeof key === 'string' ? new TextEncoder().encode(key) : key)
}

const randomKid = (): string => `kid-${randomUUID()}`

// ── One app per describe block ───────────────────────────────────────────────────────────────────────────

/**
 * buildTestApp and startJwksServer clean up through `t.after`. A describe block has no TestContext, so this
 * hands them one whose `after` runs with the block's own `after` hook (registered now, while the block is
 * being defined): one app, and one database, serve all the tests of a block.
 */
function blockScope(): TestContext {
  const cleanups: (() => unknown)[] = []
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })
  return { after: (cleanup: () => unknown) => void cleanups.push(cleanup) } as unknown as TestContext
}

/** Builds the block's app and keeps its log lines for the final secrecy check. */
async function buildBlockApp(
  scope: TestContext,
  options: { config?: Partial<Config>; tokenVerifier?: TokenVerifier } = {},
): Promise<{ app: FastifyInstance; logs: string[] }> {
  const { app, logs } = await buildTestApp(scope, options)
  appLogs.push(logs)
  return { app, logs }
}

// ─────────────────────────────────────────────────────────────────────────────────────────────────────────

describe('without a key set: HS256 tokens only', () => {
  const scope = blockScope()
  let app: FastifyInstance
  let alice: string
  before(async () => {
    // trace: every log line the service can write is captured and checked for tokens at the end.
    ;({ app } = await buildBlockApp(scope, { config: { logLevel: 'trace' } }))
    alice = await signHs256(claimsFor('alice'))
  })

  describe('the Authorization header', () => {
    const notBearer: [string, (token: string) => string | undefined][] = [
      ['without an Authorization header', () => undefined],
      ['with an empty Authorization header', () => ''],
      ['with Basic credentials', () => `Basic ${Buffer.from('alice:secret').toString('base64')}`],
      ['with the Token scheme and a valid token', (token) => `Token ${token}`],
      ['with a misspelt scheme ("Baerer") and a valid token', (token) => `Baerer ${token}`],
      ['with "Bearer" glued to a valid token', (token) => `Bearer${token}`],
      ['with "Bearer:" and a valid token', (token) => `Bearer:${token}`],
      ['with a valid token and no scheme', (token) => token],
      ['with "Bearer " and no token', () => 'Bearer '],
      ['with "Bearer" alone', () => 'Bearer'],
      ['with "Bearer" and only spaces', () => 'Bearer    '],
    ]
    for (const [what, header] of notBearer) {
      test(`a request ${what} is 401 "Not authenticated" with WWW-Authenticate: Bearer`, async () => {
        await expectRefused(app, header(alice), NOT_AUTHENTICATED)
      })
    }

    // RFC 6750 §2.1: the Bearer scheme with a credential that is no b64token is an invalid token, not a missing one.
    const badCredential: [string, (token: string) => string][] = [
      ['two words ("Bearer abc def")', () => 'Bearer abc def'],
      ['a valid token followed by a word', (token) => `Bearer ${token} extra`],
      ['a valid token with a space inside', (token) => `Bearer ${token.slice(0, 10)} ${token.slice(10)}`],
      ['a valid token with a tab inside', (token) => `Bearer ${token.slice(0, 10)}\t${token.slice(10)}`],
      ['a quoted token', (token) => `Bearer "${token}"`],
      ['a token followed by a comma', (token) => `Bearer ${token},`],
      ['an auth-param instead of a token', (token) => `Bearer token=${token}x`],
      ['a percent sign inside', () => 'Bearer abc%20def'],
      ['"=" before the end', () => 'Bearer ab=cd'],
    ]
    for (const [what, header] of badCredential) {
      test(`the Bearer scheme with ${what} is 401 "Invalid token" with error="invalid_token"`, async () => {
        await expectRefused(app, header(alice), INVALID_TOKEN)
      })
    }

    test('a tab, or several spaces, between "Bearer" and a valid token is accepted', async () => {
      for (const separator of ['\t', '   ', ' \t ']) {
        const response = await send(app, 'GET', `Bearer${separator}${alice}`)
        assert.equal(response.statusCode, 200, JSON.stringify(separator))
      }
    })

    test('a long run of spaces and tabs inside the credential is read in linear time', async () => {
      // Read by a backtracking pattern, 16,000 such characters (all Node's header limit lets through) cost about 120
      // ms of CPU per request. inject() has no header limit, so a 300 KB run makes the difference unmistakable: about
      // 40 s for the quadratic pattern, milliseconds read linearly. The bound guards the complexity, not a speed.
      const hostile = `Bearer x${' \t'.repeat(150_000)}y`
      const started = performance.now()
      await expectRefused(app, hostile, INVALID_TOKEN)
      const elapsedMs = performance.now() - started
      assert.ok(elapsedMs < 10_000, `one request took ${Math.round(elapsedMs)} ms`)
    })

    test('the scheme is case-insensitive: "bearer", "BEARER" and "BeArEr" all work', async () => {
      for (const scheme of ['bearer', 'BEARER', 'BeArEr', 'Bearer']) {
        const response = await send(app, 'GET', `${scheme} ${alice}`)
        assert.equal(response.statusCode, 200, `${scheme}: ${response.body}`)
      }
    })
  })

  describe('malformed and forged tokens', () => {
    /** Builds the token of a case from a valid one for alice. */
    const malformed: [string, (valid: string) => string | Promise<string>][] = [
      ['a word that is not a JWT', () => 'garbage'],
      ['three empty segments', () => '..'],
      ['three segments of garbage', () => 'a.b.c'],
      ['a header and a payload without the signature segment', (valid) => valid.split('.').slice(0, 2).join('.')],
      ['a valid token with its signature removed', (valid) => valid.replace(/[^.]+$/, '')],
      ['a valid token with a fourth segment', (valid) => `${valid}.AAAA`],
      ['a header that is not JSON', (valid) => [base64url('not json'), ...valid.split('.').slice(1)].join('.')],
      [
        'an encrypted token (JWE, five segments)',
        () => `${base64url({ alg: 'dir', enc: 'A256GCM' })}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA`,
      ],
      [
        'a valid token whose payload was changed (sub: mallory)',
        (valid) => {
          const [header, , signature] = valid.split('.')
          return `${header}.${base64url(claimsFor('mallory'))}.${signature}`
        },
      ],
      [
        'a valid token whose signature was changed',
        (valid) => {
          const [header, payload, signature = ''] = valid.split('.')
          return `${header}.${payload}.${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`
        },
      ],
      [
        'a token signed with another secret',
        () => signHs256(claimsFor('alice'), { secret: 'not-the-secret-0123456789-abcdefghijklmnop' }),
      ],
    ]
    for (const [what, make] of malformed) {
      test(`${what} is 401 "Invalid token"`, async () => {
        await expectRefused(app, `Bearer ${await make(alice)}`, INVALID_TOKEN)
      })
    }

    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      test(`an unsigned token with alg "${alg}" is refused, with or without a signature segment`, async () => {
        const header = { alg, typ: 'JWT' }
        await expectRefused(app, `Bearer ${handMade(header, claimsFor('alice'))}`, INVALID_TOKEN)
        await expectRefused(app, `Bearer ${handMade(header, claimsFor('alice'), { signature: 'AAAA' })}`, INVALID_TOKEN)
        // Even with a correct HMAC of the same input: `none` is never HS256.
        await expectRefused(
          app,
          `Bearer ${handMade(header, claimsFor('alice'), { hmacSecret: TEST_SECRET })}`,
          INVALID_TOKEN,
        )
      })
    }

    test('a token with a correct HMAC-SHA256 but alg "hs256" or no alg at all is refused', async () => {
      await expectRefused(
        app,
        `Bearer ${handMade({ alg: 'hs256', typ: 'JWT' }, claimsFor('alice'), { hmacSecret: TEST_SECRET })}`,
        INVALID_TOKEN,
      )
      await expectRefused(
        app,
        `Bearer ${handMade({ typ: 'JWT' }, claimsFor('alice'), { hmacSecret: TEST_SECRET })}`,
        INVALID_TOKEN,
      )
      // The control: the same hand-made token with alg "HS256" is the real thing.
      await expectAccepted(app, handMade({ alg: 'HS256', typ: 'JWT' }, claimsFor('alice'), { hmacSecret: TEST_SECRET }))
    })

    for (const alg of ['HS384', 'HS512'] as const) {
      test(`a token signed with ${alg} is refused, even with the right secret`, async () => {
        await expectRefused(app, `Bearer ${await signHmac(alg, claimsFor('alice'), TEST_SECRET)}`, INVALID_TOKEN)
      })
    }

    for (const alg of ['EdDSA', 'ES256', 'RS256', 'PS256']) {
      test(`a token signed with ${alg} is refused when no key set is configured`, async () => {
        const key = await createTestKey(alg, 'some-kid')
        await expectRefused(app, `Bearer ${await signWithKey(key, claimsFor('alice'))}`, INVALID_TOKEN)
        await expectRefused(
          app,
          `Bearer ${await signWithKey(key, claimsFor('alice'), { kid: undefined })}`,
          INVALID_TOKEN,
        )
      })
    }

    test('a token that expired a minute ago is 401 "Token expired"; one that expired 10 s ago is within the leeway', async () => {
      const now = seconds(Date.now())
      await expectRefused(
        app,
        `Bearer ${await signHs256({ sub: 'alice', iat: now - 600, exp: now - 60 })}`,
        TOKEN_EXPIRED,
      )
      await expectAccepted(app, await signHs256({ sub: 'alice', iat: now - 600, exp: now - 10 }))
    })
  })

  describe('the user id', () => {
    const unusable: [string, JWTPayload][] = [
      ['no sub and no user', {}],
      ['an empty sub', { sub: '' }],
      ['a numeric sub', { sub: 42 as unknown as string }],
      ['an object as sub', { sub: { id: 'alice' } as unknown as string }],
      ['sub: null', { sub: null as unknown as string }],
      ['a sub of 256 characters', { sub: 'u'.repeat(256) }],
      ['a sub of 256 characters outside the BMP (emoji)', { sub: '\u{1F600}'.repeat(256) }],
      ['a sub with a NUL character', { sub: 'ali\u0000ce' }],
      ['a sub with a lone surrogate', { sub: 'ali\ud800ce' }],
      ['an empty sub, even with a user.id', { sub: '', user: { id: 'alice' } }],
      ['no sub and an empty user.id', { user: { id: '' } }],
      ['no sub and a numeric user.id', { user: { id: 42 } }],
      ['no sub and a user.id of 256 characters', { user: { id: 'u'.repeat(256) } }],
      ['no sub and a user that is a string', { user: 'alice' }],
      ['no sub and a user without an id', { user: { name: 'Alice' } }],
      ['no sub and a top-level user_id', { user_id: 'alice' }],
    ]
    for (const [what, claims] of unusable) {
      test(`a token with ${what} is 401 "Invalid token"`, async () => {
        await expectRefused(app, `Bearer ${await signHs256({ ...timesOnly(), ...claims })}`, INVALID_TOKEN)
      })
    }

    test('a sub of exactly 255 characters is accepted and owns its tasks', async () => {
      const sub = 'u'.repeat(255)
      assert.equal(await ownerOfTaskCreatedWith(app, await signHs256(claimsFor(sub))), sub)
    })

    test('a sub of 255 characters outside the BMP (510 UTF-16 code units) is accepted and owns its tasks', async () => {
      const sub = '\u{1F600}'.repeat(255)
      assert.equal(await ownerOfTaskCreatedWith(app, await signHs256(claimsFor(sub))), sub)
    })

    test('without sub, user.id is the user (Better Auth’s cookie cache), and it owns the same tasks as sub would', async () => {
      const cookieCache = await signHs256({
        ...timesOnly(),
        session: { id: 'sess_1', token: 'opaque-session-token', userId: 'cookie_user' },
        user: { id: 'cookie_user', name: 'Cookie User', email: 'cookie@example.com' },
        updatedAt: Date.now(),
        version: '1',
      })
      const created = await send(app, 'POST', `Bearer ${cookieCache}`, { title: 'From the cookie cache' })
      assert.equal(created.statusCode, 201, created.body)
      const task = created.json<TaskBody>()
      assert.equal(task.user_id, 'cookie_user')
      // The same user with a sub-token sees it: one identity, whichever claim carried it.
      const listed = await send(app, 'GET', `Bearer ${await signHs256(claimsFor('cookie_user'))}`)
      assert.deepEqual(
        listed.json<TaskBody[]>().map((listedTask) => listedTask.id),
        [task.id],
      )
    })

    test('a user.id of exactly 255 characters is accepted', async () => {
      const id = 'c'.repeat(255)
      assert.equal(await ownerOfTaskCreatedWith(app, await signHs256({ ...timesOnly(), user: { id } })), id)
    })

    test('sub takes precedence over user.id', async () => {
      const token = await signHs256({ ...timesOnly(), sub: 'from_sub', user: { id: 'from_user' } })
      assert.equal(await ownerOfTaskCreatedWith(app, token), 'from_sub')
    })
  })
})

describe('time claims (exp, nbf, iat), on a frozen clock', () => {
  const scope = blockScope()
  // The verifier's clock stands still at `now`, so "29 s" and "31 s" mean exactly that.
  const now = seconds(Date.now())
  let app: FastifyInstance
  before(async () => {
    const config = testConfig()
    ;({ app } = await buildBlockApp(scope, {
      config,
      tokenVerifier: createTokenVerifier(config, { now: () => now * 1000 }),
    }))
  })

  const cases: [string, JWTPayload, Refusal | 'accepted'][] = [
    ['without exp', { iat: now }, INVALID_TOKEN],
    ['with exp as a string', { iat: now, exp: String(now + 300) as unknown as number }, INVALID_TOKEN],
    ['with exp: null', { iat: now, exp: null as unknown as number }, INVALID_TOKEN],
    ['that expired 31 s ago, just past the 30 s leeway', { iat: now - 600, exp: now - 31 }, TOKEN_EXPIRED],
    ['that expired an hour ago', { iat: now - 7200, exp: now - 3600 }, TOKEN_EXPIRED],
    ['that expired 29 s ago, just within the leeway', { iat: now - 600, exp: now - 29 }, 'accepted'],
    ['that expires in 5 minutes', { iat: now, exp: now + 300 }, 'accepted'],
    ['with nbf 31 s in the future', { iat: now, nbf: now + 31, exp: now + 300 }, INVALID_TOKEN],
    ['with nbf 29 s in the future (within the leeway)', { iat: now, nbf: now + 29, exp: now + 300 }, 'accepted'],
    ['with nbf as a string', { iat: now, nbf: String(now) as unknown as number, exp: now + 300 }, INVALID_TOKEN],
    ['with iat 31 s in the future', { iat: now + 31, exp: now + 300 }, INVALID_TOKEN],
    ['with iat an hour in the future', { iat: now + 3600, exp: now + 7200 }, INVALID_TOKEN],
    ['with iat 29 s in the future (within the leeway)', { iat: now + 29, exp: now + 300 }, 'accepted'],
    ['with iat as a string', { iat: String(now) as unknown as number, exp: now + 300 }, INVALID_TOKEN],
    ['without iat', { exp: now + 300 }, 'accepted'],
    ['issued a week ago and still unexpired', { iat: now - 7 * 86400, exp: now + 300 }, 'accepted'],
  ]
  for (const [what, claims, expected] of cases) {
    const outcome =
      expected === 'accepted'
        ? 'is accepted'
        : `is ${expected.status} "${(expected.body as { detail: string }).detail}"`
    test(`a token ${what} ${outcome}`, async () => {
      const token = await signHs256({ sub: 'alice', ...claims })
      if (expected === 'accepted') await expectAccepted(app, token)
      else await expectRefused(app, `Bearer ${token}`, expected)
    })
  }

  test('an expired token with a bad signature is "Invalid token", not "Token expired"', async () => {
    const forged = await signHs256(
      { sub: 'alice', iat: now - 7200, exp: now - 3600 },
      { secret: 'not-the-secret-0123456789-abcdefghijklmnop' },
    )
    await expectRefused(app, `Bearer ${forged}`, INVALID_TOKEN)
  })
})

describe('with a key set (JWT_JWKS_URL)', () => {
  const scope = blockScope()
  let app: FastifyInstance
  let jwks: JwksServer
  let attacker: JwksServer
  const keys = new Map<string, TestKey>()
  /** The attacker's keys: one under an unknown kid, one under the kid of the genuine EdDSA key. */
  let evil: TestKey
  let evilTwin: TestKey

  before(async () => {
    for (const [alg, kid] of [
      ['EdDSA', 'ed-1'],
      ['ES256', 'es-1'],
      ['ES512', 'es512-1'],
      ['RS256', 'rs-1'],
      ['PS256', 'ps-1'],
    ] as const) {
      keys.set(alg, await createTestKey(alg, kid))
    }
    jwks = await startJwksServer(scope, [...keys.values()])
    evil = await createTestKey('EdDSA', 'evil-1')
    evilTwin = await createTestKey('EdDSA', 'ed-1')
    attacker = await startJwksServer(scope, [evil, evilTwin])
    ;({ app } = await buildBlockApp(scope, { config: { jwksUrl: jwks.url } }))
  })
  const key = (alg: string): TestKey => keys.get(alg) ?? assert.fail(`no ${alg} key`)

  for (const alg of ['EdDSA', 'ES256', 'ES512', 'RS256', 'PS256']) {
    test(`a token signed with ${alg} by a key in the set is accepted, and its tasks belong to its sub`, async () => {
      const sub = `jwks_user_${alg.toLowerCase()}`
      assert.equal(await ownerOfTaskCreatedWith(app, await signWithKey(key(alg), claimsFor(sub))), sub)
    })
  }

  test('HS256 tokens keep working beside the key set', async () => {
    await expectAccepted(app, await signHs256(claimsFor('alice')))
  })

  test('an expired token from the key set is 401 "Token expired"', async () => {
    const now = seconds(Date.now())
    await expectRefused(
      app,
      `Bearer ${await signWithKey(key('EdDSA'), { sub: 'alice', iat: now - 600, exp: now - 60 })}`,
      TOKEN_EXPIRED,
    )
  })

  describe('algorithm confusion: HMAC keyed with public key material', () => {
    const confusions: [string, () => Promise<string>][] = [
      [
        'HS256 keyed with the RS256 public key as PEM',
        async () => signHmac('HS256', claimsFor('alice'), await pemOf(key('RS256')), 'rs-1'),
      ],
      [
        'HS256 keyed with the RS256 public JWK as JSON',
        async () => signHmac('HS256', claimsFor('alice'), JSON.stringify(key('RS256').publicJwk), 'rs-1'),
      ],
      [
        'HS256 keyed with the EdDSA public key as PEM',
        async () => signHmac('HS256', claimsFor('alice'), await pemOf(key('EdDSA')), 'ed-1'),
      ],
      [
        'HS256 keyed with the EdDSA public key’s raw bytes',
        async () =>
          signHmac('HS256', claimsFor('alice'), Buffer.from(key('EdDSA').publicJwk.x ?? '', 'base64url'), 'ed-1'),
      ],
      [
        'HS256 keyed with the key set document as served',
        async () => signHmac('HS256', claimsFor('alice'), await (await fetch(jwks.url)).text()),
      ],
      [
        'HS384 keyed with the RS256 public key as PEM',
        async () => signHmac('HS384', claimsFor('alice'), await pemOf(key('RS256')), 'rs-1'),
      ],
      [
        'HS512 keyed with the ES256 public key as PEM',
        async () => signHmac('HS512', claimsFor('alice'), await pemOf(key('ES256')), 'es-1'),
      ],
    ]
    for (const [what, make] of confusions) {
      test(`a token signed with ${what} is refused`, async () => {
        await expectRefused(app, `Bearer ${await make()}`, INVALID_TOKEN)
      })
    }
  })

  describe('keys that are not in the set', () => {
    const strangers: [string, () => Promise<string>][] = [
      ['a stranger’s key claiming the kid of a key in the set', async () => signWithKey(evilTwin, claimsFor('alice'))],
      ['a stranger’s key under an unknown kid', async () => signWithKey(evil, claimsFor('alice'))],
      ['a stranger’s key with no kid', async () => signWithKey(evil, claimsFor('alice'), { kid: undefined })],
      [
        'a key in the set, under an unknown kid',
        async () => signWithKey(key('EdDSA'), claimsFor('alice'), { kid: randomKid() }),
      ],
      [
        'the EdDSA key in the set, claiming the ES256 key’s kid',
        async () => signWithKey(key('EdDSA'), claimsFor('alice'), { kid: 'es-1' }),
      ],
      [
        'the RS256 key in the set, claiming the PS256 key’s kid',
        async () => signWithKey(key('RS256'), claimsFor('alice'), { kid: 'ps-1' }),
      ],
    ]
    for (const [what, make] of strangers) {
      test(`a token signed by ${what} is refused`, async () => {
        await expectRefused(app, `Bearer ${await make()}`, INVALID_TOKEN)
      })
    }
  })

  describe('jku, x5u and jwk headers are never followed nor trusted', () => {
    /** [what, signing key, extra header, expected]: the genuine key is `ed-1` from the configured set. */
    const cases: [string, () => TestKey, () => Partial<JWTHeaderParameters>, Refusal | 'accepted'][] = [
      [
        'an attacker’s key, with jku pointing at the attacker’s key set',
        () => evil,
        () => ({ jku: attacker.url.href }),
        INVALID_TOKEN,
      ],
      [
        'an attacker’s key under a genuine kid, with jku pointing at the attacker’s key set',
        () => evilTwin,
        () => ({ jku: attacker.url.href }),
        INVALID_TOKEN,
      ],
      [
        'an attacker’s key, with x5u pointing at the attacker’s server',
        () => evil,
        () => ({ x5u: attacker.url.href }),
        INVALID_TOKEN,
      ],
      ['an attacker’s key, with that key embedded as jwk', () => evil, () => ({ jwk: evil.publicJwk }), INVALID_TOKEN],
      [
        'an attacker’s key, with that key embedded as jwk and no kid',
        () => evil,
        () => ({ jwk: evil.publicJwk, kid: undefined }),
        INVALID_TOKEN,
      ],
      [
        'an attacker’s key under a genuine kid, with that key embedded as jwk',
        () => evilTwin,
        () => ({ jwk: evilTwin.publicJwk }),
        INVALID_TOKEN,
      ],
      [
        'the genuine key, with jku pointing at the attacker’s key set',
        () => key('EdDSA'),
        () => ({ jku: attacker.url.href }),
        'accepted',
      ],
      [
        'the genuine key, with x5u pointing at the attacker’s server',
        () => key('EdDSA'),
        () => ({ x5u: attacker.url.href }),
        'accepted',
      ],
      [
        'the genuine key, with an attacker’s key embedded as jwk',
        () => key('EdDSA'),
        () => ({ jwk: evil.publicJwk }),
        'accepted',
      ],
    ]
    for (const [what, signer, header, expected] of cases) {
      test(`a token signed by ${what} is ${expected === 'accepted' ? 'accepted (by the configured key)' : 'refused'}, and nothing is fetched from the attacker`, async () => {
        const token = await signWithKey(signer(), claimsFor('alice'), header())
        if (expected === 'accepted') await expectAccepted(app, token)
        else await expectRefused(app, `Bearer ${token}`, expected)
        assert.equal(attacker.requests(), 0)
      })
    }
  })
})

describe('fetching the key set: shared, cached, refetched for an unknown kid at most once per 30 s (fake clock)', () => {
  const scope = blockScope()
  let app: FastifyInstance
  let jwks: JwksServer
  let ed: TestKey
  let es: TestKey
  let added: TestKey
  let clockMs = 0 // the verifier's clock, set when the block starts and moved only by `advance`
  const advance = (ms: number): void => void (clockMs += ms)
  const tokenOf = (signer: TestKey, kid = signer.kid): Promise<string> =>
    signWithKey(signer, claimsFor('alice', clockMs), { kid })
  const tenTokens = (): Promise<string[]> =>
    Promise.all(Array.from({ length: 10 }, (_, i) => tokenOf(i % 2 === 0 ? ed : es)))
  const refuseUnknownKids = async (count: number, concurrently: boolean): Promise<void> => {
    const refuse = async (): Promise<void> =>
      expectRefused(app, `Bearer ${await tokenOf(ed, randomKid())}`, INVALID_TOKEN)
    if (concurrently) await Promise.all(Array.from({ length: count }, refuse))
    else for (let i = 0; i < count; i++) await refuse()
  }

  before(async () => {
    ed = await createTestKey('EdDSA', 'ed-1')
    es = await createTestKey('ES256', 'es-1')
    added = await createTestKey('EdDSA', 'ed-2')
    jwks = await startJwksServer(scope, [ed, es])
    jwks.delayMs = 50 // long enough for concurrent requests to overlap one fetch
    jwks.failWith = 500 // the endpoint starts out broken
    clockMs = Date.now()
    const config = testConfig({ jwksUrl: jwks.url })
    ;({ app } = await buildBlockApp(scope, {
      config,
      tokenVerifier: createTokenVerifier(config, { now: () => clockMs }),
    }))
  })

  test('nothing is fetched before the first token that needs a key', async () => {
    await expectAccepted(app, await signHs256(claimsFor('alice', clockMs)))
    assert.equal(jwks.requests(), 0)
  })

  test('ten concurrent first requests while the endpoint answers 500 share one fetch, and each gets 503 with Retry-After', async () => {
    await Promise.all((await tenTokens()).map((token) => expectRefused(app, `Bearer ${token}`, UNAVAILABLE)))
    assert.equal(jwks.requests(), 1)
    await expectAccepted(app, await signHs256(claimsFor('alice', clockMs)))
  })

  test('once the endpoint is back, ten concurrent requests share one fetch and are accepted', async () => {
    jwks.failWith = null
    advance(5_000) // a failed first fetch is retried after a short pause, not on every request
    await Promise.all((await tenTokens()).map((token) => expectAccepted(app, token)))
    assert.equal(jwks.requests(), 2)
  })

  test('within 30 s of that fetch, 20 tokens with unknown kids, concurrent or one by one, fetch nothing', async () => {
    advance(29_000)
    await refuseUnknownKids(20, true)
    await refuseUnknownKids(20, false)
    assert.equal(jwks.requests(), 2)
  })

  test('past 30 s, 20 concurrent tokens with unknown kids refetch the key set once, and the next 20 not at all', async () => {
    advance(2_000)
    await refuseUnknownKids(20, true)
    assert.equal(jwks.requests(), 3)
    await refuseUnknownKids(20, false)
    assert.equal(jwks.requests(), 3)
  })

  test('past another 30 s, 20 tokens with unknown kids one by one refetch once, on the first', async () => {
    advance(30_001)
    await refuseUnknownKids(1, false)
    assert.equal(jwks.requests(), 4)
    await refuseUnknownKids(19, false)
    assert.equal(jwks.requests(), 4)
  })

  test('a key added to the set is refused until 30 s after the last fetch, then picked up by the first token using it', async () => {
    jwks.keys.push(added)
    await expectRefused(app, `Bearer ${await tokenOf(added)}`, INVALID_TOKEN)
    assert.equal(jwks.requests(), 4)
    advance(30_001)
    await expectAccepted(app, await tokenOf(added))
    assert.equal(jwks.requests(), 5)
    await expectAccepted(app, await tokenOf(added))
    assert.equal(jwks.requests(), 5)
  })

  test('after the endpoint goes down, known kids keep working (even when a refresh is due) and unknown kids are 401, not 503', async () => {
    await jwks.stop()
    advance(11 * 60_000) // past the cooldown and past the age at which the set is refreshed in the background
    for (const signer of [ed, es, added]) await expectAccepted(app, await tokenOf(signer))
    await expectRefused(app, `Bearer ${await tokenOf(ed, randomKid())}`, INVALID_TOKEN)
    advance(31_000)
    await expectRefused(app, `Bearer ${await tokenOf(ed, randomKid())}`, INVALID_TOKEN)
    await expectAccepted(app, await tokenOf(ed))
  })
})

describe('when the key set endpoint is down before any fetch', () => {
  const scope = blockScope()
  let app: FastifyInstance
  let logs: string[]
  let ed: TestKey
  before(async () => {
    ed = await createTestKey('EdDSA', 'ed-1')
    const jwks = await startJwksServer(scope, [ed])
    await jwks.stop() // the URL now refuses connections
    ;({ app, logs } = await buildBlockApp(scope, { config: { jwksUrl: jwks.url } }))
  })

  test('a token from the key set is 503 "Service unavailable" with Retry-After, not a 401 that would sign the user out', async () => {
    await expectRefused(app, `Bearer ${await signWithKey(ed, claimsFor('alice'))}`, UNAVAILABLE)
    await expectRefused(
      app,
      `Bearer ${await signWithKey(await createTestKey('ES256', 'es-1'), claimsFor('alice'))}`,
      UNAVAILABLE,
    )
    assert.ok(
      logs.some((line) => (JSON.parse(line) as { level: number }).level === 40),
      'the failed fetch is logged as a warning',
    )
  })

  test('an HS256 token still works, and a token that is not asymmetric is still a 401', async () => {
    await expectAccepted(app, await signHs256(claimsFor('alice')))
    await expectRefused(app, `Bearer ${handMade({ alg: 'none' }, claimsFor('alice'))}`, INVALID_TOKEN)
    await expectRefused(app, 'Bearer garbage', INVALID_TOKEN)
  })
})

describe('issuer and audience (JWT_ISSUER=https://auth.example, JWT_AUDIENCE=a,b)', () => {
  const scope = blockScope()
  const issuer = 'https://auth.example'
  let app: FastifyInstance
  let ed: TestKey
  before(async () => {
    ed = await createTestKey('EdDSA', 'ed-1')
    const jwks = await startJwksServer(scope, [ed])
    ;({ app } = await buildBlockApp(scope, { config: { jwksUrl: jwks.url, issuer, audiences: ['a', 'b'] } }))
  })

  const jwksCases: [string, JWTPayload, boolean][] = [
    ['the issuer and audience "a"', { iss: issuer, aud: 'a' }, true],
    ['the issuer and audience "b"', { iss: issuer, aud: 'b' }, true],
    ['the issuer and an aud array with one matching element', { iss: issuer, aud: ['x', 'b'] }, true],
    ['no iss', { aud: 'a' }, false],
    ['no aud', { iss: issuer }, false],
    ['neither iss nor aud', {}, false],
    ['another issuer', { iss: 'https://evil.example', aud: 'a' }, false],
    ['the issuer with a trailing slash', { iss: `${issuer}/`, aud: 'a' }, false],
    ['another audience', { iss: issuer, aud: 'c' }, false],
    ['an aud array with no matching element', { iss: issuer, aud: ['x', 'y'] }, false],
    ['an empty aud array', { iss: issuer, aud: [] }, false],
  ]
  for (const [what, claims, accepted] of jwksCases) {
    test(`a key-set token with ${what} is ${accepted ? 'accepted' : 'refused'}`, async () => {
      const token = await signWithKey(ed, { ...claimsFor('alice'), ...claims })
      if (accepted) await expectAccepted(app, token)
      else await expectRefused(app, `Bearer ${token}`, INVALID_TOKEN)
    })
  }

  const hs256Cases: [string, JWTPayload, boolean][] = [
    ['neither iss nor aud (Better Auth’s cookie cache)', {}, true],
    ['the issuer and no aud', { iss: issuer }, true],
    ['audience "a" and no iss', { aud: 'a' }, true],
    ['the issuer and audience "b"', { iss: issuer, aud: 'b' }, true],
    ['another issuer', { iss: 'https://evil.example' }, false],
    ['another audience', { aud: 'c' }, false],
    ['the issuer but another audience', { iss: issuer, aud: ['x'] }, false],
    ['another issuer but a matching audience', { iss: 'https://evil.example', aud: 'a' }, false],
  ]
  for (const [what, claims, accepted] of hs256Cases) {
    test(`an HS256 token with ${what} is ${accepted ? 'accepted' : 'refused'}`, async () => {
      const token = await signHs256({ ...claimsFor('alice'), ...claims })
      if (accepted) await expectAccepted(app, token)
      else await expectRefused(app, `Bearer ${token}`, INVALID_TOKEN)
    })
  }
})

test('no token (nor its signature) appears in any response body or log line', (t) => {
  if (sentCredentials.size === 0) return t.skip('needs the tests above: run the whole file')
  const lines = appLogs.flat()
  assert.ok(lines.length > 100 && responseBodies.length > 100, 'the checks above produced logs and responses to search')
  assert.ok(
    lines.some((line) => line.includes('"incoming request"')),
    'request logs were captured',
  )
  for (const credential of sentCredentials) {
    const token = credential.replace(/^\S+ +/, '')
    const signature = token.split('.').at(-1) ?? ''
    const secrets = [credential, token, signature].filter((secret) => secret.length >= 16)
    for (const secret of secrets) {
      for (const text of [...responseBodies, ...lines])
        assert.ok(!text.includes(secret), 'a credential leaked into a response body or a log line')
    }
  }
})

/** The SPKI PEM of a test key's public half, as an attacker would copy it from the key set. */
async function pemOf(key: TestKey): Promise<string> {
  const publicKey = await importJWK(key.publicJwk, key.alg, { extractable: true })
  if (publicKey instanceof Uint8Array) assert.fail('a public key imports as a CryptoKey')
  return exportSPKI(publicKey)
}
