// The example frontend (examples/web) in a real browser: Debian's Chromium, driven by playwright-core, opens the
// example's own index.html and src/main.ts (bundled by esbuild, as Vite would serve them), served beside a real Better
// Auth server (jwt() plugin, 5-second tokens) on its origin, against the service listening on loopback with that
// origin in CORS_ORIGINS. Two users sign up and work through the page; a token expires mid-session and the typed
// client recovers; a page on an origin the service does not allow fails, and the service's log names that origin.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { test, type TestContext } from 'node:test'
import { build } from 'esbuild'
import { decodeJwt } from 'jose'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { startBetterAuth, type BetterAuthServer } from '../helpers/better-auth.ts'
import { assertNoTokenNorStack, parseLogLines } from '../helpers/logs.ts'
import { buildTestApp, listenOnLoopback } from '../helpers/test-app.ts'

/** Debian's `chromium` package (.ci/run installs it when missing); playwright's own downloads are not used. */
const CHROMIUM = '/usr/bin/chromium'

const EXAMPLE = new URL('../../examples/web/', import.meta.url)

/** How long one step in the page may take (a click and the API calls it makes) on a loaded machine, in ms. */
const STEP_TIMEOUT_MS = 15_000

/** Better Auth's token life here, and how long the test waits so that the page's cached token has surely expired. */
const TOKEN_LIFETIME = '5s'
const PAST_TOKEN_LIFETIME_MS = 6_000

const PASSWORD = 'correct-horse-battery-staple'

/** The 401 challenge of a refused token (expired or invalid), on which the typed client fetches a fresh one. */
const INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'

/**
 * Serves the example page on Better Auth's origin: its index.html as it is, and its src/main.ts bundled for the
 * browser under the same path (the browser goes by the content type, not the name), with `VITE_API_URL` set.
 */
async function serveExamplePage(betterAuth: BetterAuthServer, apiUrl: string): Promise<void> {
  const bundle = await build({
    entryPoints: [new URL('src/main.ts', EXAMPLE).pathname],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
    define: { 'import.meta.env.VITE_API_URL': JSON.stringify(apiUrl) },
  })
  const script = bundle.outputFiles[0]?.text
  assert.ok(script !== undefined, 'esbuild bundled the example')
  const html = await readFile(new URL('index.html', EXAMPLE), 'utf8')
  betterAuth.pageFiles.set('/', { contentType: 'text/html; charset=utf-8', body: html })
  betterAuth.pageFiles.set('/src/main.ts', { contentType: 'text/javascript; charset=utf-8', body: script })
}

/** Headless Chromium, closed after the test. */
async function launchChromium(t: TestContext): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: STEP_TIMEOUT_MS,
  })
  t.after(() => browser.close())
  return browser
}

/** What the page's status line says once it says something other than `before` (an error included). */
async function nextStatus(page: Page, before: string | null): Promise<string> {
  await page.waitForFunction((previous) => document.getElementById('status')?.textContent !== previous, before, {
    timeout: STEP_TIMEOUT_MS,
  })
  return (await page.textContent('#status')) ?? ''
}

/** Does `step` in the page and checks the status line it leads to. */
async function expectStatus(page: Page, step: () => Promise<void>, expected: string | RegExp): Promise<void> {
  const before = await page.textContent('#status')
  await step()
  const status = await nextStatus(page, before)
  if (typeof expected === 'string') assert.equal(status, expected)
  else assert.match(status, expected)
}

/** The page's view of the list, read at once: the total line (from X-Total-Count) and each task's title and state. */
async function shownTasks(page: Page): Promise<{ total: string | null; tasks: string[] }> {
  return page.evaluate(() => ({
    total: document.getElementById('total')?.textContent ?? null,
    tasks: [...document.querySelectorAll('#tasks li')].map(
      (item) => `${item.querySelector('.title')?.textContent}${item.classList.contains('completed') ? ' ✓' : ''}`,
    ),
  }))
}

/** Opens (or reloads) the page and waits until it has listed the signed-in user's tasks. */
async function openListed(page: Page, url: string): Promise<void> {
  await page.goto(url)
  await page.waitForFunction(() => document.getElementById('total')?.textContent !== '', null, {
    timeout: STEP_TIMEOUT_MS,
  })
}

const taskRow = (page: Page, title: string) => page.locator('#tasks li', { hasText: title })

