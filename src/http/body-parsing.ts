// Which request bodies are read, and how: JSON in UTF-8 only, within BODY_LIMIT_BYTES.
import type { FastifyInstance } from 'fastify'
import { answers } from './answers.ts'

/** Largest accepted request body: 64 KiB (docs/contract.md "Errors": past it, 413). */
export const BODY_LIMIT_BYTES = 64 * 1024

/** Decodes UTF-8 strictly: invalid bytes throw instead of silently becoming U+FFFD. A BOM is dropped. */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Bodies: JSON in UTF-8 only (RFC 8259 §8.1), at most 64 KiB (413), `__proto__` and `constructor.prototype`
 * refused (400). Another media type, charset or a `Content-Encoding` is 415; bytes that are not UTF-8 are 400,
 * never stored altered. An empty body counts as no body whatever its Content-Type, as clients send on DELETE
 * (`fetch` with `body: ''` says text/plain). A body must be a JSON object, as every route's is: a top-level
 * `null`, array or scalar is refused here with the 422 schema validation would give, so no route can read a
 * `null` body as an absent one.
 */
export function installBodyParsing(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES },
    (request, body, done) => {
      if (body.length === 0) return done(null, undefined)
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase()
      if (
        (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') ||
        isEncoded(request.headers['content-encoding'])
      ) {
        return done(answers.unsupportedMediaType)
      }
      let text: string
      try {
        text = STRICT_UTF8.decode(body as Buffer)
      } catch {
        return done(answers.bodyNotUtf8)
      }
      void parseJson(request, text, (error, value: unknown) => {
        if (error === null && (typeof value !== 'object' || value === null || Array.isArray(value)))
          done(answers.bodyNotObject)
        else done(error, value)
      })
    },
  )
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES }, (_request, body, done) => {
    if (body.length === 0) done(null, undefined)
    else done(answers.unsupportedMediaType)
  })
}

/** True for a `Content-Encoding` other than identity: compressed bodies are not accepted. */
function isEncoded(contentEncoding: string | undefined): boolean {
  return (
    contentEncoding !== undefined &&
    contentEncoding.trim().toLowerCase() !== 'identity' &&
    contentEncoding.trim() !== ''
  )
}
