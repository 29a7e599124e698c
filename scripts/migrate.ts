// `npm run db:migrate`: applies the committed migrations to DATABASE_URL (or ./.data) and exits.
import { existsSync } from 'node:fs'
import { loadConfigOrExit } from '../src/config.ts'
import { openDatabase } from '../src/db/database.ts'
import { applyMigrations } from '../src/db/migrate.ts'

if (existsSync('.env')) process.loadEnvFile('.env')
const config = loadConfigOrExit(process.env)
const database = await openDatabase(config.database, config)
try {
  await applyMigrations(database)
  process.stdout.write('migrations applied\n')
} finally {
  await database.close()
}
