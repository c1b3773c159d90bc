/**
 * The invariants a chaos run is judged by, over its whole history and its end state:
 * - one writer per log sequence number, and no segment of a term lands after a newer term was elected;
 * - a replica fenced (lease lost, crashed, its term ended, or a newer term's `LeaderElected` durable) starts
 *   no PVE mutation and no log write afterwards;
 * - never two VMs named after one instance (sampled after every PVE call and every clock step);
 * - no PVE mutation of a VM that is not ours (an operator's: every world has some, in the shard's VMID range);
 * - waste and order: a clone never made again after one succeeded; a VMID never reserved for two instances at
 *   once, and an instance given a new VMID only when its last one was held by another VM; scale-down removes
 *   instances not yet running before running ones;
 * - no orphan left by a saga: when `InstanceGone` lands, no VM named after the instance, no clone of it in
 *   progress at its VMID and no ISO of it is left (the GC cleaning it up later does not excuse it);
 * - every instance's events follow the saga's state machine, and no clone names an instance whose delete
 *   is already on record;
 * - instances that retire (retirementRules.ts): a drain or a retirement's delete follows a retirement, an
 *   acknowledged delete a drain; a creation while the group retires leaves it at size + 1 VMs at most; a
 *   rotation or eligible expiry starts only while nothing else of its group retires or is being deleted;
 *   a retiring instance drains, or is deleted without a drain, only with its group at size besides it;
 * - at the end: every group at its size with all instances running, nothing left being created or deleted,
 *   one VM per instance, and no VM, disk or ISO that no live instance owns; nothing retiring, every instance
 *   on its group's current infra hash (a rollout finished), and every instance that retired deleted.
 * In a two-shard world each shard's part of the history is judged on its own by the rules above, and
 * across shards: no shard mutates a VM or ISO carrying the other shard's tags or instance IDs, no instance
 * ID is in both logs, and at the end every shard's groups are at size with nothing leaked.
 * With agent registration on (registration worlds), nonces are single-use: every `NonceIssued` hash is
 * issued once, an instance is registered at most once per nonce, a registration is accepted only with the
 * instance's newest nonce, and no raw nonce (the JWT) is in any event, log line or store object.
 */
import { allInstances, type Instance, type State } from "../../src/domain/shard/state.js"
import type { ShardEventEncoded } from "../../src/domain/shard/events.js"
import type { SimModel } from "../../src/sim/model.js"
import { hasAssociationTags } from "../../src/domain/pveTags.js"
import { leakedVolumes, nonTemplateVms } from "../support/leaks.js"
import { CLUSTER, GROUPS, ourTags, TENANT, type WorldConfig } from "./config.js"
import type { HistoryView, PveCall, StoreWrite, Who } from "./history.js"
import { judgeRetirements, retiredButKept } from "./retirementRules.js"

export interface Violation {
  readonly rule: string
  /** History index the violation is about. */
  readonly at: number
  readonly message: string
}

const landed = (w: StoreWrite) => w.outcome === "applied" || w.outcome === "ambiguous"

/**
 * Landed log segments in sequence order. A straggler's PUT that lands after its key was pruned (a snapshot
 * covers it; IfAbsent finds no object there) is no part of the log: replay starts after the snapshot.
 */
export const landedSegments = (h: Pick<HistoryView, "writes">): Array<StoreWrite> => {
  const prunedAt = new Map<string, number>()
  for (const w of h.writes) if (w.op === "delete" && w.outcome === "applied" && !prunedAt.has(w.key)) prunedAt.set(w.key, w.appliedAt!)
  return h.writes
    .filter((w) => w.op === "put" && w.key.startsWith("log/") && landed(w) && w.seq !== undefined && !(w.appliedAt! > (prunedAt.get(w.key) ?? Infinity)))
    .sort((a, b) => a.seq! - b.seq!)
}

const CREATE_ORDER = ["requested", "placed", "templated", "iso-uploading", "iso-ready", "cloning", "cloned", "configured", "starting", "running", "registered"] as const
type CreatePhase = typeof CREATE_ORDER[number]

interface Track {
  phase: CreatePhase
  deleting: boolean
  retired: boolean
  drained: boolean
  stopped: boolean
  isoDeleted: boolean
  vmDeleted: boolean
  vmid: number | undefined
  gone: boolean
}

