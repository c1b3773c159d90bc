/**
 * The shard state is the fold of its event log: `fold(events) = events.reduce(apply, emptyState)`. The same
 * pure function serves the leader's replay, the admin view and tests, so it must be total (an event for an
 * unknown instance is counted as an anomaly, never thrown) and deterministic.
 *
 * Instances live in Effect's `HashMap`, a persistent hash trie, so a new state shares every untouched
 * instance with the old one (no copy of all instances per event). Inside one `fold`, the instances it
 * touches are private copies in a native `Map`, changed in place and merged into the trie once at the end:
 * the mutation never leaks (the input state and every instance reachable from it stay unchanged), and
 * replaying 100k events costs one `Map` operation per event rather than one trie update.
 */
import { Either, HashMap, Option, type ParseResult, Schema } from "effect"
import { type DeleteReason as DeleteReasonT, DeleteReason, ErrorClass, RequestReason, type ShardEvent, strict } from "./events.js"

export const Phase = Schema.Literal(
  "requested",
  "placed",
  "templated",
  "iso-uploading",
  "iso-ready",
  "cloning",
  "cloned",
  "configured",
  "starting",
  "running",
  "registered",
  "deleting"
)
export type Phase = typeof Phase.Type

const LastError = Schema.Struct({
  step: Schema.String,
  errorClass: ErrorClass,
  message: Schema.String,
  attempt: Schema.Int,
  at: Schema.Number
})
export type LastError = typeof LastError.Type

/** What compensation has done so far, so a resumed delete skips finished steps. */
const Cleanup = Schema.Struct({ vmStopped: Schema.Boolean, isoDeleted: Schema.Boolean, vmDeleted: Schema.Boolean })
export type Cleanup = typeof Cleanup.Type

export const Instance = Schema.Struct({
  id: Schema.String,
  /** Unknown only for an adopted VM whose notes did not say. */
  tenant: Schema.optional(Schema.String),
  group: Schema.optional(Schema.String),
  kind: Schema.String,
  /** Unknown for an adopted VM. */
  specHash: Schema.optional(Schema.String),
  reason: Schema.Union(RequestReason, Schema.Literal("adopted")),
  phase: Phase,
  node: Schema.optional(Schema.String),
  templateVmid: Schema.optional(Schema.Int),
  templateNode: Schema.optional(Schema.String),
  vmid: Schema.optional(Schema.Int),
  isoVolid: Schema.optional(Schema.String),
  diskSize: Schema.optional(Schema.String),
  ips: Schema.Array(Schema.String),
  hostname: Schema.optional(Schema.String),
  /** SHA-256 of the registration nonce in the instance's user-data (`NonceIssued`); absent when registration is off or for adopted VMs. */
  nonceHash: Schema.optional(Schema.String),
  /** Number of `StepFailed` events. */
  failures: Schema.Int,
  lastError: Schema.optional(LastError),
  deleteReason: Schema.optional(DeleteReason),
  deleteRequestedAt: Schema.optional(Schema.Number),
  cleanup: Cleanup,
  requestedAt: Schema.Number,
  startedAt: Schema.optional(Schema.Number),
  registeredAt: Schema.optional(Schema.Number),
  adopted: Schema.Boolean
})
export type Instance = typeof Instance.Type

export interface State {
  /** Term of the latest `LeaderElected`; 0 before any. */
  readonly term: number
  /** Replica id of the latest `LeaderElected`. */
  readonly leader: string | undefined
  /** Highest VMID ever reserved, cloned, adopted or seen on PVE; the allocator goes above it. */
  readonly vmidHighWater: number
  readonly instances: HashMap.HashMap<string, Instance>
  /** Instances removed by `InstanceGone`. */
  readonly goneCount: number
  /** Events that referred to an unknown instance, repeated a creation, or went back in term: ignored. */
  readonly anomalies: number
}

