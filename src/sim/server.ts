/**
 * The Proxmox VE simulator as a server: a Node HTTP(S) endpoint speaking the PVE API subset nstance uses,
 * in front of the in-process model. pveproxy's behaviour lives here — token auth, the 3-worker queue,
 * schema-driven parameter checks, the `{"data": …}` envelope with messages in the status line — and
 * scripted faults are applied before a call reaches the model.
 */
import * as http from "node:http"
import * as https from "node:https"
import { Context, Effect, Layer, Scope } from "effect"
import { BodyError, decodeUrlencoded, mediaType, parseBody } from "./body.js"
import { makeSelfSignedCert } from "./cert.js"
import { FaultController } from "./faults.js"
import type { GuestHook } from "./guest.js"
import { LatencyFast, type LatencyModel, PVE_SECONDS, scaled } from "./latency.js"
import { type SimTime, sleep } from "./locks.js"
import { PveHttpError, SimModel } from "./model.js"
import { packagePath } from "../packageRoot.js"
import { makePrng } from "./prng.js"
import { type ApiSchema, loadApiSchema, validateParams } from "./schema.js"

export type { GuestBoot, GuestHook } from "./guest.js"
export type { LatencyModel } from "./latency.js"
export { LatencyDemo, LatencyFast, LatencyRealistic, latencyPresets } from "./latency.js"
export type { BootRecord, RequestLogEntry, SimIface, SimNode, SimStorage, SimTask, SimVm, SimVolume } from "./model.js"
export { FaultController } from "./faults.js"
export { SimModel } from "./model.js"

export interface SimulatorOptions {
  readonly nodes?: number
  readonly seed?: number
  readonly port?: number
  readonly http?: boolean
  readonly tokenId?: string
  readonly tokenSecret?: string
  readonly latency?: LatencyModel
  readonly guestHook?: GuestHook
  /** Adds a shared `ceph-vm` storage and a template on it (VMID 9100) that can be cloned to any node. */
  readonly sharedStorage?: boolean
  /** Memory of each node in GiB (default 64). */
  readonly nodeMemoryGiB?: number
  /** Keep uploaded volumes (ISOs) as files under this directory: `<node>/<storage>/template/iso/<name>`, `shared/<storage>/…`. */
  readonly volumesDir?: string
  /** Privileges of the API token, all on `/` with propagation (default: every privilege nstance uses). */
  readonly privileges?: ReadonlyArray<string>
  /** Path of the PVE API schema excerpt; default: `NSTANCE_PVE_SCHEMA`, then the known locations. */
  readonly schemaPath?: string
  /** Log lines (boot failures, failed tasks, unexpected errors); default: silent. */
  readonly log?: (line: string) => void
}

export interface RunningSimulator {
  readonly url: string
  readonly tokenId: string
  readonly tokenSecret: string
  readonly model: SimModel
  readonly faults: FaultController
  /** The self-signed certificate (undefined with `http: true`), for clients that pin or trust it. */
  readonly tls: { readonly certPem: string; readonly fingerprint256: string } | undefined
  readonly close: () => Promise<void>
}

export const DEFAULT_TOKEN_ID = "nstance@pve!nstance-token"
export const DEFAULT_TOKEN_SECRET = "5e1f7c2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b"

/** The official PVE API schema excerpt the repository carries (see src/sim/pve-api/README.md). */
export const BUNDLED_SCHEMA_PATH = packagePath("src", "sim", "pve-api", "schema.json")

/** The schema file: the explicit option, else `NSTANCE_PVE_SCHEMA`, else the one in the repository. */
export const resolveSchemaPath = (explicit?: string): string => {
  if (explicit !== undefined) return explicit
  const fromEnv = process.env["NSTANCE_PVE_SCHEMA"]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv
  return BUNDLED_SCHEMA_PATH
}

const API_PREFIX = "/api2/json"
const MAX_BODY = 256 * 1024 * 1024

