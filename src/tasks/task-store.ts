// The only place SQL about tasks lives. Every statement carries the owner, and every write is one statement.
import { and, asc, desc, eq, getTableColumns, inArray, not, sql, type SQL, type SQLWrapper } from 'drizzle-orm'
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core'
import type { TasksDb } from '../db/database.ts'
import { isNotNullViolation } from '../db/pg-errors.ts'
import { taskCounts, tasks, titleSortKey, type TaskRow } from '../db/schema.ts'
import {
  createIdempotencyStore,
  type IdempotencyOptions,
  type OnceOutcome,
  type StoredResponse,
} from '../idempotency/idempotency-store.ts'
import { cappedInsert } from './task-limit-store.ts'
import type { TaskVersion } from './task-etag.ts'
import type { Task, TaskCreate, TaskListQuery, TaskUpdate } from './task-schemas.ts'

/** One page of a list and how many tasks match the filter in all (the `X-Total-Count` header). */
export interface TaskPage {
  tasks: Task[]
  total: number
}

/**
 * The outcome of a write: the task (or `'deleted'`), `'not-found'` (missing, or another user's: the same answer),
 * or `'stale'` (the owner's task exists but its version is none of the expected ones; nothing was written).
 */
export type WriteOutcome<T> = T | 'not-found' | 'stale'

/**
 * Task operations, each scoped to an owner: another user's task and a missing one both give null / 'not-found'.
 * `expected` on a write: the versions (see task-etag.ts) the caller's If-Match names; undefined writes whatever
 * the current version is. The version check and the write are one SQL statement, so of two writers that expect
 * the same version exactly one wins, whatever the isolation level.
 */
export interface TaskStore {
  listForOwner(ownerId: string, query: TaskListQuery): Promise<TaskPage>
  getForOwner(ownerId: string, taskId: number): Promise<Task | null>
  /** Creates the task, or gives 'limit-reached' (nothing written) when the owner already has `maxTasksPerUser`. */
  createForOwner(ownerId: string, input: TaskCreate): Promise<Task | 'limit-reached'>
  /**
   * Creates the task once per `(ownerId, key)` within 24 hours (src/idempotency/idempotency-store.ts): the task and
   * the response `respond` builds for it are committed together; a repeat with the same body gets that response.
   * 'limit-reached' as in `createForOwner`: nothing is written, and the key stays free for a retry.
   */
  createForOwnerOnce(
    ownerId: string,
    key: string,
    input: TaskCreate,
    respond: (task: Task) => StoredResponse,
  ): Promise<OnceOutcome | 'limit-reached'>
  updateForOwner(
    ownerId: string,
    taskId: number,
    changes: TaskUpdate,
    expected?: readonly TaskVersion[],
  ): Promise<WriteOutcome<Task>>
  /** Sets `completed`, or toggles it in SQL (`NOT completed`) when `completed` is undefined. */
  completeForOwner(
    ownerId: string,
    taskId: number,
    completed: boolean | undefined,
    expected?: readonly TaskVersion[],
  ): Promise<WriteOutcome<Task>>
  deleteForOwner(ownerId: string, taskId: number, expected?: readonly TaskVersion[]): Promise<WriteOutcome<'deleted'>>
}

/** What the store is built with besides the database: the idempotency clock and limits (tests inject a clock). */
export interface TaskStoreOptions extends IdempotencyOptions {
  /**
   * `DATABASE_PREPARED_STATEMENTS` (default true): send the routes' statements as named prepared statements, which
   * PostgreSQL parses and plans once per connection instead of on every request. False sends the same statements
   * unnamed, for a transaction-mode pooler without prepared-statement support (PgBouncer before 1.21, or
   * `max_prepared_statements = 0`). Either way Drizzle builds each statement's SQL once, not per call.
   */
  preparedStatements?: boolean
  /**
   * `MAX_TASKS_PER_USER` (API.md; default 0 here, no cap): a create when the owner already has this many tasks
   * writes nothing and gives 'limit-reached'. Exact under concurrency: see `cappedInsert`.
   */
  maxTasksPerUser?: number
}

/**
 * What each `sort` value orders by; each has an index `(user_id, key, id)`, and `(user_id, completed, key, id)` for
 * `status`.
 */
const SORT_KEYS = { created: tasks.createdAt, updated: tasks.updatedAt, title: titleSortKey(tasks.title) } as const

