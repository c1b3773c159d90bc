/**
 * The shard state is the fold of its event log: `fold(events) = events.reduce(apply, emptyState)`. The same
 * pure function serves the leader's replay, the admin view and tests, so it must be total and deterministic.
 *
 * A history that cannot have happened (two instances on one VMID, a second VMID for a cloned instance, an
 * event for an instance the log does not know, a creation repeated) is never thrown and never applied as if
 * it were fine: it is an anomaly, recorded with its seq, and the instances it touches are *held* — no saga
 * step, delete or GC acts on them until an operator deletes them — while every other instance goes on.
 * A hand-edited or foreign segment could otherwise make the leader delete a healthy VM.
 *
 * Instances live in Effect's `HashMap`, a persistent hash trie, so a new state shares every untouched
 * instance with the old one (no copy of all instances per event). Inside one `fold`, the instances it
 * touches are private copies in a native `Map`, changed in place and merged into the trie once at the end:
 * the mutation never leaks (the input state and every instance reachable from it stay unchanged), and
 * replaying 100k events costs one `Map` operation per event rather than one trie update.
 */
import { Either, HashMap, Option, type ParseResult, Schema } from "effect"
import { boundText } from "../errorText.js"
import { type CloneAbandoned, type DeleteReason as DeleteReasonT, DeleteReason, ErrorClass, RequestReason, RetireReason, type ShardEvent, strict } from "./events.js"

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

/** Why the fold stopped an instance: the seq of the impossible event and what was impossible about it. */
export const Hold = Schema.Struct({ seq: Schema.Int, reason: Schema.String })
export type Hold = typeof Hold.Type

/** An event that cannot have happened, where it is in the log, and the instances it held. */
export const Anomaly = Schema.Struct({
  seq: Schema.Int,
  event: Schema.String,
  instanceId: Schema.optional(Schema.String),
  vmid: Schema.optional(Schema.Int),
  reason: Schema.String,
  held: Schema.Array(Schema.String)
})
export type Anomaly = typeof Anomaly.Type

/** How many anomalies the state keeps for the admin view (the count covers all of them). */
export const RECENT_ANOMALIES = 50

/** Why and since when an instance is being replaced (`RetirementRequested`). */
export const Retirement = Schema.Struct({ reason: RetireReason, at: Schema.Number, skipDrain: Schema.optional(Schema.Boolean) })
export type Retirement = typeof Retirement.Type

/** The announced deletion of a retiring instance (`DrainStarted`). */
export const Drain = Schema.Struct({ startedAt: Schema.Number, deleteAt: Schema.Number })
export type Drain = typeof Drain.Type

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
  /** The group's infra hash when the instance was requested; unknown for older logs and most adopted VMs (never rotated for drift). */
  infraHash: Schema.optional(Schema.String),
  /** Set while the instance is being replaced: it no longer counts towards its group's size. */
  retirement: Schema.optional(Retirement),
  /** Set once its replacement is ready: it is deleted at `deleteAt`, or when an operator acknowledges. */
  drain: Schema.optional(Drain),
  reason: Schema.Union(RequestReason, Schema.Literal("adopted")),
  phase: Phase,
  node: Schema.optional(Schema.String),
  templateVmid: Schema.optional(Schema.Int),
  templateNode: Schema.optional(Schema.String),
  vmid: Schema.optional(Schema.Int),
  /** When the clone onto `vmid` was requested (`CloneRequested`): a node booted since has killed it if it ran there. */
  cloneRequestedAt: Schema.optional(Schema.Number),
  /** VMIDs whose dead clone's placeholder this instance left behind (`CloneAbandoned`), for an operator to remove. */
  abandonedVmids: Schema.optional(Schema.Array(Schema.Int)),
  isoVolid: Schema.optional(Schema.String),
  diskSize: Schema.optional(Schema.String),
  ips: Schema.Array(Schema.String),
  hostname: Schema.optional(Schema.String),
  /** SHA-256 of the registration nonce in the instance's user-data (`NonceIssued`); absent when registration is off or for adopted VMs. */
  nonceHash: Schema.optional(Schema.String),
  /**
   * The serial of the agent's current client certificate (`Registered`, then each `CertificateRenewed`):
   * a certificate with any other serial is superseded. Absent for logs from before serials were recorded.
   */
  certificateSerial: Schema.optional(Schema.String),
  /** Number of `StepFailed` events. */
  failures: Schema.Int,
  lastError: Schema.optional(LastError),
  deleteReason: Schema.optional(DeleteReason),
  deleteRequestedAt: Schema.optional(Schema.Number),
  cleanup: Cleanup,
  requestedAt: Schema.Number,
  startedAt: Schema.optional(Schema.Number),
  registeredAt: Schema.optional(Schema.Number),
  adopted: Schema.Boolean,
  /** Set by an impossible event about this instance: nothing acts on it until an operator deletes it. */
  held: Schema.optional(Hold)
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
  /** The log's identity (`LogIdentity`), written into the notes of every VM it creates; undefined before the first. */
  readonly logId?: string | undefined
  /** Impossible events (see the module comment): counted here, the newest listed in `recentAnomalies`. */
  readonly anomalies: number
  /** The newest `RECENT_ANOMALIES` anomalies, oldest first. */
  readonly recentAnomalies: ReadonlyArray<Anomaly>
  /** Which instance each VMID belongs to (until its VM is deleted); derived from the instances, not stored. */
  readonly vmidOwners: HashMap.HashMap<number, string>
}

