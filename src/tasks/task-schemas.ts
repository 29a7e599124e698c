// TypeBox schemas of the task resource (docs/contract.md "The task resource"): each gives the TypeScript type,
// the request validation and the OpenAPI document at once.
import { Type, type Static } from 'typebox'
import { patternWithMessage } from '../http/validation.ts'
import { IF_MATCH_SYNTAX } from './task-etag.ts'

/**
 * Text PostgreSQL can store: no NUL character, no unpaired UTF-16 surrogate (Ajv matches patterns with the `u` flag).
 */
const STORABLE_TEXT = patternWithMessage(
  '^[^\\u0000\\uD800-\\uDFFF]*$',
  'String must not contain NUL characters or unpaired surrogates',
)

/** `title` after trimming (the routes trim it before validation): 1–200 characters. */
const Title = Type.String({
  minLength: 1,
  maxLength: 200,
  ...STORABLE_TEXT,
  description: 'Surrounding whitespace is trimmed; 1–200 characters remain.',
})

/** `description`: up to 1000 characters, or null (a JSON Schema type list keeps 422s to one entry). */
const Description = Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength: 1000, ...STORABLE_TEXT })

/** A task as every response shows it. */
export const Task = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    title: Type.String(),
    description: Type.Unsafe<string | null>({ type: ['string', 'null'] }),
    completed: Type.Boolean(),
    user_id: Type.String({ description: 'The owner, from the token' }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time', description: 'Changes on every write' }),
  },
  { additionalProperties: false },
)
export type Task = Static<typeof Task>

/** Body of POST /api/tasks. Unknown fields (`user_id`, `id`, …) are refused, never ignored. */
export const TaskCreate = Type.Object(
  { title: Title, description: Type.Optional(Description), completed: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
)
export type TaskCreate = Static<typeof TaskCreate>

/** Body of PUT /api/tasks/{id}: a partial update; `description: null` clears it. */
export const TaskUpdate = Type.Object(
  { title: Type.Optional(Title), description: Type.Optional(Description), completed: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
)
export type TaskUpdate = Static<typeof TaskUpdate>

/** Body of PATCH /api/tasks/{id}/complete: absent or `{}` toggles; `completed` sets. */
export const TaskComplete = Type.Object({ completed: Type.Optional(Type.Boolean()) }, { additionalProperties: false })
export type TaskComplete = Static<typeof TaskComplete>

/** Query of GET /api/tasks. Other parameters (a `user_id`, say) are ignored: the owner comes from the token. */
export const TaskListQuery = Type.Object({
  status: Type.Optional(Type.Enum(['all', 'pending', 'completed'], { type: 'string', default: 'all' })),
  sort: Type.Optional(Type.Enum(['created', 'updated', 'title'], { type: 'string', default: 'created' })),
  order: Type.Optional(
    Type.Enum(['asc', 'desc'], { type: 'string', description: 'Default: desc for created/updated, asc for title' }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, default: 0 })),
})
export type TaskListQuery = Static<typeof TaskListQuery>

/** Path of the single-task routes: a positive integer id that JavaScript holds exactly. */
export const TaskIdParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) })
export type TaskIdParams = Static<typeof TaskIdParams>

/**
 * Headers of POST /api/tasks. `Idempotency-Key`: 1–255 printable ASCII characters (as the IETF draft's keys and
 * every UUID are); a control character or anything outside ASCII is 422, since HTTP carries other bytes
 * ambiguously (Node reads them as Latin-1). The value is taken exactly as sent, quotes included.
 */
export const TaskCreateHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      ...patternWithMessage('^[\\x20-\\x7E]*$', 'Must be printable ASCII characters only (no control characters)'),
      description:
        'Makes a retry safe: the same key with the same body within 24 hours replays the first response (header Idempotent-Replayed: true) and creates nothing; with another body it is 422; while the first request is still running, 409.',
    }),
  ),
})
export type TaskCreateHeaders = Static<typeof TaskCreateHeaders>

/** Headers of PUT, PATCH …/complete and DELETE: `If-Match`, checked in the same SQL statement as the write. */
export const TaskWriteHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({
      ...IF_MATCH_SYNTAX,
      description:
        'The ETag the change is based on (or *): when the task has changed since, the answer is 412 and nothing changes.',
    }),
  ),
})
export type TaskWriteHeaders = Static<typeof TaskWriteHeaders>
