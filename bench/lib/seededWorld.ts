/**
 * A seeded world for benches at scale: a shard's event log of N instances (the synthetic log of
 * `syntheticLog.ts`, given a log identity) laid out in a bucket as the event-log layer leaves it (segments,
 * snapshots every 1000 events, old segments pruned), and a simulated PVE cluster holding exactly the VMs that
 * log says exist and run — each at its VMID on its node, named after its instance, with this shard's tags, the
 * managed notes naming the log and its ISO attached. A leader started on it has nothing to do: no create, no
 * delete, nothing to adopt, no orphan. Building it through the API instead would take longer than the benches
 * measure.
 */
import { createHash } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { Either } from "effect"
import { upsertManagedNotes } from "../../src/domain/managedNotes.js"
import { associationTags } from "../../src/domain/pveTags.js"
import { encodeEvent, LogIdentity, type ShardEvent, type ShardEventEncoded } from "../../src/domain/shard/events.js"
import { fold } from "../../src/domain/shard/state.js"
import { segmentBody, snapshotBodyOf, snapshotJson } from "../../src/layers/eventLog/format.js"
import { segmentKey, snapshotKey } from "../../src/layers/EventLogStore.js"
import type { SimModel } from "../../src/sim/model.js"
import { buildEvents } from "./syntheticLog.js"

/** One instance the log says is running. */
export interface SeededInstance {
  readonly id: string
  readonly tenant: string
  readonly group: string
  readonly kind: string
  readonly vmid: number
  readonly node: string
  readonly isoVolid: string | undefined
  readonly requestedAt: number
}

export interface SeededLog {
  readonly events: ReadonlyArray<ShardEvent>
  readonly logId: string
  readonly live: ReadonlyArray<SeededInstance>
  /** Live instances by tenant, then group: the sizes a config must ask for to leave the leader nothing to do. */
  readonly groupSizes: ReadonlyMap<string, ReadonlyMap<string, number>>
}

/**
 * The synthetic log numbers VMIDs from 101, so at 10k instances it would run through the simulator's templates
 * (9000, 9001, …): its VMIDs (and high-water marks) are moved up by this much, above every template.
 */
const VMID_SHIFT = 10_000
const LOG_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

/** A valid log identity (`log` + 26 base32 characters) derived from `label`, so each shard's world differs. */
export const logIdOf = (label: string): string => {
  const digest = createHash("sha256").update(label).digest()
  return `log${Array.from(digest.subarray(0, 26), (byte) => LOG_ID_ALPHABET[byte % 32]).join("")}`
}

const shifted = (event: ShardEvent): ShardEvent =>
  "vmid" in event
    ? { ...event, vmid: event.vmid + VMID_SHIFT }
    : event._tag === "VmidsSeen"
    ? { ...event, highest: event.highest + VMID_SHIFT }
    : event

/** The synthetic log of `instances` instances with a log identity (`label` names it) and VMIDs above the templates. */
export const seededLog = (instances: number, label: string): SeededLog => {
  const base = buildEvents(instances).map(shifted)
  const existing = base.find((event) => event._tag === "LogIdentity")
  const logId = existing?._tag === "LogIdentity" ? existing.logId : logIdOf(label)
  // As a new log has it: the identity in its first segment, beside the first `LeaderElected`.
  const events = existing === undefined
    ? [base[0]!, LogIdentity.make({ logId, at: Date.UTC(2025, 0, 1) }), ...base.slice(1)]
    : base
  const drafts = new Map<string, { tenant: string; group: string; kind: string; requestedAt: number; vmid?: number; node?: string; isoVolid?: string; started: boolean }>()
  for (const event of events) {
    switch (event._tag) {
      case "InstanceRequested":
        drafts.set(event.instanceId, { tenant: event.tenant, group: event.group, kind: event.kind, requestedAt: event.at, started: false })
        break
      case "Cloned": {
        const draft = drafts.get(event.instanceId)
        if (draft !== undefined) Object.assign(draft, { vmid: event.vmid, node: event.node })
        break
      }
      case "IsoUploaded": {
        const draft = drafts.get(event.instanceId)
        if (draft !== undefined) draft.isoVolid = event.volid
        break
      }
      case "Started": {
        const draft = drafts.get(event.instanceId)
        if (draft !== undefined) draft.started = true
        break
      }
      case "DeleteRequested":
      case "InstanceGone":
        drafts.delete(event.instanceId)
        break
    }
  }
  const live: Array<SeededInstance> = []
  const groupSizes = new Map<string, Map<string, number>>()
  for (const [id, draft] of drafts) {
    if (!draft.started || draft.vmid === undefined || draft.node === undefined) continue
    live.push({ id, tenant: draft.tenant, group: draft.group, kind: draft.kind, vmid: draft.vmid, node: draft.node, isoVolid: draft.isoVolid, requestedAt: draft.requestedAt })
    const groups = groupSizes.get(draft.tenant) ?? new Map<string, number>()
    groups.set(draft.group, (groups.get(draft.group) ?? 0) + 1)
    groupSizes.set(draft.tenant, groups)
  }
  return { events, logId, live, groupSizes }
}

