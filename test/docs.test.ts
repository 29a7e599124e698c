// The documentation stays true and self-contained: every relative link in a Markdown file of the repository reaches a
// file (and heading) inside it, no Markdown file points to a document kept outside it, every error answer of the
// catalogue is in docs/contract.md, and every variable the configuration reads is in its configuration table.
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { test } from 'node:test'
import { loadConfig } from '../src/config.ts'
import { answerOfFastifyError, answerOfParserError, answers, type HttpError } from '../src/http/answers.ts'

const ROOT = resolve(import.meta.dirname, '..')
const CONTRACT = join(ROOT, 'docs', 'contract.md')

/** Directories that hold no documentation of this repository: installs, builds, data, git's own files. */
const SKIPPED_DIRECTORIES = new Set(['node_modules', '.git', 'dist', '.data'])

/** Every file of the repository whose name ends with one of `extensions`, as absolute paths. */
function filesEndingWith(extensions: readonly string[], directory = ROOT): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name)
    if (entry.isDirectory()) return SKIPPED_DIRECTORIES.has(entry.name) ? [] : filesEndingWith(extensions, path)
    return entry.isFile() && extensions.some((extension) => entry.name.endsWith(extension)) ? [path] : []
  })
}

/** Every Markdown file of the repository, as absolute paths. */
function markdownFiles(): string[] {
  return filesEndingWith(['.md'])
}

/** Markdown without its fenced code blocks and inline code spans, where a `[x](y)` is text, not a link. */
function proseOf(markdown: string): string {
  return markdown.replace(/^ {0,3}(```|~~~)[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '')
}

/** The targets of a Markdown file's inline links and images (`[text](target)`) and reference definitions. */
function linkTargets(markdown: string): string[] {
  const prose = proseOf(markdown)
  const inline = [...prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1] ?? '')
  const references = [...prose.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((match) => match[1] ?? '')
  return [...inline, ...references]
}

/**
 * The anchors GitHub gives a Markdown file's headings: the heading's text, lower-cased, without punctuation, spaces
 * as hyphens; a repeated one gets `-1`, `-2`, … (the rule of GitHub's renderer).
 */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const match of proseOf(markdown).matchAll(/^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const text = (match[1] ?? '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[*_`]/g, '')
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M} -]/gu, '')
      .replace(/ /g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

/** What is wrong with `target`, a link in `file`, or null when it reaches a file (and heading) of the repository. */
function brokenLink(file: string, target: string): string | null {
  // The service's own pages on a developer's machine are the only web links: the documentation stands alone.
  if (/^https?:\/\/(localhost|127\.0\.0\.1)(:\d+)?(\/|$)/i.test(target)) return null
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return 'a link outside the repository'
  if (target.startsWith('/')) return 'an absolute path: it only works on one machine'
  const [pathPart = '', anchor] = target.split('#', 2)
  const path = pathPart === '' ? file : resolve(dirname(file), decodeURIComponent(pathPart))
  const inside = relative(ROOT, path)
  if (inside.startsWith('..') || inside.startsWith(sep)) return 'outside the repository'
  if (!existsSync(path)) return 'no such file'
  if (anchor === undefined || anchor === '') return null
  if (!statSync(path).isFile() || !path.endsWith('.md')) return 'an anchor into something that is not Markdown'
  return headingAnchors(readFileSync(path, 'utf8')).has(decodeURIComponent(anchor)) ? null : 'no such heading'
}

/** Names of documents that live outside the repository; a clone has none of them. */
const OUTSIDE_DOCUMENTS = /\b(?:API|BETTER-AUTH|DESIGN)\.md\b|beside this repository/

/** The user-facing `detail` texts of an answer: its string, or each `msg` of a 422 list. */
const detailTexts = (answer: HttpError): string[] =>
  typeof answer.detail === 'string' ? [answer.detail] : answer.detail.map((issue) => issue.msg)

/** The section of a Markdown document under `## <title>`, up to the next `## ` heading. */
function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`)
  assert.notEqual(start, -1, `docs/contract.md has no section "${title}"`)
  const end = markdown.indexOf('\n## ', start + 1)
  return markdown.slice(start, end === -1 ? undefined : end)
}

void test('every link in the Markdown files reaches a file and heading inside the repository (or the local service)', () => {
  const files = markdownFiles()
  assert.ok(files.includes(CONTRACT), 'docs/contract.md exists')
  const broken = files.flatMap((file) => {
    const markdown = readFileSync(file, 'utf8')
    return linkTargets(markdown).flatMap((target) => {
      const problem = brokenLink(file, target)
      return problem === null ? [] : [`${relative(ROOT, file)}: (${target}) is ${problem}`]
    })
  })
  assert.deepEqual(broken, [])
})

void test('no Markdown file, source comment or script points to a document kept outside the repository', () => {
  // This file names them in its own pattern, and the lockfile holds no prose.
  const files = filesEndingWith(['.md', '.ts', '.js', '.json', '.html']).filter(
    (file) => file !== import.meta.filename && !file.endsWith('package-lock.json'),
  )
  const offending = [...files, join(ROOT, '.ci', 'run')].flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, index) =>
        OUTSIDE_DOCUMENTS.test(line) ? [`${relative(ROOT, file)}:${index + 1}: ${line}`] : [],
      ),
  )
  assert.deepEqual(offending, [])
})

void test("every error answer's detail is in the contract", () => {
  const contract = readFileSync(CONTRACT, 'utf8')
  const catalogue = [...Object.values(answers), answerOfFastifyError('', 400), answerOfParserError(undefined)]
  const missing = catalogue.flatMap(detailTexts).filter((detail) => !contract.includes(detail))
  assert.deepEqual(missing, [])
})

void test("every variable the configuration reads is in the contract's configuration table", () => {
  const read = new Set<string>()
  const environment = new Proxy<Record<string, string | undefined>>(
    {},
    {
      get(_, name) {
        if (typeof name === 'string') read.add(name)
        return undefined
      },
    },
  )
  loadConfig(environment)
  assert.ok(read.has('DATABASE_URL') && read.has('BETTER_AUTH_SECRET'), `the recorder saw ${[...read].join(', ')}`)
  const table = section(readFileSync(CONTRACT, 'utf8'), 'Configuration')
    .split('\n')
    .filter((line) => line.startsWith('|'))
  const documented = new Set(
    table.flatMap((row) => [...(row.split('|')[1] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1])),
  )
  assert.deepEqual(
    [...read].filter((name) => !documented.has(name)),
    [],
  )
})
