/**
 * The Proxmox API connection comes from the environment (guide "Authentication"): a missing token
 * refuses the start and says which variable; the URL defaults to the local node's API.
 */
import { Either } from "effect"
import { endpointUrlProblem } from "../endpointUrl.js"

export const DEFAULT_PROXMOX_API_URL = "https://localhost:8006/api2/json"

export interface ProxmoxEnv {
  readonly apiUrl: string
  /** `user@realm!tokenid` */
  readonly tokenId: string
  readonly tokenSecret: string
}

const TOKEN_ID = /^[^\s@!]+@[^\s@!]+![^\s@!]+$/

/**
 * What keeps `text` out of an HTTP header value, in words naming where it is (`a line break at character 9`);
 * undefined when it fits. `asciiOnly`: nothing but visible ASCII (a PVE token secret is a UUID, so a space or
 * a non-ASCII character is a paste accident too).
 */
const headerProblem = (text: string, asciiOnly: boolean): string | undefined => {
  const index = text.search(asciiOnly ? /[^\x21-\x7e]/ : /[\x00-\x1f\x7f]/)
  if (index < 0) return undefined
  const char = text.charCodeAt(index)
  const what = char === 0x0a || char === 0x0d ? "a line break" : char === 0x20 ? "a space" : char === 0x09 ? "a tab" : char < 0x20 || char === 0x7f ? "a control character" : "a non-ASCII character"
  return `${what} at character ${index + 1}`
}

/** Reads and checks the Proxmox variables; every problem is a one-line message naming the variable. */
export const readProxmoxEnv = (env: Readonly<Record<string, string | undefined>>): Either.Either<ProxmoxEnv, ReadonlyArray<string>> => {
  const errors: Array<string> = []
  const apiUrl = env["PROXMOX_API_URL"]?.trim() || DEFAULT_PROXMOX_API_URL
  const urlProblem = endpointUrlProblem("PROXMOX_API_URL", apiUrl, DEFAULT_PROXMOX_API_URL)
  if (urlProblem !== undefined) errors.push(urlProblem)
  const tokenId = env["PROXMOX_TOKEN_ID"]?.trim() ?? ""
  if (tokenId === "") errors.push("PROXMOX_TOKEN_ID is not set; the proxmox provider needs an API token (user@realm!tokenid)")
  else if (headerProblem(tokenId, false) !== undefined) errors.push(`PROXMOX_TOKEN_ID contains ${headerProblem(tokenId, false)}; it cannot be sent in an HTTP header`)
  else if (!TOKEN_ID.test(tokenId)) errors.push(`PROXMOX_TOKEN_ID must look like user@realm!tokenid (got ${JSON.stringify(tokenId)}); quote it in single quotes in a shell`)
  const tokenSecret = env["PROXMOX_TOKEN_SECRET"]?.trim() ?? ""
  if (tokenSecret === "") errors.push("PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret")
  else {
    // Both go into one `Authorization` header: a line break there would end the header (every call would be
    // refused, and retried), so the start is refused instead. The secret itself is never echoed.
    const bad = headerProblem(tokenSecret, true)
    if (bad !== undefined) errors.push(`PROXMOX_TOKEN_SECRET contains ${bad}; it cannot be sent in an HTTP header (check how the secret was pasted or read)`)
  }
  return errors.length > 0 ? Either.left(errors) : Either.right({ apiUrl: apiUrl.replace(/\/+$/, ""), tokenId, tokenSecret })
}

/** The variables a per-shard connection file (`--proxmox-env-dir DIR`, `DIR/<shard>.env`) may set. */
export const PROXMOX_ENV_KEYS = ["PROXMOX_API_URL", "PROXMOX_TOKEN_ID", "PROXMOX_TOKEN_SECRET"] as const

const ENV_LINE = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/

/** A value as a shell or systemd's EnvironmentFile would read it: quotes around the whole value are dropped. */
const unquote = (raw: string): string | undefined => {
  const value = raw.trim()
  const quote = value[0]
  if (quote === "'" || quote === "\"") return value.length >= 2 && value.endsWith(quote) ? value.slice(1, -1) : undefined
  return value
}

/**
 * The `KEY=VALUE` lines of a per-shard connection file (comments with `#`, blank lines and `export ` allowed).
 * Only the three connection variables are accepted, and each once: a misspelt name would otherwise fall back to
 * a default (the local node's API) and put the shard on the wrong cluster. Every problem names its line; the
 * secret's value is never echoed.
 */
export const parseProxmoxEnvFile = (text: string): Either.Either<Record<string, string>, ReadonlyArray<string>> => {
  const errors: Array<string> = []
  const values: Record<string, string> = {}
  text.split(/\r?\n/).forEach((line, index) => {
    const where = `line ${index + 1}`
    const trimmed = line.trim()
    if (trimmed === "" || trimmed.startsWith("#")) return
    const match = ENV_LINE.exec(trimmed)
    if (match === null) return void errors.push(`${where}: not a KEY=VALUE line`)
    const key = match[1] ?? ""
    if (!(PROXMOX_ENV_KEYS as ReadonlyArray<string>).includes(key)) {
      return void errors.push(`${where}: ${key} is not one of ${PROXMOX_ENV_KEYS.join(", ")}`)
    }
    if (key in values) return void errors.push(`${where}: ${key} is set a second time`)
    const value = unquote(match[2] ?? "")
    if (value === undefined) return void errors.push(`${where}: ${key}'s value has an opening quote but no closing one`)
    values[key] = value
  })
  if (errors.length === 0 && (values["PROXMOX_API_URL"] ?? "").trim() === "") {
    // With several clusters in one process, the local node's API is never the right default.
    errors.push("PROXMOX_API_URL is not set; each shard's file names its own cluster's API")
  }
  return errors.length > 0 ? Either.left(errors) : Either.right(values)
}

/** The connection of a per-shard file: its lines, then the same checks as the environment's. */
export const readProxmoxEnvFile = (text: string): Either.Either<ProxmoxEnv, ReadonlyArray<string>> =>
  Either.flatMap(parseProxmoxEnvFile(text), readProxmoxEnv)

/** Where a connection goes, for telling two shards on one cluster apart: scheme, host and port, lowercased. */
export const clusterEndpointOf = (apiUrl: string): string => {
  try {
    const url = new URL(apiUrl)
    const port = url.port === "" ? (url.protocol === "http:" ? "80" : "443") : url.port
    return `${url.protocol}//${url.hostname.toLowerCase()}:${port}`
  } catch {
    return apiUrl.toLowerCase()
  }
}
