// `npm run token -- <user-id> [minutes]`: prints an HS256 token for local development, signed with
// BETTER_AUTH_SECRET exactly as the service verifies it (the shape of a `sub`-carrying token). Refuses, exit 1, when
// the service has HS256 off (JWT_JWKS_URL without BETTER_AUTH_SECRET).
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
if (config.betterAuthSecret === null) {
  // The service would refuse the token (alg_not_allowed): say so rather than print one that cannot work.
  process.stderr.write(
    'HS256 is off: JWT_JWKS_URL is set and BETTER_AUTH_SECRET is not, so the service accepts only tokens from the key ' +
      "set. Set BETTER_AUTH_SECRET (your Better Auth app's) to sign one here, or get one from your Better Auth app.\n",
  )
  process.exit(1)
}
const token = await new SignJWT({})
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setSubject(userId)
  .setIssuedAt()
  .setExpirationTime(`${minutes} min`)
  .sign(new TextEncoder().encode(config.betterAuthSecret))
process.stdout.write(`${token}\n`)
