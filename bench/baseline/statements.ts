// The SQL the service sends for each route the benchmark drives, word for word (as Drizzle generates it from
// src/tasks/task-store.ts and task-list-store.ts). The harness checks on the wire that the service still sends exactly
// these (bench/lib/parity.ts): when the store changes, update them here.

const COLUMNS = `"id", "user_id", "title", "description", "completed", "created_at", "updated_at"`
const NEXT_UPDATED_AT = `greatest(clock_timestamp(), "tasks"."updated_at" + interval '1 millisecond')`

/**
 * The owner's task at an expected version (If-Match), or at any when the version parameters are NULL, as every
 * write of the service sends it. Parameters: owner, id, versions, versions.
 */
const OWNED_AT_EXPECTED = (first: number): string =>
  `("tasks"."user_id" = $${first} and "tasks"."id" = $${first + 1} and ($${first + 2}::timestamptz[] is null or "tasks"."updated_at" = any($${first + 3}::timestamptz[])))`

/** The owner's count of tasks: their row of task_counts, 0 without one. Parameter: owner. */
const TOTAL = (owner: string): string =>
  `coalesce((select "total" from "task_counts" where "task_counts"."user_id" = ${owner}), 0)`

/**
 * GET /api/tasks?limit=n&offset=m: the page and the count from one statement; an offset at or past the count scans
 * nothing. Parameters: owner, owner, offset, owner, limit, offset (0 for the first page). The count's column is
 * named "coalesce".
 */
export const LIST = `select ${COLUMNS}, ${TOTAL('$1')} from "tasks" where ("tasks"."user_id" = $2 and $3 < ${TOTAL('$4')}) order by "tasks"."created_at" desc, "tasks"."id" desc limit $5 offset $6`

/** GET /api/tasks/{id}. Parameters: owner, id. */
export const GET = `select ${COLUMNS} from "tasks" where ("tasks"."user_id" = $1 and "tasks"."id" = $2)`

/**
 * POST /api/tasks below MAX_TASKS_PER_USER: the owner's counter row is upserted (and so locked) first, and the new
 * task's owner is NULL at the cap. Parameters: owner, 0, 0, owner, cap, title, description, completed.
 */
export const CREATE = `with "counter" as (insert into "task_counts" ("user_id", "total", "completed") values ($1, $2, $3) on conflict ("user_id") do update set "total" = "task_counts"."total" returning "total") insert into "tasks" ("id", "user_id", "title", "description", "completed", "created_at", "updated_at") values (default, (select $4 from "counter" where "counter"."total" < $5), $6, $7, $8, default, default) returning ${COLUMNS}`

/**
 * PUT /api/tasks/{id} with title and completed (what the benchmark sends). Parameters: title, completed, owner, id,
 * null, null (no If-Match).
 */
export const UPDATE_TITLE_COMPLETED = `update "tasks" set "title" = $1, "completed" = $2, "updated_at" = ${NEXT_UPDATED_AT} where ${OWNED_AT_EXPECTED(3)} returning ${COLUMNS}`

/** PATCH /api/tasks/{id}/complete with no body: the toggle. Parameters: owner, id, null, null (no If-Match). */
export const TOGGLE = `update "tasks" set "completed" = not "tasks"."completed", "updated_at" = ${NEXT_UPDATED_AT} where ${OWNED_AT_EXPECTED(1)} returning ${COLUMNS}`
