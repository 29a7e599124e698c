// `npm start` on PGlite: how long until the service answers, and how much memory it holds, on a fresh data
// directory (PGlite's initdb and the migrations) and again on the existing one.
import { mkdtempSync, readlinkSync, realpathSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fixed, markdownTable, type ResultsFile } from './report.ts'
import { freePort, memoryMiB, processTree, startChild, stopChild, waitUntilReady } from './processes.ts'
import { SERVICE_MAIN, serviceEnv, TSX_CLI, type ServerSettings } from './servers.ts'

/** Seconds the service is left idle after it is ready before its settled RSS is read. */
const SETTLE_S = 3

const NODE = realpathSync(process.execPath)

/**
 * The server under tsx's CLI: the CLI's descendant that runs node (not the CLI, nor an esbuild service tsx may start).
 */
function serverPid(cliPid: number): number {
  const runsNode = (pid: number): boolean => {
    try {
      return readlinkSync(`/proc/${pid}/exe`) === NODE
    } catch {
      return false
    }
  }
  return processTree(cliPid).slice(1).find(runsNode) ?? cliPid
}

/**
 * Starts `tsx src/main.ts` (what `npm start` runs, without npm's own process) in a fresh directory, so its
 * PGlite lives in ./.data there; then once more on the same directory. Gives the table of both.
 */
export async function measureStartup(settings: ServerSettings, results: ResultsFile): Promise<string> {
  const dir = mkdtempSync(join(settings.workDir, 'npm-start-'))
  const rows: string[][] = []
  try {
    for (const start of ['first start (new ./.data)', 'restart (existing ./.data)']) {
      const port = await freePort()
      const startedAt = performance.now()
      const child = startChild({
        command: process.execPath,
        args: [TSX_CLI, SERVICE_MAIN],
        cwd: dir,
        env: serviceEnv(port, settings, undefined),
        logFile: join(settings.workDir, 'npm-start.log'),
      })
      const readyMs = Math.round(await waitUntilReady(child, `http://127.0.0.1:${port}/health`, 180_000, startedAt))
      const server = (): { rss: number; peak: number } => memoryMiB(serverPid(child.pid)) ?? { rss: NaN, peak: NaN }
      const treeRss = (): number => processTree(child.pid).reduce((sum, pid) => sum + (memoryMiB(pid)?.rss ?? 0), 0)
      const atReady = { server: server(), tree: treeRss() }
      await sleep(SETTLE_S * 1000)
      const settled = { server: server(), tree: treeRss() }
      const exitCode = await stopChild(child)
      const line = {
        kind: 'startup',
        database: 'pglite',
        start,
        readyMs,
        serverRssAtReadyMiB: Math.round(atReady.server.rss),
        serverPeakRssMiB: Math.round(settled.server.peak),
        serverRssSettledMiB: Math.round(settled.server.rss),
        treeRssSettledMiB: Math.round(settled.tree),
        exitCode,
      }
      results.write(line)
      rows.push([
        start,
        String(readyMs),
        fixed(line.serverRssAtReadyMiB, 0),
        fixed(line.serverRssSettledMiB, 0),
        fixed(line.serverPeakRssMiB, 0),
        fixed(line.treeRssSettledMiB, 0),
      ])
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return markdownTable(
    [
      'npm start on PGlite',
      'ready after ms',
      'server RSS at ready MiB',
      `RSS after ${SETTLE_S} s idle MiB`,
      'peak RSS MiB',
      'with tsx CLI process MiB',
    ],
    rows,
  )
}
