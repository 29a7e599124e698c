// Small file systems for process tests (root only): a tmpfs of a given size, to fill the disk for real, and the same
// remounted read-only (chmod does not stop root). Each is unmounted after its test, whatever the outcome.
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Scope } from './child-server.ts'

/** Mounts a tmpfs of `sizeMiB` on a new temporary directory and returns it; unmounted and removed after the test. */
export async function mountTmpfs(t: Scope, sizeMiB: number): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'tasks-api-mount-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', directory])
  t.after(async () => {
    // Lazy: a child still holding a file in it (a failed test) must not keep the mount behind.
    execFileSync('umount', ['--lazy', directory])
    await rm(directory, { recursive: true, force: true })
  })
  return directory
}

/** Remounts a tmpfs of `mountTmpfs` read-only. */
export function remountReadOnly(directory: string): void {
  execFileSync('mount', ['-o', 'remount,ro', directory])
}
