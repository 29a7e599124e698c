// The WWW-Authenticate reading that decides whether the client refreshes its token: by the header's grammar
// (RFC 9110 §11.6.1), never by finding the text "invalid_token" somewhere in it.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isInvalidTokenChallenge, parseChallenges } from '../src/www-authenticate.ts'

void describe('isInvalidTokenChallenge', () => {
  const refresh = [
    'Bearer error="invalid_token"',
    'Bearer error=invalid_token',
    'bearer ERROR = "invalid_token"',
    'Bearer realm="tasks", error="invalid_token", error_description="The access token expired"',
    'Basic realm="x", Bearer error="invalid_token"',
    'Bearer error="invalid_\\token"',
  ]
  for (const value of refresh)
    void test(`refreshes on ${value}`, () => assert.equal(isInvalidTokenChallenge(value), true))

  const answerAsIs: (string | null)[] = [
    null,
    '',
    'Bearer',
    'Bearer realm="tasks"',
    'Bearer error="invalid_request"',
    'Bearer error="insufficient_scope", error_description="error=\\"invalid_token\\""',
    'Bearer realm="error=invalid_token"',
    'Bearer error="Invalid_Token"',
    'Basic error="invalid_token"',
    'Basic realm="x", error="invalid_token"',
    'Bearerx error="invalid_token"',
    'Bearer invalid_token',
    'Bearer error="invalid_token',
  ]
  for (const value of answerAsIs)
    void test(`answers ${JSON.stringify(value)} as is`, () => assert.equal(isInvalidTokenChallenge(value), false))
})

void describe('parseChallenges', () => {
  void test('reads several challenges, auth-params and token68 (the example of RFC 9110 §11.6.1)', () => {
    const challenges = parseChallenges(
      'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple", Token abc==, Bearer',
    )
    assert.deepEqual(
      challenges.map(({ scheme, params }) => [scheme, Object.fromEntries(params)]),
      [
        ['newauth', { realm: 'apps', type: '1', title: 'Login to "apps"' }],
        ['basic', { realm: 'simple' }],
        ['token', {}],
        ['bearer', {}],
      ],
    )
  })

  void test('stops at invalid syntax with what it read, and keeps the first of a repeated parameter', () => {
    assert.deepEqual(
      parseChallenges('Bearer error="invalid_token", error="other", Basic realm="x" junk').map(({ scheme, params }) => [
        scheme,
        Object.fromEntries(params),
      ]),
      [
        ['bearer', { error: 'invalid_token' }],
        ['basic', { realm: 'x' }],
      ],
    )
    assert.deepEqual(parseChallenges('"quoted"'), [])
  })
})