/** Create events: the phases they may follow and the phase they lead to (undefined: stays). */
const CREATE_STEPS: Readonly<Record<string, { readonly from: ReadonlyArray<CreatePhase>; readonly to?: CreatePhase }>> = {
  NodeChosen: { from: ["requested"], to: "placed" },
  TemplateResolved: { from: ["placed"], to: "templated" },
  IsoUploadRequested: { from: ["templated"], to: "iso-uploading" },
  NonceIssued: { from: ["iso-uploading"] },
  IsoUploaded: { from: ["iso-uploading"], to: "iso-ready" },
  CloneRequested: { from: ["iso-ready", "cloning"], to: "cloning" },
  Cloned: { from: ["cloning"], to: "cloned" },
  Configured: { from: ["cloned"], to: "configured" },
  Resized: { from: ["cloned", "configured"] },
  StartRequested: { from: ["configured"], to: "starting" },
  Started: { from: ["starting"], to: "running" },
  Registered: { from: ["starting", "running"], to: "registered" }
}

/** Checks every instance's events, in log order, against the saga's state machine. */
export const sagaViolations = (segments: ReadonlyArray<StoreWrite>): Array<Violation> => {
  const out: Array<Violation> = []
  const tracks = new Map<string, Track>()
  const bad = (w: StoreWrite, id: string, message: string) =>
    out.push({ rule: "saga-state-machine", at: w.appliedAt ?? w.i, message: `${id}: ${message} (segment ${w.seq}, term ${w.term ?? "?"})` })
  for (const w of segments) {
    for (const event of w.events ?? []) {
      if (!("instanceId" in event)) continue
      const id = event.instanceId
      const t = tracks.get(id)
      if (event._tag === "InstanceRequested" || event._tag === "Adopted") {
        if (t !== undefined) {
          bad(w, id, `${event._tag} for an instance that already ${t.gone ? "existed and is gone" : "exists"}`)
          continue
        }
        const phase: CreatePhase = event._tag === "InstanceRequested" ? "requested" : event.status === "running" ? "running" : "configured"
        tracks.set(id, { phase, deleting: false, retired: false, drained: false, stopped: false, isoDeleted: false, vmDeleted: false, vmid: event._tag === "Adopted" ? event.vmid : undefined, gone: false })
        continue
      }
      if (t === undefined) {
        bad(w, id, `${event._tag} before the instance was requested or adopted`)
        continue
      }
      if (t.gone) {
        bad(w, id, `${event._tag} after InstanceGone`)
        continue
      }
      const step = CREATE_STEPS[event._tag]
      if (step !== undefined) {
        // The guest may register before the saga records its start: Started then leaves it registered.
        const lateStart = event._tag === "Started" && t.phase === "registered"
        if (!step.from.includes(t.phase) && !lateStart) bad(w, id, `${event._tag} in phase ${t.phase}${t.deleting ? " (deleting)" : ""}`)
        if (event._tag === "Cloned" && t.vmid !== undefined && event.vmid !== t.vmid) bad(w, id, `Cloned VMID ${event.vmid} but CloneRequested reserved ${t.vmid}`)
        if (event._tag === "CloneRequested" || event._tag === "Cloned") t.vmid = event.vmid
        if (t.stopped && (event._tag === "Started" || event._tag === "Cloned")) bad(w, id, `${event._tag} after the delete saga stopped the VM`)
        if (step.to !== undefined && !lateStart) t.phase = step.to
        continue
      }
      switch (event._tag) {
        case "StepFailed":
        case "VmMismatched":
          break
        case "CloneAbandoned":
          // Only a clone the instance reserved and is waiting for (or deleting): its VMID goes, the clone is redone.
          if (t.vmid !== event.vmid || !(t.phase === "cloning" || t.deleting) || t.vmDeleted) bad(w, id, `CloneAbandoned of VMID ${event.vmid} in phase ${t.phase}${t.deleting ? " (deleting)" : ""} (reserved: ${t.vmid ?? "none"})`)
          t.vmid = undefined
          if (t.phase === "cloning") t.phase = "iso-ready"
          break
        case "RetirementRequested":
          t.retired = true
          break
        case "DrainStarted":
          if (!t.retired) bad(w, id, "DrainStarted without RetirementRequested")
          t.drained = true
          break
        case "DeleteRequested":
          // The lifecycle deletes only what retired, an operator's ack only what drains.
          if (event.reason === "retired" && !t.retired) bad(w, id, "DeleteRequested (retired) without RetirementRequested")
          if (event.reason === "drain-acked" && !t.drained) bad(w, id, "DeleteRequested (drain-acked) without DrainStarted")
          t.deleting = true
          break
        case "VmStopped":
          if (!t.deleting) bad(w, id, "VmStopped without DeleteRequested")
          t.stopped = true
          break
        case "IsoDeleted":
          if (!t.deleting || !t.stopped) bad(w, id, "IsoDeleted before VmStopped")
          t.isoDeleted = true
          break
        case "VmDeleted":
          if (!t.deleting || !t.isoDeleted) bad(w, id, "VmDeleted before IsoDeleted")
          if (t.vmid !== undefined && event.vmid !== t.vmid) bad(w, id, `VmDeleted VMID ${event.vmid}, the instance's is ${t.vmid}`)
          t.vmDeleted = true
          break
        case "InstanceGone":
          if (!t.deleting || !t.stopped || !t.isoDeleted || (t.vmid !== undefined && !t.vmDeleted)) {
            bad(w, id, `InstanceGone before its cleanup (deleting ${t.deleting}, stopped ${t.stopped}, iso ${t.isoDeleted}, vm ${t.vmDeleted}, vmid ${t.vmid ?? "none"})`)
          }
          t.gone = true
          break
        default:
          bad(w, id, `unexpected event ${event._tag}`)
      }
    }
  }
  return out
}

