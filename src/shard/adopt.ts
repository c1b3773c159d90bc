/**
 * The first thing a new leader does after replaying the log: one look at the cluster
 * (`/cluster/resources?type=vm`) to raise the VMID high-water mark above every VMID in use and to adopt
 * the VMs that carry this shard's tags and an instance ID as their name but that the log does not know —
 * VMs the original Go server created, or ours whose log record was lost. Adopted VMs are kept and counted
 * towards their group (read from the managed notes), never recreated, and their notes get this log's
 * identity, so no other log ever takes them for the original's.
 *
 * Tags say which shard a VM is for, not which log owns it: a VM whose notes name another event log (a
 * server running this shard from another bucket or prefix) is never adopted. A log that has never had an
 * instance and meets such VMs holds all work (see `Ownership.ts`) until an operator runs
 * `nstance-admin adopt --from-log <id>` (`adoptFromLog`), which records the adoption and rewrites their notes.
 */
import { Clock, Effect, Either, HashMap, Option, Schema } from "effect"
import { InvalidInstanceId, parseInstanceId, storageKeyOf } from "../domain/instanceId.js"
import { ownerByNotes, parseManagedNotes, withOwnerLog } from "../domain/managedNotes.js"
import type { VmConfig } from "../domain/pve/schemas.js"
import { hasAssociationTags, otherShardTag } from "../domain/pveTags.js"
import { Adopted, type ShardEvent, VmidsSeen } from "../domain/shard/events.js"
import type { State } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { ProxmoxApi, type VmResourceInfo } from "../services/ProxmoxApi.js"
import { ClusterView } from "./ClusterView.js"
import { type ForeignVms, Ownership } from "./Ownership.js"
import { ShardContext } from "./ShardContext.js"

/** VMs of the listing that are ours by tags and name, and not known to `state`. */
export const unknownOwnedVms = (vms: ReadonlyArray<VmResourceInfo>, state: State, clusterId: string, shard: string) => {
  const knownVmids = new Set<number>()
  for (const [, instance] of state.instances) if (instance.vmid !== undefined) knownVmids.add(instance.vmid)
  // The log's own VMs (nearly all of them) are ruled out by the lookups before their names are parsed.
  return vms.filter((vm) =>
    vm.type === "qemu" && !vm.template && vm.name !== undefined && !knownVmids.has(vm.vmid) && !HashMap.has(state.instances, vm.name) &&
    hasAssociationTags(vm.tags, clusterId, shard) && !(parseInstanceId(vm.name) instanceof InvalidInstanceId)
  )
}

/** VMs of the listing named as instances and tagged for another shard of this cluster, counted by that shard. */
export const otherShardsOf = (vms: ReadonlyArray<VmResourceInfo>, clusterId: string, shard: string): ReadonlyMap<string, number> => {
  const counts = new Map<string, number>()
  for (const vm of vms) {
    if (vm.template || vm.name === undefined) continue
    // The tags first: only another shard's VMs have their names parsed.
    const other = otherShardTag(vm.tags, clusterId, shard)
    if (other !== undefined && !(parseInstanceId(vm.name) instanceof InvalidInstanceId)) counts.set(other, (counts.get(other) ?? 0) + 1)
  }
  return counts
}

/**
 * The VM's config read on its node; none when it is gone or no longer has the listed name. The listing lags
 * ~10 s: a VM the previous leader deleted moments ago is still in it, and adopting that ghost would bring a
 * gone instance back (chaos seed 1005).
 */
export const configOf = (vm: VmResourceInfo) =>
  Effect.flatMap(ProxmoxApi, (pve) =>
    pve.vmConfig(vm.node, vm.vmid).pipe(
      Effect.map((config) => (config.name === vm.name ? Option.some(config) : Option.none<VmConfig>())),
      Effect.catchTag("PveApiError", (error) => (error.classification === "notFound" ? Effect.succeed(Option.none<VmConfig>()) : Effect.fail(error)))
    ))

/** The `Adopted` event for `vm`, with tenant and group from its managed notes when they say. */
export const adoptionOf = (vm: VmResourceInfo, config: VmConfig, at: number) => {
  const name = vm.name ?? ""
  const parsed = parseInstanceId(name)
  const notes = config.description === undefined ? undefined : parseManagedNotes(config.description)
  return Adopted.make({
    instanceId: name,
    at,
    vmid: vm.vmid,
    node: vm.node,
    kind: parsed instanceof InvalidInstanceId ? "vmx" : parsed.kind,
    status: vm.status,
    ...(notes?.tenant === undefined ? {} : { tenant: notes.tenant }),
    ...(notes?.group === undefined ? {} : { group: notes.group })
  })
}

