// The only place SQL about tasks lives. Every statement carries the owner, and every write is one statement.
import { and, asc, count, desc, eq, getTableColumns, not, sql, type SQL } from 'drizzle-orm'
import type { TasksDb } from '../db/database.ts'
import { tasks, titleSortKey, type TaskRow } from '../db/schema.ts'
import type { Task, TaskCreate, TaskListQuery, TaskUpdate } from './task-schemas.ts'

/** One page of a list and how many tasks match the filter in all (the `X-Total-Count` header). */
export interface TaskPage {
  tasks: Task[]
  total: number
}

/** Task operations, each scoped to an owner: another user's task and a missing one both give null / false. */
export interface TaskStore {
  listForOwner(ownerId: string, query: TaskListQuery): Promise<TaskPage>
  getForOwner(ownerId: string, taskId: number): Promise<Task | null>
  createForOwner(ownerId: string, input: TaskCreate): Promise<Task>
  updateForOwner(ownerId: string, taskId: number, changes: TaskUpdate): Promise<Task | null>
  /** Sets `completed`, or toggles it in SQL (`NOT completed`) when `completed` is undefined. */
  completeForOwner(ownerId: string, taskId: number, completed: boolean | undefined): Promise<Task | null>
  deleteForOwner(ownerId: string, taskId: number): Promise<boolean>
}

/** What each `sort` value orders by; each has an index `(user_id, key, id)` (src/db/schema.ts). */
const SORT_KEYS = { created: tasks.createdAt, updated: tasks.updatedAt, title: titleSortKey(tasks.title) } as const

/**
 * The next `updated_at`: now, but always at least 1 ms past the previous value, so that it visibly
 * advances on every write even within one millisecond (API.md: "changes on every write").
 */
const NEXT_UPDATED_AT = sql`greatest(clock_timestamp(), ${tasks.updatedAt} + interval '1 millisecond')`

/** Creates the store over a Drizzle handle of either driver. Errors of the driver propagate as they are. */
export function createTaskStore(db: TasksDb): TaskStore {
  const ownedTask = (ownerId: string, taskId: number): SQL | undefined => and(eq(tasks.userId, ownerId), eq(tasks.id, taskId))

  return {
    async listForOwner(ownerId, query) {
      const filter = and(
        eq(tasks.userId, ownerId),
        query.status === 'pending' ? eq(tasks.completed, false) : query.status === 'completed' ? eq(tasks.completed, true) : undefined,
      )
      const sortKey = query.sort ?? 'created'
      const direction = (query.order ?? (sortKey === 'title' ? 'asc' : 'desc')) === 'asc' ? asc : desc
      const offset = query.offset ?? 0
      // One statement gives the page and the count from one snapshot: the count is an uncorrelated
      // subquery, which PostgreSQL evaluates once per statement, not once per row.
      const rows = await db
        .select({ ...getTableColumns(tasks), total: sql<number>`(select count(*) from ${tasks} where ${filter})`.mapWith(Number) })
        .from(tasks)
        .where(filter)
        .orderBy(direction(SORT_KEYS[sortKey]), direction(tasks.id))
        .limit(query.limit ?? 100)
        .offset(offset)
      if (rows[0] !== undefined) return { tasks: rows.map(toTask), total: rows[0].total }
      // A page past the end has no row to carry the count: only then is it a statement of its own.
      if (offset === 0) return { tasks: [], total: 0 }
      const [counted] = await db.select({ total: count() }).from(tasks).where(filter)
      return { tasks: [], total: counted?.total ?? 0 }
    },

    async getForOwner(ownerId, taskId) {
      const [row] = await db.select().from(tasks).where(ownedTask(ownerId, taskId))
      return row === undefined ? null : toTask(row)
    },

    async createForOwner(ownerId, input) {
      const [row] = await db
        .insert(tasks)
        .values({ userId: ownerId, title: input.title, description: input.description ?? null, completed: input.completed ?? false })
        .returning()
      if (row === undefined) throw new Error('INSERT … RETURNING gave no row')
      return toTask(row)
    },

    async updateForOwner(ownerId, taskId, changes) {
      const [row] = await db
        .update(tasks)
        .set({
          ...(changes.title !== undefined && { title: changes.title }),
          ...(changes.description !== undefined && { description: changes.description }),
          ...(changes.completed !== undefined && { completed: changes.completed }),
          updatedAt: NEXT_UPDATED_AT,
        })
        .where(ownedTask(ownerId, taskId))
        .returning()
      return row === undefined ? null : toTask(row)
    },

    async completeForOwner(ownerId, taskId, completed) {
      const [row] = await db
        .update(tasks)
        .set({ completed: completed ?? not(tasks.completed), updatedAt: NEXT_UPDATED_AT })
        .where(ownedTask(ownerId, taskId))
        .returning()
      return row === undefined ? null : toTask(row)
    },

    async deleteForOwner(ownerId, taskId) {
      const deleted = await db.delete(tasks).where(ownedTask(ownerId, taskId)).returning({ id: tasks.id })
      return deleted.length > 0
    },
  }
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
