// Preloaded (node --import) into a server during the parity check only: appends the text of every SQL
// statement the process sends through pg to the file named by BENCH_CAPTURE_SQL, one JSON string a line,
// so the harness sees on the wire what the service sends, whatever builds the SQL.
import { appendFileSync } from 'node:fs'
import pg from 'pg'

const file = process.env.BENCH_CAPTURE_SQL
if (file !== undefined && file !== '') {
  const prototype = pg.Client.prototype as unknown as {
    query: (this: unknown, config: unknown, ...rest: unknown[]) => unknown
  }
  const query = prototype.query
  prototype.query = function (this: unknown, config: unknown, ...rest: unknown[]) {
    const text = typeof config === 'string' ? config : (config as { text?: unknown } | null)?.text
    if (typeof text === 'string') appendFileSync(file, `${JSON.stringify(text)}\n`)
    return query.call(this, config, ...rest)
  }
}