/** The one field of the original server's instance record (`instance/{tenant}.{storage key}.json`) adoption reads. */
const OriginalRecord = Schema.parseJson(Schema.Struct({ infra_config_hash: Schema.optional(Schema.String) }))
const decodeOriginalRecord = Schema.decodeUnknownEither(OriginalRecord)

/**
 * The infra hash the original server recorded for an instance it created, so an adopted VM is rotated only
 * when its group's config really changed. Undefined when there is no record or it says nothing usable (such
 * an instance is never rotated for drift); a store that does not answer costs only that comparison.
 */
export const originalInfraHash = (instanceId: string, tenant: string | undefined) =>
  Effect.gen(function* () {
    const parsed = parseInstanceId(instanceId)
    if (tenant === undefined || parsed instanceof InvalidInstanceId) return undefined
    const key = `instance/${tenant}.${storageKeyOf(parsed)}.json`
    const object = yield* (yield* ObjectStore).get(key).pipe(Effect.option)
    if (Option.isNone(object)) return undefined
    const record = decodeOriginalRecord(new TextDecoder().decode(object.value.body))
    return Either.isRight(record) && record.right.infra_config_hash !== undefined && record.right.infra_config_hash !== "" ? record.right.infra_config_hash : undefined
  })

/**
 * Writes `logId` into the VM's notes (the rest of its description kept byte for byte). With the config's
 * digest: a VM changed since it was read is left as it is (the failure says so).
 */
const stampOwner = (vm: VmResourceInfo, config: VmConfig, logId: string) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const description = withOwnerLog(config.description ?? "", logId)
    const upid = yield* pve.updateConfig(vm.node, vm.vmid, { description, ...(config.digest === undefined ? {} : { digest: config.digest }) })
    if (Option.isSome(upid)) yield* pve.waitTask(vm.node, upid.value)
  })

/** Whether the log has never had an instance: such a log meeting another log's VMs holds (see `Ownership.ts`). */
const isFresh = (state: State) => HashMap.size(state.instances) === 0 && state.goneCount === 0

const addForeign = (foreign: Map<string, Array<number>>, logId: string, vmid: number) => {
  const list = foreign.get(logId) ?? []
  list.push(vmid)
  foreign.set(logId, list.sort((a, b) => a - b))
}

export const adoptFromCluster = Effect.fn("shard.adopt")(function* () {
  const log = yield* EventLog
  const shard = yield* ShardContext
  const ownership = yield* Ownership
  // Through the view, whose reads all began in this term (it is built per term) and are at most 5 s old: the
  // preflight's run, which starts at the same moment, and the term's first placements share this answer.
  const vms = (yield* (yield* ClusterView).resources).vms
  const state = yield* log.state
  const at = yield* Clock.currentTimeMillis
  const events: Array<ShardEvent> = []
  const highest = vms.reduce((max, vm) => Math.max(max, vm.vmid), 0)
  if (highest > state.vmidHighWater) events.push(VmidsSeen.make({ highest }))
  const owned = vms.filter((vm) => !vm.template && hasAssociationTags(vm.tags, shard.clusterId, shard.shard)).length
  // What the VMID allocator must skip, and the VMs of other shards of this cluster (warned about at the term's start).
  const seen = { vmids: vms.map((vm) => vm.vmid), otherShards: otherShardsOf(vms, shard.clusterId, shard.shard) }
  const adoptable: Array<{ readonly vm: VmResourceInfo; readonly config: VmConfig; readonly marked: boolean }> = []
  const foreign = new Map<string, Array<number>>()
  for (const vm of unknownOwnedVms(vms, state, shard.clusterId, shard.shard)) {
    const config = yield* configOf(vm)
    if (Option.isNone(config)) continue
    const owner = ownerByNotes(config.value.description, state.logId)
    yield* ownership.noteOtherOwner(vm.vmid, vm.name ?? "", owner._tag === "other" ? owner.logId : undefined)
    if (owner._tag === "other") addForeign(foreign, owner.logId, vm.vmid)
    else adoptable.push({ vm, config: config.value, marked: owner._tag === "ours" })
  }
  const foreignCount = [...foreign.values()].reduce((sum, list) => sum + list.length, 0)
  if (foreign.size > 0 && isFresh(state)) {
    // Not even the original server's VMs are adopted: beside another log's VMs, they may be that log's too.
    yield* ownership.startHold(state.logId ?? "?", foreign)
    if (events.length > 0) yield* log.append(events)
    return { owned, adopted: 0, foreign: foreignCount, ...seen }
  }
  for (const { config, marked, vm } of adoptable) {
    const adopted = adoptionOf(vm, config, at)
    // Only the original's VMs have its records; ours carry no record to read.
    const infraHash = marked ? undefined : yield* originalInfraHash(adopted.instanceId, adopted.tenant)
    const event = infraHash === undefined ? adopted : { ...adopted, infraHash }
    events.push(event)
    yield* Effect.logInfo(`${vm.name}: adopted VM ${vm.vmid} on ${vm.node} (${vm.status}${event.group === undefined ? ", group unknown" : `, group ${event.tenant ?? "?"}/${event.group}`})`)
  }
  if (events.length > 0) yield* log.append(events)
  yield* ownership.setForeign(foreign)
  // Once the log has them: their notes name this log from now on. A failure costs only that protection.
  const logId = state.logId
  if (logId !== undefined) {
    for (const { config, marked, vm } of adoptable) {
      if (marked || vm.name === undefined) continue
      yield* stampOwner(vm, config, logId).pipe(
        Effect.catchAll((error) => Effect.logWarning(`${vm.name}: adopted, but its notes could not be given this log's identity: ${error.message}`))
      )
    }
  }
  return { owned, adopted: adoptable.length, foreign: foreignCount, ...seen }
})

