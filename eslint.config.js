// Lint rules: typescript-eslint's type-checked set, plus the layering rules (docs/decisions/source-file-limits.md).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/** The database drivers and Drizzle's driver-specific modules: src/db/ only. */
const DRIVERS = {
  regex: '^(pg|pg-[^/]+|@electric-sql/.+|drizzle-orm/.+)$',
  message:
    'Only src/db/ uses a database driver or reads its errors (ask src/db/pg-errors.ts what a failure means); stores use the query builder of drizzle-orm.',
}

/** Drizzle's query builder: the stores (*-store.ts) and src/db/ only. */
const QUERY_BUILDER = {
  regex: '^drizzle-orm$',
  message: 'SQL belongs in src/db/ and the stores (*-store.ts), which may use the query builder of drizzle-orm.',
}

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'migrations/', '.data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      // Prettier wraps code at 120 columns; this holds comments to the same width. Long strings stay whole, so a
      // message or a test name can be searched for.
      'max-len': [
        'error',
        { code: 120, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true },
      ],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // Fastify's plugins and hooks are async by convention, with or without an await inside.
      '@typescript-eslint/require-await': 'off',
      // Only config.ts reads the environment (scripts and tests have their own entries below).
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Read settings through loadConfig (src/config.ts).' },
      ],
      // Layering: only src/db/ touches a database driver, and SQL lives in src/db/ and the stores (below).
      'no-restricted-imports': ['error', { patterns: [DRIVERS, QUERY_BUILDER] }],
    },
  },
  {
    // Stores build their SQL with drizzle-orm's query builder, which is the same for both drivers; drivers, their
    // Drizzle adapters and their error shapes stay in src/db/ (errors are read by src/db/pg-errors.ts).
    files: ['src/**/*-store.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [DRIVERS] }] },
  },
  {
    files: ['src/db/**', 'test/**', 'bench/**', 'scripts/**', 'drizzle.config.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // A SQLSTATE (five characters, a digit first) is read by src/db/pg-errors.ts alone.
    files: ['src/**'],
    ignores: ['src/db/pg-errors.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'Literal[value=/^([0-9][0-9A-Z]|HV|P0|XX|F0)[0-9A-Z]{3}$/]',
          message: 'SQLSTATEs are read only in src/db/pg-errors.ts: use or add a named predicate there.',
        },
      ],
    },
  },
  { files: ['src/main.ts', 'test/**', 'bench/**', 'scripts/**'], rules: { 'no-restricted-properties': 'off' } },
  // A source file holds one job; past 250 lines it holds two. Every line counts, comments and blank ones too, as a
  // reader (and `wc -l`) sees them: skipping comments would let a file grow on history that belongs in docs/decisions/.
  { files: ['src/**'], rules: { 'max-lines': ['error', { max: 250, skipBlankLines: false, skipComments: false }] } },
  {
    files: ['test/**'],
    rules: {
      // node:test's test() and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
          ],
        },
      ],
      // Response bodies (`response.json()`) are untyped JSON that the tests assert on field by field.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
)
