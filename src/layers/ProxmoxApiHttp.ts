/**
 * ProxmoxApi over PVE's HTTPS API: token auth, form-encoded bodies (as PVE's own tools send them), the
 * `{"data": …}` envelope unwrapped and decoded, failures classified in one place and only transient ones
 * retried (bounded, jittered, logged). Each client owns its undici Agent, so `insecure_tls` affects that
 * client alone — never the process (no NODE_TLS_REJECT_UNAUTHORIZED).
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import {
  Clock,
  Data,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Option,
  ParseResult,
  Redacted,
  Ref,
  Schedule,
  Schema
} from "effect"
import { Agent, type Dispatcher, FormData } from "undici"
import { classifyPveError, classifyTaskFailure, isTaskSuccess, NO_RESPONSE } from "../domain/pve/errors.js"
import { emptyMetrics, recordCall } from "../domain/pve/metrics.js"
import {
  ClusterStatusEntry,
  Envelope,
  NextId,
  NodeResource,
  NodeStatus,
  OptionalUpidAnswer,
  Permissions,
  PveVersion,
  QemuListEntry,
  StorageContentEntry,
  StorageEntry,
  TaskStatus,
  type Upid,
  UpidAnswer,
  VmConfig,
  VmResource,
  VmStatusCurrent,
  VolumeAttributes
} from "../domain/pve/schemas.js"
import { pveInstanceStatus } from "../domain/pve/status.js"
import { parseUpid } from "../domain/pve/upid.js"
import {
  PveApiError,
  PveDecodeError,
  type PveError,
  PveMetrics,
  type PveMetricsShape,
  ProxmoxApi,
  type ProxmoxApiShape,
  TaskFailed,
  TaskTimeout,
  type VmConfigUpdate
} from "../services/ProxmoxApi.js"

export const DEFAULT_API_URL = "https://localhost:8006/api2/json"

export interface ProxmoxApiSettings {
  /** Default `https://localhost:8006/api2/json`. */
  readonly apiUrl?: string
  /** `user@realm!tokenid` */
  readonly tokenId: string
  readonly tokenSecret: string | Redacted.Redacted<string>
  /** Skip certificate verification for this client only. */
  readonly insecureTls?: boolean
  /** Extra CA certificate(s) (PEM) to trust, e.g. the cluster's own pve-root-ca. */
  readonly ca?: string
  /** Bound on one HTTP request (default 30 s); a timeout is transient. */
  readonly requestTimeout?: Duration.DurationInput
  /** Transient-failure retries: total attempts (default 5), first delay (200 ms, doubling, capped at 5 s). */
  readonly retry?: { readonly attempts?: number; readonly baseDelay?: Duration.DurationInput; readonly maxDelay?: Duration.DurationInput }
  /** Task polling: first delay (150 ms), growth factor (1.6), cap (2.5 s). */
  readonly taskPoll?: { readonly initial?: Duration.DurationInput; readonly factor?: number; readonly max?: Duration.DurationInput }
  /** Default bound of `waitTask` (10 min). */
  readonly taskTimeout?: Duration.DurationInput
  /** How long "no such task" right after submission counts as "not visible yet" (10 s). */
  readonly taskVisibilityGrace?: Duration.DurationInput
}

export class PveSettingsError extends Data.TaggedError("PveSettingsError")<{ readonly field: string; readonly problem: string }> {
  override get message() {
    return `Proxmox API settings: ${this.field} ${this.problem}`
  }
}

const TOKEN_ID = /^[^\s@!=]+@[^\s@!=]+![^\s@!=]+$/

/** Header the interceptor below copies the HTTP reason phrase into: PVE's message lives there. */
const STATUS_TEXT_HEADER = "x-nstance-pve-status-text"

/**
 * @effect/platform's response has no `statusText`, and PVE puts its error message in the status line
 * (`500 VM 101 is running - destroy failed`); this undici interceptor hands the reason phrase on as a header.
 */
