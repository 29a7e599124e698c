// Where a service's CPU time goes, from the .cpuprofile files `npm run bench -- --profile <dir>` writes:
// self time by package (or src/ file) and by function, and total (inclusive) time of the heaviest functions.
// Usage: tsx bench/profile-summary.ts <file.cpuprofile | dir> [top]. A directory's main-thread profiles are read:
// a worker thread writes a profile of its own (tsx's module loader did, when the benchmark ran its servers under
// tsx), which says nothing about requests.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

const [target, topArg] = process.argv.slice(2)
if (target === undefined) {
  process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile | directory> [top, default 25]\n')
  process.exit(2)
}
const top = Number(topArg ?? 25)
/**
 * Every main-thread profile under a directory (node names them CPU.<date>.<time>.<pid>.<thread>.<seq>; thread 0 is
 * main).
 */
function mainThreadProfiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter(
      (name) =>
        /\.\d+\.0\.\d+\.cpuprofile$/.test(name) ||
        (name.endsWith('.cpuprofile') && !/^CPU\./.test(name.split('/').at(-1) ?? '')),
    )
    .map((name) => join(dir, name))
}
const files = statSync(target).isDirectory() ? mainThreadProfiles(target) : [target]

/** Which package (or src/ file, or V8 pseudo-frame) a frame belongs to. */
function ownerOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (inModules?.[1] !== undefined) return inModules[1]
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] ?? ''}`
  const inRepo = /\/((?:src|bench)\/.*)$/.exec(url)
  return inRepo?.[1] ?? url
}

const frameName = (node: ProfileNode): string => {
  const { functionName, url, lineNumber } = node.callFrame
  const where = url === '' ? '' : ` ${ownerOf(url, functionName)}:${lineNumber + 1}`
  return `${functionName || '(anonymous)'}${where}`
}

const self = new Map<string, number>()
const byOwner = new Map<string, number>()
const inclusive = new Map<string, number>()
let totalMs = 0
for (const file of files) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfMs = new Map<number, number>()
  profile.samples.forEach((id, i) => selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  for (const [id, ms] of selfMs) {
    const node = nodes.get(id)
    if (node === undefined) continue
    totalMs += ms
    const name = frameName(node)
    self.set(name, (self.get(name) ?? 0) + ms)
    const owner = ownerOf(node.callFrame.url, node.callFrame.functionName)
    byOwner.set(owner, (byOwner.get(owner) ?? 0) + ms)
    // Inclusive: this sample's time counts once for every distinct function on its stack.
    const onStack = new Set<string>()
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = nodes.get(current)
      if (frame !== undefined) onStack.add(frameName(frame))
    }
    for (const name of onStack) inclusive.set(name, (inclusive.get(name) ?? 0) + ms)
  }
}

const table = (title: string, entries: Map<string, number>): string =>
  `${title}\n${[...entries]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(
      ([name, ms]) => `  ${((ms / totalMs) * 100).toFixed(1).padStart(5)} %  ${ms.toFixed(0).padStart(7)} ms  ${name}`,
    )
    .join('\n')}\n`

process.stdout.write(`${files.length} profile(s), ${(totalMs / 1000).toFixed(1)} s sampled\n\n`)
process.stdout.write(`${table('self time by package or file', byOwner)}\n${table('self time by function', self)}\n`)
process.stdout.write(table('total time (self + callees) by function', inclusive))
