// The OpenAPI 3.1 document (/openapi.json) and the interactive docs page (/docs), both built from the route schemas.
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { PATTERN_MESSAGE } from './validation.ts'

/**
 * The one inline style the /docs page runs: the `<style>` element of the Swagger logo that swagger-ui's standalone
 * preset renders (`.logo_small_svg__cls-2{fill:#fff}…`). Its hash allows it and nothing else, where 'unsafe-inline'
 * would allow any; test/http-security.test.ts recomputes it from the served script, so a swagger-ui update that
 * changes the style fails there.
 */
const LOGO_STYLE_HASH = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"

/**
 * Registers the document generator; call before any route so every route is described. OpenAPI 3.1,
 * because 3.0.3 cannot express the JSON Schema (type lists, exclusive bounds) the routes use.
 */
export async function installOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tasks API',
        version: '1.0.0',
        description:
          'Private task lists for users of a Better Auth frontend. Every /api route needs `Authorization: Bearer <jwt>`.',
      },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
    // A plugin's '/' route under a prefix is documented as '/api/tasks/'; Fastify serves it with and without
    // the slash, and docs/contract.md names it '/api/tasks', so the document does too (clients generated from it
    // agree).
    transform: ({ schema, url }) => ({ schema, url: url.length > 1 ? url.replace(/\/+$/, '') : url }),
    // The 422 message of a pattern is the validator's annotation, not part of the schema a client is given.
    transformObject: (document) =>
      withOptionalBodies(
        withoutPatternMessages('openapiObject' in document ? document.openapiObject : document.swaggerObject),
      ),
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // The page's own scripts and styles only, and the logo's inline style; no upgrade of http (local development), no
    // framing.
    staticCSP: true,
    transformStaticCSP: (header) =>
      header
        .replace('upgrade-insecure-requests;', '')
        .replace("frame-ancestors 'self'", "frame-ancestors 'none'")
        .replace("style-src 'self'", `style-src 'self' ${LOGO_STYLE_HASH}`),
    uiConfig: { persistAuthorization: false },
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}

/**
 * Marks a route's body as optional in the document: `BODY_OPTIONAL: true` on a route schema. @fastify/swagger always
 * writes `requestBody.required: true`, but PATCH /api/tasks/{id}/complete accepts no body (it toggles), and a client
 * generated from the document would otherwise have to send `{}`.
 */
export const BODY_OPTIONAL = 'x-body-optional'

/** The document with `requestBody.required: false` on every operation marked BODY_OPTIONAL, and the mark removed. */
function withOptionalBodies<T>(document: T): T {
  type Operation = { [BODY_OPTIONAL]?: boolean; requestBody?: { required?: boolean } }
  const paths = (document as { paths?: Record<string, Record<string, Operation>> }).paths ?? {}
  for (const operation of Object.values(paths).flatMap((path) => Object.values(path))) {
    if (operation[BODY_OPTIONAL] !== true) continue
    delete operation[BODY_OPTIONAL]
    if (operation.requestBody !== undefined) operation.requestBody.required = false
  }
  return document
}

/** A copy of the document with every PATTERN_MESSAGE keyword left out. */
function withoutPatternMessages<T>(document: T): T {
  return JSON.parse(
    JSON.stringify(document, (key, value: unknown) => (key === PATTERN_MESSAGE ? undefined : value)),
  ) as T
}