const statusTextInterceptor: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) =>
  dispatch(options, {
    onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
    onRequestUpgrade: (controller, status, headers, socket) => handler.onRequestUpgrade?.(controller, status, headers, socket),
    onResponseStart: (controller, status, headers, statusMessage) =>
      handler.onResponseStart?.(controller, status, { ...headers, [STATUS_TEXT_HEADER]: statusMessage ?? "" }, statusMessage),
    onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
    onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
    onResponseError: (controller, error) => handler.onResponseError?.(controller, error)
  })

type FormValue = string | number | boolean | undefined

/** Form values as PVE reads them: booleans 0/1, numbers in decimal; undefined keys are left out. */
const formEntries = (record: Readonly<Record<string, FormValue>>): Array<[string, string]> =>
  Object.entries(record).flatMap(([key, value]): Array<[string, string]> =>
    value === undefined ? [] : [[key, typeof value === "boolean" ? (value ? "1" : "0") : String(value)]]
  )

interface CallSpec<A> {
  readonly method: "GET" | "POST" | "PUT" | "DELETE"
  /** Path template, e.g. `/nodes/{node}/qemu/{vmid}/clone` (metrics and logs use it). */
  readonly template: string
  readonly path: string
  readonly query?: Readonly<Record<string, FormValue>>
  readonly form?: Readonly<Record<string, FormValue>>
  readonly multipart?: FormData
  readonly decode: (u: unknown) => Effect.Effect<{ readonly data: A }, ParseResult.ParseError>
}

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null && !Array.isArray(u)

/** The codes and messages along an error's `cause` chain (undici wraps socket and TLS errors). */
const describeCause = (cause: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = cause
  for (let depth = 0; depth < 5 && isRecord(current); depth++) {
    const code = typeof current["code"] === "string" ? current["code"] : undefined
    const message = typeof current["message"] === "string" ? current["message"] : undefined
    const text = [code, message].filter((s) => s !== undefined && s !== "").join(": ")
    if (text !== "" && !parts.includes(text)) parts.push(text)
    current = current["cause"]
  }
  if (parts.length === 0) return String(cause)
  return parts.join(" <- ")
}

const tlsHint = (text: string) =>
  /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(text)
    ? `TLS certificate not trusted (${text}); set insecure_tls for this provider or trust the PVE CA`
    : text

const ErrorBody = Schema.Struct({
  message: Schema.optional(Schema.String),
  errors: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown })))
})

