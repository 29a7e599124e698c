// A task's ETag and the If-Match header (RFC 9110 §8.8.3, §13.1.1): the one place that knows how a task's
// version is written as an entity tag and read back.
import { patternWithMessage } from '../http/validation.ts'
import type { Task } from './task-schemas.ts'

/**
 * A task's version: its `updated_at` in ms since the epoch. The store advances `updated_at` by at least 1 ms on
 * every write, in the same statement as the write (so concurrent writes of one row each see the one before), so
 * every write gives a new version (docs/decisions/version-is-updated-at.md).
 */
export type TaskVersion = number

/** The strong ETag of a task's current representation: `"<updated_at in ms>"`, e.g. `"1764420938445"`. */
export function etagOf(task: Pick<Task, 'updated_at'>): string {
  return `"${Date.parse(task.updated_at)}"`
}

/**
 * The latest version a task can have: 9999-12-31T23:59:59.999Z, the last instant written with a four-digit year.
 * A larger tag was never issued, and sent to the database as a timestamp it would be refused (a 500, not a 412).
 */
const LATEST_VERSION: TaskVersion = Date.UTC(9999, 11, 31, 23, 59, 59, 999)

/**
 * What an If-Match header asks of the task: `undefined` when there is none or it is `*` (any current task will
 * do), else the versions it names. Weak tags (`W/"…"`) and tags this service never issued (past LATEST_VERSION
 * too) name no version, since If-Match compares strongly, so a list of only those matches nothing (412 on an
 * existing task, 404 on a missing one).
 */
export function versionsOfIfMatch(header: string | undefined): TaskVersion[] | undefined {
  if (header === undefined || header.trim() === '*') return undefined
  const versions: TaskVersion[] = []
  for (const element of header.split(',')) {
    // Strong comparison is character by character: "01" is not "1", so no leading zeros.
    const match = /^"([1-9]\d{0,15})"$/.exec(element.trim())
    const version = match?.[1] === undefined ? NaN : Number(match[1])
    if (version <= LATEST_VERSION) versions.push(version)
  }
  return versions
}

/**
 * The syntax of If-Match: `*`, or a comma-separated list of entity tags (`"…"` or `W/"…"`, with the characters
 * RFC 9110 allows inside the quotes). Anything else is a malformed header: 422 rather than a silent mismatch.
 */
export const IF_MATCH_SYNTAX = patternWithMessage(
  '^[ \\t]*(\\*|(W/)?"[\\x21\\x23-\\x7E\\x80-\\xFF]*"([ \\t]*,[ \\t]*(W/)?"[\\x21\\x23-\\x7E\\x80-\\xFF]*")*)[ \\t]*$',
  'Must be * or a comma-separated list of entity tags such as "1764420938445"',
)
