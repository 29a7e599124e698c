// TypeBox schemas of the task resource (API.md "The task resource"): each gives the TypeScript type,
// the request validation and the OpenAPI document at once.
import { Type, type Static } from 'typebox'
import { describedPattern } from '../http/errors.ts'

/** Text PostgreSQL can store: no NUL character, no unpaired UTF-16 surrogate (Ajv matches patterns with the `u` flag). */
const STORABLE_TEXT = describedPattern('^[^\\u0000\\uD800-\\uDFFF]*$', 'String must not contain NUL characters or unpaired surrogates')

/** `title` after trimming (the routes trim it before validation): 1–200 characters. */
const Title = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: STORABLE_TEXT,
  description: 'Surrounding whitespace is trimmed; 1–200 characters remain.',
})

/** `description`: up to 1000 characters, or null (a JSON Schema type list keeps 422s to one entry). */
const Description = Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength: 1000, pattern: STORABLE_TEXT })

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
  order: Type.Optional(Type.Enum(['asc', 'desc'], { type: 'string', description: 'Default: desc for created/updated, asc for title' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, default: 0 })),
})
export type TaskListQuery = Static<typeof TaskListQuery>

/** Path of the single-task routes: a positive integer id that JavaScript holds exactly. */
export const TaskIdParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) })
export type TaskIdParams = Static<typeof TaskIdParams>
