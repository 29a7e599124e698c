// One really signed HS256 token per seeded user, as Better Auth's clients present them.
import { SignJWT } from 'jose'

/** `Bearer <token>` for each user id, valid for `hours` (long enough for the whole run). */
export async function bearerTokens(
  userIds: readonly string[],
  secret: string,
  hours = 12,
): Promise<Map<string, string>> {
  const key = new TextEncoder().encode(secret)
  const tokens = new Map<string, string>()
  for (const userId of userIds) {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userId)
      .setIssuedAt()
      .setExpirationTime(`${hours}h`)
      .sign(key)
    tokens.set(userId, `Bearer ${token}`)
  }
  return tokens
}
