/**
 * The garbage collector, every `garbage_collection.interval`: it finds what the log and the cluster
 * disagree about and turns each finding into a recorded delete, so everything goes through the one delete
 * saga. It replaces instances whose VM vanished or stays stopped, collects VMs carrying this shard's tags
 * that the log does not know (after a grace period, adopting them first so the delete is on record), and
 * deletes cloud-init ISOs of ours (`nstance-<id>.iso` of an instance this term knew — one of an instance it
 * never knew only after `UNKNOWN_ISO_GRACE` — and the original's `user-data-<vmid>.iso` of a VMID no VM has)
 * that no instance uses. Every suspicion from the lagging
 * cluster listing is confirmed on the VM's node first.
 *
 * Tags do not make a VM ours: one whose notes name another event log is never adopted or deleted, only
 * reported (`Ownership.ts`); while this log holds, a pass does nothing but look whether such VMs remain. An
 * instance whose VMID now holds another VM while a VM named after it exists elsewhere is not replaced: the
 * log's VMID is wrong, and it is recorded (`VmMismatched`) and held rather than acted on.
 */
import { Clock, Duration, Effect, HashMap, Option, SubscriptionRef } from "effect"
import { boundText } from "../domain/errorText.js"
import { ownerByNotes } from "../domain/managedNotes.js"
import { type ShardEvent, DeleteRequested, type DeleteReason, VmidsSeen, VmMismatched } from "../domain/shard/events.js"
import { instanceIdOfIsoVolid, vmidOfOriginalIsoVolid } from "../domain/pveNames.js"
import { EventLog } from "../services/EventLog.js"
import { ProxmoxApi, type VmResourceInfo } from "../services/ProxmoxApi.js"
import { type PvePowerState, pvePowerState } from "../domain/pve/status.js"
import { ClusterView } from "./ClusterView.js"
import { adoptionOf, configOf, releaseHoldIfClear, unknownOwnedVms } from "./adopt.js"
import { Ownership } from "./Ownership.js"
import { ORPHAN_GRACE, UNKNOWN_ISO_GRACE, VM_LOSS_GRACE } from "./policies.js"
import { atRest } from "./SagaRunner.js"
import { everyInterval } from "./loop.js"
import { ShardContext } from "./ShardContext.js"
import { recordGcDeletions } from "../metrics/metrics.js"
import { releaseIsos } from "./isoRelease.js"

export interface GcReport {
  readonly replaced: number
  readonly orphanVms: number
  readonly orphanIsos: number
}