const termOf = (e: ShardEventEncoded): number | undefined => (e._tag === "LeaderElected" ? e.term : undefined)

/** `converged`: the world came to rest, so every retirement must have ended in a delete. */
export const checkHistory = (h: HistoryView, options: { readonly converged?: boolean } = {}): Array<Violation> => {
  const out: Array<Violation> = []
  const segments = landedSegments(h)

  // One writer per sequence number. The same writer landing the same segment again (a retry of a write whose
  // answer was lost) changes nothing; another writer, or other events, at one seq is two logs.
  const bySeq = new Map<number, StoreWrite>()
  for (const w of segments) {
    const other = bySeq.get(w.seq!)
    if (other === undefined) bySeq.set(w.seq!, w)
    else if (other.who !== w.who || other.term !== w.term || JSON.stringify(other.events) !== JSON.stringify(w.events)) {
      out.push({ rule: "log-single-writer", at: w.appliedAt!, message: `segment ${w.seq} landed twice: by ${other.who} t${other.term} and ${w.who} t${w.term}` })
    }
  }

  // When each term was superseded: the first durable LeaderElected of a higher term.
  const elections: Array<{ readonly term: number; readonly at: number }> = []
  for (const w of segments) for (const e of w.events ?? []) {
    const term = termOf(e)
    if (term !== undefined) elections.push({ term, at: w.appliedAt! })
  }
  const supersededAt = (term: number) => Math.min(...elections.filter((e) => e.term > term).map((e) => e.at))
  for (const w of segments) {
    if (w.term !== undefined && w.appliedAt! > supersededAt(w.term)) {
      out.push({ rule: "fencing-log", at: w.appliedAt!, message: `segment ${w.seq} of term ${w.term} (${w.who}) landed after a newer term was elected` })
    }
  }

  // A replica's term is fenced at the first of: its lease lost, its crash, its term's end (what the replica
  // itself knows), or a newer term elected (what it learns at its next log write, which is refused).
  const knows = new Map<string, { readonly at: number; readonly why: string }>()
  const fenceKey = (who: Who, term: number) => `${who}/${term}`
  const note = (who: Who, term: number, at: number, why: string) => {
    const current = knows.get(fenceKey(who, term))
    if (current === undefined || at < current.at) knows.set(fenceKey(who, term), { at, why })
  }
  const termsOf = new Map<Who, Set<number>>()
  for (const m of h.marks) {
    if (m.kind === "termStart" && m.term !== undefined) termsOf.set(m.who, new Set([...(termsOf.get(m.who) ?? []), m.term]))
  }
  for (const m of h.marks) {
    if ((m.kind === "leaseLost" || m.kind === "termEnd") && m.term !== undefined) note(m.who, m.term, m.i, m.kind)
    if (m.kind === "crash") for (const term of termsOf.get(m.who) ?? []) note(m.who, term, m.i, "crash")
  }
  const fencedAt = (who: Who, term: number) => {
    const known = knows.get(fenceKey(who, term))
    const superseded = supersededAt(term)
    return known !== undefined && known.at <= superseded ? known : Number.isFinite(superseded) ? { at: superseded, why: `term ${term} superseded` } : undefined
  }
  for (const call of h.pve) {
    if (!call.mutation) continue
    const f = fencedAt(call.who, call.term)
    if (f !== undefined && call.i > f.at) {
      out.push({ rule: "fencing-pve", at: call.i, message: `${call.who} (term ${call.term}) started ${call.op}(${call.args}) after it was fenced (${f.why} @${f.at})` })
    }
  }
  for (const w of h.writes) {
    if (w.term === undefined || !w.key.startsWith("log/") || w.op !== "put") continue
    // A write after a newer term's election is how a deposed writer learns it (the store refuses it); after
    // the replica itself knew (lease lost, crash, term ended) there must be none at all.
    const f = knows.get(fenceKey(w.who, w.term))
    if (f !== undefined && w.i > f.at) {
      out.push({ rule: "fencing-log", at: w.i, message: `${w.who} (term ${w.term}) wrote ${w.key} after it was fenced (${f.why} @${f.at})` })
    }
  }

  // Never two VMs for one instance.
  for (const s of h.samples) out.push({ rule: "one-vm-per-instance", at: s.i, message: s.problem })
  // What the wrappers saw broken as the world ran: an orphan a saga left, a VMID given twice or wasted.
  for (const f of h.flags ?? []) out.push({ rule: f.rule, at: f.i, message: f.problem })

  // No mutation of a VM that is not ours (an operator's, whatever the world's shard count).
  for (const call of h.pve) {
    if (call.mutation && call.target?.foreign === true) {
      out.push({ rule: "not-ours", at: call.i, message: `${call.who} (term ${call.term}) started ${call.op}(${call.args}) on VM ${call.target.vmid}, an operator's (${call.target.instance ?? "nameless, being cloned"})` })
    }
  }

  // A clone is made once per instance: never again after one the product saw succeed.
  const clonedAt = new Map<string, PveCall>()
  for (const call of h.pve) {
    if (call.op !== "clone" || call.name === undefined) continue
    const before = clonedAt.get(call.name)
    if (before?.okAt !== undefined && call.i > before.okAt) {
      out.push({ rule: "clone-bound", at: call.i, message: `${call.who} (term ${call.term}) cloned ${call.name} again after its clone by ${before.who} (term ${before.term}) succeeded (@${before.okAt})` })
    }
    if (before?.okAt === undefined) clonedAt.set(call.name, call)
  }

  out.push(...scaleDownOrderViolations(segments))

  // The saga's state machine, and no clone for an instance whose delete is on record.
  out.push(...sagaViolations(segments))
  const retirements = judgeRetirements(segments, h.configs)
  out.push(...retirements.violations)
  if (options.converged === true) out.push(...retiredButKept(retirements))
  const deleteRecorded = new Map<string, number>()
  for (const w of segments) for (const e of w.events ?? []) {
    if ((e._tag === "DeleteRequested" || e._tag === "InstanceGone") && !deleteRecorded.has(e.instanceId)) deleteRecorded.set(e.instanceId, w.appliedAt!)
  }
  for (const call of h.pve) {
    if (call.op !== "clone" || call.name === undefined) continue
    const at = deleteRecorded.get(call.name)
    if (at !== undefined && call.i > at) {
      out.push({ rule: "no-clone-after-delete", at: call.i, message: `${call.who} (term ${call.term}) cloned ${call.name} after its delete was recorded (@${at})` })
    }
  }
  return out.sort((a, b) => a.at - b.at)
}