export const emptyState: State = {
  term: 0,
  leader: undefined,
  vmidHighWater: 0,
  instances: HashMap.empty(),
  goneCount: 0,
  anomalies: 0
}

type Draft = { -readonly [K in keyof Instance]: Instance[K] }

/**
 * Instances a fold has touched: its own copies (mutated in place while the fold runs) or `null` for
 * removed ones. Untouched instances stay in the input `HashMap`, shared; the overlay is merged into a new
 * map once at the end, so a fold costs one native-Map operation per event plus one trie update per
 * touched instance.
 */
class Overlay {
  readonly touched = new Map<string, Draft | null>()
  constructor(readonly base: HashMap.HashMap<string, Instance>) {}

  has(id: string): boolean {
    const own = this.touched.get(id)
    return own === undefined ? HashMap.has(this.base, id) : own !== null
  }

  /** The instance, copied into the overlay on first touch so it may be changed in place. */
  edit(id: string): Draft | undefined {
    const own = this.touched.get(id)
    if (own !== undefined) return own ?? undefined
    const shared = HashMap.get(this.base, id)
    if (Option.isNone(shared)) return undefined
    const copy: Draft = { ...shared.value }
    this.touched.set(id, copy)
    return copy
  }

  put(instance: Draft): void {
    this.touched.set(instance.id, instance)
  }

  remove(id: string): void {
    this.touched.set(id, null)
  }

  merged(): HashMap.HashMap<string, Instance> {
    if (this.touched.size === 0) return this.base
    return HashMap.mutate(this.base, (map) => {
      for (const [id, instance] of this.touched) {
        if (instance === null) HashMap.remove(map, id)
        else HashMap.set(map, id, instance)
      }
    })
  }
}

interface Acc {
  term: number
  leader: string | undefined
  vmidHighWater: number
  goneCount: number
  anomalies: number
}

const noCleanup: Cleanup = { vmStopped: false, isoDeleted: false, vmDeleted: false }

/** A deleting instance stays deleting whatever late saga event arrives. */
const advance = (d: Draft, phase: Phase): void => {
  if (d.phase !== "deleting") d.phase = phase
}

/** PVE `status` of an adopted VM → phase: a running VM is running; anything else exists but is not started. */
const adoptedPhase = (status: string): Phase => (status === "running" ? "running" : "configured")

type NewFields = Pick<Draft, "id" | "tenant" | "group" | "kind" | "specHash" | "reason" | "phase" | "requestedAt" | "adopted">

/**
 * Every field present (undefined when unknown): one object shape for all instances keeps the fold fast.
 * Written out field by field: `{ ...fields, more }` takes a slow path in V8 (~40 µs per object here).
 */
const newInstance = (f: NewFields): Draft => ({
  id: f.id,
  tenant: f.tenant,
  group: f.group,
  kind: f.kind,
  specHash: f.specHash,
  reason: f.reason,
  phase: f.phase,
  node: undefined,
  templateVmid: undefined,
  templateNode: undefined,
  vmid: undefined,
  isoVolid: undefined,
  diskSize: undefined,
  ips: [],
  hostname: undefined,
  nonceHash: undefined,
  failures: 0,
  lastError: undefined,
  deleteReason: undefined,
  deleteRequestedAt: undefined,
  cleanup: noCleanup,
  requestedAt: f.requestedAt,
  startedAt: undefined,
  registeredAt: undefined,
  adopted: f.adopted
})

type UpdateEvent = Exclude<ShardEvent, { _tag: "LeaderElected" | "VmidsSeen" | "InstanceRequested" | "Adopted" | "InstanceGone" }>