/**
 * The next `updated_at`: now, but always at least 1 ms past the previous value, so that it visibly
 * advances on every write even within one millisecond (API.md: "changes on every write").
 */
const NEXT_UPDATED_AT = sql`greatest(clock_timestamp(), ${tasks.updatedAt} + interval '1 millisecond')`

/** Creates the store over a Drizzle handle of either driver. Errors of the driver propagate as they are. */
export function createTaskStore(db: TasksDb, options: TaskStoreOptions = {}): TaskStore {
  const idempotency = createIdempotencyStore(db, options)
  // pg refuses one name for two different statement texts on a connection: each name below is one SQL text.
  const nameOf = (name: string): string => (options.preparedStatements === false ? '' : `tasks_${name}`)
  const ownedByPlaceholders = and(eq(tasks.userId, sql.placeholder('ownerId')), eq(tasks.id, sql.placeholder('taskId')))
  const getStatement = db.select().from(tasks).where(ownedByPlaceholders).prepare(nameOf('get'))
  const insertStatement = db
    .insert(tasks)
    .values({ userId: sql.placeholder('ownerId'), ...insertPlaceholders })
    .returning()
    .prepare(nameOf('insert'))
  const maxTasks = options.maxTasksPerUser ?? 0
  /** A create refused at the cap (`cappedInsert` fails with not_null_violation) is 'limit-reached'; else rethrown. */
  const limitReachedOrThrow = (error: unknown): 'limit-reached' => {
    if (maxTasks > 0 && isNotNullViolation(error)) return 'limit-reached'
    throw error
  }
  const cappedInsertStatement =
    maxTasks > 0
      ? cappedInsert(db, sql.placeholder('ownerId'), insertPlaceholders, sql.placeholder('cap')).prepare(
          nameOf('insert_capped'),
        )
      : undefined
  const deleteStatement = db
    .delete(tasks)
    .where(ownedByPlaceholders)
    .returning({ id: tasks.id })
    .prepare(nameOf('delete'))
  /**
   * The UPDATE statements without a version check, one per set of columns written (named after it), built on first use.
   */
  const updateStatements = new Map<string, ReturnType<typeof prepareUpdate>>()
  const prepareUpdate = (columns: UpdatedColumns, name: string) =>
    db
      .update(tasks)
      .set({
        ...(columns.title && { title: sql`${sql.placeholder('title')}` }),
        ...(columns.description && { description: sql`${sql.placeholder('description')}` }),
        ...(columns.completed === 'set' && { completed: sql`${sql.placeholder('completed')}` }),
        ...(columns.completed === 'toggle' && { completed: not(tasks.completed) }),
        updatedAt: NEXT_UPDATED_AT,
      })
      .where(ownedByPlaceholders)
      .returning()
      .prepare(nameOf(name))
  const updateStatementFor = (columns: UpdatedColumns): ReturnType<typeof prepareUpdate> => {
    const name = `update_${columns.title ? 'title_' : ''}${columns.description ? 'description_' : ''}${columns.completed || 'keep'}`
    let statement = updateStatements.get(name)
    if (statement === undefined) updateStatements.set(name, (statement = prepareUpdate(columns, name)))
    return statement
  }
  /** The list statements, one per filter and order (named after them), built on first use. */
  const listStatements = new Map<string, ReturnType<typeof prepareList>>()
  const prepareList = (status: TaskStatus, sortKey: TaskSort, order: 'asc' | 'desc', name: string) => {
    const counted = matchingCount(db, sql.placeholder('ownerId'), status)
    // A page past the end is known from the counter: a condition without a column of `tasks` is a one-time filter,
    // checked before the scan, so `offset=2147483647` reads no task instead of skipping every one.
    const beforeEnd = sql`${sql.placeholder('offset')} < coalesce(${counted}, 0)`
    const filter = and(eq(tasks.userId, sql.placeholder('ownerId')), STATUS_FILTERS[status], beforeEnd)
    const direction = order === 'asc' ? asc : desc
    // One statement gives the page and the count from one snapshot. The count is the owner's counter row (kept by
    // triggers, migrations/0003), not a count(*) of their tasks, so it costs one primary-key probe at any size; it
    // is an uncorrelated subquery, which PostgreSQL evaluates once per statement, not once per row.
    return db
      .select({
        ...getTableColumns(tasks),
        total: sql<number>`coalesce(${counted}, 0)`.mapWith(Number),
      })
      .from(tasks)
      .where(filter)
      .orderBy(direction(SORT_KEYS[sortKey]), direction(tasks.id))
      .limit(sql.placeholder('limit'))
      .offset(sql.placeholder('offset'))
      .prepare(nameOf(name))
  }
  const listStatementFor = (query: TaskListQuery): ReturnType<typeof prepareList> => {
    const status = query.status ?? 'all'
    const sortKey = query.sort ?? 'created'
    const order = query.order ?? (sortKey === 'title' ? 'asc' : 'desc')
    const name = `list_${status}_${sortKey}_${order}`
    let statement = listStatements.get(name)
    if (statement === undefined) listStatements.set(name, (statement = prepareList(status, sortKey, order, name)))
    return statement
  }
  const ownedTask = (ownerId: string, taskId: number): SQL | undefined =>
    and(eq(tasks.userId, ownerId), eq(tasks.id, taskId))
  /** `updated_at` is one of the expected versions (none: matches nothing). */
  const versionIn = (expected: readonly TaskVersion[]): SQL =>
    inArray(
      tasks.updatedAt,
      expected.map((version) => new Date(version)),
    )

  /**
   * One UPDATE of the owner's task, setting `changes` (`completed: 'toggle'` is `NOT completed` in SQL) and the next
   * `updated_at`. With `expected`, one statement both finds the owner's task (`target`, from the statement's
   * snapshot) and updates it only if its version is expected (`written`): under READ COMMITTED a writer that
   * waited for a concurrent one re-checks the version on the row that one left, so it finds it changed and writes
   * nothing. Task found but nothing written: 'stale'.
   */
  async function updateOwned(
    ownerId: string,
    taskId: number,
    changes: Changes,
    expected?: readonly TaskVersion[],
  ): Promise<WriteOutcome<Task>> {
    if (expected === undefined) {
      const columns: UpdatedColumns = {
        title: changes.title !== undefined,
        description: changes.description !== undefined,
        completed: changes.completed === undefined ? false : changes.completed === 'toggle' ? 'toggle' : 'set',
      }
      const [row] = await updateStatementFor(columns).execute({ ownerId, taskId, ...changes })
      return row === undefined ? 'not-found' : toTask(row)
    }
    const owned = ownedTask(ownerId, taskId)
    const set: PgUpdateSetSource<typeof tasks> = {
      ...(changes.title !== undefined && { title: changes.title }),
      ...(changes.description !== undefined && { description: changes.description }),
      ...(changes.completed !== undefined && {
        completed: changes.completed === 'toggle' ? not(tasks.completed) : changes.completed,
      }),
      updatedAt: NEXT_UPDATED_AT,
    }
    const target = db.$with('target').as(db.select({ id: tasks.id }).from(tasks).where(owned))
    const written = db.$with('written').as(
      db
        .update(tasks)
        .set(set)
        .where(and(owned, versionIn(expected)))
        .returning(),
    )
    // The owner's task joined with what was written: no row is 'not-found'; a row with no written task is 'stale'.
    const [row] = await db
      .with(target, written)
      .select({
        found: target.id,
        written: {
          id: written.id,
          userId: written.userId,
          title: written.title,
          description: written.description,
          completed: written.completed,
          createdAt: written.createdAt,
          updatedAt: written.updatedAt,
        },
      })
      .from(target)
      .leftJoin(written, sql`true`)
    if (row === undefined) return 'not-found'
    return row.written === null ? 'stale' : toTask(row.written)
  }

  return {
    async listForOwner(ownerId, query) {
      const limit = query.limit ?? 100
      const offset = query.offset ?? 0
      const rows = await listStatementFor(query).execute({ ownerId, limit, offset })
      if (rows[0] !== undefined) return { tasks: rows.map(toTask), total: rows[0].total }
      // A page past the end has no row to carry the count: only then is it a statement of its own.
      if (offset === 0) return { tasks: [], total: 0 }
      const [counted] = await matchingCount(db, ownerId, query.status ?? 'all')
      return { tasks: [], total: counted?.total ?? 0 }
    },

    async getForOwner(ownerId, taskId) {
      const [row] = await getStatement.execute({ ownerId, taskId })
      return row === undefined ? null : toTask(row)
    },

    async createForOwner(ownerId, input) {
      const values = { ownerId, ...insertValues(input) }
      try {
        const [row] = await (cappedInsertStatement?.execute({ ...values, cap: maxTasks }) ??
          insertStatement.execute(values))
        if (row === undefined) throw new Error('INSERT … RETURNING gave no row')
        return toTask(row)
      } catch (error) {
        return limitReachedOrThrow(error)
      }
    },

    async createForOwnerOnce(ownerId, key, input, respond) {
      try {
        return await idempotency.once(ownerId, key, input, async (tx) =>
          respond(await insertTask(tx, ownerId, input, maxTasks)),
        )
      } catch (error) {
        return limitReachedOrThrow(error)
      }
    },

    async updateForOwner(ownerId, taskId, changes, expected) {
      return updateOwned(ownerId, taskId, changes, expected)
    },

    async completeForOwner(ownerId, taskId, completed, expected) {
      return updateOwned(ownerId, taskId, { completed: completed ?? 'toggle' }, expected)
    },

    async deleteForOwner(ownerId, taskId, expected) {
      if (expected === undefined) {
        const deleted = await deleteStatement.execute({ ownerId, taskId })
        return deleted.length > 0 ? 'deleted' : 'not-found'
      }
      const owned = ownedTask(ownerId, taskId)
      // As in updateOwned: one statement finds the owner's task and deletes it only at an expected version.
      const target = db.$with('target').as(db.select({ id: tasks.id }).from(tasks).where(owned))
      const written = db.$with('written').as(
        db
          .delete(tasks)
          .where(and(owned, versionIn(expected)))
          .returning({ id: tasks.id }),
      )
      const [row] = await db
        .with(target, written)
        .select({ found: target.id, deleted: written.id })
        .from(target)
        .leftJoin(written, sql`true`)
      if (row === undefined) return 'not-found'
      return row.deleted === null ? 'stale' : 'deleted'
    },
  }
}