// Decoders are compiled once: building `Envelope(schema)` per call recompiled the parser every time (ms of CPU).
const envelope = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknown(Envelope(schema))
const decoders = {
  PveVersion: envelope(PveVersion),
  Permissions: envelope(Permissions),
  NodeResourceList: envelope(Schema.Array(NodeResource)),
  VmResourceList: envelope(Schema.Array(VmResource)),
  ClusterStatusEntryList: envelope(Schema.Array(ClusterStatusEntry)),
  NextId: envelope(NextId),
  NodeStatus: envelope(NodeStatus),
  QemuListEntryList: envelope(Schema.Array(QemuListEntry)),
  VmConfig: envelope(VmConfig),
  VmStatusCurrent: envelope(VmStatusCurrent),
  UpidAnswer: envelope(UpidAnswer),
  OptionalUpidAnswer: envelope(OptionalUpidAnswer),
  StorageEntryList: envelope(Schema.Array(StorageEntry)),
  StorageContentEntryList: envelope(Schema.Array(StorageContentEntry)),
  VolumeAttributes: envelope(VolumeAttributes),
  TaskStatus: envelope(TaskStatus)
}

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`), "")

export const makeProxmoxApiHttp = (settings: ProxmoxApiSettings) =>
  Effect.gen(function* () {
    const apiUrl = (settings.apiUrl ?? DEFAULT_API_URL).replace(/\/+$/, "")
    const parsedUrl = yield* Effect.try({
      try: () => new URL(apiUrl),
      catch: () => new PveSettingsError({ field: "apiUrl", problem: `must be an http(s) URL, got ${JSON.stringify(apiUrl)}` })
    })
    if (parsedUrl.protocol !== "https:" && parsedUrl.protocol !== "http:") {
      return yield* new PveSettingsError({ field: "apiUrl", problem: `must be an http(s) URL, got ${JSON.stringify(apiUrl)}` })
    }
    if (!TOKEN_ID.test(settings.tokenId)) {
      return yield* new PveSettingsError({ field: "tokenId", problem: `must look like user@realm!tokenid, got ${JSON.stringify(settings.tokenId)}` })
    }
    const secret = typeof settings.tokenSecret === "string" ? settings.tokenSecret : Redacted.value(settings.tokenSecret)
    if (secret.trim() === "") return yield* new PveSettingsError({ field: "tokenSecret", problem: "is empty" })
    const authorization = Redacted.make(`PVEAPIToken=${settings.tokenId}=${secret}`)

    const requestTimeout = Duration.decode(settings.requestTimeout ?? "30 seconds")
    const attempts = Math.max(1, Math.floor(settings.retry?.attempts ?? 5))
    const retrySchedule = Schedule.exponential(settings.retry?.baseDelay ?? "200 millis", 2).pipe(
      Schedule.union(Schedule.spaced(settings.retry?.maxDelay ?? "5 seconds")),
      Schedule.jittered,
      Schedule.intersect(Schedule.recurs(attempts - 1))
    )
    const pollSchedule = Schedule.exponential(settings.taskPoll?.initial ?? "150 millis", settings.taskPoll?.factor ?? 1.6).pipe(
      Schedule.union(Schedule.spaced(settings.taskPoll?.max ?? "2500 millis"))
    )
    const defaultTaskTimeout = settings.taskTimeout ?? "10 minutes"
    const visibilityGraceMs = Duration.toMillis(Duration.decode(settings.taskVisibilityGrace ?? "10 seconds"))

    const agent = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Agent({
          connect: {
            rejectUnauthorized: settings.insecureTls !== true,
            ...(settings.ca === undefined ? {} : { ca: settings.ca })
          },
          keepAliveTimeout: 4_000
        })
      ),
      (a) => Effect.promise(() => a.destroy())
    )
    const client = NodeHttpClient.makeUndici(agent.compose(statusTextInterceptor))
    const metrics = yield* Effect.serviceOption(PveMetrics)
    const record = (sample: Parameters<PveMetricsShape["record"]>[0]) =>
      Option.match(metrics, { onNone: () => Effect.void, onSome: (m) => m.record(sample) })

    const buildRequest = <A>(spec: CallSpec<A>): HttpClientRequest.HttpClientRequest => {
      const query = spec.query === undefined ? [] : formEntries(spec.query)
      const url = `${apiUrl}${spec.path}${query.length > 0 ? `?${new URLSearchParams(query).toString()}` : ""}`
      let request = HttpClientRequest.make(spec.method)(url).pipe(
        HttpClientRequest.setHeader("Authorization", Redacted.value(authorization)),
        HttpClientRequest.setHeader("Accept", "application/json")
      )
      if (spec.multipart !== undefined) request = HttpClientRequest.bodyFormData(request, spec.multipart)
      else if (spec.form !== undefined) {
        // URLSearchParams encodes `;`, `=` and `,` inside values, which pveproxy would otherwise split on.
        request = HttpClientRequest.bodyText(request, new URLSearchParams(formEntries(spec.form)).toString(), "application/x-www-form-urlencoded")
      }
      return request
    }

    /** One HTTP exchange: status ≥ 400 and transport failures become PveApiError, a bad body PveDecodeError. */
    const exchange = <A>(spec: CallSpec<A>, attempt: number): Effect.Effect<A, PveError> => {
      const endpoint = `${spec.method} ${spec.template}`
      const apiError = (status: number, pveMessage: string, errors?: Readonly<Record<string, string>>) =>
        new PveApiError({
          method: spec.method, path: spec.path, endpoint, status, pveMessage,
          classification: classifyPveError(status, pveMessage, errors), attempts: attempt,
          ...(errors === undefined ? {} : { errors })
        })
      const transport = (error: HttpClientError.HttpClientError) => apiError(NO_RESPONSE, tlsHint(describeCause(error.cause ?? error)))
      const decodeError = (field: string, problem: string) =>
        new PveDecodeError({ method: spec.method, path: spec.path, endpoint, field, problem })

      const run = Effect.gen(function* () {
        const response = yield* client.execute(buildRequest(spec)).pipe(Effect.mapError(transport))
        const text = yield* response.text.pipe(Effect.mapError(transport))
        let json: unknown
        let jsonOk = true
        try {
          json = text === "" ? undefined : JSON.parse(text)
        } catch {
          jsonOk = false
        }
        if (response.status >= 400) {
          const body = jsonOk ? Schema.decodeUnknownOption(ErrorBody)(json) : Option.none()
          const statusText = (response.headers[STATUS_TEXT_HEADER] ?? "").trim()
          const bodyMessage = Option.flatMap(body, (b) => Option.fromNullable(b.message)).pipe(Option.getOrElse(() => ""))
          const pveMessage = (statusText !== "" ? statusText : bodyMessage.trim() !== "" ? bodyMessage.trim() : `HTTP ${response.status}`).replace(/\.$/, "")
          const rawErrors = Option.flatMap(body, (b) => Option.fromNullable(b.errors))
          const errors = Option.map(rawErrors, (e) =>
            Object.fromEntries(Object.entries(e).map(([k, v]) => [k, (typeof v === "string" ? v : JSON.stringify(v)).trim()]))
          )
          return yield* Effect.fail(apiError(response.status, pveMessage, Option.getOrUndefined(errors)))
        }
        if (!jsonOk) return yield* Effect.fail(decodeError("(body)", `not JSON: ${JSON.stringify(text.slice(0, 80))}`))
        return yield* spec.decode(json).pipe(
          Effect.map((envelope) => envelope.data),
          Effect.mapError((error) => {
            const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
            return decodeError(issue === undefined ? "(body)" : formatPath(issue.path) || "(body)", issue?.message ?? "does not decode")
          })
        )
      })
      return run.pipe(
        Effect.timeoutFail({ duration: requestTimeout, onTimeout: () => apiError(NO_RESPONSE, `request timed out after ${Duration.format(requestTimeout)}`) }),
        Effect.exit,
        Effect.timed,
        Effect.flatMap(([duration, exit]) =>
          Effect.zipRight(record({ endpoint, durationMs: Duration.toMillis(duration), failed: Exit.isFailure(exit), retry: attempt > 1 }), exit)
        )
      )
    }

    /** A call with bounded, jittered retries of transient failures; each retry is logged. */
    const call = <A>(spec: CallSpec<A>): Effect.Effect<A, PveError> =>
      Effect.gen(function* () {
        const counter = yield* Ref.make(0)
        const endpoint = `${spec.method} ${spec.template}`
        const once = Effect.flatMap(Ref.updateAndGet(counter, (n) => n + 1), (attempt) =>
          exchange(spec, attempt).pipe(
            Effect.tapError((error) =>
              error._tag === "PveApiError" && error.classification === "transient" && attempt < attempts
                ? Effect.logWarning(`PVE ${endpoint} failed transiently (attempt ${attempt}/${attempts}), retrying`).pipe(
                    Effect.annotateLogs({ endpoint, path: spec.path, attempt, status: error.status, error: error.pveMessage })
                  )
                : Effect.void
            )
          )
        )
        return yield* once.pipe(
          Effect.retry({ schedule: retrySchedule, while: (error) => error._tag === "PveApiError" && error.classification === "transient" })
        )
      })

    const enc = encodeURIComponent
    const vmPath = (node: string, vmid: number) => `/nodes/${enc(node)}/qemu/${vmid}`

    const withStatus = <T extends { readonly status: string; readonly qmpstatus?: string | undefined }>(entry: T) => ({
      ...entry,
      instanceStatus: pveInstanceStatus(entry.status, entry.qmpstatus)
    })

    const configForm = (update: VmConfigUpdate): Record<string, FormValue> => ({
      cores: update.cores,
      memory: update.memory,
      net0: update.net0,
      onboot: update.onboot,
      description: update.description,
      tags: update.tags,
      ide2: update.ide2,
      boot: update.boot,
      delete: update.delete === undefined || update.delete.length === 0 ? undefined : update.delete.join(","),
      digest: update.digest
    })

    const taskStatus = Effect.fn("pve.taskStatus")(function* (node: string, upid: string) {
      return yield* call({ method: "GET", template: "/nodes/{node}/tasks/{upid}/status", path: `/nodes/${enc(node)}/tasks/${enc(upid)}/status`, decode: decoders.TaskStatus })
    })

    const waitTask: ProxmoxApiShape["waitTask"] = Effect.fn("pve.waitTask")(function* (node: string, upid: Upid, options) {
      const parsed = parseUpid(upid)
      // The UPID names the node running the task; its status is only readable there.
      const taskNode = Option.match(parsed, { onNone: () => node, onSome: (p) => p.node })
      const taskType = Option.match(parsed, { onNone: () => "task", onSome: (p) => p.type })
      const timeout = Duration.decode(options?.timeout ?? defaultTaskTimeout)
      const started = yield* Clock.currentTimeMillis
      const last = yield* Ref.make(Option.none<TaskStatus>())
      const spec = { method: "GET", template: "/nodes/{node}/tasks/{upid}/status", path: `/nodes/${enc(taskNode)}/tasks/${enc(upid)}/status`, decode: decoders.TaskStatus } as const
      // Polls go out once each: the poll schedule is the retry, so a blip mid-task does not end the wait.
      const poll = Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const result = yield* exchange(spec, 1).pipe(Effect.either)
        if (Either.isRight(result)) {
          yield* Ref.set(last, Option.some(result.right))
          return result.right.status === "stopped"
        }
        const error = result.left
        if (error._tag === "PveApiError" && error.classification === "transient") {
          yield* Effect.logWarning(`PVE task status of ${upid} failed transiently; polling on`).pipe(Effect.annotateLogs({ error: error.message }))
          return false
        }
        // A fresh task may not be visible yet (pmxcfs propagation): PVE says 400/404 "no such task".
        const notVisible = error._tag === "PveApiError" && (error.classification === "notFound" || error.status === 400 || error.status === 404)
        if (notVisible && now - started < visibilityGraceMs) return false
        return yield* Effect.fail(error)
      })
      yield* poll.pipe(
        Effect.repeat({ schedule: pollSchedule, until: (done) => done }),
        Effect.timeoutFail({ duration: timeout, onTimeout: () => new TaskTimeout({ node: taskNode, upid, taskType, timeout }) })
      )
      const final = yield* Ref.get(last)
      if (Option.isNone(final)) return yield* new TaskTimeout({ node: taskNode, upid, taskType, timeout })
      const exitstatus = final.value.exitstatus ?? "task stopped without an exit status"
      if (!isTaskSuccess(exitstatus)) {
        return yield* new TaskFailed({ node: taskNode, upid, taskType, exitstatus, classification: classifyTaskFailure(exitstatus) })
      }
      if (exitstatus !== "OK") yield* Effect.logWarning(`PVE task ${taskType} on ${taskNode} finished with ${exitstatus}`).pipe(Effect.annotateLogs({ upid }))
      return final.value
    })

    const optionalUpid = Effect.map((u: Upid | null) => Option.fromNullable(u))

    return ProxmoxApi.of({
      version: Effect.fn("pve.version")(function* () {
        return yield* call({ method: "GET", template: "/version", path: "/version", decode: decoders.PveVersion })
      }),
      permissions: Effect.fn("pve.permissions")(function* (path?: string) {
        return yield* call({ method: "GET", template: "/access/permissions", path: "/access/permissions", query: { path }, decode: decoders.Permissions })
      }),
      nodeResources: Effect.fn("pve.nodeResources")(function* () {
        return yield* call({ method: "GET", template: "/cluster/resources", path: "/cluster/resources", query: { type: "node" }, decode: decoders.NodeResourceList })
      }),
      vmResources: Effect.fn("pve.vmResources")(function* () {
        const items = yield* call({ method: "GET", template: "/cluster/resources", path: "/cluster/resources", query: { type: "vm" }, decode: decoders.VmResourceList })
        return items.map(withStatus)
      }),
      clusterStatus: Effect.fn("pve.clusterStatus")(function* () {
        return yield* call({ method: "GET", template: "/cluster/status", path: "/cluster/status", decode: decoders.ClusterStatusEntryList })
      }),
      nextId: Effect.fn("pve.nextId")(function* (vmid?: number) {
        return yield* call({ method: "GET", template: "/cluster/nextid", path: "/cluster/nextid", query: { vmid }, decode: decoders.NextId })
      }),
      nodeStatus: Effect.fn("pve.nodeStatus")(function* (node: string) {
        return yield* call({ method: "GET", template: "/nodes/{node}/status", path: `/nodes/${enc(node)}/status`, decode: decoders.NodeStatus })
      }),
      listQemu: Effect.fn("pve.listQemu")(function* (node: string) {
        const items = yield* call({ method: "GET", template: "/nodes/{node}/qemu", path: `/nodes/${enc(node)}/qemu`, decode: decoders.QemuListEntryList })
        return items.map(withStatus)
      }),
      vmConfig: Effect.fn("pve.vmConfig")(function* (node: string, vmid: number) {
        return yield* call({ method: "GET", template: "/nodes/{node}/qemu/{vmid}/config", path: `${vmPath(node, vmid)}/config`, decode: decoders.VmConfig })
      }),
      vmStatus: Effect.fn("pve.vmStatus")(function* (node: string, vmid: number) {
        const status = yield* call({ method: "GET", template: "/nodes/{node}/qemu/{vmid}/status/current", path: `${vmPath(node, vmid)}/status/current`, decode: decoders.VmStatusCurrent })
        return withStatus(status)
      }),
      clone: Effect.fn("pve.clone")(function* (node, vmid, options) {
        return yield* call({
          method: "POST", template: "/nodes/{node}/qemu/{vmid}/clone", path: `${vmPath(node, vmid)}/clone`, decode: decoders.UpidAnswer,
          form: {
            newid: options.newid, name: options.name, target: options.target, storage: options.storage,
            full: options.full, pool: options.pool, description: options.description
          }
        })
      }),
      updateConfig: Effect.fn("pve.updateConfig")(function* (node, vmid, update) {
        return yield* call({ method: "POST", template: "/nodes/{node}/qemu/{vmid}/config", path: `${vmPath(node, vmid)}/config`, form: configForm(update), decode: decoders.OptionalUpidAnswer }).pipe(optionalUpid)
      }),
      resize: Effect.fn("pve.resize")(function* (node, vmid, disk, size) {
        return yield* call({ method: "PUT", template: "/nodes/{node}/qemu/{vmid}/resize", path: `${vmPath(node, vmid)}/resize`, form: { disk, size }, decode: decoders.OptionalUpidAnswer }).pipe(optionalUpid)
      }),
      start: Effect.fn("pve.start")(function* (node, vmid) {
        return yield* call({ method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/start", path: `${vmPath(node, vmid)}/status/start`, form: {}, decode: decoders.UpidAnswer })
      }),
      stop: Effect.fn("pve.stop")(function* (node, vmid, options) {
        return yield* call({ method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/stop", path: `${vmPath(node, vmid)}/status/stop`, form: { timeout: options?.timeout }, decode: decoders.UpidAnswer })
      }),
      shutdown: Effect.fn("pve.shutdown")(function* (node, vmid, options) {
        return yield* call({
          method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/shutdown", path: `${vmPath(node, vmid)}/status/shutdown`,
          form: { timeout: options?.timeout, forceStop: options?.forceStop }, decode: decoders.UpidAnswer
        })
      }),
      deleteVm: Effect.fn("pve.deleteVm")(function* (node, vmid, options) {
        return yield* call({
          method: "DELETE", template: "/nodes/{node}/qemu/{vmid}", path: vmPath(node, vmid), decode: decoders.UpidAnswer,
          query: { purge: options?.purge, "destroy-unreferenced-disks": options?.destroyUnreferencedDisks }
        })
      }),
      listStorage: Effect.fn("pve.listStorage")(function* (node, filter) {
        return yield* call({
          method: "GET", template: "/nodes/{node}/storage", path: `/nodes/${enc(node)}/storage`, decode: decoders.StorageEntryList,
          query: { content: filter?.content, enabled: filter?.enabled }
        })
      }),
      listStorageContent: Effect.fn("pve.listStorageContent")(function* (node, storage, filter) {
        return yield* call({
          method: "GET", template: "/nodes/{node}/storage/{storage}/content", path: `/nodes/${enc(node)}/storage/${enc(storage)}/content`,
          decode: decoders.StorageContentEntryList, query: { content: filter?.content, vmid: filter?.vmid }
        })
      }),
      volumeAttributes: Effect.fn("pve.volumeAttributes")(function* (node, storage, volid) {
        return yield* call({
          method: "GET", template: "/nodes/{node}/storage/{storage}/content/{volume}",
          path: `/nodes/${enc(node)}/storage/${enc(storage)}/content/${enc(volid)}`, decode: decoders.VolumeAttributes
        })
      }),
      upload: Effect.fn("pve.upload")(function* (node, storage, options) {
        const form = new FormData()
        form.append("content", options.content)
        // undici's own FormData: the global one belongs to Node's bundled undici, which this Agent cannot serialise.
        form.append("filename", new Blob([Uint8Array.from(options.data)]), options.filename)
        return yield* call({
          method: "POST", template: "/nodes/{node}/storage/{storage}/upload", path: `/nodes/${enc(node)}/storage/${enc(storage)}/upload`,
          multipart: form, decode: decoders.UpidAnswer
        })
      }),
      deleteVolume: Effect.fn("pve.deleteVolume")(function* (node, storage, volid) {
        return yield* call({
          method: "DELETE", template: "/nodes/{node}/storage/{storage}/content/{volume}",
          path: `/nodes/${enc(node)}/storage/${enc(storage)}/content/${enc(volid)}`, decode: decoders.OptionalUpidAnswer
        }).pipe(optionalUpid)
      }),
      taskStatus,
      waitTask
    })
  })

/** The HTTP client as a Layer; its undici Agent lives as long as the Layer. Records into PveMetrics if provided. */
export const ProxmoxApiHttp = (settings: ProxmoxApiSettings): Layer.Layer<ProxmoxApi, PveSettingsError> =>
  Layer.scoped(ProxmoxApi, makeProxmoxApiHttp(settings))

/** In-memory PveMetrics (benches, tests, and the `/metrics` endpoint read its snapshot). */
export const PveMetricsLive: Layer.Layer<PveMetrics> = Layer.effect(
  PveMetrics,
  Effect.map(Ref.make(emptyMetrics), (ref) =>
    PveMetrics.of({
      record: (sample) => Ref.update(ref, (m) => recordCall(m, sample)),
      snapshot: Ref.get(ref),
      reset: Ref.set(ref, emptyMetrics)
    })
  )
)
