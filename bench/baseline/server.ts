// The bare baseline the service is measured against (issue 6): node:http, a pg Pool with named prepared
// statements, HS256 checked with node:crypto's HMAC, JSON.stringify of the rows, and the service's SQL.
// No framework, no logging, no validation beyond parsing: it exists only to be measured against.
// Configured by the harness through PORT, HOST, DATABASE_URL, DATABASE_POOL_MAX and BETTER_AUTH_SECRET.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import pg from 'pg'
import { CREATE, GET, LIST, TOGGLE, UPDATE_TITLE_COMPLETED } from './statements.ts'

const env = process.env
const secret = env.BETTER_AUTH_SECRET ?? ''
const INT8 = 20
/** The service's default MAX_TASKS_PER_USER, sent as the service sends it. */
const MAX_TASKS_PER_USER = 10_000
const defaultParser = pg.types.getTypeParser as (oid: number, format?: 'text' | 'binary') => (value: string) => unknown

const pool = new pg.Pool({
  connectionString: env.DATABASE_URL,
  max: Number(env.DATABASE_POOL_MAX ?? 10),
  // bigint ids and counts as JSON numbers, as the service shows them; timestamps stay Dates (JSON gives ISO 8601).
  types: {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8 ? Number : defaultParser(oid, format)) as typeof pg.types.getTypeParser,
  },
})
pool.on('error', () => undefined)

/**
 * The caller's id from `Bearer <HS256 JWT>`: HMAC-SHA256 compared in constant time, then alg, exp and sub; null if
 * anything is off.
 */
function userIdOf(authorization: string | undefined): string | null {
  if (authorization === undefined || !authorization.startsWith('Bearer ')) return null
  const token = authorization.slice(7)
  const firstDot = token.indexOf('.')
  const secondDot = token.indexOf('.', firstDot + 1)
  if (firstDot < 0 || secondDot < 0) return null
  const expected = createHmac('sha256', secret).update(token.slice(0, secondDot)).digest()
  const given = Buffer.from(token.slice(secondDot + 1), 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, firstDot), 'base64url').toString('utf8')) as { alg?: unknown }
    if (header.alg !== 'HS256') return null
    const payload = JSON.parse(Buffer.from(token.slice(firstDot + 1, secondDot), 'base64url').toString('utf8')) as {
      sub?: unknown
      exp?: unknown
    }
    if (typeof payload.exp !== 'number' || payload.exp <= Date.now() / 1000) return null
    return typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : null
  } catch {
    return null
  }
}

function send(
  response: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string | number> = {},
): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers })
  response.end(body)
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return chunks.length === 0 ? {} : (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>)
}

const TASK_PATH = /^\/api\/tasks\/(\d+)(\/complete)?$/

async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = request.url ?? '/'
  if (url === '/health') return send(response, 200, '{"status":"ok"}')
  const userId = userIdOf(request.headers.authorization)
  if (userId === null) return send(response, 401, '{"detail":"Invalid token"}')
  const queryAt = url.indexOf('?')
  const path = queryAt < 0 ? url : url.slice(0, queryAt)
  const method = request.method

  if (path === '/api/tasks') {
    if (method === 'GET') {
      const query = new URLSearchParams(queryAt < 0 ? '' : url.slice(queryAt + 1))
      const limit = Number(query.get('limit') ?? 100)
      const offset = Number(query.get('offset') ?? 0)
      const result = await pool.query({
        name: 'list',
        text: LIST,
        values: [userId, userId, offset, userId, limit, offset],
      })
      const rows = result.rows as Record<string, unknown>[]
      const total = rows[0]?.coalesce ?? 0
      // The count rides on every row; undefined keeps the rows' shape and JSON.stringify leaves it out.
      for (const row of rows) row.coalesce = undefined
      return send(response, 200, JSON.stringify(rows), { 'x-total-count': total as number })
    }
    if (method === 'POST') {
      const body = await readJson(request)
      const result = await pool.query({
        name: 'create',
        text: CREATE,
        values: [
          userId,
          0,
          0,
          userId,
          MAX_TASKS_PER_USER,
          body.title,
          body.description ?? null,
          body.completed ?? false,
        ],
      })
      const task = result.rows[0] as { id: number }
      return send(response, 201, JSON.stringify(task), { location: `/api/tasks/${task.id}` })
    }
  }

  const match = TASK_PATH.exec(path)
  if (match !== null) {
    const id = Number(match[1])
    let result: pg.QueryResult | undefined
    if (match[2] === undefined && method === 'GET')
      result = await pool.query({ name: 'get', text: GET, values: [userId, id] })
    else if (match[2] === undefined && method === 'PUT') {
      const body = await readJson(request)
      result = await pool.query({
        name: 'update',
        text: UPDATE_TITLE_COMPLETED,
        values: [body.title, body.completed, userId, id, null, null],
      })
    } else if (match[2] !== undefined && method === 'PATCH')
      result = await pool.query({ name: 'toggle', text: TOGGLE, values: [userId, id, null, null] })
    if (result !== undefined) {
      const row: unknown = result.rows[0]
      return row === undefined
        ? send(response, 404, '{"detail":"Task not found"}')
        : send(response, 200, JSON.stringify(row))
    }
  }
  send(response, 404, '{"detail":"Not Found"}')
}

const server = createServer((request, response) => {
  handle(request, response).catch((error: unknown) => {
    process.stderr.write(`baseline: ${error instanceof Error ? error.message : String(error)}\n`)
    if (!response.headersSent) send(response, 500, '{"detail":"Internal server error"}')
    else response.destroy()
  })
})
server.keepAliveTimeout = 72_000

function shutDown(): void {
  server.close()
  server.closeIdleConnections()
  void pool.end().then(() => process.exit(0))
}
process.on('SIGTERM', shutDown)
process.on('SIGINT', shutDown)
server.listen(Number(env.PORT ?? 8001), env.HOST ?? '127.0.0.1')
