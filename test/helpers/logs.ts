// The log rules of issue 4, checked over captured JSON log lines (an app's, or a child server's stdout): no token,
// no stack trace, and every 503 logged exactly once with its cause and its request id.
import assert from 'node:assert/strict'

/** Parses JSON log lines; a line that is not JSON fails the test (the service logs JSON only). */
export function parseLogLines(lines: readonly string[]): Record<string, unknown>[] {
  return lines.map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>
    } catch {
      assert.fail(`a log line is not JSON: ${line.slice(0, 200)}`)
    }
  })
}

/** No line contains any of `tokens` (nor a token's signature alone), nor a stack trace. */
export function assertNoTokenNorStack(lines: readonly string[], tokens: Iterable<string>): void {
  const secrets = [...tokens]
    .flatMap((token) => [token, token.split('.')[2] ?? token])
    .filter((secret) => secret.length >= 16)
  for (const line of lines) {
    for (const secret of secrets)
      assert.ok(!line.includes(secret), `a log line contains a token: ${line.slice(0, 200)}`)
    assert.ok(!/"stack"|\\n\s+at /.test(line), `a log line contains a stack trace: ${line.slice(0, 300)}`)
  }
}

/** Each request id of a 503 has exactly one log line with that `reqId` and a `cause`. */
export function assertEach503LoggedOnce(lines: readonly string[], requestIdsOf503: Iterable<string>): void {
  const parsed = parseLogLines(lines)
  for (const requestId of requestIdsOf503) {
    const explained = parsed.filter((line) => line.reqId === requestId && line.cause !== undefined)
    assert.equal(
      explained.length,
      1,
      `the 503 of request ${requestId} is logged once with its cause (found ${explained.length})`,
    )
  }
}