export interface AdoptedFromLog {
  readonly adopted: ReadonlyArray<{ readonly instanceId: string; readonly vmid: number; readonly node: string }>
  /** Adopted into the log, but their notes still name the other log (the PVE call failed). */
  readonly unstamped: ReadonlyArray<{ readonly instanceId: string; readonly vmid: number; readonly reason: string }>
  /** VMs of other logs than `fromLog` seen, by log (left alone). */
  readonly otherLogs: ForeignVms
}

/**
 * An operator's deliberate adoption of the VMs with this shard's tags whose notes name event log `fromLog`:
 * each is recorded (`Adopted`), then its notes are rewritten to name this log. Any hold ends, and the usual
 * adoption pass runs for the VMs the hold kept (the original server's). VMs of other logs stay alone.
 */
export const adoptFromLog = Effect.fn("shard.adoptFromLog")(function* (fromLog: string) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const shard = yield* ShardContext
  const ownership = yield* Ownership
  const state = yield* log.state
  const at = yield* Clock.currentTimeMillis
  const picked: Array<{ readonly vm: VmResourceInfo; readonly config: VmConfig }> = []
  const others = new Map<string, Array<number>>()
  for (const vm of unknownOwnedVms(yield* pve.vmResources(), state, shard.clusterId, shard.shard)) {
    const config = yield* configOf(vm)
    if (Option.isNone(config)) continue
    const owner = ownerByNotes(config.value.description, state.logId)
    if (owner._tag !== "other") continue
    if (owner.logId === fromLog) picked.push({ vm, config: config.value })
    else addForeign(others, owner.logId, vm.vmid)
  }
  if (picked.length === 0) return { adopted: [], unstamped: [], otherLogs: others } satisfies AdoptedFromLog
  const events = picked.map(({ config, vm }) => adoptionOf(vm, config, at))
  yield* log.append(events)
  const unstamped: Array<AdoptedFromLog["unstamped"][number]> = []
  for (const { config, vm } of picked) {
    yield* Effect.logInfo(`${vm.name}: adopted VM ${vm.vmid} on ${vm.node} from event log ${fromLog} (by an operator)`)
    yield* ownership.noteOtherOwner(vm.vmid, vm.name ?? "", undefined)
    const stamped = yield* Effect.either(stampOwner(vm, config, state.logId ?? ""))
    if (stamped._tag === "Left") {
      unstamped.push({ instanceId: vm.name ?? "", vmid: vm.vmid, reason: stamped.left.message })
      yield* Effect.logWarning(`${vm.name}: adopted, but its notes still name log ${fromLog}: ${stamped.left.message}`)
    }
  }
  if (yield* ownership.held) {
    yield* ownership.endHold
    yield* Effect.logInfo(`this log adopted ${picked.length} VMs of log ${fromLog}; it works normally from now on`)
  }
  yield* adoptFromCluster()
  return {
    adopted: picked.map(({ vm }) => ({ instanceId: vm.name ?? "", vmid: vm.vmid, node: vm.node })),
    unstamped,
    otherLogs: others
  } satisfies AdoptedFromLog
})

/**
 * Ends a hold whose reason is gone: no VM of another log is left (they were deleted by hand, say). The usual
 * adoption pass then runs, which holds again if other logs' VMs are back.
 */
export const releaseHoldIfClear = Effect.gen(function* () {
  const ownership = yield* Ownership
  if (!(yield* ownership.held) || (yield* ownership.foreign).size > 0) return
  yield* ownership.endHold
  yield* Effect.logInfo("no VM of another event log carries this shard's tags any more; this log works normally from now on")
  yield* adoptFromCluster()
})
