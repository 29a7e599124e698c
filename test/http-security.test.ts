// The cross-cutting rules of docs/contract.md, held over every kind of response: CORS, security headers, request ids,
// unknown routes, the OpenAPI document and /docs, /health and /ready, and no token in any response or log line.
// Tests share one app per describe block; a test that closes its app or needs its own configuration builds its own.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Validator } from '@seriousme/openapi-schema-validator'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildTestApp, listenOnLoopback, openTestApp, rawExchange } from './helpers/test-app.ts'
import { authHeaderFor, nowS, signHs256, TEST_SECRET, tokenFor } from './helpers/tokens.ts'

const ALLOWED = 'http://localhost:3000'
/** A second configured origin, so the tests show the list is really read from the configuration. */
const ALSO_ALLOWED = 'https://app.example.com'
const corsConfig = { corsOrigins: [ALLOWED, ALSO_ALLOWED] }

/** Origins a careless matcher (prefix, suffix, substring, scheme- or port-blind) would let through. */
const LOOK_ALIKE_ORIGINS = [
  'http://localhost:3000.evil.com',
  'http://evil.localhost:3000',
  'https://localhost:3000',
  'http://localhost:30001',
  'http://localhost',
  'null',
  'https://app.example.com.evil.com',
  'http://app.example.com',
  'https://evilapp.example.com',
]

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A browser's preflight for `method` on `url` with the headers a Bearer-token JSON client sends. */
function preflight(url: string, origin: string, method = 'POST'): InjectOptions {
  return {
    method: 'OPTIONS',
    url,
    headers: {
      origin,
      'access-control-request-method': method,
      'access-control-request-headers': 'authorization,content-type',
    },
  }
}

/** A comma-separated header as lower-case items. */
function listHeader(response: LightMyRequestResponse, name: string): string[] {
  const value = response.headers[name]
  return String(value ?? '')
    .split(',')
    .map((item) => item.trim().toLowerCase())
    .filter((item) => item !== '')
}

/** The log lines (parsed) that carry `reqId`. */
function logLinesOf(logs: readonly string[], reqId: string): Record<string, unknown>[] {
  return logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.reqId === reqId)
}

/** Directives of a Content-Security-Policy header, by name. */
function cspDirectives(header: string | string[] | number | undefined): Map<string, string[]> {
  const directives = new Map<string, string[]>()
  for (const part of String(header ?? '').split(';')) {
    const [name, ...values] = part.trim().split(/\s+/)
    if (name !== undefined && name !== '') directives.set(name.toLowerCase(), values)
  }
  return directives
}

