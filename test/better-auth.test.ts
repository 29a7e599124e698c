// Real Better Auth end to end: users signed up in the real `better-auth` package use both kinds of token it issues
// (the jwt() plugin's JWKS-signed token and the HS256 session_data cookie cache) against the service.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { startBetterAuth, type BetterAuthUser } from './helpers/better-auth.ts'
import { buildTestApp } from './helpers/test-app.ts'

const INVALID_TOKEN = { detail: 'Invalid token' }
const INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'

/** The two tokens a frontend can forward for one Better Auth user. */
const TOKEN_KINDS = [
  { kind: 'jwt', of: (user: BetterAuthUser) => user.jwt },
  { kind: 'session_data', of: (user: BetterAuthUser) => user.sessionData },
] as const

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function createTask(
  app: FastifyInstance,
  token: string,
  title: string,
): Promise<{ id: number; title: string; user_id: string }> {
  const response = await app.inject({ method: 'POST', url: '/api/tasks', headers: bearer(token), payload: { title } })
  assert.equal(response.statusCode, 201, response.body)
  return response.json()
}

async function listTasks(
  app: FastifyInstance,
  token: string,
): Promise<{ total: string | undefined; tasks: { title: string; user_id: string }[] }> {
  const response = await app.inject({ method: 'GET', url: '/api/tasks', headers: bearer(token) })
  assert.equal(response.statusCode, 200, response.body)
  return { total: response.headers['x-total-count'] as string | undefined, tasks: response.json() }
}

async function assertInvalidToken(app: FastifyInstance, token: string, message: string): Promise<void> {
  for (const request of [
    { method: 'GET', url: '/api/tasks' },
    { method: 'POST', url: '/api/tasks', payload: { title: 'must not be created' } },
  ] as const) {
    const response = await app.inject({ ...request, headers: bearer(token) })
    assert.equal(response.statusCode, 401, `${message}: ${request.method} ${response.body}`)
    assert.deepEqual(response.json(), INVALID_TOKEN, message)
    assert.equal(response.headers['www-authenticate'], INVALID_TOKEN_CHALLENGE, message)
  }
}

/** Checks what Better Auth really issued for `user`, so the service is tested against the real shapes. */
function assertTokenShapes(user: BetterAuthUser, alg: string, origin: string): void {
  const header = decodeProtectedHeader(user.jwt)
  assert.equal(header.alg, alg)
  assert.equal(typeof header.kid, 'string')
  const claims = decodeJwt(user.jwt)
  assert.equal(claims.sub, user.id)
  assert.equal(claims.iss, origin)
  assert.equal(claims.aud, origin)
  assert.equal(decodeProtectedHeader(user.sessionData).alg, 'HS256')
  const cached = decodeJwt(user.sessionData)
  assert.equal((cached.user as { id?: unknown }).id, user.id)
  assert.equal((cached.session as { userId?: unknown }).userId, user.id)
  assert.deepEqual([cached.sub, cached.iss, cached.aud], [undefined, undefined, undefined])
}

for (const alg of ['EdDSA', 'ES256', 'RS256', 'PS256', 'ES512'] as const) {
  void test(`${alg}: two Better Auth users create and list only their own tasks with both token kinds`, async (t) => {
    // EdDSA is Better Auth's default: leave keyPairConfig unset for it.
    const betterAuth = await startBetterAuth(t, alg === 'EdDSA' ? {} : { alg })
    const users = await Promise.all([
      betterAuth.signUp({ email: `alice-${alg}@example.com`, name: 'Alice' }),
      betterAuth.signUp({ email: `bob-${alg}@example.com`, name: 'Bob' }),
    ])
    assert.notEqual(users[0]?.id, users[1]?.id)
    for (const user of users) assertTokenShapes(user, alg, new URL(betterAuth.baseURL).origin)
    const { app } = await buildTestApp(t, { config: { jwksUrl: betterAuth.jwksUrl } })

    for (const user of users) {
      for (const { kind, of } of TOKEN_KINDS) {
        const task = await createTask(app, of(user), `${user.name} via ${kind}`)
        assert.equal(task.user_id, user.id, `${user.name} via ${kind}`)
      }
    }
    for (const user of users) {
      const expected = TOKEN_KINDS.map(({ kind }) => `${user.name} via ${kind}`).sort()
      for (const { kind, of } of TOKEN_KINDS) {
        const { total, tasks } = await listTasks(app, of(user))
        assert.deepEqual(tasks.map((task) => task.title).sort(), expected, `${user.name} lists with ${kind}`)
        assert.ok(
          tasks.every((task) => task.user_id === user.id),
          `${user.name} lists with ${kind}`,
        )
        assert.equal(total, '2', `${user.name} lists with ${kind}`)
      }
    }
  })
}

