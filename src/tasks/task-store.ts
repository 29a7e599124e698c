// The only place SQL about tasks lives. Every statement carries the owner, and every write is one statement.
import { and, asc, desc, eq, inArray, not, sql, type SQL } from 'drizzle-orm'
import type { AnyPgColumn, PgUpdateSetSource } from 'drizzle-orm/pg-core'
import type { TasksDb } from '../db/database.ts'
import { taskCounts, tasks, titleSortKey, type TaskRow } from '../db/schema.ts'
import { createIdempotencyStore, type IdempotencyOptions, type OnceOutcome, type StoredResponse } from '../idempotency/idempotency-store.ts'
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
  createForOwner(ownerId: string, input: TaskCreate): Promise<Task>
  /**
   * Creates the task once per `(ownerId, key)` within 24 hours (src/idempotency/idempotency-store.ts): the task and
   * the response `respond` builds for it are committed together; a repeat with the same body gets that response.
   */
  createForOwnerOnce(ownerId: string, key: string, input: TaskCreate, respond: (task: Task) => StoredResponse): Promise<OnceOutcome>
  updateForOwner(ownerId: string, taskId: number, changes: TaskUpdate, expected?: readonly TaskVersion[]): Promise<WriteOutcome<Task>>
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
export type TaskStoreOptions = IdempotencyOptions

/** The columns the list's sort keys read: of `tasks`, or of the page selected from it. */
interface SortColumns {
  createdAt: AnyPgColumn
  updatedAt: AnyPgColumn
  title: AnyPgColumn
}

/** What each `sort` value orders by; each has an index `(user_id, key, id)` on `tasks` (src/db/schema.ts). */
const SORT_KEYS: Record<NonNullable<TaskListQuery['sort']>, (source: SortColumns) => AnyPgColumn | SQL> = {
  created: (source) => source.createdAt,
  updated: (source) => source.updatedAt,
  title: (source) => titleSortKey(source.title),
}

/** The tasks each `status` value lists (besides the owner's). */
const STATUS_FILTERS: Record<NonNullable<TaskListQuery['status']>, SQL | undefined> = {
  all: undefined,
  pending: eq(tasks.completed, false),
  completed: eq(tasks.completed, true),
}

/** How many tasks each `status` value matches, from the owner's row of `task_counts`. */
const MATCHING_COUNT: Record<NonNullable<TaskListQuery['status']>, AnyPgColumn | SQL> = {
  all: taskCounts.total,
  pending: sql`${taskCounts.total} - ${taskCounts.completed}`,
  completed: taskCounts.completed,
}

/**
 * The next `updated_at`: now, but always at least 1 ms past the previous value, so that it visibly
 * advances on every write even within one millisecond (API.md: "changes on every write").
 */
const NEXT_UPDATED_AT = sql`greatest(clock_timestamp(), ${tasks.updatedAt} + interval '1 millisecond')`