/**
 * Scale-down removes instances that are not running yet before running ones: a scale-down delete of a started
 * instance while another live member of its group (not retiring, not held, not deleted by the same segment)
 * had not started is a violation. An instance counts as started a second after its `Started` landed (a
 * decision read just before it may still have seen it starting).
 */
export const scaleDownOrderViolations = (segments: ReadonlyArray<StoreWrite>): Array<Violation> => {
  const out: Array<Violation> = []
  interface Member { readonly group: string; startedT: number | undefined; deleting: boolean; retiring: boolean; held: boolean }
  const members = new Map<string, Member>()
  for (const w of segments) {
    const now = w.settledT ?? w.t
    const downs = new Set((w.events ?? []).flatMap((e) => (e._tag === "DeleteRequested" && e.reason === "scale-down" ? [e.instanceId] : [])))
    for (const id of downs) {
      const x = members.get(id)
      if (x?.startedT === undefined || x.startedT > now - 1000 || x.deleting) continue
      const waiting = [...members].find(([other, m]) =>
        other !== id && !downs.has(other) && m.group === x.group && !m.deleting && !m.retiring && !m.held && m.startedT === undefined)
      if (waiting !== undefined) {
        out.push({ rule: "scale-down-order", at: w.appliedAt!, message: `${id} (running) scaled down while ${waiting[0]} of group ${x.group} was not running yet (${w.who} t${w.term ?? "?"}, segment ${w.seq})` })
      }
    }
    for (const e of w.events ?? []) {
      if (!("instanceId" in e)) continue
      const m = members.get(e.instanceId)
      switch (e._tag) {
        case "InstanceRequested":
          if (e.reason !== "operator") members.set(e.instanceId, { group: `${e.tenant}/${e.group}`, startedT: undefined, deleting: false, retiring: false, held: false })
          break
        case "Adopted":
          members.set(e.instanceId, { group: `${e.tenant}/${e.group}`, startedT: e.status === "running" ? now : undefined, deleting: false, retiring: false, held: false })
          break
        case "Started":
        case "Registered":
          if (m !== undefined && m.startedT === undefined) m.startedT = now
          break
        case "DeleteRequested":
          if (m !== undefined) m.deleting = true
          break
        case "RetirementRequested":
          if (m !== undefined) m.retiring = true
          break
        case "VmMismatched":
          if (m !== undefined) m.held = true
          break
        case "InstanceGone":
          members.delete(e.instanceId)
          break
        default:
          break
      }
    }
  }
  return out
}