/** The CSP hash-source that allows an inline `<style>` or `<script>` of exactly this text. */
function cspHashOf(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`
}

/** docs/contract.md "Cross-cutting": the security headers and a request id, whatever the status. */
function assertSecurityHeaders(response: LightMyRequestResponse, label: string): void {
  const where = `${label} (${response.statusCode})`
  assert.equal(response.headers['x-content-type-options'], 'nosniff', where)
  assert.ok(String(response.headers['referrer-policy'] ?? '') !== '', `${where}: Referrer-Policy`)
  const frameOptions = String(response.headers['x-frame-options'] ?? '').toUpperCase()
  const frameAncestors = cspDirectives(response.headers['content-security-policy']).get('frame-ancestors')
  assert.ok(
    ['DENY', 'SAMEORIGIN'].includes(frameOptions) || frameAncestors !== undefined,
    `${where}: X-Frame-Options or CSP frame-ancestors`,
  )
  assert.equal(response.headers['x-powered-by'], undefined, `${where}: X-Powered-By`)
  assert.match(String(response.headers['x-request-id'] ?? ''), /^[A-Za-z0-9._:-]{1,128}$/, `${where}: X-Request-Id`)
}

/** A task of `headers`' user, created through the API. */
async function createTask(app: FastifyInstance, headers: Record<string, string>): Promise<number> {
  const created = await app.inject({
    method: 'POST',
    url: '/api/tasks',
    headers,
    payload: { title: 'Water the plants' },
  })
  assert.equal(created.statusCode, 201, created.body)
  return created.json<{ id: number }>().id
}

/** Every operation of docs/contract.md's endpoint table, as `METHOD path` in OpenAPI's spelling. */
const API_OPERATIONS = [
  'GET /api/tasks',
  'POST /api/tasks',
  'GET /api/tasks/{id}',
  'PUT /api/tasks/{id}',
  'DELETE /api/tasks/{id}',
  'PATCH /api/tasks/{id}/complete',
  'GET /health',
  'GET /ready',
]

interface OpenApiOperation {
  security?: Record<string, string[]>[]
  parameters?: { in: string; name: string; required?: boolean }[]
  responses: Record<string, { headers?: Record<string, unknown> }>
}
interface OpenApiDocument {
  openapi: string
  security?: unknown[]
  paths: Record<string, Record<string, OpenApiOperation>>
  components?: { securitySchemes?: Record<string, Record<string, unknown>> }
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

function operationsOf(document: OpenApiDocument): Map<string, OpenApiOperation> {
  const operations = new Map<string, OpenApiOperation>()
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (HTTP_METHODS.includes(method)) operations.set(`${method.toUpperCase()} ${path}`, operation)
    }
  }
  return operations
}

async function openApiDocument(app: FastifyInstance): Promise<OpenApiDocument> {
  const response = await app.inject({ method: 'GET', url: '/openapi.json' })
  assert.equal(response.statusCode, 200, response.body)
  assert.match(String(response.headers['content-type']), /^application\/json/)
  return response.json()
}

void describe('with two CORS origins configured, one app', () => {
  let app: FastifyInstance
  before(async () => ({ app } = await openTestApp({ config: corsConfig })))
  after(() => app.close())

  // ---------------------------------------------------------------------------------------------- CORS

  void test('a preflight from an allowed origin succeeds, allows Authorization and Content-Type, needs no credentials, and is never 401', async () => {
    const cases: [string, string][] = [
      ['/api/tasks', 'GET'],
      ['/api/tasks', 'POST'],
      ['/api/tasks/1', 'GET'],
      ['/api/tasks/1', 'PUT'],
      ['/api/tasks/1', 'DELETE'],
      ['/api/tasks/1/complete', 'PATCH'],
    ]
    for (const origin of [ALLOWED, ALSO_ALLOWED]) {
      for (const [url, method] of cases) {
        const response = await app.inject(preflight(url, origin, method))
        const label = `${method} ${url} from ${origin}`
        assert.ok(
          response.statusCode >= 200 && response.statusCode < 300,
          `${label}: ${response.statusCode} ${response.body}`,
        )
        assert.equal(response.headers['access-control-allow-origin'], origin, label)
        assert.equal(response.headers['access-control-allow-credentials'], undefined, `${label}: no credentials`)
        assert.equal(response.headers['www-authenticate'], undefined, label)
        const allowedHeaders = listHeader(response, 'access-control-allow-headers')
        assert.ok(
          allowedHeaders.includes('authorization') && allowedHeaders.includes('content-type'),
          `${label}: ${allowedHeaders.join()}`,
        )
        assert.ok(listHeader(response, 'access-control-allow-methods').includes(method.toLowerCase()), label)
        assert.ok(
          listHeader(response, 'vary').includes('origin'),
          `${label}: Vary: Origin (caches must not mix origins)`,
        )
      }
    }
  })

  void test('a preflight carrying a bad Authorization header is still answered, not 401', async () => {
    const request = preflight('/api/tasks', ALLOWED)
    const response = await app.inject({ ...request, headers: { ...request.headers, authorization: 'Bearer garbage' } })
    assert.equal(response.statusCode, 204, response.body)
    assert.equal(response.headers['access-control-allow-origin'], ALLOWED)
  })

  void test('an actual request from an allowed origin gets Access-Control-Allow-Origin and may read X-Total-Count and Location', async () => {
    const auth = await authHeaderFor('user_cors')
    const created = await app.inject({
      method: 'POST',
      url: '/api/tasks',
      headers: { ...auth, origin: ALSO_ALLOWED },
      payload: { title: 'From the browser' },
    })
    assert.equal(created.statusCode, 201, created.body)
    assert.equal(created.headers['access-control-allow-origin'], ALSO_ALLOWED)
    assert.ok(listHeader(created, 'access-control-expose-headers').includes('location'))

    const list = await app.inject({ method: 'GET', url: '/api/tasks', headers: { ...auth, origin: ALLOWED } })
    assert.equal(list.statusCode, 200, list.body)
    assert.equal(list.headers['x-total-count'], '1')
    assert.equal(list.headers['access-control-allow-origin'], ALLOWED)
    assert.equal(list.headers['access-control-allow-credentials'], undefined)
    assert.ok(listHeader(list, 'access-control-expose-headers').includes('x-total-count'))
    assert.ok(listHeader(list, 'vary').includes('origin'))
  })

  void test('a 401 (and other errors) to an allowed origin still carry Access-Control-Allow-Origin, so the browser can read them', async () => {
    const expired = await signHs256({ sub: 'user_cors', iat: nowS() - 7200, exp: nowS() - 3600 })
    const cases: [InjectOptions & { url: string }, number, string][] = [
      [{ method: 'GET', url: '/api/tasks', headers: { origin: ALLOWED } }, 401, 'Not authenticated'],
      [
        { method: 'GET', url: '/api/tasks', headers: { origin: ALLOWED, authorization: 'Bearer not-a-token' } },
        401,
        'Invalid token',
      ],
      [
        { method: 'GET', url: '/api/tasks', headers: { origin: ALLOWED, authorization: `Bearer ${expired}` } },
        401,
        'Token expired',
      ],
      [{ method: 'GET', url: '/nowhere', headers: { origin: ALLOWED } }, 404, 'Not Found'],
      [
        {
          method: 'GET',
          url: '/api/tasks/999999',
          headers: { origin: ALLOWED, ...(await authHeaderFor('user_cors')) },
        },
        404,
        'Task not found',
      ],
    ]
    for (const [request, status, detail] of cases) {
      const response = await app.inject(request)
      assert.deepEqual([response.statusCode, response.json()], [status, { detail }], request.url)
      assert.equal(response.headers['access-control-allow-origin'], ALLOWED, `${request.url} ${status}`)
      // A page reads WWW-Authenticate only when CORS exposes it: it tells "refresh the token" from "sign in".
      if (status === 401)
        assert.ok(listHeader(response, 'access-control-expose-headers').includes('www-authenticate'), detail)
    }
  })

  void test('look-alike origins get no Access-Control-Allow-Origin, on preflight or actual requests', async () => {
    const auth = await authHeaderFor('user_cors')
    for (const origin of LOOK_ALIKE_ORIGINS) {
      const responses = {
        preflight: await app.inject(preflight('/api/tasks', origin)),
        'preflight of one task': await app.inject(preflight('/api/tasks/1', origin, 'DELETE')),
        'authenticated GET': await app.inject({ method: 'GET', url: '/api/tasks', headers: { ...auth, origin } }),
        'unauthenticated GET': await app.inject({ method: 'GET', url: '/api/tasks', headers: { origin } }),
        'GET /health': await app.inject({ method: 'GET', url: '/health', headers: { origin } }),
      }
      for (const [kind, response] of Object.entries(responses)) {
        assert.equal(response.headers['access-control-allow-origin'], undefined, `${kind} from ${origin}`)
        assert.equal(response.headers['access-control-allow-credentials'], undefined, `${kind} from ${origin}`)
      }
      // The request itself is still served (CORS is the browser's rule): only the header is withheld.
      assert.equal(responses['authenticated GET'].statusCode, 200)
    }
  })

  void test('an OPTIONS request without Origin is not an error in a foreign shape', async () => {
    const response = await app.inject({ method: 'OPTIONS', url: '/api/tasks' })
    assert.notEqual(response.statusCode, 401)
    assert.equal(response.headers['access-control-allow-origin'], undefined)
    if (response.statusCode >= 400)
      assert.equal(typeof response.json<{ detail: unknown }>().detail, 'string', response.body)
    assertSecurityHeaders(response, 'OPTIONS without Origin')
  })

  // ---------------------------------------------------------------------------------- security headers

  void test('security headers and X-Request-Id are on every response, errors and preflights included', async () => {
    const auth = await authHeaderFor('user_headers')
    const json = { ...auth, 'content-type': 'application/json' }
    const id = await createTask(app, auth)
    const cases: [string, InjectOptions, number][] = [
      ['health', { method: 'GET', url: '/health' }, 200],
      ['ready', { method: 'GET', url: '/ready' }, 200],
      ['list', { method: 'GET', url: '/api/tasks', headers: auth }, 200],
      ['create', { method: 'POST', url: '/api/tasks', headers: auth, payload: { title: 'x' } }, 201],
      ['get', { method: 'GET', url: `/api/tasks/${id}`, headers: auth }, 200],
      ['toggle', { method: 'PATCH', url: `/api/tasks/${id}/complete`, headers: auth }, 200],
      ['preflight', preflight('/api/tasks', ALLOWED), 204],
      ['preflight from a look-alike origin', preflight('/api/tasks', LOOK_ALIKE_ORIGINS[0] ?? ''), 204],
      ['no token', { method: 'GET', url: '/api/tasks' }, 401],
      ['garbage token', { method: 'GET', url: '/api/tasks', headers: { authorization: 'Bearer x.y.z' } }, 401],
      ['unknown route', { method: 'GET', url: '/no/such/route' }, 404],
      ['unknown /api route', { method: 'GET', url: '/api/nothing', headers: auth }, 404],
      ['missing task', { method: 'GET', url: '/api/tasks/999999', headers: auth }, 404],
      ['validation', { method: 'POST', url: '/api/tasks', headers: auth, payload: { title: '' } }, 422],
      ['bad id', { method: 'GET', url: '/api/tasks/abc', headers: auth }, 422],
      [
        'media type',
        { method: 'POST', url: '/api/tasks', headers: { ...auth, 'content-type': 'text/plain' }, payload: 'title' },
        415,
      ],
      ['malformed JSON', { method: 'POST', url: '/api/tasks', headers: json, payload: '{"title":' }, 400],
      [
        'too large',
        { method: 'POST', url: '/api/tasks', headers: json, payload: JSON.stringify({ title: 'x'.repeat(70_000) }) },
        413,
      ],
      // Answered by Fastify's frameworkErrors before routing, where no onRequest hook runs.
      ['undecodable URL', { method: 'GET', url: '/api/tasks/%E0%A4%A', headers: auth }, 400],
      ['path segment too long', { method: 'GET', url: `/api/tasks/${'1'.repeat(101)}`, headers: auth }, 414],
      ['delete', { method: 'DELETE', url: `/api/tasks/${id}`, headers: auth }, 204],
      ['openapi', { method: 'GET', url: '/openapi.json' }, 200],
      ['docs', { method: 'GET', url: '/docs/' }, 200],
    ]
    for (const [label, request, status] of cases) {
      const response = await app.inject(request)
      assert.equal(response.statusCode, status, `${label}: ${response.body.slice(0, 200)}`)
      assertSecurityHeaders(response, label)
    }
  })
})

void describe('with the default configuration, one app', () => {
  let app: FastifyInstance
  let logs: string[]
  before(async () => ({ app, logs } = await openTestApp()))
  after(() => app.close())

  void test('API responses forbid framing and any content through their CSP', async () => {
    const response = await app.inject({ method: 'GET', url: '/api/tasks', headers: await authHeaderFor('user_csp') })
    const csp = cspDirectives(response.headers['content-security-policy'])
    assert.deepEqual(csp.get('default-src'), ["'none'"])
    assert.deepEqual(csp.get('frame-ancestors'), ["'none'"])
    assert.equal(response.headers['x-frame-options'], 'DENY')
  })

  // -------------------------------------------------------------------------------------- request ids

  void test('a sane incoming X-Request-Id is echoed and carried by every log line of that request', async () => {
    for (const requestId of ['req-42', 'trace:7f3a.0_b-9', 'a'.repeat(128), '6f1c2d0e-5b1e-4a7e-9f4a-0c1d2e3f4a5b']) {
      const response = await app.inject({ method: 'GET', url: '/api/tasks', headers: { 'x-request-id': requestId } })
      assert.equal(response.statusCode, 401)
      assert.equal(response.headers['x-request-id'], requestId)
      const lines = logLinesOf(logs, requestId)
      assert.ok(
        lines.some((line) => line.msg === 'incoming request') && lines.some((line) => line.msg === 'request completed'),
        `log lines of ${requestId}: ${JSON.stringify(lines)}`,
      )
    }
  })

  void test('an insane X-Request-Id (too long, spaces, control or non-ASCII characters, log-forging) is replaced by a generated one', async () => {
    const insane = [
      'a'.repeat(129),
      'has space',
      'tab\tinside',
      'next-line\u0085inside',
      'nbsp\u00a0inside',
      'caf\u00e9',
      'x","level":60,"msg":"forged',
      'semi;colon',
      'slash/es',
      '',
    ]
    const seen = new Set<string>()
    for (const requestId of insane) {
      const response = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': requestId } })
      assert.equal(response.statusCode, 200)
      const generated = String(response.headers['x-request-id'])
      assert.match(generated, UUID, JSON.stringify(requestId))
      assert.ok(!seen.has(generated), 'each generated id is new')
      seen.add(generated)
      assert.ok(
        logLinesOf(logs, generated).length >= 2,
        `log lines of the generated id for ${JSON.stringify(requestId)}`,
      )
    }
    assert.ok(!logs.some((line) => line.includes('forged')), 'a forged field never reaches the log')
    // Repeated headers arrive joined ("a, b"): not sane either.
    const repeated = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': ['one', 'two'] } })
    assert.match(String(repeated.headers['x-request-id']), UUID)
  })

  void test('a request without X-Request-Id gets a generated one, and its log lines carry it', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/tasks',
      headers: await authHeaderFor('user_rid'),
      payload: {},
    })
    assert.equal(response.statusCode, 422)
    const requestId = String(response.headers['x-request-id'])
    assert.match(requestId, UUID)
    const lines = logLinesOf(logs, requestId)
    assert.ok(
      lines.some((line) => (line.res as { statusCode?: number } | undefined)?.statusCode === 422),
      JSON.stringify(lines),
    )
  })

  // ------------------------------------------------------------------------------------ unknown routes

  void test('an unknown route is 404 {"detail":"Not Found"}, inside /api too, with a valid token or none', async () => {
    // Routes are public knowledge (/openapi.json lists them), so an unknown /api path answers 404 without
    // asking for a token, as FastAPI does: the authentication hook belongs to the routes of the /api scope.
    const auth = await authHeaderFor('user_404')
    const cases: [string, InjectOptions][] = [
      ['root', { method: 'GET', url: '/nope' }],
      ['root with token', { method: 'GET', url: '/nope', headers: auth }],
      ['/api, valid token', { method: 'GET', url: '/api/nope', headers: auth }],
      ['/api, no token', { method: 'GET', url: '/api/nope' }],
      ['/api, bad token', { method: 'GET', url: '/api/nope', headers: { authorization: 'Bearer nope' } }],
      ['under a task, valid token', { method: 'GET', url: '/api/tasks/1/nope', headers: auth }],
      ['under a task, no token', { method: 'POST', url: '/api/tasks/1/nope' }],
      ['unrouted method, valid token', { method: 'DELETE', url: '/api/tasks', headers: auth }],
      ['/api itself', { method: 'GET', url: '/api', headers: auth }],
    ]
    for (const [label, request] of cases) {
      const response = await app.inject(request)
      assert.deepEqual([response.statusCode, response.json()], [404, { detail: 'Not Found' }], label)
      assert.match(String(response.headers['content-type']), /^application\/json/, label)
      assert.equal(response.headers['www-authenticate'], undefined, label)
    }
  })

  // ------------------------------------------------------------------------------------ OpenAPI, /docs

  void test('/openapi.json is a valid OpenAPI 3.1 document', async () => {
    const document = await openApiDocument(app)
    assert.match(document.openapi, /^3\.1\.\d+$/)
    const validator = new Validator()
    const result = await validator.validate(document as unknown as Record<string, unknown>)
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2))
    assert.equal(validator.version, '3.1')
    // The validator is not vacuous: the same document with a broken operation fails.
    const broken = structuredClone(document) as unknown as {
      paths: Record<string, Record<string, { responses: unknown }>>
    }
    const health = broken.paths['/health']?.get
    assert.ok(health !== undefined)
    health.responses = 'none'
    assert.equal((await new Validator().validate(broken)).valid, false)
  })

  void test('/openapi.json describes every route of docs/contract.md: bearer security on every /api operation, none on /health and /ready', async () => {
    const document = await openApiDocument(app)
    const operations = operationsOf(document)
    assert.deepEqual([...operations.keys()].sort(), [...API_OPERATIONS].sort())

    const scheme = document.components?.securitySchemes?.bearerAuth
    assert.deepEqual(
      { type: scheme?.type, scheme: String(scheme?.scheme).toLowerCase() },
      { type: 'http', scheme: 'bearer' },
    )
    assert.ok(
      document.security === undefined || document.security.length === 0,
      'no global security (it would cover /health)',
    )

    for (const [name, operation] of operations) {
      if (name.includes(' /api/')) {
        assert.deepEqual(operation.security, [{ bearerAuth: [] }], name)
        assert.ok('401' in operation.responses, `${name} documents its 401`)
      } else {
        assert.ok(operation.security === undefined || operation.security.length === 0, `${name} needs no token`)
      }
      if (name.includes('{id}')) {
        assert.ok(
          operation.parameters?.some(
            (parameter) => parameter.in === 'path' && parameter.name === 'id' && parameter.required === true,
          ),
          `${name} documents its {id}`,
        )
      }
    }
    assert.ok('201' in (operations.get('POST /api/tasks')?.responses ?? {}))
    assert.ok('204' in (operations.get('DELETE /api/tasks/{id}')?.responses ?? {}))
    assert.ok('503' in (operations.get('GET /ready')?.responses ?? {}))
    const listParameters = operations.get('GET /api/tasks')?.parameters?.filter((parameter) => parameter.in === 'query')
    assert.deepEqual(listParameters?.map((parameter) => parameter.name).sort(), [
      'limit',
      'offset',
      'order',
      'sort',
      'status',
    ])
  })

  void test('/openapi.json documents the X-Total-Count header of the list', async () => {
    const list = operationsOf(await openApiDocument(app)).get('GET /api/tasks')
    const headers = list?.responses['200']?.headers ?? {}
    assert.deepEqual(Object.keys(headers), ['X-Total-Count'])
  })

  void test('/docs is an HTML page whose CSP permits its own scripts and inline styles, and whose assets and document load', async () => {
    let url = '/docs'
    let page = await app.inject({ method: 'GET', url })
    for (let hops = 0; page.statusCode >= 300 && page.statusCode < 400 && hops < 5; hops++) {
      url = new URL(String(page.headers.location), `http://localhost${url}`).pathname
      page = await app.inject({ method: 'GET', url })
    }
    assert.equal(page.statusCode, 200, page.body)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    assert.match(page.body, /<html/i)
    assertSecurityHeaders(page, url)

    const csp = cspDirectives(page.headers['content-security-policy'])
    const scriptSources = csp.get('script-src') ?? csp.get('default-src') ?? []
    assert.ok(scriptSources.includes("'self'"), `script-src: ${scriptSources.join(' ')}`)
    assert.ok(!scriptSources.includes("'unsafe-eval'"), 'no eval')
    assert.deepEqual(csp.get('frame-ancestors'), ["'none'"], 'the docs page cannot be framed either')

    // Under a CSP without 'unsafe-inline', only same-origin script files run: the page must have no inline script.
    const scripts = [...page.body.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)]
    assert.ok(scripts.length > 0)
    for (const [, attributes = '', body = ''] of scripts) {
      assert.match(attributes, /\bsrc=/, 'no inline script')
      assert.equal(body.trim(), '')
    }
    const base = `http://localhost${url}`
    const assets = [...page.body.matchAll(/\b(?:src|href)="([^"]+)"/gi)].map((match) => new URL(match[1] ?? '', base))
    assert.ok(
      assets.some((asset) => asset.pathname.endsWith('.js')) && assets.some((asset) => asset.pathname.endsWith('.css')),
    )
    const scriptFiles: string[] = []
    for (const asset of assets) {
      assert.equal(asset.origin, 'http://localhost', `${asset.href} is same-origin, as the CSP requires`)
      const response = await app.inject({ method: 'GET', url: asset.pathname })
      assert.equal(response.statusCode, 200, asset.pathname)
      assert.ok(response.rawPayload.length > 0, asset.pathname)
      if (asset.pathname.endsWith('.js')) scriptFiles.push(response.body)
    }

    // Inline styles: those in the page, and the <style> elements its scripts render (React's compiled
    // createElement("style", null, "…"): the Swagger logo's). Each is allowed by its hash, never by 'unsafe-inline',
    // and the CSP names no hash of a style the page no longer has.
    const styleSources = csp.get('style-src') ?? csp.get('default-src') ?? []
    assert.ok(!styleSources.includes("'unsafe-inline'"), `style-src: ${styleSources.join(' ')}`)
    const inlineStyles = [
      ...[...page.body.matchAll(/<style\b[^>]*>([\s\S]*?)<\/style>/gi)].map((match) => match[1] ?? ''),
      ...scriptFiles.flatMap((body) =>
        [...body.matchAll(/createElement\("style",null,("(?:[^"\\]|\\.)*")\)/g)].map(
          (match) => JSON.parse(match[1] ?? '""') as string,
        ),
      ),
    ]
    assert.ok(inlineStyles.length > 0, 'the logo renders an inline style (if swagger-ui no longer does, drop its hash)')
    for (const style of inlineStyles)
      assert.ok(styleSources.includes(cspHashOf(style)), `style-src allows ${JSON.stringify(style)}`)
    assert.deepEqual(
      styleSources.filter((source) => source.startsWith("'sha256-")).sort(),
      [...new Set(inlineStyles.map(cspHashOf))].sort(),
      'no hash of a style the page does not have',
    )

    // The page renders the same document as /openapi.json.
    const initializer = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' })
    assert.equal(initializer.statusCode, 200)
    const rendered = await app.inject({ method: 'GET', url: '/docs/json' })
    assert.equal(rendered.statusCode, 200)
    assert.deepEqual(rendered.json(), await openApiDocument(app))
  })

  // --------------------------------------------------------------------------------- /health, /ready

  void test('/health answers 200 {"status":"ok"} without a token', async () => {
    const response = await app.inject({ method: 'GET', url: '/health' })
    assert.deepEqual([response.statusCode, response.json()], [200, { status: 'ok' }])
    assert.match(String(response.headers['content-type']), /^application\/json/)
    const withBadToken = await app.inject({
      method: 'GET',
      url: '/health',
      headers: { authorization: 'Bearer garbage' },
    })
    assert.deepEqual(
      [withBadToken.statusCode, withBadToken.json()],
      [200, { status: 'ok' }],
      'a bad token does not matter outside /api',
    )
  })

  void test('/ready answers 200 {"status":"ok"} without a token while the database works', async () => {
    const response = await app.inject({ method: 'GET', url: '/ready' })
    assert.deepEqual([response.statusCode, response.json()], [200, { status: 'ok' }])
  })
})

