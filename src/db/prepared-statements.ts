// Named prepared statements for the stores: each statement's SQL is built once per process, and sent under its name,
// so that PostgreSQL parses and plans it once per connection instead of on every request.

/** A Drizzle query that can be prepared under a name ('' sends it unnamed). */
interface Preparable<Prepared> {
  prepare(name: string): Prepared
}

/** Gives the prepared statement named by `nameParts`, building it with `build` on its first use. */
type StatementCache = <Prepared>(nameParts: readonly (string | false)[], build: () => Preparable<Prepared>) => Prepared

/**
 * A cache of prepared statements named `<prefix>_<parts joined by _>` (`false` parts are left out, so a part can be
 * written `columns.title && 'title'`). pg refuses one name for two different SQL texts on a connection, so every
 * choice that changes a statement's text must be one of its name's parts.
 * `named` is DATABASE_PREPARED_STATEMENTS: false sends the same statements unnamed, for a transaction-mode pooler
 * without prepared-statement support (PgBouncer before 1.21, or `max_prepared_statements = 0`); their SQL is still
 * built once.
 */
export function createStatementCache(prefix: string, named: boolean): StatementCache {
  const statements = new Map<string, unknown>()
  return <Prepared>(nameParts: readonly (string | false)[], build: () => Preparable<Prepared>): Prepared => {
    const name = [prefix, ...nameParts.filter((part) => part !== false)].join('_')
    let statement = statements.get(name) as Prepared | undefined
    if (statement === undefined) statements.set(name, (statement = build().prepare(named ? name : '')))
    return statement
  }
}
