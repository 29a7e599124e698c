// Where errors become answers: the error and not-found handlers of every route, and Fastify's errors before routing.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isDatabaseUnavailable } from '../db/pg-errors.ts'
import { answerOfFastifyError, answers, HttpError, sendAnswer, validationFailed } from './answers.ts'
import { toValidationIssues } from './validation.ts'

/**
 * Fastify's `frameworkErrors` option, for the errors it raises before routing (a URL it cannot decode, a path
 * segment past `maxParamLength`). Without it Fastify answers those in its own `{statusCode, error, message}`
 * envelope, echoing the path; the error handler is never reached from there, so this answers them itself.
 */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode ?? 500
  if (status >= 400 && status < 500) {
    void sendAnswer(reply, answerOfFastifyError(error.code, status))
    return
  }
  request.log.error({ cause: describeCause(error) }, 'unexpected framework error: answered 500')
  void sendAnswer(reply, answers.internalError)
}

/**
 * Installs the error and not-found handlers on the root instance, so every route and plugin shares them:
 * validation → 422 with `[{loc, msg, type}]`; HttpError → its status; an unreachable database → 503 with
 * `Retry-After`; Fastify's own 4xx → a fixed detail; anything else → 500, logged with the request id,
 * and nothing of the cause in the body.
 */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setNotFoundHandler(async (_request, reply) => sendAnswer(reply, answers.routeNotFound))

  app.setErrorHandler(async (error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) return sendAnswer(reply, error)
    if (request.raw.destroyed && !request.raw.complete) {
      // The client went away mid-request (an aborted upload): nobody to answer, and no fault of ours. `destroyed`
      // alone is not that: Node destroys a request as soon as its body has been read in full (autoDestroy), so every
      // later error of a request with a body (a 422 of its schema, say) would be taken for an abort.
      request.log.info({ cause: describeCause(error) }, 'client closed the connection before the request was read')
      return sendAnswer(reply, answers.requestAborted)
    }
    if (error.validation !== undefined) {
      return sendAnswer(
        reply,
        validationFailed(toValidationIssues(error.validationContext ?? 'body', error.validation)),
      )
    }
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ cause: describeCause(error) }, 'database unavailable: answered 503')
      return sendAnswer(reply, answers.serviceUnavailable)
    }
    const status = error.statusCode ?? 500
    if (status >= 400 && status < 500) {
      // The JSON parser's syntax errors (malformed JSON, a forbidden __proto__) have no Fastify code.
      const code = error.name === 'SyntaxError' ? 'FST_ERR_CTP_INVALID_JSON_BODY' : error.code
      return sendAnswer(reply, answerOfFastifyError(code, status))
    }
    request.log.error({ cause: describeCause(error) }, 'unexpected error: answered 500')
    return sendAnswer(reply, answers.internalError)
  })
}

/** The innermost error's name, code and message: enough to diagnose, with no SQL parameters or stack. */
function describeCause(error: unknown): { name: string; code?: string; message: string } {
  let current = error
  while (current instanceof Error && current.cause instanceof Error) current = current.cause
  if (!(current instanceof Error)) return { name: typeof current, message: String(current) }
  const code = (current as { code?: unknown }).code
  return { name: current.name, ...(typeof code === 'string' ? { code } : {}), message: current.message }
}
