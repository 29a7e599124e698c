// The example page. Better Auth's browser client signs the user in on this page's origin (its cookies stay here);
// the typed client calls the Tasks API, on its own origin, with the jwt() plugin's token as `Authorization: Bearer`.
// When that token expires mid-session, the typed client fetches a fresh one and retries: the user sees nothing.
import {
  createTasksClient,
  etagOf,
  newIdempotencyKey,
  totalCountOf,
  type Task,
  type TasksClient,
} from '@tasks-api/client'
import { createAuthClient } from 'better-auth/client'
import { jwtClient } from 'better-auth/client/plugins'

/** Where the Tasks API listens: `npm start` in the repository root serves it on port 8000. */
const API_URL = import.meta.env.VITE_API_URL ?? 'http://localhost:8000'

/** Better Auth on this page's origin (/api/auth); `jwtClient()` adds `authClient.token()`. */
const authClient = createAuthClient({ plugins: [jwtClient()] })

const element = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T
const statusLine = element<HTMLParagraphElement>('status')
const signedOut = element<HTMLElement>('signed-out')
const signedIn = element<HTMLElement>('signed-in')
const authForm = element<HTMLFormElement>('auth-form')
const newTaskForm = element<HTMLFormElement>('new-task')
const taskList = element<HTMLUListElement>('tasks')

/** The client of the signed-in user; a new one per session, so no token of the previous user is ever reused. */
let api: TasksClient | undefined

function tasksApi(): TasksClient {
  if (api === undefined) throw new Error('Signed out')
  return api
}

function showStatus(text: string, isError = false): void {
  statusLine.textContent = text
  statusLine.classList.toggle('error', isError)
}

/** The message of a failed call: the API's `detail` (a string, or a 422 list of `msg`s), or Better Auth's message. */
function messageOf(error: unknown): string {
  const detail = (error as { detail?: unknown } | undefined)?.detail
  if (typeof detail === 'string') return detail
  if (Array.isArray(detail)) return detail.map((item: { msg?: string }) => item.msg).join('; ')
  return (error as { message?: string } | undefined)?.message ?? 'Something went wrong'
}

/**
 * Runs one user action and shows what it returns. A network failure, a refused CORS origin included, rejects with a
 * TypeError ("Failed to fetch"): the browser hides the reason from the page, so the message says where to look.
 */
async function act(action: () => Promise<string | undefined>): Promise<void> {
  try {
    const done = await action()
    if (done !== undefined) showStatus(done)
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    if (!(error instanceof TypeError)) return showStatus(reason, true)
    showStatus(
      `Cannot reach the Tasks API at ${API_URL} (${reason}): is it running, and is ${location.origin} in its CORS_ORIGINS?`,
      true,
    )
  }
}

/**
 * Shows the signed-in view for `email` or the sign-in form, and loads the user's tasks. A failed load throws, so the
 * caller's `act` shows why (a wrong JWT_ISSUER, a refused origin) instead of "Welcome!" over an empty list.
 */
async function showSession(email: string | undefined): Promise<void> {
  signedOut.hidden = email !== undefined
  signedIn.hidden = email === undefined
  taskList.replaceChildren()
  element('total').textContent = ''
  if (email === undefined) {
    api = undefined
    return
  }
  element('user-email').textContent = email
  api = createTasksClient({
    baseUrl: API_URL,
    getToken: async () => (await authClient.token()).data?.token ?? null,
  })
  await loadTasks()
}

/** Lists the newest 50 tasks; the total comes from `X-Total-Count`. Throws the API's message when refused. */
async function loadTasks(): Promise<undefined> {
  const { data, error, response } = await tasksApi().GET('/api/tasks', { params: { query: { limit: 50 } } })
  if (error !== undefined) throw new Error(messageOf(error))
  const total = totalCountOf(response) ?? data.length
  element('total').textContent = `${total} ${total === 1 ? 'task' : 'tasks'}`
  taskList.replaceChildren(...data.map(renderTask))
}

function button(label: string, onClick: () => Promise<string | undefined>): HTMLButtonElement {
  const result = document.createElement('button')
  result.type = 'button'
  result.textContent = label
  result.addEventListener('click', () => void act(onClick))
  return result
}