export const emptyState: State = {
  term: 0,
  leader: undefined,
  vmidHighWater: 0,
  instances: HashMap.empty(),
  goneCount: 0,
  anomalies: 0,
  recentAnomalies: [],
  vmidOwners: HashMap.empty()
}

type Draft = { -readonly [K in keyof Instance]: Instance[K] }

/** `base` with a fold's changes applied (`null`: removed), in one trie update per changed key. */
const mergeTouched = <K, V>(base: HashMap.HashMap<K, V>, touched: ReadonlyMap<K, V | null>): HashMap.HashMap<K, V> =>
  touched.size === 0 ? base : HashMap.mutate(base, (map) => {
    for (const [key, value] of touched) {
      if (value === null) HashMap.remove(map, key)
      else HashMap.set(map, key, value)
    }
  })

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
    return mergeTouched(this.base, this.touched)
  }
}

/** The VMID owners a fold has changed (`null`: released), over the input state's map. */
class Owners {
  readonly touched = new Map<number, string | null>()
  constructor(readonly base: HashMap.HashMap<number, string>) {}

  get(vmid: number): string | undefined {
    const own = this.touched.get(vmid)
    return own === undefined ? Option.getOrUndefined(HashMap.get(this.base, vmid)) : own ?? undefined
  }

  set(vmid: number, id: string): void {
    this.touched.set(vmid, id)
  }

  /** Releases `vmid` if `id` owns it. */
  release(vmid: number | undefined, id: string): void {
    if (vmid !== undefined && this.get(vmid) === id) this.touched.set(vmid, null)
  }

  merged(): HashMap.HashMap<number, string> {
    return mergeTouched(this.base, this.touched)
  }
}

/** Phases in which the instance's clone has finished: its VMID can no longer change. */
const CLONED_PHASES: ReadonlySet<Phase> = new Set(["cloned", "configured", "starting", "running", "registered"])

/** Ids quoted in an anomaly's reason: an event may carry anything, the reason stays one short line. */
const quoteId = (id: string) => boundText(id, 64)

interface Acc {
  term: number
  leader: string | undefined
  vmidHighWater: number
  goneCount: number
  anomalies: number
  /** Copied on the first anomaly of a fold, so the input state's list is never changed. */
  recent: ReadonlyArray<Anomaly>
  recentOwned: boolean
  /** Seq of the segment being folded (0 when the caller does not say). */
  seq: number
  logId: string | undefined
}

const noCleanup: Cleanup = { vmStopped: false, isoDeleted: false, vmDeleted: false }

/** A deleting instance stays deleting whatever late saga event arrives. */
const advance = (d: Draft, phase: Phase): void => {
  if (d.phase !== "deleting") d.phase = phase
}

/**
 * PVE `status` of an adopted VM → phase: a running VM is running — a paused or suspended one too (its QEMU
 * runs; `/cluster/resources` lists it so); anything else exists but is not started.
 */
const adoptedPhase = (status: string): Phase => (status === "running" || status === "paused" || status === "suspended" ? "running" : "configured")

type NewFields = Pick<Draft, "id" | "tenant" | "group" | "kind" | "specHash" | "infraHash" | "reason" | "phase" | "requestedAt" | "adopted">

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
  infraHash: f.infraHash,
  retirement: undefined,
  drain: undefined,
  reason: f.reason,
  phase: f.phase,
  node: undefined,
  templateVmid: undefined,
  templateNode: undefined,
  vmid: undefined,
  cloneRequestedAt: undefined,
  abandonedVmids: undefined,
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
  adopted: f.adopted,
  held: undefined
})