// ------------------------------------------------------------------------------- over a real socket

void describe('over a real socket, one listening app', () => {
  let app: FastifyInstance
  let logs: string[]
  let port: number
  before(async () => {
    ;({ app, logs } = await openTestApp())
    port = await listenOnLoopback(app)
  })
  after(() => app.close())

  void test('an X-Request-Id with raw UTF-8 bytes, sent over a real socket, is replaced', async () => {
    const raw = (
      await rawExchange(
        port,
        Buffer.from(
          'GET /health HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: req-\u00fcnic\u00f8de-\u{1F600}\r\nConnection: close\r\n\r\n',
          'utf8',
        ),
      )
    ).toString('latin1')
    assert.match(raw, /^HTTP\/1\.1 200 /)
    const echoed = /^x-request-id: (.*)$/im.exec(raw)?.[1]?.trim() ?? ''
    assert.match(echoed, UUID)
    assert.ok(logLinesOf(logs, echoed).length >= 2)
  })

  void test('two Authorization headers are 400 invalid_request (RFC 6750), whichever one a proxy would have kept', async () => {
    const [alice, bob] = [await tokenFor('user_alice_dup'), await tokenFor('user_bob_dup')]
    for (const second of [`Bearer ${bob}`, `Bearer ${alice}`, 'Basic eDp5']) {
      const raw = (
        await rawExchange(
          port,
          `GET /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${alice}\r\nauthorization: ${second}\r\nConnection: close\r\n\r\n`,
        )
      ).toString('utf8')
      assert.match(raw, /^HTTP\/1\.1 400 /, raw)
      assert.match(raw, /\r\nwww-authenticate: Bearer error="invalid_request"\r\n/i, raw)
      assert.ok(raw.endsWith('{"detail":"Send exactly one Authorization header"}'), raw)
    }
  })

  void test('a client that aborts its upload is logged as such, never as a database outage', async () => {
    const token = await tokenFor('user_aborting')
    await new Promise<void>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(
          `POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"title":`,
        )
        setTimeout(() => socket.destroy(), 300)
      })
      socket.on('close', () => resolve())
      socket.on('error', reject)
    })
    // The server notices the abort asynchronously: wait (bounded) for its log line.
    for (
      let waited = 0;
      waited < 5000 && !logs.some((line) => line.includes('client closed the connection'));
      waited += 50
    ) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    assert.ok(
      logs.some((line) => line.includes('client closed the connection')),
      logs.join('\n'),
    )
    assert.ok(!logs.some((line) => /database unavailable|"level":50/.test(line)), logs.join('\n'))
  })
})