void test('JWT_ISSUER and JWT_AUDIENCE set to Better Auth’s origin: both kinds pass; another iss or aud is refused', async (t) => {
  const betterAuth = await startBetterAuth(t)
  const origin = new URL(betterAuth.baseURL).origin
  const user = await betterAuth.signUp({ email: 'carol@example.com', name: 'Carol' })
  assertTokenShapes(user, 'EdDSA', origin)
  const jwksUrl = betterAuth.jwksUrl

  const matching = await buildTestApp(t, { config: { jwksUrl, issuer: origin, audiences: [origin] } })
  for (const { kind, of } of TOKEN_KINDS) {
    const task = await createTask(matching.app, of(user), `via ${kind}`)
    assert.equal(task.user_id, user.id)
  }
  for (const { of } of TOKEN_KINDS) assert.equal((await listTasks(matching.app, of(user))).total, '2')

  // Tokens signed by the same Better Auth key but carrying another iss or aud (its server-only signJWT endpoint).
  const now = Math.floor(Date.now() / 1000)
  for (const claims of [{ iss: 'https://auth.example.com' }, { aud: 'https://api.example.com' }]) {
    const { token } = await betterAuth.auth.api.signJWT({
      body: { payload: { sub: user.id, iat: now, exp: now + 300, ...claims } },
    })
    const issued = decodeJwt(token)
    assert.deepEqual({ iss: issued.iss, aud: issued.aud }, { iss: origin, aud: origin, ...claims })
    await assertInvalidToken(matching.app, token, `a Better Auth token with ${JSON.stringify(claims)}`)
  }
  assert.equal((await listTasks(matching.app, user.jwt)).total, '2', 'a refused POST created nothing')

  for (const [name, config] of [
    ['another issuer', { issuer: 'https://auth.example.com', audiences: [origin] }],
    ['another audience', { issuer: origin, audiences: ['https://api.example.com'] }],
  ] as const) {
    const { app } = await buildTestApp(t, { config: { jwksUrl, ...config } })
    await assertInvalidToken(app, user.jwt, `the JWKS token on a service configured for ${name}`)
    // The cookie cache carries no iss/aud, and docs/contract.md does not require them on HS256: it still passes.
    assert.equal(
      (await listTasks(app, user.sessionData)).total,
      '0',
      `the session_data token on a service configured for ${name}`,
    )
  }
})

void test('the bearer() plugin’s opaque session token, and the email-verification token, are refused with 401 Invalid token', async (t) => {
  const betterAuth = await startBetterAuth(t)
  const user = await betterAuth.signUp({ email: 'dave@example.com', name: 'Dave' })
  // It is a live credential for Better Auth itself …
  const session = await fetch(`${betterAuth.baseURL}/api/auth/get-session`, { headers: bearer(user.setAuthToken) })
  assert.equal(session.status, 200)
  assert.equal(((await session.json()) as { user?: { id?: string } } | null)?.user?.id, user.id)
  assert.equal(decodeURIComponent(user.sessionTokenCookie), user.setAuthToken)

  // … but not a JWT, so the service refuses it in every form a frontend might forward.
  const { app } = await buildTestApp(t, { config: { jwksUrl: betterAuth.jwksUrl } })
  const forms = {
    'the session_token cookie value': user.sessionTokenCookie,
    'the set-auth-token header': user.setAuthToken,
    'the unsigned session token': user.setAuthToken.split('.')[0] ?? '',
  }
  for (const [name, token] of Object.entries(forms)) await assertInvalidToken(app, token, name)

  // The verification link's token is signed HS256 with the same secret and names the user, but as `userId`:
  // it proves control of a mailbox, not a session, and must never work as an access token.
  assert.equal(decodeProtectedHeader(user.emailVerificationToken).alg, 'HS256')
  const verification = decodeJwt(user.emailVerificationToken)
  assert.deepEqual([verification.userId, verification.sub, verification.user], [user.id, undefined, undefined])
  await assertInvalidToken(app, user.emailVerificationToken, 'the email-verification token')

  // Nothing was created, and the same user's JWT is accepted by this service.
  assert.equal((await listTasks(app, user.jwt)).total, '0')
})