/**
 * Whether a `CloneAbandoned` takes the instance's VMID: only the clone it is waiting for (the dead clone's
 * placeholder is not the instance's VM), while the instance is cloning or being deleted.
 */
const abandonsVmid = (d: Draft, event: typeof CloneAbandoned.Type): boolean =>
  d.vmid === event.vmid && (d.phase === "cloning" || d.phase === "deleting") && !d.cleanup.vmDeleted

type UpdateEvent = Exclude<ShardEvent, { _tag: "LeaderElected" | "VmidsSeen" | "LogIdentity" | "VmMismatched" | "InstanceRequested" | "Adopted" | "InstanceGone" | "FileCertificatesIssued" }>

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
      if (event.infraHash !== undefined) d.infraHash = event.infraHash
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
      d.cloneRequestedAt = event.at
      d.node = event.node
      d.templateVmid = event.templateVmid
      d.templateNode = event.templateNode
      return
    case "Cloned":
      advance(d, "cloned")
      d.vmid = event.vmid
      d.node = event.node
      return
    case "CloneAbandoned":
      if (abandonsVmid(d, event)) {
        d.vmid = undefined
        d.cloneRequestedAt = undefined
        if (d.phase === "cloning") d.phase = "iso-ready"
      }
      d.abandonedVmids = [...(d.abandonedVmids ?? []), event.vmid]
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
      d.certificateSerial = event.certificateSerial
      return
    case "CertificateRenewed":
      if (d.phase === "registered") d.certificateSerial = event.certificateSerial
      return
    case "StepFailed":
      d.failures += 1
      // Bounded here too: a log written before messages were bounded may carry megabytes in every failure.
      d.lastError = { step: event.step, errorClass: event.errorClass, message: boundText(event.message), attempt: event.attempt, at: event.at }
      return
    case "RetirementRequested":
      // The first reason stands, and an instance already going away is not retired.
      if (d.phase !== "deleting" && d.retirement === undefined) {
        d.retirement = event.skipDrain === true ? { reason: event.reason, at: event.at, skipDrain: true } : { reason: event.reason, at: event.at }
      }
      return
    case "DrainStarted":
      if (d.phase !== "deleting" && d.retirement !== undefined && d.drain === undefined) d.drain = { startedAt: event.at, deleteAt: event.deleteAt }
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

interface Fold {
  readonly acc: Acc
  readonly instances: Overlay
  readonly owners: Owners
}

/** Records an anomaly and holds `hold` (those still known; the first hold of each is kept). */
const anomaly = (f: Fold, event: ShardEvent, reason: string, hold: ReadonlyArray<string>, vmid?: number): void => {
  const { acc } = f
  acc.anomalies++
  const held: Array<string> = []
  for (const id of new Set(hold)) {
    const d = f.instances.edit(id)
    if (d === undefined) continue
    if (d.held === undefined) d.held = { seq: acc.seq, reason }
    held.push(id)
  }
  const entry: Anomaly = {
    seq: acc.seq,
    event: event._tag,
    ...("instanceId" in event ? { instanceId: quoteId(event.instanceId) } : {}),
    ...(vmid === undefined ? {} : { vmid }),
    reason,
    held
  }
  if (!acc.recentOwned) {
    acc.recent = [...acc.recent]
    acc.recentOwned = true
  }
  const list = acc.recent as Array<Anomaly>
  list.push(entry)
  if (list.length > RECENT_ANOMALIES) list.splice(0, list.length - RECENT_ANOMALIES)
}

/**
 * `d` takes VMID `vmid` (a clone's reservation or result, an adoption). A VMID another known instance
 * owns, or a new VMID for an instance whose clone had finished, cannot happen: the instances are held and
 * the VMID stays with its first owner. Returns whether the claim is sound.
 */
const claim = (f: Fold, d: Draft, vmid: number, event: ShardEvent): boolean => {
  const owner = f.owners.get(vmid)
  if (owner !== undefined && owner !== d.id && f.instances.has(owner)) {
    anomaly(f, event, `${event._tag} gives ${quoteId(d.id)} VMID ${vmid}, which belongs to ${quoteId(owner)}`, [d.id, owner], vmid)
    return false
  }
  if (d.vmid !== undefined && d.vmid !== vmid && CLONED_PHASES.has(d.phase)) {
    anomaly(f, event, `${event._tag} gives ${quoteId(d.id)} VMID ${vmid}, but its clone had finished as VM ${d.vmid}`, [d.id], vmid)
    return false
  }
  // A delete saga runs only after the create saga's last step: no clone follows the VM's deletion.
  if (d.cleanup.vmDeleted) {
    anomaly(f, event, `${event._tag} gives ${quoteId(d.id)} VMID ${vmid} after its VM was deleted`, [d.id], vmid)
    return false
  }
  f.owners.release(d.vmid, d.id)
  f.owners.set(vmid, d.id)
  return true
}