/**
 * How often fencing was put to the test: log appends of a deposed term (a newer term's `LeaderElected` already
 * landed) that the store refused, and PVE mutations of a deposed term that reached PVE after the newer term
 * was elected (each started before it: one started after is a `fencing-pve` violation).
 */
export const fencingCounts = (h: Pick<HistoryView, "writes" | "pve">): { readonly appends: number; readonly pve: number } => {
  const segments = landedSegments(h)
  const elections: Array<{ readonly term: number; readonly at: number }> = []
  for (const w of segments) for (const e of w.events ?? []) if (e._tag === "LeaderElected") elections.push({ term: e.term, at: w.appliedAt! })
  const supersededAt = (term: number) => Math.min(...elections.filter((e) => e.term > term).map((e) => e.at))
  let appends = 0
  for (const w of h.writes) {
    if (w.op === "put" && w.key.startsWith("log/") && w.term !== undefined && w.outcome === "rejected" && w.appliedAt! > supersededAt(w.term)) appends++
  }
  let pve = 0
  for (const call of h.pve) if (call.mutation && call.landedAt !== undefined && call.landedAt > supersededAt(call.term)) pve++
  return { appends, pve }
}

/** Instance IDs a shard's log names (requested or adopted). */
const instancesOf = (h: HistoryView): Set<string> => {
  const ids = new Set<string>()
  for (const w of landedSegments(h)) for (const e of w.events ?? []) {
    if (e._tag === "InstanceRequested" || e._tag === "Adopted") ids.add(e.instanceId)
  }
  return ids
}

/**
 * Across the shards of one world: no shard's PVE mutation acts on a VM carrying another shard's tags or
 * named after another shard's instance, or on another shard's ISO; no instance ID is in two shards' logs.
 */