/** Applies `event` to an instance owned by the running fold. */
const update = (d: Draft, event: UpdateEvent): void => {
  switch (event._tag) {
    case "NodeChosen":
      advance(d, "placed")
      d.node = event.node
      return
    case "TemplateResolved":
      advance(d, "templated")
      d.templateVmid = event.templateVmid
      d.templateNode = event.templateNode
      return
    case "IsoUploadRequested":
      // The volid is known before the upload, so compensation can delete a half-finished one.
      advance(d, "iso-uploading")
      d.node = event.node
      d.isoVolid = event.volid
      return
    case "NonceIssued":
      d.nonceHash = event.nonceHash
      return
    case "IsoUploaded":
      advance(d, "iso-ready")
      d.isoVolid = event.volid
      return
    case "CloneRequested":
      advance(d, "cloning")
      d.vmid = event.vmid
      d.node = event.node
      d.templateVmid = event.templateVmid
      d.templateNode = event.templateNode
      return
    case "Cloned":
      advance(d, "cloned")
      d.vmid = event.vmid
      d.node = event.node
      return
    case "Configured":
      advance(d, "configured")
      return
    case "Resized":
      d.diskSize = event.size
      return
    case "StartRequested":
      advance(d, "starting")
      return
    case "Started":
      // The guest may register before the saga records its start: registered stays registered.
      if (d.phase !== "registered") advance(d, "running")
      d.startedAt = event.at
      return
    case "Registered":
      advance(d, "registered")
      d.ips = event.ips
      d.hostname = event.hostname
      d.registeredAt = event.at
      return
    case "StepFailed":
      d.failures += 1
      d.lastError = { step: event.step, errorClass: event.errorClass, message: event.message, attempt: event.attempt, at: event.at }
      return
    case "DeleteRequested":
      // A repeated request keeps the first reason: it is why the instance is going away.
      if (d.phase === "deleting") return
      d.phase = "deleting"
      d.deleteReason = event.reason
      d.deleteRequestedAt = event.at
      return
    case "VmStopped":
      d.cleanup = { ...d.cleanup, vmStopped: true }
      return
    case "IsoDeleted":
      d.cleanup = { ...d.cleanup, isoDeleted: true }
      return
    case "VmDeleted":
      d.cleanup = { ...d.cleanup, vmDeleted: true }
      return
  }
}

const step = (acc: Acc, instances: Overlay, event: ShardEvent): void => {
  switch (event._tag) {
    case "LeaderElected":
      if (event.term < acc.term) {
        acc.anomalies++
        return
      }
      acc.term = event.term
      acc.leader = event.replica
      return
    case "VmidsSeen":
      acc.vmidHighWater = Math.max(acc.vmidHighWater, event.highest)
      return
    case "InstanceRequested":
      if (instances.has(event.instanceId)) {
        acc.anomalies++
        return
      }
      instances.put(
        newInstance({
          id: event.instanceId,
          tenant: event.tenant,
          group: event.group,
          kind: event.kind,
          specHash: event.specHash,
          reason: event.reason,
          phase: "requested",
          requestedAt: event.at,
          adopted: false
        })
      )
      return
    case "Adopted": {
      acc.vmidHighWater = Math.max(acc.vmidHighWater, event.vmid)
      if (instances.has(event.instanceId)) {
        acc.anomalies++
        return
      }
      const d = newInstance({
        id: event.instanceId,
        tenant: event.tenant,
        group: event.group,
        kind: event.kind,
        specHash: undefined,
        reason: "adopted",
        phase: adoptedPhase(event.status),
        requestedAt: event.at,
        adopted: true
      })
      d.node = event.node
      d.vmid = event.vmid
      if (d.phase === "running") d.startedAt = event.at
      instances.put(d)
      return
    }
    case "InstanceGone":
      if (!instances.has(event.instanceId)) {
        acc.anomalies++
        return
      }
      instances.remove(event.instanceId)
      acc.goneCount++
      return
    default: {
      // The VMID is reserved (and seen) whether or not the instance is still known.
      if (event._tag === "CloneRequested" || event._tag === "Cloned") {
        acc.vmidHighWater = Math.max(acc.vmidHighWater, event.vmid)
      }
      const d = instances.edit(event.instanceId)
      if (d === undefined) {
        acc.anomalies++
        return
      }
      update(d, event)
    }
  }
}