/** Creates the store over a Drizzle handle of either driver. Errors of the driver propagate as they are. */
export function createTaskStore(db: TasksDb, options: TaskStoreOptions = {}): TaskStore {
  const idempotency = createIdempotencyStore(db, options)
  const ownedTask = (ownerId: string, taskId: number): SQL | undefined => and(eq(tasks.userId, ownerId), eq(tasks.id, taskId))
  /** `updated_at` is one of the expected versions (none: matches nothing). */
  const versionIn = (expected: readonly TaskVersion[]): SQL =>
    inArray(
      tasks.updatedAt,
      expected.map((version) => new Date(version)),
    )

  /**
   * One UPDATE of the owner's task. With `expected`, one statement both finds the owner's task (`target`, from the
   * statement's snapshot) and updates it only if its version is expected (`written`): under READ COMMITTED a
   * writer that waited for a concurrent one re-checks the version on the row that one left, so it finds it
   * changed and writes nothing. Task found but nothing written: 'stale'.
   */
  async function updateOwned(
    ownerId: string,
    taskId: number,
    set: PgUpdateSetSource<typeof tasks>,
    expected?: readonly TaskVersion[],
  ): Promise<WriteOutcome<Task>> {
    const owned = ownedTask(ownerId, taskId)
    if (expected === undefined) {
      const [row] = await db.update(tasks).set(set).where(owned).returning()
      return row === undefined ? 'not-found' : toTask(row)
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
      const status = query.status ?? 'all'
      const sortKey = query.sort ?? 'created'
      const direction = (query.order ?? (sortKey === 'title' ? 'asc' : 'desc')) === 'asc' ? asc : desc
      // The count is the owner's counter row (kept by triggers, src/db/schema.ts), not a count(*) of their tasks, so
      // it costs one primary-key probe at any size. An aggregate without GROUP BY gives exactly one row, 0 when the
      // owner has no counter, so a page past the end still has a row to carry it: one statement, one snapshot.
      const counted = db
        .select({ total: sql<number>`coalesce(max(${MATCHING_COUNT[status]}), 0)`.as('total') })
        .from(taskCounts)
        .where(eq(taskCounts.userId, ownerId))
        .as('counted')
      const page = db
        .select()
        .from(tasks)
        .where(and(eq(tasks.userId, ownerId), STATUS_FILTERS[status]))
        .orderBy(direction(SORT_KEYS[sortKey](tasks)), direction(tasks.id))
        .limit(query.limit ?? 100)
        .offset(query.offset ?? 0)
        .as('page')
      const rows = await db
        .select({
          total: counted.total,
          task: {
            id: page.id,
            userId: page.userId,
            title: page.title,
            description: page.description,
            completed: page.completed,
            createdAt: page.createdAt,
            updatedAt: page.updatedAt,
          },
        })
        .from(counted)
        .leftJoin(page, sql`true`)
        // A join keeps no order of its own: the page is sorted again, a few hundred rows at most.
        .orderBy(direction(SORT_KEYS[sortKey](page)), direction(page.id))
      const tasksOfPage = rows.flatMap((row) => (row.task === null ? [] : [toTask(row.task)]))
      return { tasks: tasksOfPage, total: rows[0]?.total ?? 0 }
    },

    async getForOwner(ownerId, taskId) {
      const [row] = await db.select().from(tasks).where(ownedTask(ownerId, taskId))
      return row === undefined ? null : toTask(row)
    },

    async createForOwner(ownerId, input) {
      return insertTask(db, ownerId, input)
    },

    async createForOwnerOnce(ownerId, key, input, respond) {
      return idempotency.once(ownerId, key, input, async (tx) => respond(await insertTask(tx, ownerId, input)))
    },

    async updateForOwner(ownerId, taskId, changes, expected) {
      const set = {
        ...(changes.title !== undefined && { title: changes.title }),
        ...(changes.description !== undefined && { description: changes.description }),
        ...(changes.completed !== undefined && { completed: changes.completed }),
        updatedAt: NEXT_UPDATED_AT,
      }
      return updateOwned(ownerId, taskId, set, expected)
    },

    async completeForOwner(ownerId, taskId, completed, expected) {
      return updateOwned(ownerId, taskId, { completed: completed ?? not(tasks.completed), updatedAt: NEXT_UPDATED_AT }, expected)
    },

    async deleteForOwner(ownerId, taskId, expected) {
      const owned = ownedTask(ownerId, taskId)
      if (expected === undefined) {
        const deleted = await db.delete(tasks).where(owned).returning({ id: tasks.id })
        return deleted.length > 0 ? 'deleted' : 'not-found'
      }
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

/** Inserts one task for `ownerId` through `db` (the store's handle, or a transaction of it). */
async function insertTask(db: TasksDb, ownerId: string, input: TaskCreate): Promise<Task> {
  const [row] = await db
    .insert(tasks)
    .values({ userId: ownerId, title: input.title, description: input.description ?? null, completed: input.completed ?? false })
    .returning()
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