/** What a write changes: API.md's fields, and `completed: 'toggle'` for `NOT completed` (the toggle route). */
type Changes = Omit<TaskUpdate, 'completed'> & { completed?: boolean | 'toggle' }

/** Which columns an UPDATE sets: `completed` to a value ('set'), to `NOT completed` ('toggle'), or not at all. */
interface UpdatedColumns {
  title: boolean
  description: boolean
  completed: 'set' | 'toggle' | false
}

type TaskStatus = NonNullable<TaskListQuery['status']>
type TaskSort = NonNullable<TaskListQuery['sort']>

/** Which tasks each `status` of API.md's list matches, besides being the owner's. */
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
 * How many of the owner's tasks have `status`: a query of the owner's `task_counts` row (no row: no tasks, so no
 * result).
 */
function matchingCount(db: TasksDb, owner: string | SQLWrapper, status: TaskStatus) {
  return db.select({ total: COUNTED[status] }).from(taskCounts).where(eq(taskCounts.userId, owner))
}

/** A new task's column values with API.md's defaults (no description, not completed). */
function insertValues(input: TaskCreate): { title: string; description: string | null; completed: boolean } {
  return { title: input.title, description: input.description ?? null, completed: input.completed ?? false }
}

/** The placeholders of a prepared create: the owner and `insertValues`' fields (and `cap` for `cappedInsert`). */
const insertPlaceholders = {
  title: sql.placeholder('title'),
  description: sql.placeholder('description'),
  completed: sql.placeholder('completed'),
}

/**
 * Inserts one task for `ownerId` inside the transaction `tx` (the Idempotency-Key path); `cap` 0: no cap. At the cap
 * it throws not_null_violation (see `cappedInsert`), which rolls back the key's claim too.
 */
async function insertTask(tx: TasksDb, ownerId: string, input: TaskCreate, cap: number): Promise<Task> {
  const values = insertValues(input)
  const [row] = await (cap > 0
    ? cappedInsert(tx, ownerId, values, cap)
    : tx
        .insert(tasks)
        .values({ userId: ownerId, ...values })
        .returning())
  if (row === undefined) throw new Error('INSERT … RETURNING gave no row')
  return toTask(row)
}

/** The one mapping from a row to the API's task (snake_case, ISO 8601 UTC timestamps). */
function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    completed: row.completed,
    user_id: row.userId,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  }
}
