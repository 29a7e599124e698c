// The one reader of database errors: SQLSTATE codes, Node socket codes, severities and driver messages, of pg and
// PGlite alike. Everywhere else asks these predicates what a failure means, so each code list exists once.

/** SQLSTATEs read below (PostgreSQL "Appendix A. PostgreSQL Error Codes"). */
const SQLSTATE = {
  featureNotSupported: '0A000',
  notNullViolation: '23502',
  lockNotAvailable: '55P03',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  idleSessionTimeout: '57P05',
} as const

/**
 * SQLSTATE classes of a database that cannot serve now: 08 connection exception, 53 insufficient resources (a full
 * disk is 53100), 57 operator intervention (57014 a cancelled statement, 57P01 a server shutting down).
 */
const UNAVAILABLE_CLASSES = /^(08|53|57)[0-9A-Z]{3}$/

/** Node's socket and DNS codes, and those of pg-pool.ts's own errors, that mean the server did not answer. */
const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
])

/** Messages of pg, pg-pool and PGlite errors that carry no code but mean the same. */
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error',
  'Cannot use a pool after calling end',
  'PGlite is closed',
  'not queryable',
]

/** Codes of a connection the server or the network ended: the server's shutdowns, and a reset or broken socket. */
const CONNECTION_ENDED_CODES = new Set<string>([
  SQLSTATE.adminShutdown,
  SQLSTATE.crashShutdown,
  SQLSTATE.cannotConnectNow,
  SQLSTATE.idleSessionTimeout,
  'ECONNRESET',
  'EPIPE',
])
const CONNECTION_ENDED_MESSAGES = ['Connection terminated unexpectedly', 'is not queryable']

/** Severities after which PostgreSQL ends its backend (FATAL) or the whole server (PANIC). */
const ENDING_SEVERITIES = new Set(['FATAL', 'PANIC'])

/** How deep a `cause` chain is searched: Drizzle wraps the driver's error once, pg's pool sometimes once more. */
const CAUSE_DEPTH = 5

/** `error` and the errors of its `cause` chain, outermost first. */
function* causes(error: unknown): Generator<Error> {
  for (let current = error, depth = 0; current instanceof Error && depth < CAUSE_DEPTH; depth++) {
    yield current
    current = current.cause
  }
}

/** The `code` of a driver or Node error (a SQLSTATE, or a Node code such as ECONNRESET), if it has one. */
function codeOf(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

/** True when `error` or an error in its `cause` chain has SQLSTATE `code`. */
function hasSqlState(error: unknown, code: string): boolean {
  for (const current of causes(error)) if (codeOf(current) === code) return true
  return false
}

/**
 * True when `error` (or its `cause` chain, as Drizzle wraps driver errors) means the database could not be reached
 * or did not answer in time: the request gets 503 with Retry-After, not 500 (docs/operations.md "Failure behaviour").
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (const current of causes(error)) {
    const code = codeOf(current)
    if (code !== undefined && (UNAVAILABLE_NODE_CODES.has(code) || UNAVAILABLE_CLASSES.test(code))) return true
    if (UNAVAILABLE_MESSAGES.some((message) => current.message.includes(message))) return true
  }
  return false
}

/**
 * True when `error`, as pg raised it, says the statement's connection was lost (the server ended it, or its socket
 * broke), rather than that the statement was slow or wrong: the statement may or may not have run.
 */
export function isConnectionLost(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = codeOf(error)
  if (code !== undefined && CONNECTION_ENDED_CODES.has(code)) return true
  return CONNECTION_ENDED_MESSAGES.some((message) => error.message.includes(message))
}

/**
 * True when PostgreSQL refused a prepared statement because a table it reads changed its row type since it was
 * prepared on this connection (0A000 "cached plan must not change result type"). It is raised at Bind, before the
 * statement ran, so sending it again on another connection is safe even for a write.
 */
export function isStaleCachedPlan(error: unknown): boolean {
  return (
    error instanceof Error &&
    codeOf(error) === SQLSTATE.featureNotSupported &&
    error.message.includes('cached plan must not change result type')
  )
}

/** True when `lock_timeout` ended a wait for another transaction's row (55P03 lock_not_available). */
export function isLockNotAvailable(error: unknown): boolean {
  return hasSqlState(error, SQLSTATE.lockNotAvailable)
}

/**
 * True when a statement wrote NULL into a NOT NULL column (23502 not_null_violation): how the capped create of
 * task-limit-store.ts refuses a task past MAX_TASKS_PER_USER.
 */
export function isNotNullViolation(error: unknown): boolean {
  return hasSqlState(error, SQLSTATE.notNullViolation)
}

/**
 * True when `error` has a severity after which PostgreSQL's backend is gone (FATAL, or PANIC: inside PGlite, a
 * PANIC such as a WAL write on a full disk ends the only backend, and it cannot be restarted in the process).
 */
export function endedTheBackend(error: unknown): error is Error {
  return error instanceof Error && ENDING_SEVERITIES.has(String((error as { severity?: unknown }).severity))
}
