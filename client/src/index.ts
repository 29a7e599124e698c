// The typed client of the Tasks API: openapi-fetch over the types generated from the service's /openapi.json
// (schema.ts), with a middleware that attaches the caller's Bearer token and, once per request, fetches a fresh one
// when the API answers that the token was refused (RFC 6750 §3).
import createClient, { type Client, type Middleware } from 'openapi-fetch'
import type { paths } from './schema.ts'
import { isInvalidTokenChallenge } from './www-authenticate.ts'

export type { paths } from './schema.ts'

/** How `createTasksClient` reaches the API and gets the user's token. */
export interface TasksClientOptions {
  /** The API's origin, e.g. 'http://localhost:8000'. */
  baseUrl: string
  /**
   * Returns a fresh token (Better Auth: `async () => (await authClient.token()).data?.token ?? null`). Called when
   * the client holds no token, and once more after a 401 with WWW-Authenticate error="invalid_token".
   */
  getToken: () => Promise<string | null>
  /** Optional fetch (tests, SSR). */
  fetch?: typeof fetch
}

/** The client `createTasksClient` returns: `api.GET('/api/tasks', …)`, `api.POST(…)`, … typed by the document. */
export type TasksClient = Client<paths>

/** A task as every task response carries it. */
export type Task = paths['/api/tasks/{id}']['get']['responses'][200]['content']['application/json']
/** The body of `POST /api/tasks`. */
export type TaskCreate = paths['/api/tasks']['post']['requestBody']['content']['application/json']
/** The body of `PUT /api/tasks/{id}`: any of its fields; `description: null` clears it. */
export type TaskUpdate = paths['/api/tasks/{id}']['put']['requestBody']['content']['application/json']
/** The query of `GET /api/tasks`: filter, sort and page. */
export type TaskListQuery = NonNullable<paths['/api/tasks']['get']['parameters']['query']>

/**
 * The client of the API at `options.baseUrl`: every `/api` request carries `Authorization: Bearer <token>` from
 * `options.getToken`, and none carries cookies (`credentials: 'omit'`: the API reads no cookie, and a credentialed
 * request would need CORS to allow credentials, which it does not).
 *
 * A request answered 401 with `WWW-Authenticate: Bearer error="invalid_token"` (expired or refused token) is sent
 * again once, body included, with the token a new `getToken()` call returns; requests refused together share that one
 * call. A 401 without that error (no token: `Not authenticated`) and the answer to the retry are returned as they
 * are. Errors thrown by `getToken` or by fetch reach the caller.
 */
export function createTasksClient(options: TasksClientOptions): TasksClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl,
    credentials: 'omit',
    // Left out when absent: consumers compile this source, maybe with exactOptionalPropertyTypes (client/tsconfig.json)
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  })
  client.use(bearerTokenMiddleware(options.getToken))
  return client
}

/** The middleware of `createTasksClient`; one per client, since it holds that client's token. */
function bearerTokenMiddleware(getToken: () => Promise<string | null>): Middleware {
  /** The token requests carry; null while the client holds none (never asked, signed out, or refused). */
  let token: string | null = null
  /** A getToken() call in flight: every request that needs a token meanwhile waits for this one. */
  let pending: Promise<string | null> | undefined
  /** Each request sent with a token: an unsent copy of it (its body still readable) and the token it carried. */
  const sent = new WeakMap<Request, { copy: Request; token: string }>()

  const refresh = (): Promise<string | null> =>
    (pending ??= getToken()
      .then((fresh) => (token = fresh))
      .finally(() => (pending = undefined)))

  return {
    async onRequest({ request, schemaPath }) {
      // Only /api needs a token: /health and /ready must not make a signed-out page ask for one.
      if (!schemaPath.startsWith('/api/')) return undefined
      const bearer = token ?? (await refresh())
      if (bearer === null) return undefined
      request.headers.set('Authorization', `Bearer ${bearer}`)
      // Copied before fetch reads the body: a POST or PUT retried after a 401 sends the same body again.
      sent.set(request, { copy: request.clone(), token: bearer })
      return request
    },
    async onResponse({ request, response, options }) {
      const attempt = sent.get(request)
      if (attempt === undefined || response.status !== 401) return undefined
      if (!isInvalidTokenChallenge(response.headers.get('WWW-Authenticate'))) return undefined
      sent.delete(request)
      // The first request to learn that its token was refused drops it; the others refused with the same token then
      // find the refresh in flight (or its result) and share it, so getToken() runs once for all of them.
      if (token === attempt.token) token = null
      // The refused answer is not read: cancelling its body frees the connection for the retry. Before the refresh,
      // so that a getToken that throws does not leave it holding its connection.
      await response.body?.cancel()
      const bearer = token ?? (await refresh())
      const retry = attempt.copy
      if (bearer === null) retry.headers.delete('Authorization')
      else retry.headers.set('Authorization', `Bearer ${bearer}`)
      // openapi-fetch's fetch is the page's own, unbound: called as a method of `options`, a browser throws
      // "Illegal invocation" (Node does not care), so it is called on its own.
      const send = options.fetch
      return send(retry)
    },
  }
}

/**
 * A new `Idempotency-Key` for one create: a random UUID. Keep it with the pending create and send the same key on
 * every retry of it (a repeat within 24 hours replays the first answer, with `Idempotent-Replayed: true`).
 * `crypto.randomUUID` needs a secure context in a browser (https, or http on localhost).
 */
export function newIdempotencyKey(): string {
  return crypto.randomUUID()
}

/**
 * The `ETag` of a task response: what a write's `If-Match` takes, as is (`header: { 'if-match': etagOf(response) }`).
 * @throws Error when the response has none (an error answer, or a proxy that dropped it): a write meant to be
 *   conditional must not silently become unconditional.
 */
export function etagOf(response: Response): string {
  const etag = response.headers.get('ETag')
  if (etag === null) throw new Error(`the ${response.status} response to ${response.url} carries no readable ETag`)
  return etag
}

/** `X-Total-Count` of a `GET /api/tasks` response: how many tasks match its filter, on every page; else undefined. */
export function totalCountOf(response: Response): number | undefined {
  const value = response.headers.get('X-Total-Count')
  return value === null || !/^\d+$/.test(value) ? undefined : Number(value)
}
