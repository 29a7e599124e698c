// The pg Pool the service reaches a PostgreSQL server through, with the time limits and the one safe retry of
// docs/operations.md "Failure behaviour". Statement time limits are enforced by this client with PostgreSQL's
// CancelRequest, which poolers forward, not by `statement_timeout` (docs/decisions/client-side-statement-timeout.md).
import pg from 'pg'
import { isConnectionLost, isStaleCachedPlan } from './pg-errors.ts'

/** Time limits for one connection's statements, in ms. */
export interface StatementLimits {
  /** Past this, the statement is cancelled on the server (DATABASE_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs: number
  /** Limit on opening a connection, the cancel request's included (DATABASE_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs: number
}

/**
 * How long a statement may still take after its cancel request was sent before its connection is dropped: a
 * reachable server answers a cancel within milliseconds, so silence means the network or the server is gone.
 */
export const CANCEL_GRACE_MS = 1000

/** The pg Client fields this module needs that @types/pg does not declare (stable since pg 8.0). */
interface ClientInternals {
  processID: number | null
  secretKey: number | null
  host: string
  port: number
  ssl: unknown
  sslNegotiation: unknown
  connection: { stream: { destroyed: boolean; writable: boolean; destroy(error?: Error): void } }
}

/** The parts of pg's protocol Connection used to send a CancelRequest. */
interface CancelConnection {
  stream: { destroy(): void }
  connect(port: number | string, host?: string): void
  requestSsl(): void
  cancel(processID: number, secretKey: number): void
  on(event: string, listener: (...args: unknown[]) => void): void
  once(event: string, listener: (...args: unknown[]) => void): void
}

/** Raised instead of sending a statement on a connection that is already closed: it never reached the database. */
export class StatementNotSentError extends Error {
  /** @public Read by `isDatabaseUnavailable` (pg-errors.ts) like a driver's code: this is an outage, so 503. */
  readonly code = 'ECONNRESET'
  constructor() {
    super('the database connection was closed before the statement was sent')
    this.name = 'StatementNotSentError'
  }
}

/** Raised when a cancelled statement's connection stays silent past CANCEL_GRACE_MS: the connection is dropped. */
export class StatementTimeoutError extends Error {
  /** @public Read by `isDatabaseUnavailable` (pg-errors.ts) like a driver's code: this is an outage, so 503. */
  readonly code = 'ETIMEDOUT'
  constructor(statementTimeoutMs: number) {
    super(
      `the database did not answer within ${statementTimeoutMs} ms, nor ${CANCEL_GRACE_MS} ms after the cancel request`,
    )
    this.name = 'StatementTimeoutError'
  }
}

type Callback = (error: Error | null, result?: unknown) => void
type QueryFunction = (config: unknown, values?: unknown, callback?: unknown) => unknown

function isSubmittable(config: unknown): boolean {
  return typeof config === 'object' && config !== null && typeof (config as { submit?: unknown }).submit === 'function'
}

/**
 * Puts `limits` on every statement of one client, whatever sends it (the pool, a transaction, the migrator): at
 * `statementTimeoutMs` a CancelRequest goes to the server, which then fails the statement with SQLSTATE 57014; if
 * nothing comes back within CANCEL_GRACE_MS the socket is destroyed and the statement fails with
 * StatementTimeoutError. A statement asked of a client whose socket is already closed fails with
 * StatementNotSentError without being sent. Cursor-style (submittable) queries pass through unlimited.
 */
export function limitStatements(client: pg.ClientBase, limits: StatementLimits): void {
  const internals = client as unknown as ClientInternals
  const query = client.query.bind(client) as QueryFunction
  const limited: QueryFunction = (config, values, callback) => {
    if (isSubmittable(config)) return query(config, values, callback)
    const done = (typeof values === 'function' ? values : callback) as Callback | undefined
    const params = typeof values === 'function' ? undefined : values
    const stream = internals.connection.stream
    if (stream.destroyed || !stream.writable) {
      const error = new StatementNotSentError()
      if (done === undefined) return Promise.reject(error)
      process.nextTick(() => done(error))
      return undefined
    }
    let dropTimer: NodeJS.Timeout | undefined
    const cancelTimer = setTimeout(() => {
      sendCancelRequest(internals, limits.connectTimeoutMs)
      dropTimer = setTimeout(
        () => stream.destroy(new StatementTimeoutError(limits.statementTimeoutMs)),
        CANCEL_GRACE_MS,
      )
    }, limits.statementTimeoutMs)
    const settle = (): void => {
      clearTimeout(cancelTimer)
      clearTimeout(dropTimer)
    }
    if (done !== undefined) {
      return query(config, params, (error: Error | null, result?: unknown) => {
        settle()
        done(error, result)
      })
    }
    const result = query(config, params) as Promise<unknown>
    result.then(settle, settle)
    return result
  }
  client.query = limited as unknown as typeof client.query
}

/**
 * Asks the server to cancel whatever `client`'s backend is running (PostgreSQL's CancelRequest, over TLS when the
 * client uses it). Best effort, bounded by `timeoutMs`: when it cannot be delivered, the caller drops the connection.
 */
function sendCancelRequest(client: ClientInternals, timeoutMs: number): void {
  const { processID, secretKey } = client
  if (processID === null || secretKey === null) return
  const Connection = pg.Connection as unknown as new (config: {
    ssl: unknown
    sslNegotiation: unknown
  }) => CancelConnection
  const connection = new Connection({ ssl: client.ssl, sslNegotiation: client.sslNegotiation })
  const timer = setTimeout(() => connection.stream.destroy(), timeoutMs)
  const cancel = (): void => connection.cancel(processID, secretKey)
  connection.on('error', () => connection.stream.destroy())
  connection.once('end', () => clearTimeout(timer))
  connection.once('connect', () => {
    if (client.ssl === false) cancel()
    else if (client.sslNegotiation !== 'direct') connection.requestSsl()
  })
  connection.once('sslconnect', cancel)
  if (client.host.startsWith('/')) connection.connect(`${client.host}/.s.PGSQL.${client.port}`)
  else connection.connect(client.port, client.host)
}

/** The SQL text of a query given as text or as a config object. */
function textOf(config: unknown): string {
  if (typeof config === 'string') return config
  const text = (config as { text?: unknown } | null)?.text
  return typeof text === 'string' ? text : ''
}

/**
 * Whether a statement that failed with `error` may be sent again on another connection: only when the connection
 * was lost, and either the statement was never sent or it only reads (a SELECT run twice changes nothing). A write
 * that may have reached the server is never repeated: its caller gets 503 and decides.
 */
export function mayRetry(config: unknown, error: unknown): boolean {
  if (error instanceof StatementNotSentError) return true
  return isConnectionLost(error) && /^\s*select\b/i.test(textOf(config))
}

/** Options of `createPool`: the pg Pool's, the statement limits, and where idle connections' errors go. */
export interface PoolSettings extends StatementLimits {
  connectionString: string
  max: number
  /** Errors of idle pooled connections (a server restart, Neon suspending): reported, never thrown. */
  onIdleError?: (error: Error) => void
}

/**
 * A pg Pool whose connections carry `limitStatements`, whose clients' late socket errors never crash the process,
 * and whose `query` (what Drizzle uses outside transactions) retries once where `mayRetry` allows.
 */
export function createPool(settings: PoolSettings): pg.Pool {
  const pool = new pg.Pool({
    connectionString: settings.connectionString,
    max: settings.max,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
  })
  pool.on('error', (error) => settings.onIdleError?.(error))
  pool.on('connect', (client) => {
    // A socket error on a checked-out client between two statements (inside a transaction) would otherwise be an
    // unhandled 'error' event; the client is then unusable, its next statement fails and the pool drops it.
    client.on('error', () => undefined)
    limitStatements(client, settings)
  })
  const query = pool.query.bind(pool) as QueryFunction
  const retrying: QueryFunction = (config, values, callback) => {
    if (typeof values === 'function' || callback !== undefined || isSubmittable(config))
      return query(config, values, callback)
    // Once, or, for a stale prepared statement, once per pooled connection: each may hold it, and pg drops the
    // connection an attempt failed on, so the statement is prepared afresh on another.
    const retryAfter =
      (staleLeft: number) =>
      (error: unknown): Promise<unknown> => {
        if (isStaleCachedPlan(error) && staleLeft > 0)
          return (query(config, values) as Promise<unknown>).catch(retryAfter(staleLeft - 1))
        if (!mayRetry(config, error)) throw error
        return query(config, values) as Promise<unknown>
      }
    return (query(config, values) as Promise<unknown>).catch(retryAfter(settings.max))
  }
  pool.query = retrying as unknown as typeof pool.query
  return pool
}