/** One task's row: a checkbox to toggle it, its title, Edit and Delete. Text is set as text, never as HTML. */
function renderTask(task: Task): HTMLLIElement {
  const item = document.createElement('li')
  item.dataset.taskId = String(task.id)
  item.classList.toggle('completed', task.completed)
  const checkbox = document.createElement('input')
  checkbox.type = 'checkbox'
  checkbox.checked = task.completed
  checkbox.addEventListener('change', () => void act(() => toggleTask(task)))
  const title = document.createElement('span')
  title.className = 'title'
  title.textContent = task.title
  item.append(
    checkbox,
    title,
    button('Edit', () => startEditing(item, task)),
    button('Delete', () => deleteTask(task)),
  )
  return item
}

async function toggleTask(task: Task): Promise<string> {
  const { data, error } = await tasksApi().PATCH('/api/tasks/{id}/complete', {
    params: { path: { id: task.id } }, // no body: the API toggles `completed`
  })
  await loadTasks()
  if (error !== undefined) return `Not changed: ${messageOf(error)}`
  return `“${data.title}” is ${data.completed ? 'done' : 'to do'}`
}

async function deleteTask(task: Task): Promise<string> {
  const { error } = await tasksApi().DELETE('/api/tasks/{id}', { params: { path: { id: task.id } } })
  await loadTasks()
  return error === undefined ? `Deleted “${task.title}”` : `Not deleted: ${messageOf(error)}`
}

/**
 * Reads the task again for its ETag, then offers its title for editing: the save sends that ETag as If-Match, so an
 * edit made meanwhile elsewhere is answered 412 instead of being overwritten.
 */
async function startEditing(item: HTMLLIElement, task: Task): Promise<string | undefined> {
  const { data, error, response } = await tasksApi().GET('/api/tasks/{id}', { params: { path: { id: task.id } } })
  if (error !== undefined) {
    await loadTasks()
    return `Cannot edit: ${messageOf(error)}`
  }
  const etag = etagOf(response)
  const form = document.createElement('form')
  const input = document.createElement('input')
  input.name = 'title'
  input.value = data.title
  input.required = true
  const save = document.createElement('button')
  save.textContent = 'Save'
  form.append(input, save)
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    void act(() => saveTitle(task.id, input.value, etag))
  })
  item.querySelector('.title')?.replaceChildren(form)
  input.focus()
  return undefined
}

async function saveTitle(id: number, title: string, etag: string): Promise<string> {
  const { data, error, response } = await tasksApi().PUT('/api/tasks/{id}', {
    params: { path: { id }, header: { 'if-match': etag } },
    body: { title },
  })
  await loadTasks()
  if (response.status === 412) return 'This task was changed elsewhere: here it is as it is now'
  return error === undefined ? `Saved “${data.title}”` : `Not saved: ${messageOf(error)}`
}

newTaskForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const titleInput = newTaskForm.elements.namedItem('title') as HTMLInputElement
  void act(async () => {
    // One key per task the user asked for: a retried POST (a lost answer, the token refresh) creates it once.
    const { data, error } = await tasksApi().POST('/api/tasks', {
      body: { title: titleInput.value },
      params: { header: { 'idempotency-key': newIdempotencyKey() } },
    })
    if (error !== undefined) return `Not added: ${messageOf(error)}`
    titleInput.value = ''
    await loadTasks()
    return `Added “${data.title}”`
  })
})

authForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const field = (name: string) => (authForm.elements.namedItem(name) as HTMLInputElement).value
  const [email, password, name] = [field('email'), field('password'), field('name') || field('email')]
  const signUp = (event.submitter as HTMLButtonElement | null)?.value === 'sign-up'
  void act(async () => {
    const { error } = signUp
      ? await authClient.signUp.email({ email, password, name })
      : await authClient.signIn.email({ email, password })
    if (error) return messageOf(error)
    authForm.reset()
    await showSession(email)
    return signUp ? 'Welcome!' : 'Signed in'
  })
})

element('sign-out').addEventListener('click', () => {
  void act(async () => {
    await authClient.signOut()
    await showSession(undefined)
    return 'Signed out'
  })
})

void act(async () => {
  const { data } = await authClient.getSession()
  await showSession(data?.user.email)
  return undefined
})