const readBody = (req: http.IncomingMessage): Promise<Uint8Array> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY) {
        reject(new BodyError({ message: `request body larger than ${MAX_BODY} bytes` }))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

/** pveproxy puts the first line of a message in the status line (non-ASCII would break Node's writer). */
const statusLine = (message: string) => (message.split(/\r?\n/)[0] ?? "").replace(/[^\x20-\x7e]/g, "?")

interface Reply {
  readonly status: number
  readonly message: string
  /** JSON body; a string is sent as is (pveproxy's own errors carry their message as plain text or nothing). */
  readonly body: unknown
}

const ok = (data: unknown): Reply => ({ status: 200, message: "OK", body: { data } })

/** An API handler's error as PVE's JSON formatter writes it: data null, errors if any, the message with its newline. */
const errorReply = (error: PveHttpError): Reply => {
  const message = error.message.endsWith("\n") ? error.message : `${error.message}\n`
  return error.errors !== undefined
    ? { status: error.status, message: error.message, body: { data: null, errors: error.errors, message } }
    : { status: error.status, message: error.message, body: { data: null, message } }
}

const apiError = (status: number, message: string): Reply => errorReply(new PveHttpError({ status, message }))

/** pveproxy's own (non-API) errors: the message as a plain-text body. */
const plainError = (status: number, message: string, body: string | undefined = message): Reply => ({ status, message, body: body ?? "" })

/** What the HTTP front and the in-process layer (`ProxmoxApiSim`) share: the model, its faults and the schema. */
export interface SimCore {
  readonly model: SimModel
  readonly faults: FaultController
  readonly schema: ApiSchema
}

/** Builds the model, fault controller and parameter schema of a simulator; `time` defaults to real time. */
export const makeSimCore = (options: SimulatorOptions & { readonly time?: SimTime | undefined } = {}): SimCore => {
  const nodes = options.nodes ?? 3
  const latency = options.latency ?? LatencyFast
  const seed = options.seed ?? 1
  const faultPrng = makePrng(seed * 7919 + 1)
  const modelPrng = makePrng(seed * 104_729 + 2)
  // A simulator without its schema would accept what PVE refuses: a missing or broken schema stops the start.
  const schema = loadApiSchema(resolveSchemaPath(options.schemaPath))
  const configSpecs = schema.endpoints.find((e) => e.method === "POST" && e.path === "/nodes/{node}/qemu/{vmid}/config")?.properties ?? {}
  let faults: FaultController | undefined
  const model = new SimModel({
    nodes, prng: modelPrng, latency, configSpecs, guestHook: options.guestHook, sharedStorage: options.sharedStorage, nodeMemoryGiB: options.nodeMemoryGiB, volumesDir: options.volumesDir, privileges: options.privileges, log: options.log,
    time: options.time,
    faults: () => {
      if (faults === undefined) throw new Error("fault controller not initialised")
      return faults
    }
  })
  faults = new FaultController(faultPrng, {
    setNodeOnline: (node, online) => model.setNodeOnline(node, online),
    resetNodes: () => { for (const n of model.nodes.values()) n.online = true }
  }, model.time.now)
  return { model, faults, schema }
}

export const startSimulator = async (options: SimulatorOptions = {}): Promise<RunningSimulator> => {
  const nodes = options.nodes ?? 3
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) throw new Error(`nodes must be an integer 1-64, got ${nodes}`)
  const tokenId = options.tokenId ?? DEFAULT_TOKEN_ID
  const tokenSecret = options.tokenSecret ?? DEFAULT_TOKEN_SECRET
  if (!/^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$/.test(tokenId)) {
    throw new Error(`token id ${JSON.stringify(tokenId)} is not of the form user@realm!token`)
  }
  const latency = options.latency ?? LatencyFast
  const seed = options.seed ?? 1
  // Separate streams, so how often a client polls never changes which faults fire (and vice versa).
  const prng = makePrng(seed)
  const { model, faults: faultController, schema } = makeSimCore(options)
  const expectedAuth = `PVEAPIToken=${tokenId}=${tokenSecret}`

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const started = Date.now()
    const method = (req.method ?? "GET").toUpperCase()
    const url = new URL(req.url ?? "/", "http://sim.invalid")
    const apiPath = url.pathname.startsWith(`${API_PREFIX}/`) ? url.pathname.slice(API_PREFIX.length) : url.pathname
    let queuedMs = 0
    let endpoint: string | undefined
    const send = (reply: Reply) => {
      const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body)
      res.statusCode = reply.status
      res.statusMessage = statusLine(reply.message)
      if (typeof reply.body !== "string") res.setHeader("Content-Type", "application/json;charset=UTF-8")
      res.setHeader("Cache-Control", "max-age=0")
      res.setHeader("Pragma", "no-cache")
      res.setHeader("Expires", new Date().toUTCString())
      res.setHeader("Server", "pve-api-daemon/3.0")
      res.setHeader("Content-Length", Buffer.byteLength(text))
      // pveproxy drops keep-alive after any error answer, so clients must cope with a closed connection.
      if (reply.status >= 400) res.setHeader("Connection", "close")
      res.end(text)
      model.logRequest({ at: started, method, path: apiPath, query: url.search, status: reply.status, endpoint, durationMs: Date.now() - started, queuedMs })
    }
    const reset = () => {
      model.logRequest({ at: started, method, path: apiPath, query: url.search, status: 0, endpoint, durationMs: Date.now() - started, queuedMs })
      req.socket.destroy()
    }

    let body: Uint8Array
    try {
      body = await readBody(req)
    } catch (error) {
      send(plainError(400, error instanceof Error ? error.message : "bad request body"))
      return
    }
    const outage = faultController.apiDecision()
    if (outage !== undefined) {
      if (outage._tag === "Reset") return reset()
      if (outage._tag === "Status") return send(plainError(outage.status, outage.message))
    }
    const queuedAt = Date.now()
    const release = await model.workers.acquire()
    queuedMs = Date.now() - queuedAt
    try {
      await sleep(prng.between(latency.requestMs[0], latency.requestMs[1]))
      endpoint = endpointKey(method, apiPath)
      const reply = await dispatch(method, apiPath, url, req, body)
      if (reply === "reset") return reset()
      send(reply)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      options.log?.(`unexpected error in ${method} ${apiPath}: ${message}`)
      send(apiError(500, message))
    } finally {
      release()
    }
  }

  const endpointKey = (method: string, apiPath: string): string | undefined => {
    const m = schema.match(method, apiPath)
    return m !== undefined && "endpoint" in m ? `${m.endpoint.method} ${m.endpoint.path}` : undefined
  }

  const dispatch = async (method: string, apiPath: string, url: URL, req: http.IncomingMessage, body: Uint8Array): Promise<Reply | "reset"> => {
    if (!url.pathname.startsWith(`${API_PREFIX}/`)) return plainError(501, "no such uri")
    const auth = req.headers.authorization
    if (auth === undefined || !auth.startsWith("PVEAPIToken=")) {
      // PVE delays every unauthorised answer by 3 s (a brute-force brake) and sends no body.
      await sleep(scaled(latency, 3))
      return plainError(401, "No ticket", "")
    }
    if (auth !== expectedAuth) {
      await sleep(scaled(latency, 3))
      return plainError(401, "Authentication failed!", "")
    }
    const contentType = mediaType(req.headers["content-type"])
    if (body.length > 0 && method !== "POST" && method !== "PUT") return plainError(501, `Unexpected content for method '${method}'`)
    if (body.length > 0 && contentType !== undefined && contentType !== "application/x-www-form-urlencoded" &&
      contentType !== "application/json" && contentType !== "multipart/form-data") {
      return plainError(506, `upload 'Content-Type '${req.headers["content-type"] ?? ""}' not implemented`)
    }
    const isUpload = method === "POST" && /^\/nodes\/[^/]+\/storage\/[^/]+\/upload$/.test(apiPath)
    if (isUpload !== (contentType === "multipart/form-data") && (isUpload || body.length > 0)) {
      return plainError(506, `upload 'Content-Type '${req.headers["content-type"] ?? ""}' not implemented`)
    }
    const injected = faultController.httpDecision(method, apiPath)
    if (injected?._tag === "LostAnswer") {
      // Served, and then the answer is lost (see `HttpFaultSpec.kind`).
      await serveMatched(method, apiPath, url, req, body)
      return injected.status === 0 ? "reset" : apiError(injected.status, injected.message)
    }
    if (injected !== undefined) {
      if (injected._tag === "Reset") return "reset"
      if (injected._tag === "Status") return apiError(injected.status, injected.message)
      await sleep(scaled(latency, PVE_SECONDS.lockTimeout))
      const vmid = /\/qemu\/(\d+)/.exec(apiPath)?.[1] ?? "0"
      return apiError(500, `can't lock file '/var/lock/qemu-server/lock-${vmid}.conf' - got timeout`)
    }
    return serveMatched(method, apiPath, url, req, body)
  }

  /** A request past its faults: matched against the schema, its body parsed and checked, its handler run. */
  const serveMatched = async (method: string, apiPath: string, url: URL, req: http.IncomingMessage, body: Uint8Array): Promise<Reply> => {
    const matched = schema.match(method, apiPath)
    const handler = matched !== undefined && "endpoint" in matched
      ? model.routes[`${matched.endpoint.method} ${matched.endpoint.path}`]
      : undefined
    if (matched === undefined || !("endpoint" in matched) || handler === undefined) {
      return apiError(501, `Method '${method} ${apiPath}' not implemented`)
    }
    let input: Record<string, unknown>
    try {
      const parsed = parseBody(req.headers["content-type"], body)
      input = { ...parsed.params }
      // Query parameters win over body parameters, as in pveproxy's extract_params.
      for (const [key, value] of Object.entries(decodeUrlencoded(url.search.startsWith("?") ? url.search.slice(1) : url.search))) {
        input[key] = value
      }
      delete input["_dc"]
      if ("tmpfilename" in input) throw new BodyError({ message: "Only root may use this option.", param: "tmpfilename" })
      if (parsed.file !== undefined) {
        // pveproxy spools the file part and hands the handler its name and temp path.
        if (parsed.file.field !== "filename") throw new BodyError({ message: "file part must be named 'filename'", param: parsed.file.field })
        input["filename"] = parsed.file.filename
        input["tmpfilename"] = model.parkUpload(parsed.file.data)
      }
      for (const [name, value] of Object.entries(matched.pathParams)) {
        const given = input[name]
        if (given !== undefined && given !== value) {
          throw new BodyError({ message: "duplicate parameter (already defined in URI) with conflicting values!", param: name })
        }
        input[name] = value
      }
    } catch (error) {
      if (error instanceof BodyError) {
        return error.param !== undefined
          ? errorReply(new PveHttpError({ status: 400, message: "Parameter verification failed.", errors: { [error.param]: error.message } }))
          : apiError(400, error.message)
      }
      throw error
    }
    const checked = validateParams(matched.endpoint, input)
    if ("errors" in checked) {
      const tmp = input["tmpfilename"]
      if (typeof tmp === "string") model.uploads.delete(tmp)
      return errorReply(new PveHttpError({ status: 400, message: "Parameter verification failed.", errors: checked.errors }))
    }
    // Handlers refuse root-only options to anyone else; an API token is never root@pam.
    for (const rootOnly of ["skiplock", "keepActive", "migratedfrom", "stateuri", "migration_type"]) {
      const v = checked.params[rootOnly]
      if (v !== undefined && v !== "0" && v !== "") {
        return errorReply(new PveHttpError({ status: 400, message: "Parameter verification failed.", errors: { [rootOnly]: "Only root may use this option." } }))
      }
    }
    try {
      return ok(await handler(checked.params, { user: tokenId }))
    } catch (error) {
      // 59x come from pveproxy's proxy client (AnyEvent::HTTP) failing to reach a node: no JSON body.
      if (error instanceof PveHttpError) return error.status >= 590 ? plainError(error.status, error.message, "") : errorReply(error)
      throw error
    }
  }

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void handle(req, res).catch((error: unknown) => {
      options.log?.(`request failed: ${error instanceof Error ? error.message : String(error)}`)
      if (!res.headersSent) { res.statusCode = 500; res.end() }
    })
  }
  const cert = options.http === true ? undefined : makeSelfSignedCert()
  const server = cert === undefined
    ? http.createServer(listener)
    : https.createServer({ key: cert.keyPem, cert: cert.certPem }, listener)
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, "127.0.0.1", () => { server.off("error", reject); resolve() })
  })
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error(`simulator is not listening on TCP: ${String(address)}`)
  const url = `${cert === undefined ? "http" : "https"}://127.0.0.1:${address.port}${API_PREFIX}`
  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      await model.close()
    })()
    return closing
  }
  return {
    url, tokenId, tokenSecret, model, faults: faultController, close,
    tls: cert === undefined ? undefined : { certPem: cert.certPem, fingerprint256: cert.fingerprint256 }
  }
}

/** The simulator as a scoped resource: started on acquire, closed (tasks settled) when the scope ends. */
export const PveSimulator = (options?: SimulatorOptions): Effect.Effect<RunningSimulator, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startSimulator(options)),
    (sim) => Effect.promise(() => sim.close())
  )

/** A running simulator as a service, for tests that compose Layers. */
export class PveSim extends Context.Tag("nstance/PveSim")<PveSim, RunningSimulator>() {}

export const PveSimulatorLayer = (options?: SimulatorOptions): Layer.Layer<PveSim> =>
  Layer.scoped(PveSim, PveSimulator(options))
