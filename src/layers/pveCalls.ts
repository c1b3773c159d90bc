/**
 * What every `ProxmoxApi` implementation shares, whatever carries the calls (HTTP to PVE, or the simulator's
 * model in process): the endpoint table (paths, parameters, answer decoders), decoding failures named by
 * field, errors classified by `domain/pve/errors.ts`, and `waitTask`'s adaptive polling on a `Schedule`.
 * A transport supplies `exchange` (one attempt) and `call` (with its retry policy).
 */
import { Clock, Duration, Effect, Either, Option, ParseResult, Ref, Schedule, Schema } from "effect"
import { boundText, MAX_PVE_TEXT, shortIssue } from "../domain/errorText.js"
import { boundPveErrors, classifyPveError, classifyTaskFailure, isTaskSuccess } from "../domain/pve/errors.js"
import {
  ClusterResourceEntry,
  ClusterStatusEntry,
  Envelope,
  NetworkInterface,
  NextId,
  NodeResource,
  NodeStatus,
  type StorageResource,
  OptionalUpidAnswer,
  Permissions,
  PveVersion,
  QemuListEntry,
  StorageContentEntry,
  StorageEntry,
  TaskListEntry,
  TaskStatus,
  type Upid,
  UpidAnswer,
  VmConfig,
  VmResource,
  VmStatusCurrent,
  VolumeAttributes
} from "../domain/pve/schemas.js"
import { pveInstanceStatus } from "../domain/pve/status.js"
import { countedPveCall } from "../metrics/metrics.js"
import { parseUpid } from "../domain/pve/upid.js"
import {
  PveApiError,
  PveDecodeError,
  type PveError,
  ProxmoxApi,
  type ProxmoxApiShape,
  TaskFailed,
  TaskTimeout,
  type VmConfigUpdate,
  type ClusterVmInfo
} from "../services/ProxmoxApi.js"

export type FormValue = string | number | boolean | undefined

/** Form values as PVE reads them: booleans 0/1, numbers in decimal; undefined keys are left out. */
export const formEntries = (record: Readonly<Record<string, FormValue>>): Array<[string, string]> =>
  Object.entries(record).flatMap(([key, value]): Array<[string, string]> =>
    value === undefined ? [] : [[key, typeof value === "boolean" ? (value ? "1" : "0") : String(value)]]
  )

export interface CallSpec<A> {
  readonly method: "GET" | "POST" | "PUT" | "DELETE"
  /** Path template, e.g. `/nodes/{node}/qemu/{vmid}/clone` (metrics and logs use it). */
  readonly template: string
  readonly path: string
  readonly query?: Readonly<Record<string, FormValue>>
  readonly form?: Readonly<Record<string, FormValue>>
  /** A multipart upload: the `content` field and the file part `filename` (the transport builds the body). */
  readonly upload?: { readonly content: string; readonly filename: string; readonly data: Uint8Array }
  readonly decode: (u: unknown) => Effect.Effect<{ readonly data: A }, ParseResult.ParseError>
}

export const ErrorBody = Schema.Struct({
  message: Schema.optional(Schema.String),
  errors: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown })))
})

// Decoders are compiled once: building `Envelope(schema)` per call recompiled the parser every time (ms of CPU).
const envelope = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknown(Envelope(schema))
export const decoders = {
  PveVersion: envelope(PveVersion),
  Permissions: envelope(Permissions),
  NodeResourceList: envelope(Schema.Array(NodeResource)),
  VmResourceList: envelope(Schema.Array(VmResource)),
  ClusterResourceList: envelope(Schema.Array(ClusterResourceEntry)),
  ClusterStatusEntryList: envelope(Schema.Array(ClusterStatusEntry)),
  NextId: envelope(NextId),
  NodeStatus: envelope(NodeStatus),
  QemuListEntryList: envelope(Schema.Array(QemuListEntry)),
  VmConfig: envelope(VmConfig),
  VmStatusCurrent: envelope(VmStatusCurrent),
  UpidAnswer: envelope(UpidAnswer),
  OptionalUpidAnswer: envelope(OptionalUpidAnswer),
  StorageEntryList: envelope(Schema.Array(StorageEntry)),
  NetworkInterfaceList: envelope(Schema.Array(NetworkInterface)),
  StorageContentEntryList: envelope(Schema.Array(StorageContentEntry)),
  VolumeAttributes: envelope(VolumeAttributes),
  TaskStatus: envelope(TaskStatus),
  TaskList: envelope(Schema.Array(TaskListEntry))
}

