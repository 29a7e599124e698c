// The owner-scoped task operations of docs/contract.md, and the only SQL about tasks. Every statement filters by the
// owner, and every write is one statement, its If-Match version check included.
import { and, eq, not, sql } from 'drizzle-orm'
import type { TasksDb } from '../db/database.ts'
import { isNotNullViolation } from '../db/pg-errors.ts'
import { createStatementCache } from '../db/prepared-statements.ts'
import { tasks, type TaskRow } from '../db/schema.ts'
import { cappedInsert, type InsertValue, type NewTask } from './task-limit-store.ts'
import { listQuery, matchingCount, type SortOrder, type TaskSort, type TaskStatus } from './task-list-store.ts'
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
 * the same version exactly one wins, whatever the isolation level. Errors of the driver propagate as they are.
 */
export interface TaskStore {
  listForOwner(ownerId: string, query: TaskListQuery): Promise<TaskPage>
  getForOwner(ownerId: string, taskId: number): Promise<Task | null>
  /**
   * Creates the task, or gives 'limit-reached' (nothing written) when the owner already has `maxTasksPerUser`.
   * With `tx` the insert runs in that transaction (an Idempotency-Key's); 'limit-reached' then leaves it failed, so
   * the caller must roll it back.
   */
  createForOwner(ownerId: string, input: TaskCreate, tx?: TasksDb): Promise<Task | 'limit-reached'>
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

/** How the store sends its statements, and the task cap. */
export interface TaskStoreOptions {
  /** `DATABASE_PREPARED_STATEMENTS` (default true): see src/db/prepared-statements.ts. */
  preparedStatements?: boolean
  /**
   * `MAX_TASKS_PER_USER` (docs/contract.md; default 0 here, no cap): a create when the owner already has this many
   * tasks writes nothing and gives 'limit-reached'. Exact under concurrency: see `cappedInsert`.
   */
  maxTasksPerUser?: number
}

/**
 * The next `updated_at`: now, but always at least 1 ms past the previous value, so that it visibly
 * advances on every write even within one millisecond (docs/contract.md: "changes on every write").
 */
const NEXT_UPDATED_AT = sql`greatest(clock_timestamp(), ${tasks.updatedAt} + interval '1 millisecond')`

const placeholder = sql.placeholder

/** The owner's task `taskId`, as the placeholders of a prepared statement. */
const OWNER_AND_ID = [eq(tasks.userId, placeholder('ownerId')), eq(tasks.id, placeholder('taskId'))] as const
const OWNED = and(...OWNER_AND_ID)

/**
 * The owner's task at one of the `expected` versions, or at any version when `expected` is NULL: the one predicate
 * of every write, so a write with If-Match and one without are the same prepared statement.
 */
const OWNED_AT_EXPECTED = and(
  ...OWNER_AND_ID,
  sql`(${placeholder('expected')}::timestamptz[] is null or ${tasks.updatedAt} = any(${placeholder('expected')}::timestamptz[]))`,
)

/** Creates the store over a Drizzle handle of either driver. */
export function createTaskStore(db: TasksDb, options: TaskStoreOptions = {}): TaskStore {
  const statement = createStatementCache('tasks', options.preparedStatements !== false)
  const maxTasks = options.maxTasksPerUser ?? 0
  const insertInto = (target: TasksDb, values: NewTask, cap: InsertValue<number>) =>
    maxTasks > 0 ? cappedInsert(target, values, cap) : target.insert(tasks).values(values).returning()
  const getStatement = () => statement(['get'], () => db.select().from(tasks).where(OWNED))

  /** The UPDATE of one set of columns (named after it); `completed: 'toggle'` is `NOT completed` in SQL. */
  const updateStatement = (columns: UpdatedColumns) =>
    statement(
      ['update', columns.title && 'title', columns.description && 'description', columns.completed || 'keep'],
      () =>
        db
          .update(tasks)
          .set({
            ...(columns.title && { title: sql`${placeholder('title')}` }),
            ...(columns.description && { description: sql`${placeholder('description')}` }),
            ...(columns.completed === 'set' && { completed: sql`${placeholder('completed')}` }),
            ...(columns.completed === 'toggle' && { completed: not(tasks.completed) }),
            updatedAt: NEXT_UPDATED_AT,
          })
          .where(OWNED_AT_EXPECTED)
          .returning(),
    )

  /**
   * Runs one write of the owner's task at an expected version (any, without `expected`) and says what happened: a
   * row is written; none is 'not-found', or 'stale' when `expected` was given and the owner's task exists. That read
   * comes after the write, so it can only miss a task deleted meanwhile (404, never a 412 for a missing task).
   */
  async function conditionalWrite<Row, T>(
    ownerId: string,
    taskId: number,
    expected: readonly TaskVersion[] | undefined,
    write: (params: WriteParams) => Promise<Row[]>,
    written: (row: Row) => T,
  ): Promise<WriteOutcome<T>> {
    const versions = expected === undefined ? null : expected.map((version) => new Date(version))
    const [row] = await write({ ownerId, taskId, expected: versions })
    if (row !== undefined) return written(row)
    if (expected === undefined) return 'not-found'
    return (await getStatement().execute({ ownerId, taskId })).length > 0 ? 'stale' : 'not-found'
  }

  async function updateOwned(ownerId: string, taskId: number, changes: Changes, expected?: readonly TaskVersion[]) {
    const columns: UpdatedColumns = {
      title: changes.title !== undefined,
      description: changes.description !== undefined,
      completed: changes.completed === undefined ? false : changes.completed === 'toggle' ? 'toggle' : 'set',
    }
    const update = updateStatement(columns)
    return conditionalWrite(ownerId, taskId, expected, (params) => update.execute({ ...params, ...changes }), toTask)
  }

  /** The list statement of one filter and order (named after them). */
  const listStatement = (status: TaskStatus, sortKey: TaskSort, order: SortOrder) =>
    statement(['list', status, sortKey, order], () => listQuery(db, status, sortKey, order))

  return {
    async listForOwner(ownerId, query) {
      const status = query.status ?? 'all'
      const sortKey = query.sort ?? 'created'
      const order = query.order ?? (sortKey === 'title' ? 'asc' : 'desc')
      const limit = query.limit ?? 100
      const offset = query.offset ?? 0
      const rows = await listStatement(status, sortKey, order).execute({ ownerId, limit, offset })
      if (rows[0] !== undefined) return { tasks: rows.map(toTask), total: rows[0].total }
      // A page past the end has no row to carry the count: only then is it a statement of its own.
      if (offset === 0) return { tasks: [], total: 0 }
      const [counted] = await matchingCount(db, ownerId, status)
      return { tasks: [], total: counted?.total ?? 0 }
    },

    async getForOwner(ownerId, taskId) {
      const [row] = await getStatement().execute({ ownerId, taskId })
      return row === undefined ? null : toTask(row)
    },

    async createForOwner(ownerId, input, tx) {
      const values = { userId: ownerId, ...insertValues(input) }
      try {
        // In a transaction the statement is sent unnamed: a prepared statement belongs to the pool, not to `tx`.
        const [row] = await (tx === undefined
          ? statement(['insert', maxTasks > 0 && 'capped'], () =>
              insertInto(db, INSERT_PLACEHOLDERS, placeholder('cap')),
            ).execute({ ...values, cap: maxTasks })
          : insertInto(tx, values, maxTasks))
        if (row === undefined) throw new Error('INSERT … RETURNING gave no row')
        return toTask(row)
      } catch (error) {
        if (maxTasks > 0 && isNotNullViolation(error)) return 'limit-reached'
        throw error
      }
    },

    async updateForOwner(ownerId, taskId, changes, expected) {
      return updateOwned(ownerId, taskId, changes, expected)
    },

    async completeForOwner(ownerId, taskId, completed, expected) {
      return updateOwned(ownerId, taskId, { completed: completed ?? 'toggle' }, expected)
    },

    async deleteForOwner(ownerId, taskId, expected) {
      const remove = statement(['delete'], () => db.delete(tasks).where(OWNED_AT_EXPECTED).returning({ id: tasks.id }))
      return conditionalWrite(
        ownerId,
        taskId,
        expected,
        (params) => remove.execute(params),
        () => 'deleted' as const,
      )
    },
  }
}

/** The parameters of every write: the owner's task, and the expected versions (null: any). */
type WriteParams = { ownerId: string; taskId: number; expected: Date[] | null }

/** What a write changes: docs/contract.md's fields, and `completed: 'toggle'` for `NOT completed` (the toggle route).
 * */
type Changes = Omit<TaskUpdate, 'completed'> & { completed?: boolean | 'toggle' }

/** Which columns an UPDATE sets: `completed` to a value ('set'), to `NOT completed` ('toggle'), or not at all. */
interface UpdatedColumns {
  title: boolean
  description: boolean
  completed: 'set' | 'toggle' | false
}

/** A new task's column values with docs/contract.md's defaults (no description, not completed). */
function insertValues(input: TaskCreate): { title: string; description: string | null; completed: boolean } {
  return { title: input.title, description: input.description ?? null, completed: input.completed ?? false }
}

/** The placeholders of a prepared create (and `cap` for `cappedInsert`). */
const INSERT_PLACEHOLDERS: NewTask = {
  userId: placeholder('userId'),
  title: placeholder('title'),
  description: placeholder('description'),
  completed: placeholder('completed'),
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
