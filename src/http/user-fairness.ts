// A fair share of the database per user in each process: at most N of one user's /api requests run at once, the
// rest wait briefly in a queue of their own, then get 429. One user flooding cannot take every pooled connection.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { answers } from './answers.ts'

/** The per-user limits, from `DATABASE_MAX_IN_FLIGHT_PER_USER` and `DATABASE_PER_USER_WAIT_MS` (src/config.ts). */
export interface UserFairnessOptions {
  /** How many of one user's requests may run at once (≥ 1). */
  maxInFlight: number
  /** How long, in ms, a request over that waits for a turn before it is refused (0: refused at once). */
  maxWaitMs: number
}

/** One user's requests: how many run, and the waiting ones' wake-up calls, first come first served. */
interface UserLane {
  running: number
  waiting: Array<() => void>
}

/**
 * Installs the gate on `api` (the authenticated /api scope; `request.userId` must be set by then). It runs as the
 * last preHandler, after body parsing and validation, so a request that is refused anyway (401, 413, 422) never takes
 * a turn, and a slow upload does not hold one. A turn ends when the response is sent (onSend: the handler's database
 * work is done) or, at the latest, when the connection closes: a client that hangs up frees its turn at once, even if
 * its statement still runs. Refused requests get 429 `{"detail": "Too many requests"}` with `Retry-After: 1`.
 */
export function installUserFairness(api: FastifyInstance, { maxInFlight, maxWaitMs }: UserFairnessOptions): void {
  const lanes = new Map<string, UserLane>()
  const turnEnds = new WeakMap<FastifyRequest, () => void>()

  /** Ends one turn of `userId`: hands it to their oldest waiting request, or forgets an idle user. */
  const release = (userId: string, lane: UserLane): void => {
    const next = lane.waiting.shift()
    if (next !== undefined) return next()
    lane.running -= 1
    if (lane.running === 0) lanes.delete(userId)
  }

  /** Gives `request` its turn: ends once, whichever of onSend and the connection's close comes first. */
  const start = (request: FastifyRequest, reply: FastifyReply, userId: string, lane: UserLane): void => {
    let ended = false
    const end = (): void => {
      if (ended) return
      ended = true
      reply.raw.off('close', end)
      release(userId, lane)
    }
    turnEnds.set(request, end)
    reply.raw.once('close', end)
  }

  api.addHook('preHandler', (request, reply, done) => {
    const userId = request.userId
    let lane = lanes.get(userId)
    if (lane === undefined) lanes.set(userId, (lane = { running: 0, waiting: [] }))
    if (lane.running < maxInFlight) {
      lane.running += 1
      start(request, reply, userId, lane)
      return done()
    }
    if (maxWaitMs === 0) return done(answers.tooManyRequests)
    const waitingLane = lane
    // A turn handed over keeps `running` as it is: the finishing request's count passes to this one.
    const wake = (): void => {
      clearTimeout(timer)
      reply.raw.off('close', giveUp)
      start(request, reply, userId, waitingLane)
      done()
    }
    const leaveQueue = (): void => {
      const index = waitingLane.waiting.indexOf(wake)
      if (index !== -1) waitingLane.waiting.splice(index, 1)
      reply.raw.off('close', giveUp)
    }
    // A client that hangs up while waiting leaves the queue; its request is never run.
    const giveUp = (): void => {
      clearTimeout(timer)
      leaveQueue()
    }
    const timer = setTimeout(() => {
      leaveQueue()
      done(answers.tooManyRequests)
    }, maxWaitMs)
    waitingLane.waiting.push(wake)
    reply.raw.once('close', giveUp)
  })

  api.addHook('onSend', (request, _reply, payload, done) => {
    turnEnds.get(request)?.()
    done(null, payload)
  })
}
