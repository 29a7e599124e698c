// A browser page on an origin CORS refuses sees only "Failed to fetch": the service says which origin it refused, in
// the log, rate-limited so a scanner cannot flood it (docs/decisions/cors-refusal-log.md).
import type { FastifyInstance } from 'fastify'
import { loggableText } from './request-log.ts'

/** How often refused origins may be logged: per `windowMs` (ms), each origin once, and `maxLines` lines in all. */
interface RefusalLogLimits {
  windowMs?: number
  maxLines?: number
  /** The clock, in ms since the epoch (tests inject one). */
  now?: () => number
}

/** Decides which refusals are logged. */
export interface RefusalLogLimiter {
  /**
   * Called once per refusal of `origin`: null when it is not to be logged (its origin was logged within the window, or
   * the window already holds `maxLines` lines), else how many refusals were left out since the last line logged.
   */
  admit(origin: string): number | null
}

/**
 * A limiter over a sliding window (default: each distinct origin at most once a minute, at most 10 lines a minute
 * in all). It remembers only the origins logged within the window, so its memory is bounded by `maxLines`.
 */
export function createRefusalLogLimiter({
  windowMs = 60_000,
  maxLines = 10,
  now = Date.now,
}: RefusalLogLimits = {}): RefusalLogLimiter {
  /** Origin → when its line was logged; only lines within the window. */
  const logged = new Map<string, number>()
  let suppressed = 0
  return {
    admit(origin) {
      const at = now()
      for (const [loggedOrigin, loggedAt] of logged) if (at - loggedAt >= windowMs) logged.delete(loggedOrigin)
      if (logged.has(origin) || logged.size >= maxLines) {
        suppressed += 1
        return null
      }
      logged.set(origin, at)
      const leftOut = suppressed
      suppressed = 0
      return leftOut
    },
  }
}

/** True when `origin` names the host the request was sent to: a same-origin request (the /docs page) needs no CORS. */
function isSameOrigin(origin: string, host: string | undefined): boolean {
  return host !== undefined && URL.canParse(origin) && new URL(origin).host === host.toLowerCase()
}

/**
 * Logs, at info by the request's logger, `CORS origin refused` with `origin` (through `loggableText`: capped at 200
 * characters; `[redacted]` if it could be a credential) for a request, preflight or not, whose `Origin` is not one of
 * `allowedOrigins`, within the limiter's limits; `suppressed` is added when refusals were left out since the last
 * line. Register before @fastify/cors, whose hook answers the preflight.
 */
export function installCorsRefusalLog(
  app: FastifyInstance,
  allowedOrigins: readonly string[],
  limiter: RefusalLogLimiter = createRefusalLogLimiter(),
): void {
  const allowed = new Set(allowedOrigins)
  app.addHook('onRequest', (request, _reply, done) => {
    const { origin, host } = request.headers
    if (origin !== undefined && !allowed.has(origin) && !isSameOrigin(origin, host)) {
      const suppressed = limiter.admit(origin)
      if (suppressed !== null)
        request.log.info(
          { origin: loggableText(origin), ...(suppressed > 0 ? { suppressed } : {}) },
          'CORS origin refused',
        )
    }
    done()
  })
}