export const makeGc = Effect.gen(function* () {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const shard = yield* ShardContext
  const ownership = yield* Ownership
  const clusterView = yield* ClusterView
  const orphanGrace = Duration.toMillis(Duration.decode(shard.graces?.orphan ?? ORPHAN_GRACE))
  const vmLossGrace = Duration.toMillis(Duration.decode(shard.graces?.vmLoss ?? VM_LOSS_GRACE))
  const unknownIsoGrace = Duration.toMillis(Duration.decode(shard.graces?.unknownIso ?? UNKNOWN_ISO_GRACE))
  /**
   * Instance IDs this term has seen in the shard's state. Shards of one cluster share the ISO storage and
   * an ISO's name carries no shard: an `nstance-<id>.iso` of an instance this shard never knew may be
   * another shard's upload waiting for its clone (chaos seed 3002): only ISOs of instances known here are
   * collected at once, others once they stay unclaimed for `unknownIsoGrace`.
   */
  const known = new Set<string>()
  /** First time each ISO of an unknown instance was seen, by volid. */
  const unknownIsoSince = new Map<string, number>()
  /** First time each suspicion was seen (instance ID or VMID), on Effect's clock. */
  const suspectSince = new Map<string, number>()
  const since = (key: string, now: number) => {
    const first = suspectSince.get(key) ?? now
    suspectSince.set(key, first)
    return now - first
  }
  /** Unknown VMs (`vmid/name`) whose notes this term has read. */
  const notesRead = new Set<string>()

  /** The other logs' VMs among `vms` as far as this term has read their notes (`Ownership` says a change once). */
  const reportForeign = (candidates: ReadonlyArray<VmResourceInfo>) =>
    Effect.gen(function* () {
      const foreign = new Map<string, Array<number>>()
      for (const vm of candidates) {
        const owner = yield* ownership.otherOwner(vm.vmid, vm.name ?? "")
        if (Option.isSome(owner)) foreign.set(owner.value, [...(foreign.get(owner.value) ?? []), vm.vmid].sort((a, b) => a - b))
      }
      yield* ownership.setForeign(foreign)
    })

  /** While this log holds: only whether other logs' VMs remain (read once each), ending the hold when none do. */
  const heldPass = (vms: ReadonlyArray<VmResourceInfo>) =>
    Effect.gen(function* () {
      const state = yield* log.state
      const candidates = unknownOwnedVms(vms, state, shard.clusterId, shard.shard)
      for (const vm of candidates) {
        if (Option.isSome(yield* ownership.otherOwner(vm.vmid, vm.name ?? ""))) continue
        const config = yield* configOf(vm)
        if (Option.isNone(config)) continue
        const owner = ownerByNotes(config.value.description, state.logId)
        yield* ownership.noteOtherOwner(vm.vmid, vm.name ?? "", owner._tag === "other" ? owner.logId : undefined)
      }
      yield* reportForeign(candidates)
      yield* releaseHoldIfClear
      return { replaced: 0, orphanVms: 0, orphanIsos: 0 } satisfies GcReport
    })

  const pass = Effect.fn("gc.pass")(function* () {
    const now = yield* Clock.currentTimeMillis
    const config = yield* SubscriptionRef.get(shard.config)
    const vms = yield* pve.vmResources()
    if (yield* ownership.held) return yield* heldPass(vms)
    const state = yield* log.state
    for (const id of HashMap.keys(state.instances)) known.add(id)
    const events: Array<ShardEvent> = []
    const suspects = new Set<string>()
    const request = (instanceId: string, reason: DeleteReason) => events.push(DeleteRequested.make({ instanceId, at: now, reason }))
    let replaced = 0
    // One index of the listing: a lookup per instance, not a scan (10k instances would be 10^8 comparisons).
    const listedByVmid = new Map<number, (typeof vms)[number]>()
    for (const vm of vms) listedByVmid.set(vm.vmid, vm)
    // PVE's state of each instance's VM as listed (the listing's `status` is `qmpstatus || status`, so a paused
    // guest shows as paused); a confirmation below replaces it with the node's fresh answer.
    const pveStates = new Map<string, PvePowerState>()
    for (const [id, instance] of state.instances) {
      const vm = instance.vmid === undefined ? undefined : listedByVmid.get(instance.vmid)
      if (vm !== undefined && vm.name === id) pveStates.set(id, pvePowerState(vm.status))
    }

    // Instances whose VM vanished or stopped: confirmed on the node (the listing lags by ~10 s).
    for (const [, instance] of state.instances) {
      if (!atRest(instance) || instance.vmid === undefined || instance.node === undefined || instance.held !== undefined) continue
      if ((instance.startedAt ?? instance.requestedAt) > now - vmLossGrace) continue
      const candidate = listedByVmid.get(instance.vmid)
      const listed = candidate !== undefined && candidate.name === instance.id ? candidate : undefined
      // A paused or suspended guest's QEMU runs: it is not lost (the liveness TTL judges its silence).
      if (listed !== undefined && (listed.instanceStatus === "Running" || listed.instanceStatus === "Suspended")) continue
      const node = listed?.node ?? instance.node
      const found = yield* pve.vmStatus(node, instance.vmid).pipe(
        Effect.map((s) => Option.some(s)),
        Effect.catchTag("PveApiError", (error) => (error.classification === "notFound" ? Effect.succeed(Option.none()) : Effect.fail(error)))
      )
      const status = Option.match(found, {
        onNone: () => "gone" as const,
        onSome: (s) => (s.name !== undefined && s.name !== instance.id ? "gone" as const : s.status === "running" ? "running" as const : "stopped" as const)
      })
      if (Option.isSome(found) && status !== "gone") pveStates.set(instance.id, pvePowerState(found.value.status, found.value.qmpstatus))
      if (status === "running") continue
      const other = Option.flatMap(found, (s) => Option.fromNullable(s.name !== undefined && s.name !== instance.id ? s.name : undefined))
      const own = vms.find((vm) => vm.name === instance.id && vm.vmid !== instance.vmid && !vm.template)
      if (Option.isSome(other) && own !== undefined) {
        // Another VM at the recorded VMID while the instance's own VM is elsewhere: the log is wrong, not the
        // cluster. Replacing would delete nothing of the other VM, but would leave the instance's own VM to be
        // collected as unowned: both are left alone.
        const detail = `VM ${instance.vmid} on ${node}, which the log records for ${instance.id}, is named ${other.value}, while ${instance.id} is VM ${own.vmid} on ${own.node}: ` +
          `the log's VMID is wrong; neither VM is touched and ${instance.id} is held until an operator deletes it`
        events.push(VmMismatched.make({ instanceId: instance.id, at: now, step: "gc", vmid: instance.vmid, node, found: boundText(other.value, 256), detail: boundText(detail) }))
        yield* Effect.logError(`${instance.id}: gc stopped: ${detail}`)
        continue
      }
      suspects.add(instance.id)
      if (status === "gone") {
        request(instance.id, "vm-gone")
        yield* Effect.logWarning(`${instance.id}: VM ${instance.vmid} is gone from ${instance.node}; replacing it`)
        replaced++
      } else if (since(instance.id, now) >= vmLossGrace) {
        request(instance.id, "not-ready")
        yield* Effect.logWarning(`${instance.id}: VM ${instance.vmid} on ${instance.node} stays stopped; replacing it`)
        replaced++
      }
    }

    // VMs with our tags that the log does not know: adopted and deleted after the grace period — unless
    // their notes name another log, which owns them.
    let orphanVms = 0
    const unknown = unknownOwnedVms(vms, state, shard.clusterId, shard.shard)
    const unknownKeys = new Set(unknown.map((vm) => `${vm.vmid}/${vm.name ?? ""}`))
    for (const key of notesRead) if (!unknownKeys.has(key)) notesRead.delete(key)
    for (const vm of unknown) {
      // Its notes are read at first sight (once a term), so another log's VM is reported at once, not after the grace.
      const seen = `${vm.vmid}/${vm.name ?? ""}`
      if (!notesRead.has(seen)) {
        notesRead.add(seen)
        const first = yield* configOf(vm)
        if (Option.isSome(first)) {
          const owner = ownerByNotes(first.value.description, state.logId)
          yield* ownership.noteOtherOwner(vm.vmid, vm.name ?? "", owner._tag === "other" ? owner.logId : undefined)
        }
      }
      if (Option.isSome(yield* ownership.otherOwner(vm.vmid, vm.name ?? ""))) continue
      const key = `vm/${vm.vmid}`
      suspects.add(key)
      if (since(key, now) < orphanGrace) continue
      const read = yield* configOf(vm)
      if (Option.isNone(read)) continue
      const owner = ownerByNotes(read.value.description, state.logId)
      if (owner._tag === "other") {
        yield* ownership.noteOtherOwner(vm.vmid, vm.name ?? "", owner.logId)
        continue
      }
      const adopted = adoptionOf(vm, read.value, now)
      events.push(adopted)
      request(adopted.instanceId, "gc")
      orphanVms++
      yield* Effect.logWarning(`${vm.name}: VM ${vm.vmid} on ${vm.node} carries this shard's tags but no instance owns it; deleting it`)
    }
    for (const key of suspectSince.keys()) if (!suspects.has(key)) suspectSince.delete(key)
    yield* clusterView.recordVmStates(pveStates)
    yield* reportForeign(unknown)
    if (events.length > 0) {
      // The pass decided on the state it read before its PVE calls: a delete that finished meanwhile must
      // not be requested again for an instance already gone (chaos seed 1898).
      const current = yield* log.state
      const adopting = new Set(events.flatMap((e) => (e._tag === "Adopted" ? [e.instanceId] : [])))
      const still = events.filter((e) => e._tag !== "DeleteRequested" || adopting.has(e.instanceId) || HashMap.has(current.instances, e.instanceId))
      if (still.length > 0) yield* log.append(still)
    }
    yield* recordGcDeletions(shard.shard, { "vm-replaced": replaced, "orphan-vm": orphanVms })

    // ISOs of ours that no instance uses. The listing is read before the state: an ISO's upload intent is
    // in the log before the upload starts, so anything listed is known to the state read after it.
    const storage = config.config.shard.infra.options.cloudInitIsoStorage
    const online = (yield* pve.nodeResources()).filter((node) => node.status === "online").map((node) => node.node)
    const isos = new Map<string, string>()
    for (const node of online) {
      const content = yield* pve.listStorageContent(node, storage, { content: "iso" }).pipe(Effect.catchAll(() => Effect.succeed([])))
      for (const entry of content) if (!isos.has(entry.volid)) isos.set(entry.volid, node)
    }
    const fresh = yield* log.state
    const usedVmids = new Set<number>()
    for (const [id, instance] of fresh.instances) {
      known.add(id)
      if (instance.vmid !== undefined) usedVmids.add(instance.vmid)
    }
    const vmNames = new Set(vms.flatMap((vm) => (vm.name === undefined ? [] : [vm.name])))
    const unknownSeen = new Set<string>()
    const orphans = [...isos].filter(([volid]) => {
      const id = instanceIdOfIsoVolid(volid)
      if (id !== undefined) {
        if (HashMap.has(fresh.instances, id) || vmNames.has(id)) return false
        if (known.has(id)) return true
        unknownSeen.add(volid)
        const first = unknownIsoSince.get(volid) ?? now
        unknownIsoSince.set(volid, first)
        return now - first >= unknownIsoGrace
      }
      // The original's ISO of a VMID any VM still has (another shard's adopted original, say) is not an orphan.
      const originalVmid = vmidOfOriginalIsoVolid(volid)
      return originalVmid !== undefined ? !usedVmids.has(originalVmid) && !listedByVmid.has(originalVmid) : false
    })
    for (const volid of unknownIsoSince.keys()) if (!unknownSeen.has(volid)) unknownIsoSince.delete(volid)
    // An instance that is gone and has no ISO listed needs no remembering: `known` stays as large as the
    // shard's instances and their leftovers, not every instance a long term has ever seen.
    const listedIds = new Set([...isos.keys()].flatMap((volid) => {
      const id = instanceIdOfIsoVolid(volid)
      return id === undefined ? [] : [id]
    }))
    for (const id of known) if (!HashMap.has(fresh.instances, id) && !listedIds.has(id)) known.delete(id)
    // Deleting an ISO has no intent event of its own, and a deposed leader's state does not know the new
    // leader's instances — whose fresh ISOs would look orphaned to it. A no-op fenced append, after the
    // listing and before the first delete, makes a deposed leader stop here (Fenced) instead.
    if (orphans.length > 0) yield* log.append([VmidsSeen.make({ highest: fresh.vmidHighWater })])
    let orphanIsos = 0
    for (const [volid, node] of orphans) {
      yield* pve.deleteVolume(node, storage, volid).pipe(
        Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: (upid) => Effect.asVoid(pve.waitTask(node, upid)) })),
        Effect.catchAll((error) => Effect.logWarning(`gc: could not delete ${volid} on ${node}: ${error.message}`))
      )
      orphanIsos++
      yield* Effect.logInfo(`gc: deleted unused ISO ${volid}`)
    }
    yield* recordGcDeletions(shard.shard, { "orphan-iso": orphanIsos })
    return { replaced, orphanVms, orphanIsos } satisfies GcReport
  })
  // One effect for every pass the loop (or a bench) runs: each run is a fresh pass in a span of its own.
  return { pass: pass() }
})

/** Runs a GC pass every `garbage_collection.interval` (read anew each time); a failed pass is logged and retried at the next. */
export const gcLoop = Effect.gen(function* () {
  const { pass } = yield* makeGc
  const shard = yield* ShardContext
  const interval = Effect.map(SubscriptionRef.get(shard.config), (config) => config.config.shard.garbageCollection.interval)
  // Spent cloud-init ISOs of registered instances are released after each pass, when the option is on.
  const release = Effect.flatMap(SubscriptionRef.get(shard.config), (config) => releaseIsos(config.config.shard.infra.options.detachIsoAfterRegistration))
  // A fenced writer ends the leadership; anything else waits for the next pass.
  yield* everyInterval("gc", interval, Effect.zipRight(pass, release))
})

