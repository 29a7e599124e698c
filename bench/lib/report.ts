// Result lines (JSON, one per measurement) and the tables printed from them.
import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Environment } from './environment.ts'

/** Appends JSON lines to one file per run, each carrying the run's environment. */
export class ResultsFile {
  readonly path: string
  constructor(
    outDir: string,
    mode: string,
    private readonly environment: Environment,
  ) {
    mkdirSync(outDir, { recursive: true })
    this.path = join(outDir, `${environment.date.slice(0, 16).replaceAll(':', '')}Z-${mode}.jsonl`)
  }

  write(line: Record<string, unknown>): void {
    appendFileSync(this.path, `${JSON.stringify({ ...line, ...this.environment })}\n`)
  }
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length === 0
    ? NaN
    : sorted.length % 2 === 1
      ? (sorted[middle] as number)
      : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** A Markdown table (the README's format), columns padded so it also reads well in a terminal. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n')
}

/** A number with at most `digits` decimals, for tables. */
export const fixed = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : '–')
