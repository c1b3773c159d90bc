/** A deliberately dumb PVE client for the simulator's own tests: raw status, status text and JSON body. */
import { Agent, FormData, fetch } from "undici"
import type { RunningSimulator } from "../../src/sim/server.js"

export interface Answer {
  readonly status: number
  readonly statusText: string
  readonly body: unknown
  readonly data: unknown
  readonly errors: Readonly<Record<string, string>> | undefined
}

const insecure = new Agent({ connect: { rejectUnauthorized: false } })

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

export const field = (u: unknown, key: string): unknown => (isRecord(u) ? u[key] : undefined)

export const asString = (u: unknown): string => {
  if (typeof u !== "string") throw new Error(`expected a string, got ${JSON.stringify(u)}`)
  return u
}

export const asArray = (u: unknown): ReadonlyArray<unknown> => {
  if (!Array.isArray(u)) throw new Error(`expected an array, got ${JSON.stringify(u)}`)
  return u
}

export interface CallOptions {
  readonly json?: boolean
  readonly auth?: string | null
}

export const client = (sim: RunningSimulator) => {
  const token = `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`
  const answer = async (response: Awaited<ReturnType<typeof fetch>>): Promise<Answer> => {
    const text = await response.text()
    // pveproxy's own errors (401, 501 no such uri, 596) are plain text or empty, not JSON.
    const json = (response.headers.get("content-type") ?? "").startsWith("application/json")
    const body: unknown = !json || text === "" ? (text === "" ? undefined : text) : JSON.parse(text)
    const errors = field(body, "errors")
    return {
      status: response.status, statusText: response.statusText, body, data: field(body, "data"),
      errors: isRecord(errors) ? Object.fromEntries(Object.entries(errors).map(([k, v]) => [k, String(v)])) : undefined
    }
  }
  const call = async (method: string, path: string, params: Readonly<Record<string, string | number>> = {}, options: CallOptions = {}): Promise<Answer> => {
    const headers: Record<string, string> = {}
    const auth = options.auth === undefined ? token : options.auth
    if (auth !== null) headers["Authorization"] = auth
    let url = sim.url + path
    let body: string | undefined
    const entries = Object.entries(params).map(([k, v]) => [k, String(v)] as [string, string])
    if (method === "GET" || method === "DELETE") {
      if (entries.length > 0) url += (url.includes("?") ? "&" : "?") + new URLSearchParams(entries).toString()
    } else if (options.json === true) {
      headers["Content-Type"] = "application/json"
      body = JSON.stringify(params)
    } else {
      headers["Content-Type"] = "application/x-www-form-urlencoded"
      body = new URLSearchParams(entries).toString()
    }
    return answer(await fetch(url, { method, headers, body, dispatcher: insecure }))
  }
  /** A request with a body exactly as given (to show how pveproxy decodes what a careless client sends). */
  const raw = async (method: string, path: string, body: string, contentType = "application/x-www-form-urlencoded") => {
    const response = await fetch(sim.url + path, { method, headers: { Authorization: token, "Content-Type": contentType }, body, dispatcher: insecure })
    return { ...(await answer(response)), connection: response.headers.get("connection") }
  }
  const upload = async (node: string, storage: string, filename: string, data: Uint8Array, content = "iso"): Promise<Answer> => {
    const form = new FormData()
    form.set("content", content)
    form.set("filename", new Blob([data]), filename)
    return answer(await fetch(`${sim.url}/nodes/${node}/storage/${storage}/upload`, {
      method: "POST", headers: { Authorization: token }, body: form, dispatcher: insecure
    }))
  }
  /** Polls the task until it stops; returns its exitstatus. */
  const waitTask = async (upid: string): Promise<string> => {
    const node = upid.split(":")[1] ?? ""
    for (;;) {
      const a = await call("GET", `/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`)
      if (a.status !== 200) throw new Error(`task status ${a.status} ${a.statusText}`)
      if (field(a.data, "status") === "stopped") return asString(field(a.data, "exitstatus"))
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }
  /** Runs a task-returning call and waits for it; throws on an HTTP error. */
  const task = async (method: string, path: string, params: Readonly<Record<string, string | number>> = {}): Promise<string> => {
    const a = await call(method, path, params)
    if (a.status !== 200) throw new Error(`${method} ${path}: ${a.status} ${a.statusText} ${JSON.stringify(a.errors ?? {})}`)
    return waitTask(asString(a.data))
  }
  return { call, raw, upload, waitTask, task }
}

export type Client = ReturnType<typeof client>
