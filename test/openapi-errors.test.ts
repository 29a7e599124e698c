// Issue 12: in /openapi.json every error response of the task routes says what it means (never "Default Response"),
// each 401 carries the three bodies a client tells apart as named examples, with WWW-Authenticate, and those examples
// are what the service really answers. The document's validity is checked in test/http-security.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildTestApp } from './helpers/test-app.ts'
import { nowS, signHs256 } from './helpers/tokens.ts'

interface MediaType {
  schema?: unknown
  examples?: Record<string, { summary?: string; value?: unknown }>
}
interface ResponseObject {
  description?: string
  headers?: Record<string, unknown>
  content?: Record<string, MediaType>
}
interface OpenApiDocument {
  paths: Record<string, Record<string, { responses: Record<string, ResponseObject> }>>
}

const UNAUTHORIZED_BODIES = ['Not authenticated', 'Token expired', 'Invalid token']

void test('/openapi.json: every error response of /api describes itself, and each 401 lists the three bodies as examples that the service really answers', async (t) => {
  const { app } = await buildTestApp(t)
  const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenApiDocument>()
  const operations = Object.entries(document.paths)
    .filter(([path]) => path.startsWith('/api/'))
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, operation })))
  assert.equal(operations.length, 6, 'the six task operations')

  for (const { path, method, operation } of operations) {
    const where = `${method.toUpperCase()} ${path}`
    const errors = Object.entries(operation.responses).filter(([status]) => Number(status) >= 400)
    for (const [status, response] of errors) {
      assert.ok(
        response.description !== undefined && response.description.length > 20,
        `${where} ${status}: a description`,
      )
      assert.notEqual(response.description, 'Default Response', `${where} ${status}`)
    }
    // 400 too: two Authorization headers are refused on every /api route, reads included.
    for (const status of ['400', '401', '422', '429', '503'])
      assert.ok(operation.responses[status] !== undefined, `${where} documents ${status}`)
    for (const status of ['429', '503'])
      assert.ok(operation.responses[status]?.headers?.['Retry-After'] !== undefined, `${where} ${status}: Retry-After`)

    assert.match(
      String((operation.responses['400']?.headers?.['WWW-Authenticate'] as { description?: string })?.description),
      /invalid_request/,
      `${where} 400: WWW-Authenticate of two Authorization headers`,
    )

    const unauthorized = operation.responses['401']
    assert.ok(unauthorized?.headers?.['WWW-Authenticate'] !== undefined, `${where} 401: WWW-Authenticate`)
    assert.match(unauthorized.description ?? '', /invalid_token/)
    const examples = unauthorized.content?.['application/json']?.examples ?? {}
    assert.deepEqual(Object.keys(examples), UNAUTHORIZED_BODIES, `${where} 401: the three named examples`)
    for (const [name, example] of Object.entries(examples)) {
      assert.deepEqual(example.value, { detail: name })
      assert.ok((example.summary ?? '').length > 10)
    }
  }

  // The examples are the real bodies: no token, an expired one, and a forged one.
  const now = nowS()
  const authorizations = [
    undefined,
    `Bearer ${await signHs256({ sub: 'alice', iat: now - 600, exp: now - 120 })}`,
    `Bearer ${await signHs256({ sub: 'alice', exp: now + 60 }, { secret: 'not-the-secret' })}`,
  ]
  const bodies = await Promise.all(
    authorizations.map(async (authorization) => {
      const headers = authorization === undefined ? {} : { authorization }
      return (await app.inject({ method: 'GET', url: '/api/tasks', headers })).json<unknown>()
    }),
  )
  assert.deepEqual(
    bodies,
    UNAUTHORIZED_BODIES.map((detail) => ({ detail })),
  )
})

void test('/openapi.json: the toggle route’s body is optional, as the route takes none, and no x- mark leaks', async (t) => {
  const { app } = await buildTestApp(t)
  const response = await app.inject({ method: 'GET', url: '/openapi.json' })
  type Operation = { requestBody?: { required?: boolean } }
  const { paths } = response.json<{ paths: Record<string, Record<string, Operation>> }>()
  assert.equal(paths['/api/tasks/{id}/complete']?.patch?.requestBody?.required, false)
  assert.equal(paths['/api/tasks/{id}']?.put?.requestBody?.required, true, 'PUT still needs a body')
  assert.ok(!response.body.includes('x-body-optional'))
})
