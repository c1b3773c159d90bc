/**
 * A template's `userdata` and the templated strings of `args`: decoding (`plain`, `base64`, `gzip`,
 * `base64+gzip`, as the original), the URL of `source: "url"`, and the checks `--validate` makes — an
 * inline user-data that does not decode or a template (user-data or an arg's string) that does not parse is
 * refused, naming the field and the line and column. A URL's content can only be judged when it is fetched
 * (at create time), so there only the URL itself is checked.
 */
import { gunzipSync } from "node:zlib"
import { Either } from "effect"
import { hasActions, parseGoTemplate } from "../goTemplate/index.js"
import type { Problem } from "./problems.js"
import type { JsonObject } from "./schema.js"
import type { Userdata } from "./types.js"

/**
 * Most bytes of a decoded user-data template (64 KiB, from any source). EC2 allows 16 KiB, GCE 256 KiB; a
 * cloud-init script or config larger than this belongs in a file the VM downloads, and the bound keeps a
 * gzip bomb from a URL from costing the leader more than this.
 */
export const MAX_USERDATA_BYTES = 64 * 1024

/** Most bytes of a user-data body fetched from a URL, as served (room for the base64 of `MAX_USERDATA_BYTES`). */
export const MAX_USERDATA_FETCH_BYTES = 96 * 1024

const KIB = (bytes: number) => `${bytes / 1024} KiB`

/** Go's `base64.StdEncoding`: padded, the standard alphabet; line breaks are ignored. */
const decodeBase64 = (text: string): Either.Either<Uint8Array, string> => {
  const compact = text.replace(/[\r\n]/g, "")
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) {
    return Either.left("is not base64 (the standard alphabet, padded with '=')")
  }
  return Either.right(new Uint8Array(Buffer.from(compact, "base64")))
}

const gunzip = (bytes: Uint8Array): Either.Either<Uint8Array, string> => {
  try {
    return Either.right(new Uint8Array(gunzipSync(bytes, { maxOutputLength: MAX_USERDATA_BYTES })))
  } catch (error) {
    const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : ""
    if (code === "ERR_BUFFER_TOO_LARGE" || error instanceof RangeError) return Either.left(`decompresses to more than ${KIB(MAX_USERDATA_BYTES)}`)
    return Either.left(`is not gzip data (${error instanceof Error ? error.message : String(error)})`)
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The user-data template text from its content as written (inline: a string) or as fetched (url: bytes),
 * decoded by `encoding`; or why it cannot be (a message to follow the field's name).
 */
export const decodeUserData = (encoding: Userdata["encoding"], body: string | Uint8Array): Either.Either<string, string> => {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body
  let decoded: Either.Either<Uint8Array, string>
  switch (encoding) {
    case "plain":
      decoded = Either.right(bytes)
      break
    case "base64":
      decoded = decodeBase64(new TextDecoder().decode(bytes))
      break
    case "gzip":
      decoded = gunzip(bytes)
      break
    case "base64+gzip":
      decoded = Either.flatMap(decodeBase64(new TextDecoder().decode(bytes)), gunzip)
      break
  }
  return Either.flatMap(decoded, (raw) => {
    if (raw.length > MAX_USERDATA_BYTES) return Either.left(`is ${raw.length} bytes (decoded); user-data may be at most ${KIB(MAX_USERDATA_BYTES)}`)
    try {
      return Either.right(utf8.decode(raw))
    } catch {
      return Either.left(`does not decode to UTF-8 text (${encoding})`)
    }
  })
}

/** A `source: "url"` content: an absolute http(s) URL without credentials (they would be logged and stored). */
export const parseUserDataUrl = (text: string): Either.Either<URL, string> => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Either.left(`${JSON.stringify(text.slice(0, 200))} is not a URL; with source "url" the content is an http:// or https:// URL`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return Either.left(`must be an http:// or https:// URL (got ${url.protocol})`)
  if (url.username !== "" || url.password !== "") return Either.left("must not carry credentials (user:password@); serve it without, or put a token in the path")
  return Either.right(url)
}

/** A URL as it may be logged or stored: scheme, host and path (a query may carry a token). */
export const redactedUrl = (url: URL): string => `${url.origin}${url.pathname}${url.search === "" ? "" : "?…"}`

/** Problems of a `userdata` block: its URL, or its inline content's decoding and template syntax. */
export const userdataProblems = (path: string, userdata: Userdata): ReadonlyArray<Problem> => {
  const at = `${path}.content`
  if (userdata.source === "url") {
    const url = parseUserDataUrl(userdata.content)
    return Either.isLeft(url) ? [{ path: at, message: url.left }] : []
  }
  const text = decodeUserData(userdata.encoding, userdata.content)
  if (Either.isLeft(text)) return [{ path: at, message: text.left }]
  const parsed = parseGoTemplate(text.right)
  return Either.isLeft(parsed) ? [{ path: at, message: `is not a valid template: ${parsed.left.message}` }] : []
}

/** Problems of every templated string in `args` (objects and arrays are walked; other values are not templates). */
export const argsTemplateProblems = (path: string, args: JsonObject): ReadonlyArray<Problem> => {
  const problems: Array<Problem> = []
  const walk = (at: string, value: unknown): void => {
    if (typeof value === "string") {
      if (!hasActions(value)) return
      const parsed = parseGoTemplate(value)
      if (Either.isLeft(parsed)) problems.push({ path: at, message: `is not a valid template: ${parsed.left.message}` })
    } else if (Array.isArray(value)) {
      value.forEach((element, i) => walk(`${at}[${i}]`, element))
    } else if (typeof value === "object" && value !== null) {
      for (const [key, child] of Object.entries(value)) walk(`${at}.${key}`, child)
    }
  }
  for (const [key, value] of Object.entries(args)) walk(`${path}.${key}`, value)
  return problems
}