export const crossShardViolations = (views: ReadonlyArray<{ readonly shard: string; readonly view: HistoryView }>): Array<Violation> => {
  const out: Array<Violation> = []
  const ids = views.map(({ shard, view }) => ({ shard, ids: instancesOf(view) }))
  for (const { shard, view } of views) {
    for (const call of view.pve) {
      if (!call.mutation || call.target === undefined) continue
      const { tags, instance, vmid } = call.target
      for (const other of ids) {
        if (other.shard === shard) continue
        const what = `${call.op}(${call.args})${vmid === undefined ? "" : ` on VM ${vmid}`}`
        if (hasAssociationTags(tags, CLUSTER, other.shard)) {
          out.push({ rule: "cross-shard", at: call.i, message: `${shard} ${call.who} (term ${call.term}) ${what} carrying ${other.shard}'s tags (${tags})` })
        } else if (instance !== undefined && other.ids.has(instance)) {
          out.push({ rule: "cross-shard", at: call.i, message: `${shard} ${call.who} (term ${call.term}) ${what} of ${other.shard}'s instance ${instance}` })
        }
      }
    }
  }
  for (let a = 0; a < ids.length; a++) for (let b = a + 1; b < ids.length; b++) {
    for (const id of ids[a]!.ids) {
      if (ids[b]!.ids.has(id)) out.push({ rule: "cross-shard", at: 0, message: `instance ${id} is in the logs of both ${ids[a]!.shard} and ${ids[b]!.shard}` })
    }
  }
  return out.sort((x, y) => x.at - y.at)
}

/** A registration the agent saw succeed: its instance, the hash of the nonce it used, when. */
export interface AcceptedRegistration {
  readonly instanceId: string
  readonly nonceHash: string
  readonly i: number
}

/** The nonce rules over one shard's history and the registrations its agents saw accepted. */
export const nonceViolations = (h: HistoryView, accepted: ReadonlyArray<AcceptedRegistration>): Array<Violation> => {
  const out: Array<Violation> = []
  const issuedAt = new Map<string, number>()
  /** Per instance: its nonces in log order, each with when it landed and how often it was registered. */
  const nonces = new Map<string, Array<{ readonly hash: string; readonly at: number; registered: number }>>()
  for (const w of landedSegments(h)) for (const e of w.events ?? []) {
    if (e._tag === "NonceIssued") {
      const first = issuedAt.get(e.nonceHash)
      if (first !== undefined) out.push({ rule: "nonce-single-use", at: w.appliedAt!, message: `${e.instanceId}: nonce ${e.nonceHash.slice(0, 12)}… issued again (first @${first})` })
      else issuedAt.set(e.nonceHash, w.appliedAt!)
      nonces.set(e.instanceId, [...(nonces.get(e.instanceId) ?? []), { hash: e.nonceHash, at: w.appliedAt!, registered: 0 }])
    } else if (e._tag === "Registered") {
      const newest = nonces.get(e.instanceId)?.at(-1)
      if (newest === undefined) {
        out.push({ rule: "nonce-single-use", at: w.appliedAt!, message: `${e.instanceId}: Registered without a nonce issued` })
      } else if (++newest.registered > 1) {
        out.push({ rule: "nonce-single-use", at: w.appliedAt!, message: `${e.instanceId}: registered ${newest.registered} times with nonce ${newest.hash.slice(0, 12)}…` })
      }
    }
  }
  const used = new Map<string, number>()
  for (const a of accepted) {
    const before = used.get(a.nonceHash)
    if (before !== undefined) out.push({ rule: "nonce-single-use", at: a.i, message: `${a.instanceId}: nonce ${a.nonceHash.slice(0, 12)}… accepted again (first @${before})` })
    else used.set(a.nonceHash, a.i)
    const newest = (nonces.get(a.instanceId) ?? []).filter((n) => n.at < a.i).at(-1)
    if (newest?.hash !== a.nonceHash) {
      out.push({ rule: "nonce-newest", at: a.i, message: `${a.instanceId}: registration accepted with nonce ${a.nonceHash.slice(0, 12)}…, the instance's newest is ${newest === undefined ? "none" : `${newest.hash.slice(0, 12)}…`}` })
    }
  }
  return out
}

const describe = (i: Instance) => `${i.id}:${i.phase}${i.deleteReason === undefined ? "" : `(${i.deleteReason})`}`

/** One shard's end state: its replayed state, the sizes its config asks for and its groups' infra hashes. */
export interface ShardEnd {
  readonly shard: string
  readonly state: State
  readonly world: WorldConfig
  /** Per group, the infra hash of the config in force: an instance recorded with another is still to rotate. */
  readonly infraHashes: ReadonlyMap<string, string>
  /** Agent registration on: an instance at rest is one whose agent registered. */
  readonly registration?: boolean
  /** VMIDs whose dead clone's placeholder the shard's log reported left for an operator (`CloneAbandoned`). */
  readonly abandoned?: ReadonlySet<number>
  /** Every VMID the shard's log reserved for a clone: a dead placeholder at any other is not the shard's. */
  readonly reserved?: ReadonlySet<number>
}

