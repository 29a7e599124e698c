/// <reference types="vite/client" />

/** The page's settings, read from `VITE_*` variables when Vite serves or builds it. */
interface ImportMetaEnv {
  /** The Tasks API's base URL (default http://localhost:8000, where `npm start` listens). */
  readonly VITE_API_URL?: string
}