const encodeAll = (events: ReadonlyArray<ShardEvent>): Array<ShardEventEncoded> =>
  events.map((event) => {
    const encoded = encodeEvent(event)
    if (Either.isLeft(encoded)) throw new Error(`cannot encode ${event._tag}: ${encoded.left.message}`)
    return encoded.right
  })

/**
 * The log's objects (keys relative to the shard's prefix) as the layer leaves them in steady state, with the
 * released lease of its last leader (`leader.json`): segments
 * of `perSegment` events (20: a wave of concurrent sagas' group commit), the newest snapshot ≤ 1000 events
 * before the end and the previous one 1000 before it, segments pruned behind the previous one (keeping 100).
 */
export const logObjects = (events: ReadonlyArray<ShardEvent>, perSegment = 20): Map<string, Uint8Array> => {
  const segments: Array<ReadonlyArray<ShardEvent>> = []
  for (let i = 0; i < events.length; i += perSegment) segments.push(events.slice(i, i + perSegment))
  const objects = new Map<string, Uint8Array>()
  const total = events.length
  // Seq of the last segment ending at or before `count` events into the log.
  const seqAt = (count: number) => Math.max(0, Math.floor(count / perSegment))
  const snapshotSeq = total > 2000 ? seqAt(total - 1000) : 0
  const previousSeq = total > 2000 ? seqAt(total - 2000) : 0
  let keepFrom = 1
  if (snapshotSeq > 0) {
    let state = fold(segments.slice(0, previousSeq).flat())
    objects.set(snapshotKey(previousSeq), snapshotBodyOf(snapshotJson(previousSeq, state)))
    state = fold(segments.slice(previousSeq, snapshotSeq).flat(), state, previousSeq)
    objects.set(snapshotKey(snapshotSeq), snapshotBodyOf(snapshotJson(snapshotSeq, state)))
    keepFrom = Math.min(previousSeq, snapshotSeq - 100) + 1
  }
  segments.forEach((segment, i) => {
    if (i + 1 >= keepFrom) objects.set(segmentKey(i + 1), segmentBody(i + 1, encodeAll(segment)))
  })
  objects.set("leader.json", releasedLease(events))
  return objects
}

/**
 * `leader.json` as the log's last leader left it when it resigned (Go's zero time: released), so the next
 * leader's lease term follows the log's terms instead of being fenced by them.
 */
export const releasedLease = (events: ReadonlyArray<ShardEvent>): Uint8Array => {
  let last: { term: number; replica: string } = { term: 0, replica: "" }
  for (const event of events) if (event._tag === "LeaderElected") last = { term: event.term, replica: event.replica }
  return new TextEncoder().encode(JSON.stringify({ leaderID: last.replica, leaderAddr: "", term: last.term, lastUpdated: "0001-01-01T00:00:00Z" }))
}

/** Writes `objects` under `prefix` of a `--storage file` bucket (the store reads plain files; mode 0600 as it writes). */
export const writeToFileBucket = (bucketDir: string, prefix: string, objects: ReadonlyMap<string, Uint8Array>): void => {
  for (const [key, body] of objects) {
    const path = join(bucketDir, prefix, key)
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    writeFileSync(path, body, { mode: 0o600 })
  }
}

export interface SeedOptions {
  readonly clusterId: string
  readonly shard: string
  /** The config's template name for the notes (`template:` line). */
  readonly template: string
  readonly cores: number
  readonly memoryMiB: number
}

/** Puts every live instance's VM into `model`, running, as the create saga leaves it; returns how many. */
export const seedVms = (model: SimModel, log: SeededLog, options: SeedOptions): number => {
  const tags = associationTags(options.clusterId, options.shard).join(";")
  for (const instance of log.live) {
    model.seedRunningVm({
      vmid: instance.vmid,
      node: instance.node,
      name: instance.id,
      tags,
      description: upsertManagedNotes("", {
        tenant: instance.tenant,
        group: instance.group,
        kind: instance.kind,
        template: options.template,
        created: new Date(instance.requestedAt),
        log: log.logId
      }),
      cores: options.cores,
      memoryMiB: options.memoryMiB,
      ...(instance.isoVolid === undefined ? {} : { isoVolid: instance.isoVolid })
    })
  }
  model.refreshResources()
  return log.live.length
}
