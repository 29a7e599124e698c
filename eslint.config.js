// Lint rules: typescript-eslint's type-checked set, plus the layering rules of DESIGN.md.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

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
      // SQL lives in src/db/ and the stores only.
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['drizzle-orm', 'drizzle-orm/*', 'pg', '@electric-sql/pglite'],
              message: 'Database access belongs in src/db/ and *-store.ts.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/db/**', 'src/**/*-store.ts', 'test/**', 'bench/**', 'scripts/**', 'drizzle.config.ts'],
    rules: { 'no-restricted-imports': 'off' },
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