/** The state after `events`, starting from `from` (which is never changed); equals `events.reduce(apply, from)`. */
export const fold = (events: Iterable<ShardEvent>, from: State = emptyState): State => {
  const acc: Acc = {
    term: from.term,
    leader: from.leader,
    vmidHighWater: from.vmidHighWater,
    goneCount: from.goneCount,
    anomalies: from.anomalies
  }
  const instances = new Overlay(from.instances)
  for (const event of events) step(acc, instances, event)
  return { ...acc, instances: instances.merged() }
}

/** The state after `event`; `state` is not changed. */
export const apply = (state: State, event: ShardEvent): State => fold([event], state)

// ---- read helpers ------------------------------------------------------------------------------------------

const byId = (a: Instance, b: Instance) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** All instances, sorted by id (instance IDs sort by creation time). */
export const allInstances = (state: State): ReadonlyArray<Instance> => Array.from(HashMap.values(state.instances)).sort(byId)

export const getInstance = (state: State, id: string): Option.Option<Instance> => HashMap.get(state.instances, id)

/** Instances that are not being deleted, sorted by id. */
export const liveInstances = (state: State): ReadonlyArray<Instance> => allInstances(state).filter((i) => i.phase !== "deleting")

/** Instances per phase (phases without instances are absent), each list sorted by id. */
export const instancesByPhase = (state: State): ReadonlyMap<Phase, ReadonlyArray<Instance>> => {
  const out = new Map<Phase, Array<Instance>>()
  for (const instance of allInstances(state)) {
    const list = out.get(instance.phase)
    if (list === undefined) out.set(instance.phase, [instance])
    else list.push(instance)
  }
  return out
}

/** Live (not deleting) instances of one group, sorted by id. */
export const groupMembers = (state: State, tenant: string, group: string): ReadonlyArray<Instance> =>
  liveInstances(state).filter((i) => i.tenant === tenant && i.group === group)

/** Instances being deleted for `reason`, or all being deleted. */
export const deletingInstances = (state: State, reason?: DeleteReasonT): ReadonlyArray<Instance> =>
  allInstances(state).filter((i) => i.phase === "deleting" && (reason === undefined || i.deleteReason === reason))

// ---- snapshot encoding -------------------------------------------------------------------------------------

/** The JSON form of a state, with instances sorted by id so equal states encode to equal bytes. */
export const StateSnapshot = Schema.Struct({
  v: Schema.Literal(1),
  term: Schema.Int,
  leader: Schema.optional(Schema.String),
  vmidHighWater: Schema.Int,
  goneCount: Schema.Int,
  anomalies: Schema.Int,
  instances: Schema.Array(Instance)
})
export type StateSnapshot = typeof StateSnapshot.Type

/**
 * The snapshot form of `state` (plain data, instances sorted by id, so equal states give equal JSON).
 * Its type and its JSON form coincide; `JSON.stringify` drops the undefined optional fields.
 */
export const encodeState = (state: State): StateSnapshot => ({
  v: 1,
  term: state.term,
  leader: state.leader,
  vmidHighWater: state.vmidHighWater,
  goneCount: state.goneCount,
  anomalies: state.anomalies,
  instances: allInstances(state)
})

const decodeSnapshot = Schema.decodeUnknownEither(StateSnapshot, strict)

/** Decodes a state from its parsed JSON form, strictly. */
export const decodeState = (input: unknown): Either.Either<State, ParseResult.ParseError> =>
  Either.map(decodeSnapshot(input), (snapshot) => ({
    term: snapshot.term,
    leader: snapshot.leader,
    vmidHighWater: snapshot.vmidHighWater,
    goneCount: snapshot.goneCount,
    anomalies: snapshot.anomalies,
    instances: HashMap.fromIterable(snapshot.instances.map((i) => [i.id, i] as const))
  }))
