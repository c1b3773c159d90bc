/**
 * The Proxmox API connection comes from the environment (guide "Authentication"): a missing token
 * refuses the start and says which variable; the URL defaults to the local node's API.
 */
import { Either } from "effect"

export const DEFAULT_PROXMOX_API_URL = "https://localhost:8006/api2/json"

export interface ProxmoxEnv {
  readonly apiUrl: string
  /** `user@realm!tokenid` */
  readonly tokenId: string
  readonly tokenSecret: string
}

const TOKEN_ID = /^[^\s@!]+@[^\s@!]+![^\s@!]+$/

/** Reads and checks the Proxmox variables; every problem is a one-line message naming the variable. */
export const readProxmoxEnv = (env: Readonly<Record<string, string | undefined>>): Either.Either<ProxmoxEnv, ReadonlyArray<string>> => {
  const errors: Array<string> = []
  const apiUrl = env["PROXMOX_API_URL"]?.trim() || DEFAULT_PROXMOX_API_URL
  let url: URL | undefined
  try {
    url = new URL(apiUrl)
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== "https:" && url.protocol !== "http:") || url.hostname === "") {
    errors.push(`PROXMOX_API_URL must be an http(s) URL such as ${DEFAULT_PROXMOX_API_URL} (got ${JSON.stringify(apiUrl)})`)
  }
  const tokenId = env["PROXMOX_TOKEN_ID"]?.trim() ?? ""
  if (tokenId === "") errors.push("PROXMOX_TOKEN_ID is not set; the proxmox provider needs an API token (user@realm!tokenid)")
  else if (!TOKEN_ID.test(tokenId)) errors.push(`PROXMOX_TOKEN_ID must look like user@realm!tokenid (got ${JSON.stringify(tokenId)}); quote it in single quotes in a shell`)
  const tokenSecret = env["PROXMOX_TOKEN_SECRET"]?.trim() ?? ""
  if (tokenSecret === "") errors.push("PROXMOX_TOKEN_SECRET is not set; the proxmox provider needs the API token's secret")
  return errors.length > 0 ? Either.left(errors) : Either.right({ apiUrl: apiUrl.replace(/\/+$/, ""), tokenId, tokenSecret })
}
