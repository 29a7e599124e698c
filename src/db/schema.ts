// The Drizzle tables; drizzle-kit generates migrations/ from this file (npm run db:generate).
import { sql, type SQL } from 'drizzle-orm'
import {
  bigint,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  smallint,
  timestamp,
  varchar,
  type AnyPgColumn,
} from 'drizzle-orm/pg-core'

/**
 * One row per task. The primary key leads with `user_id` so the table can be distributed by owner and every
 * lookup is an index range of one owner's rows (docs/decisions/owner-first-keys.md); `id` comes from
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
    // One index per sort key of GET /api/tasks, each ending in id for the tie-break (docs/contract.md "Endpoints").
    index('tasks_user_created_idx').on(table.userId, table.createdAt, table.id),
    index('tasks_user_updated_idx').on(table.userId, table.updatedAt, table.id),
    index('tasks_user_title_idx').on(table.userId, titleSortKey(table.title), table.id),
    // The same for `status=pending|completed`: the filter's column after the owner, so a page of the one status is
    // read in order from its first row instead of walking past every task of the other status.
    index('tasks_user_completed_created_idx').on(table.userId, table.completed, table.createdAt, table.id),
    index('tasks_user_completed_updated_idx').on(table.userId, table.completed, table.updatedAt, table.id),
    index('tasks_user_completed_title_idx').on(table.userId, table.completed, titleSortKey(table.title), table.id),
  ],
)

/**
 * How many tasks each user has, in all and completed: the list's `X-Total-Count` reads one row of it instead of
 * counting the user's tasks, so a first page's cost does not grow with them (docs/decisions/task-counts-table.md).
 * Kept exact by triggers on `tasks` (migrations/0003_maintain_task_counts.sql), in the transaction of every write and
 * nowhere else; no code writes it. A user's row appears with their first task and stays (at zero) after their last
 * one is deleted. The primary key is `user_id`, so the row lives with the user's tasks when tables are distributed
 * by owner.
 */
export const taskCounts = pgTable(
  'task_counts',
  {
    userId: varchar('user_id', { length: 255 }).notNull(),
    total: integer('total').notNull(),
    completed: integer('completed').notNull(),
  },
  (table) => [primaryKey({ name: 'task_counts_pkey', columns: [table.userId] })],
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

/**
 * One row per `Idempotency-Key` a user sent on `POST /api/tasks` (docs/contract.md "Retries and concurrent edits"): the
 * request's fingerprint and the response the first request got, written in the same transaction as the task.
 * The primary key leads with `user_id` (keys are scoped to the user, and the table distributes by owner like
 * `tasks`). A row is claimed before the task is inserted, so the response columns are null only inside that
 * uncommitted transaction: a committed row always carries its response.
 * Rows live until `expires_at` (24 h after `created_at`); expired ones are taken over by a new request with the
 * same key, and swept in small batches by requests that create keys (src/idempotency/idempotency-store.ts).
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    userId: varchar('user_id', { length: 255 }).notNull(),
    /** The header's value as sent: 1–255 printable ASCII characters. */
    key: varchar('key', { length: 255 }).notNull(),
    /** SHA-256 (hex) of the request body in canonical JSON: a repeat with another body is refused. */
    fingerprint: varchar('fingerprint', { length: 64 }).notNull(),
    /** The first response: HTTP status, the headers a replay repeats (lower-case names), and the JSON body. */
    responseStatus: smallint('response_status'),
    responseHeaders: jsonb('response_headers').$type<Record<string, string>>(),
    responseBody: jsonb('response_body'),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true, precision: 3 }).notNull(),
  },
  (table) => [
    primaryKey({ name: 'idempotency_keys_pkey', columns: [table.userId, table.key] }),
    // The sweep reads the oldest expired rows across all users (the one statement not scoped by an owner).
    index('idempotency_keys_expires_idx').on(table.expiresAt),
  ],
)
