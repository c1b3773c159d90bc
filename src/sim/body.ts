/**
 * Request bodies as pveproxy accepts them: `application/x-www-form-urlencoded` (what PVE's own tools and our
 * client send), JSON objects, and `multipart/form-data` for uploads. Repeated parameters are an error, as a
 * parameter given twice is ambiguous to PVE's handlers too.
 */
import { Data } from "effect"

export interface ParsedBody {
  readonly params: Readonly<Record<string, unknown>>
  readonly file?: { readonly field: string; readonly filename: string; readonly data: Uint8Array }
}

/** A body pveproxy would refuse; `param` names the offending parameter when there is one. */
export class BodyError extends Data.TaggedError("BodyError")<{ readonly message: string; readonly param?: string }> {}

/**
 * pveproxy's `decode_urlencoded`, quirks included: pairs split on `&` and `;`, a value ends at its second
 * unencoded `=`, `+` is a space, a repeated key becomes a list (which the schema check then rejects), and a
 * key without `=` is present with no value. A client that forgets to encode `;` or `=` breaks here as on PVE.
 */
export const decodeUrlencoded = (text: string): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  const decode = (s: string) => {
    const bytes = Buffer.from(s.replace(/\+/g, " ").replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1")
    return bytes.toString("utf8")
  }
  if (text === "") return out
  for (const pair of text.split(/[&;]/)) {
    const parts = pair.split("=")
    const key = decode(parts[0] ?? "")
    if (parts.length < 2) {
      out[key] = undefined
      continue
    }
    const value = decode(parts[1] ?? "")
    const old = out[key]
    out[key] = old === undefined ? value : Array.isArray(old) ? [...old, value] : [old, value]
  }
  return out
}

const parseJsonBody = (text: string): Record<string, unknown> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new BodyError({ message: `malformed JSON string: ${error instanceof Error ? error.message : String(error)}` })
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new BodyError({ message: "JSON body must be an object" })
  return { ...parsed }
}

const indexOf = (haystack: Uint8Array, needle: Uint8Array, from: number): number => {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer
    return i
  }
  return -1
}

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1")

const parseMultipart = (body: Uint8Array, boundary: string): ParsedBody => {
  const params: Record<string, unknown> = {}
  let file: ParsedBody["file"]
  const delimiter = Buffer.from(`--${boundary}`, "latin1")
  let pos = indexOf(body, delimiter, 0)
  if (pos < 0) throw new BodyError({ message: "multipart body has no boundary" })
  for (;;) {
    pos += delimiter.length
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break // closing `--boundary--`
    if (body[pos] === 0x0d && body[pos + 1] === 0x0a) pos += 2
    const headerEnd = indexOf(body, Buffer.from("\r\n\r\n", "latin1"), pos)
    if (headerEnd < 0) throw new BodyError({ message: "multipart part without header end" })
    const headers = latin1(body.subarray(pos, headerEnd)).split("\r\n")
    const next = indexOf(body, Buffer.from(`\r\n--${boundary}`, "latin1"), headerEnd + 4)
    if (next < 0) throw new BodyError({ message: "multipart part is not terminated" })
    const data = body.subarray(headerEnd + 4, next)
    const disposition = headers.find((h) => /^content-disposition:/i.test(h)) ?? ""
    const name = /\bname="([^"]*)"/i.exec(disposition)?.[1]
    const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1]
    if (name === undefined) throw new BodyError({ message: "multipart part without a name" })
    if (filename !== undefined) {
      if (file !== undefined) throw new BodyError({ message: "more than one file in upload" })
      file = { field: name, filename, data: Uint8Array.from(data) }
    } else {
      const value = Buffer.from(data).toString("utf8")
      const old = params[name]
      params[name] = old === undefined ? value : Array.isArray(old) ? [...old, value] : [old, value]
    }
    pos = next + 2
  }
  return file === undefined ? { params } : { params, file }
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export const mediaType = (contentType: string | undefined): string | undefined => {
  const type = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? ""
  return type === "" ? undefined : type
}

/** Body parameters of a POST/PUT, as pveproxy's `extract_params` (JSON or urlencoded) or its upload path. */
export const parseBody = (contentType: string | undefined, body: Uint8Array): ParsedBody => {
  const type = mediaType(contentType)
  if (type === "multipart/form-data") {
    const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType ?? "")
    const b = boundary?.[1] ?? boundary?.[2]
    if (b === undefined) throw new BodyError({ message: "multipart body without boundary" })
    return parseMultipart(body, b.trim())
  }
  if (body.length === 0) return { params: {} }
  if (type === "application/json") return { params: parseJsonBody(Buffer.from(body).toString("utf8")) }
  return { params: decodeUrlencoded(Buffer.from(body).toString("latin1")) }
}
