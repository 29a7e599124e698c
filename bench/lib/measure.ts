// One measurement: a started server, a warm-up, then the measured period with the server's CPU and memory
// read from /proc around it.
import { loadAverage } from './environment.ts'
import { cpus } from 'node:os'
import { runLoad, type LoadRequest, type LoadResult } from './load.ts'
import { cpuSeconds, machineCpu, memoryMiB, resetPeakRss, totalCpuSeconds, watchRss } from './processes.ts'
import type { RunningServer } from './servers.ts'

/** A measurement's figures, as written to the JSON lines. */
export interface Measurement extends LoadResult {
  /** Server CPU during the measured period, in cores (1 = one core fully busy). */
  serverCpuCores: number
  /** Server CPU time per 2xx response, in microseconds: less noisy than req/s on a shared machine. */
  serverCpuUsPerRequest: number
  /** CPU of the PostgreSQL backends serving the run's database during the period, in cores (0 on PGlite). */
  postgresCpuCores: number
  /** The whole machine's busy share during the period (2 cores = 2). */
  machineBusyCores: number
  /** Peak RSS of the server during the measured period (VmHWM after a reset, else sampled), MiB. */
  peakRssMiB: number
  /** RSS at the end of the period, MiB. */
  rssMiB: number
  /** Load averages (1, 5, 15 min) when the period began. */
  loadAverage: number[]
  startMs: number
}

/** Warms `server` up, then measures it for `durationS`; `sequence` makes a fresh request sequence for each period. */
export async function measureServer(
  server: RunningServer,
  connections: number,
  warmupS: number,
  durationS: number,
  sequence: () => () => LoadRequest,
  /** The pids of the database server's backends of the run's database (pg_stat_activity); none on PGlite. */
  backendPids: () => Promise<number[]> = async () => [],
): Promise<Measurement> {
  if (warmupS > 0) await runLoad(server.url, connections, warmupS, sequence())
  const pid = server.child.pid
  const loadAtStart = loadAverage()
  const canResetPeak = resetPeakRss(pid)
  const rssWatch = watchRss(pid)
  const cpuBefore = cpuSeconds(pid) ?? 0
  // The pool's connections are open after the warm-up; their backends are the database's share of the work.
  const backends = await backendPids()
  const postgresBefore = totalCpuSeconds(backends)
  const machineBefore = machineCpu()
  const startedAt = performance.now()
  const load = await runLoad(server.url, connections, durationS, sequence())
  const seconds = (performance.now() - startedAt) / 1000
  const cpuAfter = cpuSeconds(pid) ?? cpuBefore
  const postgresAfter = totalCpuSeconds(backends)
  const machineAfter = machineCpu()
  const sampledPeak = rssWatch.stop()
  const memory = memoryMiB(pid)
  const serverCpu = cpuAfter - cpuBefore
  const machineShare = (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total)
  const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits
  return {
    ...load,
    serverCpuCores: round(serverCpu / seconds),
    serverCpuUsPerRequest: round((serverCpu * 1e6) / Math.max(1, load.ok2xx), 1),
    postgresCpuCores: round(Math.max(0, postgresAfter - postgresBefore) / seconds),
    machineBusyCores: round(machineShare * cpus().length),
    peakRssMiB: round(Math.max(canResetPeak && memory !== null ? memory.peak : 0, sampledPeak), 1),
    rssMiB: round(memory?.rss ?? NaN, 1),
    loadAverage: loadAtStart,
    startMs: server.startMs,
  }
}
