// The benchmark keeps working (issue 6): a few seconds of `npm run bench` against the real PostgreSQL server,
// asserting only that it runs to the end and that every request was 2xx. Never a timed assertion: the
// figures live in bench/README.md. It needs the server, so it is registered only when TEST_DATABASE_URL is set.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const ADMIN_URL = process.env.TEST_DATABASE_URL?.trim() || undefined
const RUN = fileURLToPath(new URL('../../bench/run.ts', import.meta.url))
const TSX = import.meta.resolve('tsx')

/** One round, half a second of warm-up and one measured second per server, on a small seed. */
const SMOKE_FLAGS = [
  '--rounds=1',
  '--warmup=0.5',
  '--duration=1',
  '--connections=8',
  '--users=20',
  '--tasks-per-user=10',
  '--scenarios=mixed,toggle',
  '--pglite-scenarios=mixed',
  '--no-startup',
  '--max-minutes=2',
]

async function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', TSX, RUN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 150_000,
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  return { code, output }
}

if (ADMIN_URL !== undefined) {
  void test(
    'the benchmark runs service, baseline and PGlite end to end, and every request is 2xx',
    { timeout: 160_000 },
    async () => {
      const out = await mkdtemp(join(tmpdir(), 'tasks-bench-smoke-'))
      try {
        const { code, output } = await runBench([...SMOKE_FLAGS, `--admin-url=${ADMIN_URL}`, `--out=${out}`])
        assert.equal(code, 0, output)
        const files = await readdir(out)
        assert.equal(files.length, 1, `one results file: ${files.join(', ')}`)
        const lines = (await readFile(join(out, files[0] ?? ''), 'utf8'))
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line))

        const parity = lines.find((line) => line.kind === 'parity')
        assert.deepEqual(parity?.differences, [], 'the baseline sends the same SQL and gives the same bodies')

        const loads = lines.filter((line) => line.kind === 'load')
        assert.deepEqual(loads.map((line) => `${line.target} ${line.scenario}`).sort(), [
          'baseline mixed',
          'baseline toggle',
          'service mixed',
          'service toggle',
          'service-pglite mixed',
        ])
        for (const line of loads) {
          const name = `${line.target} ${line.scenario}`
          assert.ok(line.ok2xx > 0, `${name}: some requests succeeded`)
          assert.equal(line.non2xx, 0, `${name}: ${JSON.stringify(line.statusCounts)}`)
          assert.equal(line.errors, 0, `${name}: connection errors`)
          assert.equal(line.timeouts, 0, `${name}: timeouts`)
          assert.equal(line.exitCode, 0, `${name}: the server stopped cleanly`)
          assert.ok(
            typeof line.commit === 'string' && typeof line.machine?.cores === 'number',
            `${name}: the environment is recorded`,
          )
        }
      } finally {
        await rm(out, { recursive: true, force: true })
      }
    },
  )
}