export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`), "")


/**
 * A PveApiError for `spec`, classified in the one place that decides what PVE's answers mean. Classified on
 * PVE's whole text, then bounded: the error is logged and stored (`StepFailed`), and PVE's text has no limit.
 */
export const pveApiError = (spec: CallSpec<unknown>, attempt: number, status: number, pveMessage: string, errors?: Readonly<Record<string, string>>) =>
  new PveApiError({
    method: spec.method, path: spec.path, endpoint: `${spec.method} ${spec.template}`, status, pveMessage: boundText(pveMessage, MAX_PVE_TEXT),
    classification: classifyPveError(status, pveMessage, errors), attempts: attempt,
    ...(errors === undefined ? {} : { errors: boundPveErrors(errors) })
  })

export const pveDecodeError = (spec: CallSpec<unknown>, field: string, problem: string) =>
  new PveDecodeError({ method: spec.method, path: spec.path, endpoint: `${spec.method} ${spec.template}`, field: boundText(field, 200), problem: shortIssue(problem) })

/** A parsed JSON answer (`{"data": …}`) through the endpoint's decoder; a bad field names itself. */
export const decodeAnswer = <A>(spec: CallSpec<A>, json: unknown): Effect.Effect<A, PveDecodeError> =>
  spec.decode(json).pipe(
    Effect.map((envelope) => envelope.data),
    Effect.mapError((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      return pveDecodeError(spec, issue === undefined ? "(body)" : formatPath(issue.path) || "(body)", issue?.message ?? "does not decode")
    })
  )

export interface PveTransport {
  /** One attempt of a call (waitTask's polls go out once each: the poll schedule is their retry). */
  readonly exchange: <A>(spec: CallSpec<A>, attempt: number) => Effect.Effect<A, PveError>
  /** A call with the transport's retry policy. */
  readonly call: <A>(spec: CallSpec<A>) => Effect.Effect<A, PveError>
  /** How `waitTask` spaces its polls (built by `taskPollSchedule` from the layer's settings). */
  readonly pollSchedule: TaskPolling
  readonly defaultTaskTimeout: Duration.DurationInput
  readonly visibilityGraceMs: number
}

export interface TaskPollSettings {
  /** The shortest gap between polls: near a task's expected end, and first for a task of a kind not seen yet. */
  readonly initial?: Duration.DurationInput
  /** How fast the gaps grow once a task runs past its expected end (or has none). */
  readonly factor?: number
  /** The longest gap between polls. */
  readonly max?: Duration.DurationInput
}

/**
 * When a task is expected to end, in ms after the wait began: most likely between `fromMs` and `toMs`.
 */
export interface TaskExpectation {
  readonly fromMs: number
  readonly toMs: number
}

/**
 * Task polling that tracks how long a task is expected to take. Before the window in which it usually ends,
 * the gap to the next poll is half the time left until the window (an early end is seen within half its
 * earliness); inside the window, a sixth of the window's width (the usual end is seen within a twelfth of it
 * on average); past the window it grows with how late the task is (`factor` − 1 times the overrun), so a
 * long task costs few polls. Every gap is at least `initial` and at most `max`. Without an expectation (a task
 * type not yet seen on any node) the window is the start, and gaps are capped at `max` × 0.4, since when such
 * a task ends is anyone's guess.
 */
export interface TaskPolling {
  readonly initialMs: number
  readonly factor: number
  readonly maxMs: number
  /** The delay before the next poll, `elapsedMs` into a task. */
  readonly delayMs: (elapsedMs: number, expected: TaskExpectation | undefined) => number
  /** The poll schedule of one wait that started at `startedAt` (Clock millis). */
  readonly schedule: (startedAt: number, expected: TaskExpectation | undefined) => Schedule.Schedule<unknown, unknown>
}

export const taskPollSchedule = (taskPoll?: TaskPollSettings): TaskPolling => {
  const initialMs = Math.max(1, Duration.toMillis(Duration.decode(taskPoll?.initial ?? "150 millis")))
  const factor = Math.max(1.01, taskPoll?.factor ?? 1.6)
  const maxMs = Math.max(initialMs, Duration.toMillis(Duration.decode(taskPoll?.max ?? "2500 millis")))
  const unknownMaxMs = Math.max(initialMs, maxMs * 0.4)
  const delayMs = (elapsedMs: number, expected: TaskExpectation | undefined) => {
    if (expected === undefined) return Math.min(unknownMaxMs, Math.max(initialMs, elapsedMs * (factor - 1)))
    const gap = elapsedMs < expected.fromMs
      ? (expected.fromMs - elapsedMs) / 2
      : elapsedMs <= expected.toMs
      ? (expected.toMs - expected.fromMs) / 6
      : (elapsedMs - expected.toMs) * (factor - 1)
    return Math.min(maxMs, Math.max(initialMs, gap))
  }
  return {
    initialMs,
    factor,
    maxMs,
    delayMs,
    schedule: (startedAt, expected) =>
      Schedule.forever.pipe(
        Schedule.addDelayEffect(() => Effect.map(Clock.currentTimeMillis, (now) => Duration.millis(delayMs(now - startedAt, expected))))
      )
  }
}

/**
 * How long tasks of one type take on one node, learned from the waits themselves (each observation is the
 * midpoint between the last poll that saw the task running and the first that saw it stopped): a moving
 * average and a moving mean deviation, as TCP estimates round trips; the expected window is the average ± two
 * deviations. Per node and type (a clone's copy time depends on the node's storage); a type not seen on a
 * node yet borrows what other nodes showed.
 */
const TASK_DURATION_WEIGHT = 0.25
const makeTaskDurations = () => {
  const byKey = new Map<string, { mean: number; dev: number }>()
  const byType = new Map<string, { mean: number; dev: number }>()
  const blend = (map: Map<string, { mean: number; dev: number }>, key: string, ms: number) => {
    const before = map.get(key)
    if (before === undefined) {
      map.set(key, { mean: ms, dev: ms / 20 })
      return
    }
    before.dev += TASK_DURATION_WEIGHT * (Math.abs(ms - before.mean) - before.dev)
    before.mean += TASK_DURATION_WEIGHT * (ms - before.mean)
  }
  return {
    expected: (node: string, type: string): TaskExpectation | undefined => {
      const found = byKey.get(`${node}/${type}`) ?? byType.get(type)
      return found === undefined ? undefined : { fromMs: Math.max(0, found.mean - 2 * found.dev), toMs: found.mean + 2 * found.dev }
    },
    observe: (node: string, type: string, ms: number) => {
      blend(byKey, `${node}/${type}`, ms)
      blend(byType, type, ms)
    }
  }
}

/** Transient-failure retries: total attempts (default 5), first delay (200 ms, doubling, capped at 5 s), jittered. */
export interface RetrySettings {
  readonly attempts?: number
  readonly baseDelay?: Duration.DurationInput
  readonly maxDelay?: Duration.DurationInput
}

/** `exchange` with bounded, jittered retries of transient failures; each retry is logged. */
export const retryingCall = (
  exchange: <A>(spec: CallSpec<A>, attempt: number) => Effect.Effect<A, PveError>,
  retry?: RetrySettings
) => {
  const attempts = Math.max(1, Math.floor(retry?.attempts ?? 5))
  const retrySchedule = Schedule.exponential(retry?.baseDelay ?? "200 millis", 2).pipe(
    Schedule.union(Schedule.spaced(retry?.maxDelay ?? "5 seconds")),
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(attempts - 1))
  )
  return <A>(spec: CallSpec<A>): Effect.Effect<A, PveError> =>
      Effect.gen(function* () {
        const counter = yield* Ref.make(0)
        const endpoint = `${spec.method} ${spec.template}`
        const once = Effect.flatMap(Ref.updateAndGet(counter, (n) => n + 1), (attempt) =>
          exchange(spec, attempt).pipe(
            countedPveCall(endpoint, attempt),
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
}

/** Every endpoint of `ProxmoxApi` over a transport. */
export const makeProxmoxApiShape = (transport: PveTransport): ProxmoxApiShape => {
  const { call, pollSchedule, defaultTaskTimeout, visibilityGraceMs } = transport
  // Task polls go out through `exchange` directly (`call` counts its own attempts): each is counted too.
  const exchange: PveTransport["exchange"] = (spec, attempt) => transport.exchange(spec, attempt).pipe(countedPveCall(`${spec.method} ${spec.template}`))
  const taskDurations = makeTaskDurations()
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
    // When the task was last seen running (ms after `started`): with the first poll that sees it stopped,
    // it brackets the task's end.
    const lastRunning = yield* Ref.make(0)
    const spec = { method: "GET", template: "/nodes/{node}/tasks/{upid}/status", path: `/nodes/${enc(taskNode)}/tasks/${enc(upid)}/status`, decode: decoders.TaskStatus } as const
    // Polls go out once each: the poll schedule is the retry, so a blip mid-task does not end the wait.
    const poll = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const result = yield* exchange(spec, 1).pipe(Effect.either)
      if (Either.isRight(result)) {
        yield* Ref.set(last, Option.some(result.right))
        if (result.right.status !== "stopped") yield* Ref.set(lastRunning, now - started)
        // Failed tasks (a lock timeout, a refusal) say nothing about how long the work takes.
        else if (isTaskSuccess(result.right.exitstatus ?? "")) taskDurations.observe(taskNode, taskType, ((yield* Ref.get(lastRunning)) + now - started) / 2)
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
    const expected = taskDurations.expected(taskNode, taskType)
    // A task of a known kind is not polled the moment it starts: the first poll waits the schedule's first gap.
    const firstGap = expected === undefined ? Effect.void : Effect.sleep(Duration.millis(pollSchedule.delayMs(0, expected)))
    yield* Effect.zipRight(firstGap, Effect.repeat(poll, { schedule: pollSchedule.schedule(started, expected), until: (done) => done })).pipe(
      Effect.timeoutFail({ duration: timeout, onTimeout: () => new TaskTimeout({ node: taskNode, upid, taskType, timeout }) })
    )
    const final = yield* Ref.get(last)
    if (Option.isNone(final)) return yield* new TaskTimeout({ node: taskNode, upid, taskType, timeout })
    const exitstatus = final.value.exitstatus ?? "task stopped without an exit status"
    if (!isTaskSuccess(exitstatus)) {
      return yield* new TaskFailed({ node: taskNode, upid, taskType, exitstatus: boundText(exitstatus, MAX_PVE_TEXT), classification: classifyTaskFailure(exitstatus) })
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
    clusterResources: Effect.fn("pve.clusterResources")(function* () {
      const items = yield* call({ method: "GET", template: "/cluster/resources", path: "/cluster/resources", decode: decoders.ClusterResourceList })
      const nodes: Array<NodeResource> = []
      const vms: Array<ClusterVmInfo> = []
      const storages: Array<StorageResource> = []
      for (const item of items) {
        if ("vmid" in item) vms.push(withStatus(item))
        else if ("storage" in item) storages.push(item)
        else if (item.type === "node" && "node" in item) nodes.push(item)
      }
      return { nodes, vms, storages }
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
    listNetwork: Effect.fn("pve.listNetwork")(function* (node, filter) {
      return yield* call({
        method: "GET", template: "/nodes/{node}/network", path: `/nodes/${enc(node)}/network`, decode: decoders.NetworkInterfaceList,
        query: { type: filter?.type }
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
      return yield* call({
        method: "POST", template: "/nodes/{node}/storage/{storage}/upload", path: `/nodes/${enc(node)}/storage/${enc(storage)}/upload`,
        upload: { content: options.content, filename: options.filename, data: options.data }, decode: decoders.UpidAnswer
      })
    }),
    deleteVolume: Effect.fn("pve.deleteVolume")(function* (node, storage, volid) {
      return yield* call({
        method: "DELETE", template: "/nodes/{node}/storage/{storage}/content/{volume}",
        path: `/nodes/${enc(node)}/storage/${enc(storage)}/content/${enc(volid)}`, decode: decoders.OptionalUpidAnswer
      }).pipe(optionalUpid)
    }),
    listTasks: Effect.fn("pve.listTasks")(function* (node, filter) {
      return yield* call({
        method: "GET", template: "/nodes/{node}/tasks", path: `/nodes/${enc(node)}/tasks`, decode: decoders.TaskList,
        query: { source: filter.source, typefilter: filter.type, vmid: filter.vmid, limit: filter.limit }
      })
    }),
    taskStatus,
    waitTask
  })
}
