// Reads a WWW-Authenticate value as its grammar defines it (RFC 9110 §11.6.1 and §11.2), so that a client asks for a
// new token only on a Bearer challenge whose `error` parameter is `invalid_token` (RFC 6750 §3), never on the text
// "invalid_token" appearing in a realm, an error_description or another scheme's challenge.

/** One challenge: its scheme in lower case (schemes are case-insensitive) and its auth-params by lower-cased name. */
export interface Challenge {
  scheme: string
  params: Map<string, string>
}

/** RFC 9110 §5.6.2 `token`. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/
/** RFC 9110 §5.6.4 `quoted-string`, its backslash escapes kept for unquoting. */
const QUOTED_STRING = /^"((?:[^"\\]|\\.)*)"/
/**
 * RFC 9110 §11.2 `token68`, the other form of a challenge's data: only when the end or a comma follows, which tells
 * `abc==` from the auth-param `abc=def`.
 */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))/
/** `token BWS "=" BWS`: the start of an auth-param (then a token or a quoted-string). */
const PARAM_NAME = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*/

/**
 * The challenges of a WWW-Authenticate field value, in order. Parsing stops at the first thing that is not valid
 * syntax and returns the challenges read so far, so a malformed value never throws and never invents a parameter.
 */
export function parseChallenges(value: string): Challenge[] {
  const challenges: Challenge[] = []
  let rest = value.trim()
  // Between elements: optional whitespace and any number of commas (the list rule allows empty elements).
  const skipSeparators = (): void => void (rest = rest.replace(/^[ \t,]*/, ''))
  skipSeparators()
  while (rest !== '') {
    const scheme = TOKEN.exec(rest)?.[0]
    if (scheme === undefined) break
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: new Map() }
    challenges.push(challenge)
    rest = rest.slice(scheme.length)
    if (!/^[ \t]/.test(rest)) {
      // A bare scheme: the next element (after a comma) is another challenge.
      skipSeparators()
      continue
    }
    rest = rest.trimStart()
    const token68 = TOKEN68.exec(rest)?.[0]
    if (token68 !== undefined) {
      rest = rest.slice(token68.length)
      skipSeparators()
      continue
    }
    // auth-params until an element that is not `name=value`: that element starts the next challenge.
    for (let name = PARAM_NAME.exec(rest); name !== null; name = PARAM_NAME.exec(rest)) {
      rest = rest.slice(name[0].length)
      const quoted = QUOTED_STRING.exec(rest)
      const text = quoted === null ? TOKEN.exec(rest)?.[0] : quoted[0]
      if (text === undefined) return challenges
      const paramValue = quoted?.[1] === undefined ? text : quoted[1].replace(/\\(.)/g, '$1')
      const key = (name[1] ?? '').toLowerCase()
      // A name given twice is invalid (RFC 9110 §11.2); the first one counts.
      if (!challenge.params.has(key)) challenge.params.set(key, paramValue)
      rest = rest.slice(text.length)
      if (!/^[ \t]*(,|$)/.test(rest)) return challenges
      skipSeparators()
    }
  }
  return challenges
}

/**
 * True when `value` (a WWW-Authenticate field value, or null when the header is absent or not exposed by CORS) holds
 * a Bearer challenge with `error="invalid_token"`: the token was refused (expired, bad signature, …), so a fresh one
 * may succeed. RFC 6750 §3 error codes are case-sensitive; scheme and parameter names are not.
 */
export function isInvalidTokenChallenge(value: string | null): boolean {
  if (value === null) return false
  return parseChallenges(value).some(
    (challenge) => challenge.scheme === 'bearer' && challenge.params.get('error') === 'invalid_token',
  )
}