const step = (f: Fold, event: ShardEvent): void => {
  const { acc, instances } = f
  switch (event._tag) {
    case "LeaderElected":
      if (event.term < acc.term) {
        anomaly(f, event, `LeaderElected of term ${event.term} after term ${acc.term}`, [])
        return
      }
      acc.term = event.term
      acc.leader = event.replica
      return
    case "VmidsSeen":
      acc.vmidHighWater = Math.max(acc.vmidHighWater, event.highest)
      return
    case "LogIdentity":
      // A log has one identity for good: a second, different one is never taken.
      if (acc.logId === undefined) acc.logId = event.logId
      else if (acc.logId !== event.logId) anomaly(f, event, `a second LogIdentity ${quoteId(event.logId)} in log ${acc.logId}`, [])
      return
    case "VmMismatched":
      // Seen on PVE rather than impossible in the log, but the same answer: the instance is held.
      anomaly(f, event, event.detail, [event.instanceId], event.vmid)
      return
    case "InstanceRequested":
      if (instances.has(event.instanceId)) {
        anomaly(f, event, `InstanceRequested for ${quoteId(event.instanceId)}, which the log already has`, [event.instanceId])
        return
      }
      instances.put(
        newInstance({
          id: event.instanceId,
          tenant: event.tenant,
          group: event.group,
          kind: event.kind,
          specHash: event.specHash,
          infraHash: event.infraHash,
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
        anomaly(f, event, `Adopted VM ${event.vmid} as ${quoteId(event.instanceId)}, which the log already has`, [event.instanceId], event.vmid)
        return
      }
      const d = newInstance({
        id: event.instanceId,
        tenant: event.tenant,
        group: event.group,
        kind: event.kind,
        specHash: undefined,
        infraHash: event.infraHash,
        reason: "adopted",
        phase: adoptedPhase(event.status),
        requestedAt: event.at,
        adopted: true
      })
      d.node = event.node
      if (d.phase === "running") d.startedAt = event.at
      instances.put(d)
      if (claim(f, d, event.vmid, event)) d.vmid = event.vmid
      return
    }
    case "FileCertificatesIssued":
      // A record for operators (which certificates exist): nothing of the state depends on it, and an instance
      // deleted meanwhile is no anomaly.
      return
    case "InstanceGone": {
      const d = instances.edit(event.instanceId)
      if (d === undefined) {
        anomaly(f, event, `InstanceGone for ${quoteId(event.instanceId)}, which the log does not know`, [])
        return
      }
      f.owners.release(d.vmid, d.id)
      instances.remove(event.instanceId)
      acc.goneCount++
      return
    }
    default: {
      const claimed = event._tag === "CloneRequested" || event._tag === "Cloned" ? event.vmid : undefined
      const named = claimed ?? (event._tag === "VmDeleted" ? event.vmid : undefined)
      // The VMID is reserved (and seen) whether or not the instance is still known.
      if (claimed !== undefined) acc.vmidHighWater = Math.max(acc.vmidHighWater, claimed)
      const d = instances.edit(event.instanceId)
      if (d === undefined) {
        // An unknown instance naming a known instance's VMID holds that instance too.
        const owner = claimed === undefined ? undefined : f.owners.get(claimed)
        anomaly(
          f,
          event,
          `${event._tag} for ${quoteId(event.instanceId)}, which the log does not know${owner === undefined ? "" : `, names VMID ${claimed} of ${quoteId(owner)}`}`,
          owner === undefined ? [] : [owner],
          named
        )
        return
      }
      if (claimed !== undefined && !claim(f, d, claimed, event)) return
      // An operator's delete is the one way out of a hold: a deliberate decision about that instance.
      if (event._tag === "DeleteRequested" && event.reason === "operator" && d.held !== undefined) {
        d.held = undefined
        // The operator's word replaces a delete already under way: the delete saga then drops only the record
        // of a VM that is not what the log says, instead of holding the instance again.
        if (d.phase === "deleting") d.deleteReason = "operator"
      }
      // The instance's VMID is free once its VM is deleted (snapshots rebuild the owners by the same rule).
      if (event._tag === "VmDeleted") f.owners.release(d.vmid, d.id)
      if (event._tag === "CloneAbandoned" && abandonsVmid(d, event)) f.owners.release(d.vmid, d.id)
      update(d, event)
    }
  }
}

/**
 * A fold that takes its events in parts: `add` each segment's events with the segment's seq, `state` when
 * done. The touched instances stay private copies in one native `Map` across every part and go into the trie
 * once, at `state`: replay holds one copy of each instance however many segments it reads, where a `fold` per
 * segment would build a new trie per segment and leave the old one's paths as garbage. `from` is never
 * changed; after `state` the fold goes on over the state it returned, so a returned state never changes either.
 */
export interface Folding {
  readonly add: (events: Iterable<ShardEvent>, seq: number) => void
  readonly state: () => State
}

export const startFold = (from: State = emptyState): Folding => {
  const acc: Acc = {
    term: from.term,
    leader: from.leader,
    vmidHighWater: from.vmidHighWater,
    goneCount: from.goneCount,
    anomalies: from.anomalies,
    logId: from.logId,
    recent: from.recentAnomalies,
    recentOwned: false,
    seq: 0
  }
  let f: Fold = { acc, instances: new Overlay(from.instances), owners: new Owners(from.vmidOwners) }
  return {
    add: (events, seq) => {
      acc.seq = seq
      for (const event of events) step(f, event)
    },
    state: () => {
      const next: State = {
        term: acc.term,
        leader: acc.leader,
        vmidHighWater: acc.vmidHighWater,
        goneCount: acc.goneCount,
        logId: acc.logId,
        anomalies: acc.anomalies,
        recentAnomalies: acc.recent,
        instances: f.instances.merged(),
        vmidOwners: f.owners.merged()
      }
      // The returned state shares the copies: later events must copy again, and the anomaly list too.
      acc.recentOwned = false
      f = { acc, instances: new Overlay(next.instances), owners: new Owners(next.vmidOwners) }
      return next
    }
  }
}

/**
 * The state after `events`, starting from `from` (which is never changed); equals `events.reduce(apply, from)`.
 * `seq` is the segment the events come from, recorded with any anomaly among them (0: not known).
 */
export const fold = (events: Iterable<ShardEvent>, from: State = emptyState, seq = 0): State => {
  const folding = startFold(from)
  folding.add(events, seq)
  return folding.state()
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

/** Whether an impossible event stopped the instance: no saga step, delete or GC may act on it. */
export const isHeld = (instance: Instance): boolean => instance.held !== undefined

/** Held instances, sorted by id. */
export const heldInstances = (state: State): ReadonlyArray<Instance> => allInstances(state).filter(isHeld)

/** One line about an anomaly for logs and the admin views: where it is, whom and which VMID it names, and why. */
export const describeAnomaly = (a: Anomaly): string =>
  `seq ${a.seq}: ${a.reason}${a.held.length === 0 ? "; ignored" : `; held: ${a.held.join(", ")} (no saga step, delete or GC acts on ${a.held.length === 1 ? "it" : "them"})`}`

// ---- snapshot encoding -------------------------------------------------------------------------------------

/** The JSON form of a state, with instances sorted by id so equal states encode to equal bytes. */
export const StateSnapshot = Schema.Struct({
  v: Schema.Literal(1),
  term: Schema.Int,
  leader: Schema.optional(Schema.String),
  vmidHighWater: Schema.Int,
  goneCount: Schema.Int,
  anomalies: Schema.Int,
  logId: Schema.optional(Schema.String),
  recentAnomalies: Schema.optional(Schema.Array(Anomaly)),
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
  ...(state.logId === undefined ? {} : { logId: state.logId }),
  ...(state.recentAnomalies.length === 0 ? {} : { recentAnomalies: state.recentAnomalies }),
  instances: allInstances(state)
})

/** The VMID owners of `instances` (sorted by id), as the fold keeps them: a deleted VM's VMID is free. */
const ownersOf = (instances: ReadonlyArray<Instance>): HashMap.HashMap<number, string> =>
  HashMap.mutate(HashMap.empty<number, string>(), (map) => {
    for (const i of instances) if (i.vmid !== undefined && !i.cleanup.vmDeleted && !HashMap.has(map, i.vmid)) HashMap.set(map, i.vmid, i.id)
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
    logId: snapshot.logId,
    recentAnomalies: snapshot.recentAnomalies ?? [],
    instances: HashMap.fromIterable(snapshot.instances.map((i) => [i.id, i] as const)),
    vmidOwners: ownersOf(snapshot.instances)
  }))
