// The lock PGlite does not take: two processes on one data directory would each run their own PostgreSQL over
// the same files and silently lose writes. A lock file in the directory names its owner's pid; it is created
// atomically, and one left by a process that no longer runs (kill -9, a crash) is taken over.
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'

/** The lock file's name inside the data directory. */
export const LOCK_FILE_NAME = 'tasks-api.lock'

/** Thrown when another running process holds the directory. */
export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly ownerPid: number,
  ) {
    super(
      `The embedded database directory ${dataDir} is in use by another process (pid ${ownerPid}). ` +
        `Stop that process, or give this one its own directory or a DATABASE_URL. If no process with pid ${ownerPid} ` +
        `is this service, delete ${join(dataDir, LOCK_FILE_NAME)}.`,
    )
    this.name = 'DataDirLockedError'
  }
}

/** A held lock; `release()` removes the file (only if it is still ours). */
export interface DataDirLock {
  release(): void
}

/**
 * Directories this process holds, so that a lock naming our own pid is told apart from a stale one (containers reuse
 * pids).
 */
const heldHere = new Set<string>()

/**
 * Takes the lock of `dataDir` (which must exist) for this process.
 * @throws DataDirLockedError when a running process holds it (this one included, through another open database).
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const path = join(dataDir, LOCK_FILE_NAME)
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createWithPid(path)) {
      heldHere.add(path)
      return {
        release() {
          if (!heldHere.delete(path)) return
          if (ownerOf(path) === process.pid) unlinkSync(path)
        },
      }
    }
    const owner = ownerOf(path)
    if (owner !== null && isRunning(owner) && (owner !== process.pid || heldHere.has(path))) {
      throw new DataDirLockedError(dataDir, owner)
    }
    takeOverStale(path, owner)
  }
  throw new Error(`Could not take the lock ${path}: it kept changing hands`)
}

/**
 * Creates `path` holding this pid, or returns false when it exists. The content is written to a private file first
 * and hard-linked into place: link(2) fails with EEXIST exactly as O_CREAT|O_EXCL does, and no other process can
 * read the lock while it is still empty. Where hard links are not supported, O_EXCL and a write.
 */
function createWithPid(path: string): boolean {
  const content = `${process.pid}\n`
  const own = `${path}.${process.pid}.new`
  writeFileSync(own, content, { mode: 0o644 })
  try {
    linkSync(own, path)
    return true
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error
  } finally {
    unlinkSync(own)
  }
  try {
    const fd = openSync(path, 'wx', 0o644)
    try {
      writeSync(fd, content)
    } finally {
      closeSync(fd)
    }
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}

/**
 * Removes a stale lock without removing a fresh one that another process took in the meantime: the file is first
 * renamed away (atomic), and put back (link, which never overwrites) if it turns out not to be the stale one.
 */
function takeOverStale(path: string, staleOwner: number | null): void {
  const aside = `${path}.${process.pid}.stale`
  try {
    renameSync(path, aside)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return // someone else removed it: try again
    throw error
  }
  const moved = ownerOf(aside)
  if (moved !== staleOwner && moved !== null && isRunning(moved)) {
    try {
      linkSync(aside, path)
    } catch {
      // A third process took the lock meanwhile: it holds it now, and the next attempt will say so.
    }
  }
  unlinkSync(aside)
}

/** The pid written in a lock file, or null when it is missing or unreadable (an interrupted write counts as stale). */
function ownerOf(path: string): number | null {
  try {
    const text = readFileSync(path, 'utf8').trim()
    return /^\d+$/.test(text) ? Number(text) : null
  } catch {
    return null
  }
}

/** True when a process with this pid exists (EPERM: it exists but belongs to another user). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
