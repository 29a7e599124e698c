// MAX_TASKS_PER_USER in one statement: the create that locks the owner's counter row and inserts only below the cap.
import { sql, type Placeholder } from 'drizzle-orm'
import type { TasksDb } from '../db/database.ts'
import { taskCounts, tasks } from '../db/schema.ts'

/** A value, or a placeholder of a prepared statement. */
export type InsertValue<T> = T | Placeholder

/** The columns a create sets, as values or as placeholders: the owner and docs/contract.md's fields. */
export interface NewTask {
  userId: InsertValue<string>
  title: InsertValue<string>
  description: InsertValue<string | null>
  completed: InsertValue<boolean>
}

/**
 * One INSERT of a task that succeeds only while the owner has fewer than `cap` tasks, exact under concurrency: the
 * statement first upserts the owner's `task_counts` row (a no-op update when it exists, a row at 0 for a first task),
 * which locks it until commit, and reads its latest committed `total` even when that is newer than the statement's
 * snapshot (ON CONFLICT DO UPDATE always acts on the latest row version). So concurrent creates of one owner take
 * turns on that row, each seeing the last one's count; the trigger then adds the new task on the locked row. At the
 * cap the new row's `user_id` is NULL, so the statement fails with not_null_violation (`isNotNullViolation`,
 * src/db/pg-errors.ts) and writes nothing (docs/decisions/task-cap-not-null.md). Other users' creates never meet
 * this lock.
 */
export function cappedInsert(db: TasksDb, { userId: ownerId, ...values }: NewTask, cap: InsertValue<number>) {
  const counter = db.$with('counter').as(
    db
      .insert(taskCounts)
      .values({ userId: sql`${ownerId}`, total: 0, completed: 0 })
      .onConflictDoUpdate({ target: taskCounts.userId, set: { total: sql`${taskCounts.total}` } })
      .returning({ total: taskCounts.total }),
  )
  return db
    .with(counter)
    .insert(tasks)
    .values({ userId: sql`(select ${ownerId} from ${counter} where ${counter.total} < ${cap})`, ...values })
    .returning()
}