async function signUp(page: Page, email: string, name: string): Promise<void> {
  await page.fill('#auth-form [name=email]', email)
  await page.fill('#auth-form [name=password]', PASSWORD)
  await page.fill('#auth-form [name=name]', name)
  await expectStatus(page, () => page.click('#auth-form button[value=sign-up]'), 'Welcome!')
}

async function addTask(page: Page, title: string): Promise<void> {
  await page.fill('#new-task [name=title]', title)
  await expectStatus(page, () => page.click('#new-task button'), `Added “${title}”`)
}

/** A 401 the browser received from the service: its challenge, and whether the token it carried had expired. */
interface Refusal {
  challenge: string | undefined
  tokenHadExpired: boolean
}

/**
 * Records the 401s of the service's answers as they arrive. Their bodies are not read: the typed client cancels a
 * refused answer's body, so the browser may no longer have it. The token each request carried tells why instead.
 */
function record401s(context: BrowserContext, apiUrl: string): Refusal[] {
  const refusals: Refusal[] = []
  context.on('response', (response) => {
    if (!response.url().startsWith(apiUrl) || response.status() !== 401) return
    const request = response.request()
    const token = request.headers().authorization?.replace(/^Bearer /, '')
    const expiresAtMs = token === undefined ? NaN : (decodeJwt(token).exp ?? NaN) * 1000
    refusals.push({
      challenge: response.headers()['www-authenticate'],
      tokenHadExpired: expiresAtMs <= request.timing().startTime,
    })
  })
  return refusals
}

