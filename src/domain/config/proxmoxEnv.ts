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
