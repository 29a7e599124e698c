// The SQL of a page of GET /api/tasks: the owner's tasks in one filter and order, with the count of all that match.
import { and, asc, desc, eq, getTableColumns, sql, type SQL, type SQLWrapper } from 'drizzle-orm'
import type { TasksDb } from '../db/database.ts'
import { taskCounts, tasks, titleSortKey } from '../db/schema.ts'
import type { TaskListQuery } from './task-schemas.ts'

/** docs/contract.md's `status` filter. */
export type TaskStatus = NonNullable<TaskListQuery['status']>
/** docs/contract.md's `sort` key. */
export type TaskSort = NonNullable<TaskListQuery['sort']>
/** docs/contract.md's `order`. */
export type SortOrder = NonNullable<TaskListQuery['order']>

/**
 * What each `sort` value orders by; each has an index `(user_id, key, id)`, and `(user_id, completed, key, id)` for
 * `status`.
 */
const SORT_KEYS = { created: tasks.createdAt, updated: tasks.updatedAt, title: titleSortKey(tasks.title) } as const

/** Which tasks each `status` matches, besides being the owner's. */
const STATUS_FILTERS: Record<TaskStatus, SQL | undefined> = {
  all: undefined,
  pending: eq(tasks.completed, false),
  completed: eq(tasks.completed, true),
}

/** What each `status` counts in the owner's row of `task_counts`. */
const COUNTED = {
  all: taskCounts.total,
  completed: taskCounts.completed,
  pending: sql<number>`${taskCounts.total} - ${taskCounts.completed}`,
}

/**
 * How many of the owner's tasks have `status`: a query of their `task_counts` row (no row: no tasks, so no result).
 * `owner` is a value, or a placeholder of a prepared statement.
 */
export function matchingCount(db: TasksDb, owner: string | SQLWrapper, status: TaskStatus) {
  return db.select({ total: COUNTED[status] }).from(taskCounts).where(eq(taskCounts.userId, owner))
}

/**
 * The page of the owner's tasks with `status`, in `sortKey` and `order` (ties broken on `id` the same way), each row
 * carrying `total`, the count of all that match. Placeholders: `ownerId`, `limit`, `offset`.
 */
export function listQuery(db: TasksDb, status: TaskStatus, sortKey: TaskSort, order: SortOrder) {
  const owner = sql.placeholder('ownerId')
  const offset = sql.placeholder('offset')
  const counted = matchingCount(db, owner, status)
  // A page past the end is known from the counter: a condition without a column of `tasks` is a one-time filter,
  // checked before the scan, so `offset=2147483647` reads no task instead of skipping every one.
  const beforeEnd = sql`${offset} < coalesce(${counted}, 0)`
  const direction = order === 'asc' ? asc : desc
  // One statement gives the page and the count from one snapshot. The count is the owner's counter row (kept by
  // triggers, migrations/0003), one primary-key probe at any size; an uncorrelated subquery, which PostgreSQL
  // evaluates once per statement, not once per row.
  return db
    .select({ ...getTableColumns(tasks), total: sql<number>`coalesce(${counted}, 0)`.mapWith(Number) })
    .from(tasks)
    .where(and(eq(tasks.userId, owner), STATUS_FILTERS[status], beforeEnd))
    .orderBy(direction(SORT_KEYS[sortKey]), direction(tasks.id))
    .limit(sql.placeholder('limit'))
    .offset(offset)
}