// ----------------------------------------------------------------------- apps of their own (closed, configured)

void test('while the server drains, the in-flight request is answered with Connection: close, and nothing answers in a foreign shape', async (t) => {
  const { app } = await buildTestApp(t)
  const port = await listenOnLoopback(app)
  const token = await tokenFor('user_closing')
  const body = '{"title":"in flight"}'
  const head = `POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`
  const socket = connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  await new Promise<void>((resolve) => socket.write(head + body.slice(0, 5), () => resolve()))
  await new Promise((resolve) => setTimeout(resolve, 200)) // the first request is now in flight
  const closed = app.close()
  await new Promise((resolve) => setTimeout(resolve, 100))
  socket.write(`${body.slice(5)}GET /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 5000))])
  socket.destroy()
  await closed
  const raw = Buffer.concat(chunks).toString('utf8')
  const answers = raw.split(/(?=HTTP\/1\.1 )/)
  assert.match(answers[0] ?? '', /^HTTP\/1\.1 201 /, raw)
  assert.match(answers[0] ?? '', /\r\nconnection: close\r\n/i, raw)
  // The pipelined request is never read (the connection closes after the in-flight answer, so a client may
  // retry it elsewhere), and never answered with Fastify's own 503 envelope.
  assert.equal(answers.length, 1, raw)
})

void test('/ready answers 503 {"status":"unavailable"} once the database is closed, while /health stays 200', async (t) => {
  const { app, database, logs } = await buildTestApp(t)
  await database.close()
  const response = await app.inject({ method: 'GET', url: '/ready' })
  assert.deepEqual([response.statusCode, response.json()], [503, { status: 'unavailable' }])
  assertSecurityHeaders(response, '/ready on a closed database')
  const warning = logLinesOf(logs, String(response.headers['x-request-id'])).find((line) => line.level === 40)
  assert.ok(warning !== undefined, 'the failed check is logged with the request id')
  const health = await app.inject({ method: 'GET', url: '/health' })
  assert.deepEqual([health.statusCode, health.json()], [200, { status: 'ok' }])
  const tasks = await app.inject({ method: 'GET', url: '/api/tasks', headers: await authHeaderFor('user_ready') })
  assert.equal(tasks.statusCode, 503, tasks.body)
})

// ------------------------------------------------------------------------------------ no token leaks

void test('no response and no log line contains a token, valid, invalid or expired, nor the secret', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { ...corsConfig, logLevel: 'trace' } })
  const valid = await tokenFor('user_leak')
  const badSignature = await signHs256(
    { sub: 'user_leak', iat: nowS(), exp: nowS() + 300 },
    { secret: 'not-the-secret-but-long-enough-0123456789' },
  )
  const expired = await signHs256({ sub: 'user_leak', iat: nowS() - 7200, exp: nowS() - 3600 })
  const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"user_leak"}').toString('base64url')}.`
  const tokens = [valid, badSignature, expired]
  const id = await createTask(app, { authorization: `Bearer ${valid}` })

  const responses: LightMyRequestResponse[] = []
  for (const token of [...tokens, unsigned]) {
    const authorizations = [`Bearer ${token}`, `bearer  ${token}`, `Token ${token}`, `Bearer ${token} extra`]
    for (const authorization of authorizations) {
      const headers = { authorization, origin: ALLOWED }
      const requests: InjectOptions[] = [
        { method: 'GET', url: '/api/tasks?status=pending', headers },
        { method: 'POST', url: '/api/tasks', headers, payload: { title: 'Leak check' } },
        { method: 'POST', url: '/api/tasks', headers, payload: { title: 7, extra: true } },
        {
          method: 'POST',
          url: '/api/tasks',
          headers: { ...headers, 'content-type': 'application/json' },
          payload: '{bad json',
        },
        { method: 'POST', url: '/api/tasks', headers: { ...headers, 'content-type': 'text/plain' }, payload: 'x' },
        { method: 'GET', url: `/api/tasks/${id}`, headers },
        { method: 'PUT', url: `/api/tasks/${id}`, headers, payload: { description: 'd' } },
        { method: 'PATCH', url: `/api/tasks/${id}/complete`, headers },
        { method: 'DELETE', url: '/api/tasks/999999', headers },
        { method: 'GET', url: '/api/tasks/abc', headers },
        { method: 'GET', url: '/api/unknown', headers },
        { method: 'GET', url: '/ready', headers },
        // Tokens put where the service never reads them still stay out of the logs.
        { method: 'GET', url: `/api/tasks?access_token=${token}&limit=5`, headers },
        { method: 'GET', url: `/api/tasks/${token}`, headers },
        { method: 'GET', url: `/health?token=${token}` },
        {
          ...preflight('/api/tasks', ALLOWED),
          headers: { ...preflight('/api/tasks', ALLOWED).headers, authorization },
        },
      ]
      for (const request of requests) responses.push(await app.inject(request))
    }
  }
  assert.ok(responses.some((response) => response.statusCode === 200))
  assert.ok(
    responses.some(
      (response) => response.statusCode === 401 && response.json<{ detail: string }>().detail === 'Token expired',
    ),
  )
  assert.ok(logs.length > 100, `trace logging captured ${logs.length} lines`)

  const secrets = [TEST_SECRET]
  for (const token of [...tokens, unsigned]) {
    const [header = '', payload = '', signature = ''] = token.split('.')
    secrets.push(token, `${header}.${payload}`, payload)
    if (signature !== '') secrets.push(signature)
  }
  for (const secret of secrets) {
    for (const response of responses) {
      assert.ok(!response.body.includes(secret), `a ${response.statusCode} body contains a token part`)
      assert.ok(
        !JSON.stringify(response.headers).includes(secret),
        `a ${response.statusCode} response header contains a token part`,
      )
    }
    const leaking = logs.find((line) => line.includes(secret))
    assert.equal(leaking, undefined, 'a log line contains a token part')
  }
})
