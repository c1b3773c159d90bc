/**
 * A loopback fake of the Cloud Storage JSON API calls @google-cloud/storage 7 makes for our store:
 * multipart upload with `ifGenerationMatch`, object metadata, media download (optionally of one
 * generation), delete, and list with prefix/startOffset/pageToken/maxResults. Generations increase
 * per write and preconditions answer 412 as the real service does. `log` records every request line,
 * which is how the calls above were found.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"

interface FakeObject {
  readonly body: Buffer
  readonly generation: number
}

export interface GcsFake {
  readonly url: string
  readonly bucket: string
  readonly log: Array<string>
  /** Makes the next `n` uploads fail with 503 after storing the object (an applied write that looks failed). */
  failAfterApplying: (n: number) => void
  close: () => Promise<void>
}

const readBody = (req: IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

/** Splits a multipart/related body into its parts' bodies (headers dropped). */
const multipartParts = (body: Buffer, boundary: string): Array<Buffer> => {
  const delimiter = Buffer.from(`--${boundary}`)
  const parts: Array<Buffer> = []
  let at = body.indexOf(delimiter)
  while (at !== -1) {
    const start = at + delimiter.length
    if (body.subarray(start, start + 2).toString() === "--") break
    const next = body.indexOf(delimiter, start)
    if (next === -1) break
    const part = body.subarray(start, next)
    const headerEnd = part.indexOf("\r\n\r\n")
    // The part ends with CRLF before the next delimiter.
    parts.push(part.subarray(headerEnd + 4, part.length - 2))
    at = next
  }
  return parts
}

export const startGcsFake = (bucket = "nstance-fake"): Promise<GcsFake> => {
  const objects = new Map<string, FakeObject>()
  const log: Array<string> = []
  let generation = 1_700_000_000_000_000
  let failAfter = 0

  const resource = (name: string, object: FakeObject) => ({
    kind: "storage#object",
    id: `${bucket}/${name}/${object.generation}`,
    name,
    bucket,
    generation: String(object.generation),
    metageneration: "1",
    size: String(object.body.length),
    contentType: "application/octet-stream"
  })

  const send = (res: ServerResponse, status: number, json: unknown) => {
    const text = JSON.stringify(json)
    res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": Buffer.byteLength(text) })
    res.end(text)
  }
  const error = (res: ServerResponse, status: number, message: string, reason: string) =>
    send(res, status, { error: { code: status, message, errors: [{ message, reason, domain: "global" }] } })

  const preconditionHolds = (name: string, query: URLSearchParams) => {
    const wanted = query.get("ifGenerationMatch")
    if (wanted === null) return true
    const current = objects.get(name)
    return wanted === "0" ? current === undefined : current !== undefined && String(current.generation) === wanted
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://fake")
    log.push(`${req.method} ${url.pathname}${url.search}`)
    const body = await readBody(req)
    const path = url.pathname.replace(/^\/download/, "")
    const objectPath = /^\/(?:upload\/)?storage\/v1\/b\/([^/]+)\/o(?:\/(.+))?$/.exec(path)
    if (objectPath === null) return error(res, 404, `no route ${path}`, "notFound")
    if (decodeURIComponent(objectPath[1]!) !== bucket) return error(res, 404, "The specified bucket does not exist.", "notFound")
    const name = objectPath[2] === undefined ? undefined : decodeURIComponent(objectPath[2])
    const query = url.searchParams

    if (req.method === "POST" && path.startsWith("/upload/")) {
      const type = req.headers["content-type"] ?? ""
      const boundary = /boundary="?([^";]+)"?/.exec(type)?.[1]
      let target = query.get("name") ?? undefined
      let media = body
      if (query.get("uploadType") === "multipart" && boundary !== undefined) {
        const [meta, data] = multipartParts(body, boundary)
        const parsed: unknown = JSON.parse(meta?.toString("utf8") ?? "{}")
        if (target === undefined && typeof parsed === "object" && parsed !== null && "name" in parsed && typeof parsed.name === "string") {
          target = parsed.name
        }
        media = data ?? Buffer.alloc(0)
      }
      if (target === undefined) return error(res, 400, "missing object name", "required")
      if (!preconditionHolds(target, query)) return error(res, 412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet")
      const stored = { body: Buffer.from(media), generation: ++generation }
      objects.set(target, stored)
      if (failAfter > 0) {
        failAfter--
        return error(res, 503, "backend error after commit", "backendError")
      }
      return send(res, 200, resource(target, stored))
    }

    if (req.method === "GET" && name !== undefined) {
      const object = objects.get(name)
      const wantedGeneration = query.get("generation")
      if (object === undefined || (wantedGeneration !== null && wantedGeneration !== String(object.generation))) {
        return error(res, 404, `No such object: ${bucket}/${name}`, "notFound")
      }
      if (query.get("alt") === "media") {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": object.body.length, "x-goog-generation": String(object.generation) })
        return res.end(object.body)
      }
      return send(res, 200, resource(name, object))
    }

    if (req.method === "DELETE" && name !== undefined) {
      if (!objects.delete(name)) return error(res, 404, `No such object: ${bucket}/${name}`, "notFound")
      res.writeHead(204)
      return res.end()
    }

    if (req.method === "GET" && name === undefined) {
      const prefix = query.get("prefix") ?? ""
      const start = query.get("pageToken") ?? query.get("startOffset") ?? ""
      const inclusive = query.get("pageToken") === null
      const max = Math.min(Number(query.get("maxResults") ?? "1000"), 1000)
      const names = [...objects.keys()]
        .filter((key) => key.startsWith(prefix) && (inclusive ? key >= start : key > start))
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      const page = names.slice(0, max)
      return send(res, 200, {
        kind: "storage#objects",
        items: page.map((key) => resource(key, objects.get(key)!)),
        ...(names.length > max ? { nextPageToken: page[page.length - 1] } : {})
      })
    }
    return error(res, 405, `unsupported ${req.method} ${path}`, "invalid")
  }

  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      handle(req, res).catch((cause: unknown) => error(res, 500, String(cause), "backendError"))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        url: `http://127.0.0.1:${port}`,
        bucket,
        log,
        failAfterApplying: (n) => void (failAfter = n),
        close: () => new Promise((done) => {
          server.closeAllConnections()
          server.close(() => done())
        })
      })
    })
  })
}