void test(
  'the example page: two users sign up, work on their own tasks, survive a token expiry; a refused origin is logged',
  { timeout: 120_000 },
  async (t) => {
    const betterAuth = await startBetterAuth(t, { expirationTime: TOKEN_LIFETIME })
    const pageOrigin = betterAuth.baseURL
    const { app, logs } = await buildTestApp(t, {
      // No clock tolerance, so a 5-second token is refused 5 seconds after it was issued.
      config: { jwksUrl: betterAuth.jwksUrl, corsOrigins: [pageOrigin], clockToleranceS: 0 },
    })
    const apiUrl = `http://127.0.0.1:${await listenOnLoopback(app)}`
    await serveExamplePage(betterAuth, apiUrl)

    const browser = await launchChromium(t)
    const [alice, bob] = await Promise.all([browser.newContext(), browser.newContext()])
    assert.ok(alice !== undefined && bob !== undefined)
    const alice401s = record401s(alice, apiUrl)
    const tokensSent = new Set<string>()
    for (const context of [alice, bob]) {
      context.setDefaultTimeout(STEP_TIMEOUT_MS)
      context.on('request', (request) => {
        const authorization = request.headers().authorization
        if (authorization !== undefined) tokensSent.add(authorization.replace(/^Bearer /, ''))
      })
    }
    const [alicePage, bobPage] = await Promise.all([alice.newPage(), bob.newPage()])
    assert.ok(alicePage !== undefined && bobPage !== undefined)

    // Alice signs up and creates, lists, toggles, edits and deletes.
    await alicePage.goto(pageOrigin)
    await signUp(alicePage, 'alice@example.com', 'Alice')
    assert.deepEqual(await shownTasks(alicePage), { total: '0 tasks', tasks: [] })
    for (const title of ['Buy milk', 'Call the bank', 'File taxes']) await addTask(alicePage, title)
    assert.deepEqual(await shownTasks(alicePage), {
      total: '3 tasks',
      tasks: ['File taxes', 'Call the bank', 'Buy milk'],
    })
    await expectStatus(
      alicePage,
      () => taskRow(alicePage, 'Buy milk').locator('input[type=checkbox]').check(),
      '“Buy milk” is done',
    )
    // Once editing, the title is an input's value, not the row's text: hold the row by its task id.
    const editedId = await taskRow(alicePage, 'Call the bank').getAttribute('data-task-id')
    const edited = alicePage.locator(`#tasks li[data-task-id="${editedId}"]`)
    await edited.getByRole('button', { name: 'Edit' }).click()
    await edited.locator('input[name=title]').fill('Call the bank on Monday')
    await expectStatus(
      alicePage,
      () => edited.getByRole('button', { name: 'Save' }).click(),
      'Saved “Call the bank on Monday”',
    )
    await expectStatus(
      alicePage,
      () => taskRow(alicePage, 'File taxes').getByRole('button', { name: 'Delete' }).click(),
      'Deleted “File taxes”',
    )
    assert.deepEqual(await shownTasks(alicePage), {
      total: '2 tasks',
      tasks: ['Call the bank on Monday', 'Buy milk ✓'],
    })
    const aliceTaskId = await taskRow(alicePage, 'Buy milk').getAttribute('data-task-id')
    assert.match(aliceTaskId ?? '', /^\d+$/)

    // Bob signs up and sees none of Alice's tasks; her task's id from his session is 404 for every method.
    await bobPage.goto(pageOrigin)
    await signUp(bobPage, 'bob@example.com', 'Bob')
    assert.deepEqual(await shownTasks(bobPage), { total: '0 tasks', tasks: [] })
    await addTask(bobPage, 'Walk the dog')
    assert.deepEqual(await shownTasks(bobPage), { total: '1 task', tasks: ['Walk the dog'] })
    const answers = await bobPage.evaluate(
      async ({ apiUrl, id }) => {
        // Bob's session cookie (this origin's) gets his token, as the page's getToken does.
        const { token } = (await (await fetch('/api/auth/token')).json()) as { token: string }
        const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
        const results = []
        for (const [method, path, body] of [
          ['GET', '', undefined],
          ['PUT', '', '{"title":"Mine now"}'],
          ['PATCH', '/complete', undefined],
          ['DELETE', '', undefined],
        ] as const) {
          const response = await fetch(`${apiUrl}/api/tasks/${id}${path}`, { method, headers, body })
          results.push(`${method} ${response.status} ${await response.text()}`)
        }
        return results
      },
      { apiUrl, id: aliceTaskId },
    )
    assert.deepEqual(
      answers,
      ['GET', 'PUT', 'PATCH', 'DELETE'].map((method) => `${method} 404 {"detail":"Task not found"}`),
    )

    // Alice's token expires mid-session: her next action is refused 401 Token expired, and the typed client gets a
    // fresh token and retries, so the page shows plain success (and the retried create made one task, not two).
    await openListed(alicePage, pageOrigin)
    assert.deepEqual(await shownTasks(alicePage), {
      total: '2 tasks',
      tasks: ['Call the bank on Monday', 'Buy milk ✓'],
    })
    const refusedBefore = alice401s.length
    await sleep(PAST_TOKEN_LIFETIME_MS)
    await addTask(alicePage, 'Renew the passport')
    assert.deepEqual(await shownTasks(alicePage), {
      total: '3 tasks',
      tasks: ['Renew the passport', 'Call the bank on Monday', 'Buy milk ✓'],
    })
    const refusedAfter = alice401s.slice(refusedBefore)
    assert.ok(refusedAfter.length >= 1, 'the service refused the expired token at least once')
    assert.deepEqual(
      refusedAfter.filter(
        ({ challenge, tokenHadExpired }) => challenge !== INVALID_TOKEN_CHALLENGE || !tokenHadExpired,
      ),
      [],
      'every 401 was an expired token, answered with the challenge the typed client acts on',
    )
    // The service's own account: every 401 the browser received is in its log (as a completed request).
    const logged401s = parseLogLines(logs).filter((line) => (line.res as { statusCode?: number })?.statusCode === 401)
    assert.ok(logged401s.length >= alice401s.length, 'the service logged each 401')

    // Sign out and in again: the same tasks.
    await expectStatus(alicePage, () => alicePage.click('#sign-out'), 'Signed out')
    assert.equal(await alicePage.isVisible('#auth-form'), true)
    await alicePage.fill('#auth-form [name=email]', 'alice@example.com')
    await alicePage.fill('#auth-form [name=password]', PASSWORD)
    await expectStatus(alicePage, () => alicePage.click('#auth-form button[value=sign-in]'), 'Signed in')
    assert.equal((await shownTasks(alicePage)).total, '3 tasks')

    // The same page, signed in (cookies ignore ports), on an origin not in CORS_ORIGINS: the browser withholds the
    // answer ("Failed to fetch") and the service logs the refused origin.
    const refusedOrigin = await betterAuth.listenOnAnotherPort()
    const refusedPage = await alice.newPage()
    await refusedPage.goto(refusedOrigin)
    assert.match((await refusedPage.locator('#status.error').textContent()) ?? '', /Failed to fetch/)
    const refusals = parseLogLines(logs).filter((line) => line.msg === 'CORS origin refused')
    assert.deepEqual(
      refusals.map((line) => line.origin),
      [refusedOrigin],
      'the service logged the refused origin once',
    )
    assertNoTokenNorStack(logs, tokensSent)
  },
)
