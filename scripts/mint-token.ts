// `npm run token -- <user-id> [minutes]`: prints an HS256 token for local development, signed with
// BETTER_AUTH_SECRET exactly as the service verifies it (the shape of a `sub`-carrying token).
import { existsSync } from 'node:fs'
import { SignJWT } from 'jose'
import { loadConfigOrExit } from '../src/config.ts'

if (existsSync('.env')) process.loadEnvFile('.env')
const [userId, minutes = '60'] = process.argv.slice(2)
if (userId === undefined || userId === '' || !/^[1-9]\d*$/.test(minutes)) {
  process.stderr.write('usage: npm run token -- <user-id> [lifetime in minutes, default 60]\n')
  process.exit(2)
}
const config = loadConfigOrExit(process.env)
const token = await new SignJWT({})
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setSubject(userId)
  .setIssuedAt()
  .setExpirationTime(`${minutes} min`)
  .sign(new TextEncoder().encode(config.betterAuthSecret))
process.stdout.write(`${token}\n`)
