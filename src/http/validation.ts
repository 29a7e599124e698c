// Request validation: the Ajv instances that check every request part against its route schema, and the mapping of
// Ajv's errors to the FastAPI-style entries of a 422 (docs/contract.md "Errors").
import type { FastifyInstance } from 'fastify'
import { Ajv } from 'ajv'
import type { ValidationIssue } from './answers.ts'

/**
 * The schema keyword that holds the 422 message of a failed `pattern` (a regular expression says nothing a client
 * can read). An annotation: Ajv validates nothing with it, `toValidationIssues` reads it, /openapi.json omits it.
 */
export const PATTERN_MESSAGE = 'patternMessage'

/** A schema of a string that must match `pattern`, with the `message` its 422 shows when it does not. */
export function patternWithMessage(pattern: string, message: string): { pattern: string; [PATTERN_MESSAGE]: string } {
  return { pattern, [PATTERN_MESSAGE]: message }
}

/**
 * Request validation with two Ajv instances (docs/decisions/request-coercion.md): bodies are never coerced and
 * keep unknown fields (so they are refused with 422, not dropped); query strings and path parameters are
 * text by nature, so plain decimal text becomes the schema's number (`textCoercionsOf`), and their
 * defaults are applied. `verbose` gives each error its schema, where `toValidationIssues` finds PATTERN_MESSAGE.
 */
export function installValidators(app: FastifyInstance): void {
  const common = { allErrors: true, allowUnionTypes: true, removeAdditional: false, verbose: true } as const
  const bodyAjv = new Ajv({ ...common, coerceTypes: false, useDefaults: false })
  const textAjv = new Ajv({ ...common, coerceTypes: false, useDefaults: true })
  for (const ajv of [bodyAjv, textAjv]) ajv.addKeyword({ keyword: PATTERN_MESSAGE, schemaType: 'string' })
  app.setValidatorCompiler(({ schema, httpPart }) => {
    if (httpPart === 'body') return bodyAjv.compile(schema)
    const validate = textAjv.compile(schema)
    const coercions = textCoercionsOf(schema)
    return (data: unknown) => {
      if (typeof data === 'object' && data !== null) {
        const values = data as Record<string, unknown>
        for (const [key, coerce] of coercions) {
          const text = values[key]
          const value = typeof text === 'string' ? coerce(text) : undefined
          if (value !== undefined) values[key] = value
        }
      }
      return validate(data) || { error: validate.errors ?? [] }
    }
  })
}

/** The only text a path or query value becomes a number from: plain decimal, as FastAPI takes it. */
const DECIMAL_INTEGER = /^-?\d+$/
const DECIMAL_NUMBER = /^-?\d+(?:\.\d+)?$/

/** Turns one text value into its schema's type, or gives undefined to leave it text (and let Ajv refuse it). */
type TextCoercion = (text: string) => number | boolean | undefined

/**
 * The coercion of each top-level property of a path or query schema that is not a string, in place of Ajv's
 * `coerceTypes`, which takes `0x10` or `1e400` as numbers (docs/decisions/request-coercion.md). Any text that is
 * not plain decimal stays text, so the schema refuses it with a 422.
 */
function textCoercionsOf(schema: unknown): [string, TextCoercion][] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {}
  return Object.entries(properties).flatMap(([key, property]): [string, TextCoercion][] => {
    const types: unknown[] = [property.type].flat()
    if (types.includes('number')) return [[key, (text) => (DECIMAL_NUMBER.test(text) ? Number(text) : undefined)]]
    if (types.includes('integer')) return [[key, (text) => (DECIMAL_INTEGER.test(text) ? Number(text) : undefined)]]
    if (types.includes('boolean'))
      return [[key, (text) => (text === 'true' ? true : text === 'false' ? false : undefined)]]
    return []
  })
}

/** The fields of an Ajv error that the mapping reads; `parentSchema` is there because the instances are verbose. */
interface AjvIssue {
  keyword: string
  instancePath: string
  params: Record<string, unknown>
  message?: string
  parentSchema?: Record<string, unknown>
}

const LOCATION_OF_PART: Record<string, string> = {
  body: 'body',
  querystring: 'query',
  params: 'path',
  headers: 'header',
}

const TYPE_OF_KEYWORD: Record<string, string> = {
  required: 'missing',
  additionalProperties: 'extra_forbidden',
  maxLength: 'string_too_long',
  minLength: 'string_too_short',
  pattern: 'string_pattern_mismatch',
  minimum: 'greater_than_equal',
  maximum: 'less_than_equal',
  enum: 'enum',
}

/** At most this many entries in a 422: a 64 KiB body of unknown keys must not answer with megabytes. */
const MAX_VALIDATION_ISSUES = 20

/**
 * Maps Ajv's errors of one request part (`part`: Fastify's name, `body`, `querystring`, …) to FastAPI-style
 * `{loc, msg, type}` entries: the first per location, 20 at most.
 */
export function toValidationIssues(part: string, issues: readonly AjvIssue[]): ValidationIssue[] {
  const where = LOCATION_OF_PART[part] ?? part
  const entries = issues.map((issue) => {
    const loc: (string | number)[] = [where, ...issue.instancePath.split('/').slice(1).map(decodePointer)]
    if (issue.keyword === 'required') loc.push(String(issue.params.missingProperty))
    if (issue.keyword === 'additionalProperties') loc.push(String(issue.params.additionalProperty))
    // Ajv names a type list (`description`: string or null) as "string,null": the type is its first non-null one.
    const types = String(issue.params.type).split(',')
    const type =
      issue.keyword === 'type'
        ? `${types.find((name) => name !== 'null') ?? types[0]}_type`
        : (TYPE_OF_KEYWORD[issue.keyword] ?? issue.keyword)
    const patternMessage = issue.parentSchema?.[PATTERN_MESSAGE]
    const msg =
      issue.keyword === 'required'
        ? 'Field required'
        : issue.keyword === 'additionalProperties'
          ? 'Extra inputs are not permitted'
          : issue.keyword === 'pattern'
            ? typeof patternMessage === 'string'
              ? patternMessage
              : 'String has an invalid format'
            : issue.keyword === 'type'
              ? `Must be ${types.join(' or ')}`
              : capitalize(issue.message ?? 'Invalid value')
    return { loc, msg, type }
  })
  // One entry per location, the first Ajv found (a repeated ?status=a&status=b is "not a string", and not
  // also "not one of the values"), and at most MAX_VALIDATION_ISSUES of them.
  const firstByLocation = new Map<string, ValidationIssue>()
  for (const entry of entries) {
    const where = JSON.stringify(entry.loc)
    if (!firstByLocation.has(where)) firstByLocation.set(where, entry)
  }
  return [...firstByLocation.values()].slice(0, MAX_VALIDATION_ISSUES)
}

function decodePointer(segment: string): string | number {
  const text = segment.replace(/~1/g, '/').replace(/~0/g, '~')
  return /^\d+$/.test(text) ? Number(text) : text
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1)
}
