// The Drizzle tables; drizzle-kit generates migrations/ from this file (npm run db:generate).
import { sql, type SQL } from 'drizzle-orm'
import { bigint, boolean, index, pgTable, primaryKey, timestamp, varchar, type AnyPgColumn } from 'drizzle-orm/pg-core'

/**
 * One row per task. The primary key leads with `user_id` so the table can be distributed by owner
 * (DESIGN.md "Built to grow") and every lookup is an index range of one owner's rows; `id` comes from
 * one identity sequence, so it stays unique on its own. Timestamps keep milliseconds, as the API shows them.
 */
export const tasks = pgTable(
  'tasks',
  {
    id: bigint('id', { mode: 'number' }).generatedAlwaysAsIdentity(),
    userId: varchar('user_id', { length: 255 }).notNull(),
    title: varchar('title', { length: 200 }).notNull(),
    description: varchar('description', { length: 1000 }),
    completed: boolean('completed').notNull().default(false),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 })
      .notNull()
      .default(sql`now()`),
    updatedAt: timestamp('updated_at', { withTimezone: true, precision: 3 })
      .notNull()
      .default(sql`now()`),
  },
  (table) => [
    primaryKey({ name: 'tasks_pkey', columns: [table.userId, table.id] }),
    // One index per sort key of GET /api/tasks, each ending in id for the tie-break (API.md "Endpoints").
    index('tasks_user_created_idx').on(table.userId, table.createdAt, table.id),
    index('tasks_user_updated_idx').on(table.userId, table.updatedAt, table.id),
    index('tasks_user_title_idx').on(table.userId, titleSortKey(table.title), table.id),
  ],
)

/**
 * The key `sort=title` orders by: case-insensitive, then by code point (`COLLATE "C"`), so the order is the
 * same on every server whatever its locale (PGlite's is C, Neon's en_US). The list query and the index
 * share this one expression, so the index serves the sort.
 */
export function titleSortKey(title: AnyPgColumn): SQL {
  return sql`lower(${title}) collate "C"`
}

/** A row of `tasks` as Drizzle returns it. */
export type TaskRow = typeof tasks.$inferSelect