/**
 * What keeps the world from being converged: empty when every shard's groups are at size and nothing is
 * leaked. A VM is leaked when no live instance of any shard owns it; the shard named in a problem is the
 * one whose instance or tags it concerns (omitted in a one-shard world).
 */
export const endStateProblems = (model: SimModel, shards: ReadonlyArray<ShardEnd>, foreignVmids: ReadonlySet<number> = new Set()): Array<string> => {
  const problems: Array<string> = []
  const one = shards.length === 1
  const tag = (shard: string) => (one ? "" : `${shard}: `)
  const byId = new Map<string, { readonly shard: string; readonly instance: Instance }>()
  for (const { shard, state, world, registration, infraHashes } of shards) {
    const instances = allInstances(state)
    const live = instances.filter((i) => i.phase !== "deleting")
    for (const { group } of GROUPS) {
      const members = live.filter((i) => i.tenant === TENANT && i.group === group)
      const size = world.sizes[group]
      if (members.length !== size) problems.push(`${tag(shard)}group ${group}: ${members.length} instances, want ${size}`)
      const current = infraHashes.get(group)
      // An instance without a recorded infra hash (an adopted VM) is never rotated.
      for (const i of members) {
        if (i.infraHash !== undefined && i.infraHash !== current) problems.push(`${tag(shard)}instance ${describe(i)} was built from infra hash ${i.infraHash.slice(7, 15)}, group ${group}'s is ${current?.slice(7, 15) ?? "none"}`)
      }
    }
    for (const i of live) if (i.retirement !== undefined) problems.push(`${tag(shard)}instance ${describe(i)} still retiring (${i.retirement.reason}${i.drain === undefined ? "" : ", draining"})`)
    for (const i of instances) {
      if (i.phase !== "registered" && (registration === true || i.phase !== "running")) problems.push(`${tag(shard)}instance ${describe(i)} is not at rest`)
      if (i.tenant !== TENANT || !GROUPS.some((g) => g.group === i.group)) problems.push(`${tag(shard)}instance ${describe(i)} belongs to no group`)
    }
    for (const i of live) byId.set(i.id, { shard, instance: i })
  }
  const vmsByName = new Map<string, Array<number>>()
  const reported = new Set(shards.flatMap((s) => [...(s.abandoned ?? [])]))
  const reserved = new Set(shards.flatMap((s) => [...(s.reserved ?? [])]))
  for (const vm of nonTemplateVms(model)) {
    const name = vm.config.get("name") ?? `(unnamed ${vm.vmid})`
    if (name.startsWith("foreign-")) continue
    // A dead clone's placeholder stays locked for good: left to an operator, it must have been reported.
    // (One at a VMID no log reserved is an operator's dead clone: not ours to report or remove.)
    if (!vm.config.has("name") && vm.config.get("lock") === "clone" && (reported.has(vm.vmid) || foreignVmids.has(vm.vmid) || !reserved.has(vm.vmid))) continue
    vmsByName.set(name, [...(vmsByName.get(name) ?? []), vm.vmid])
    const owner = byId.get(name)
    if (owner === undefined) {
      problems.push(`leaked VM ${vm.vmid} (${name}) on ${vm.node}: no live instance owns it`)
      continue
    }
    const { shard, instance } = owner
    if (instance.vmid !== vm.vmid) problems.push(`${tag(shard)}VM ${vm.vmid} named ${name}: the log says VMID ${instance.vmid ?? "none"}`)
    if (vm.status !== "running") problems.push(`${tag(shard)}VM ${vm.vmid} of ${name} is ${vm.status}`)
    if (vm.config.get("tags") !== ourTags(shard)) problems.push(`${tag(shard)}VM ${vm.vmid} of ${name} is tagged ${vm.config.get("tags") ?? "(none)"}`)
  }
  for (const [name, vmids] of vmsByName) if (vmids.length > 1) problems.push(`${vmids.length} VMs named ${name}: ${vmids.join(", ")}`)
  for (const [id, { shard, instance }] of byId) if (!vmsByName.has(id)) problems.push(`${tag(shard)}instance ${describe(instance)} has no VM`)
  problems.push(...leakedVolumes(model, (id) => byId.has(id), "ignored"))
  return problems
}

