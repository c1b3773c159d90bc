/**
 * The first thing a new leader does after replaying the log: one look at the cluster
 * (`/cluster/resources?type=vm`) to raise the VMID high-water mark above every VMID in use and to adopt
 * the VMs that carry this shard's tags and an instance ID as their name but that the log does not know —
 * VMs the original Go server created, or ours whose log record was lost. Adopted VMs are kept and counted
 * towards their group (read from the managed notes), never recreated.
 */
import { Clock, Effect, HashMap, Option } from "effect"
import { InvalidInstanceId, parseInstanceId } from "../domain/instanceId.js"
import { parseManagedNotes } from "../domain/managedNotes.js"
import { hasAssociationTags } from "../domain/pveTags.js"
import { Adopted, type ShardEvent, VmidsSeen } from "../domain/shard/events.js"
import type { State } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"
import { ProxmoxApi, type VmResourceInfo } from "../services/ProxmoxApi.js"
import { ShardContext } from "./ShardContext.js"

/** VMs of the listing that are ours by tags and name, and not known to `state`. */
export const unknownOwnedVms = (vms: ReadonlyArray<VmResourceInfo>, state: State, clusterId: string, shard: string) => {
  const knownVmids = new Set<number>()
  for (const [, instance] of state.instances) if (instance.vmid !== undefined) knownVmids.add(instance.vmid)
  return vms.filter((vm) =>
    vm.type === "qemu" && !vm.template && vm.name !== undefined && hasAssociationTags(vm.tags, clusterId, shard) &&
    !(parseInstanceId(vm.name) instanceof InvalidInstanceId) && !HashMap.has(state.instances, vm.name) && !knownVmids.has(vm.vmid)
  )
}

/** The `Adopted` event for `vm`, with tenant and group from its managed notes when they say. */
export const adoptionOf = (vm: VmResourceInfo, at: number) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const parsed = parseInstanceId(vm.name!)
    const kind = parsed instanceof InvalidInstanceId ? "vmx" : parsed.kind
    const notes = yield* pve.vmConfig(vm.node, vm.vmid).pipe(
      Effect.map((config) => Option.fromNullable(config.description === undefined ? undefined : parseManagedNotes(config.description))),
      Effect.catchAll(() => Effect.succeed(Option.none()))
    )
    return Adopted.make({
      instanceId: vm.name!,
      at,
      vmid: vm.vmid,
      node: vm.node,
      kind,
      status: vm.status,
      ...Option.match(notes, {
        onNone: () => ({}),
        onSome: (n) => ({ ...(n.tenant === undefined ? {} : { tenant: n.tenant }), ...(n.group === undefined ? {} : { group: n.group }) })
      })
    })
  })

export const adoptFromCluster = Effect.fn("shard.adopt")(function* () {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const shard = yield* ShardContext
  const vms = yield* pve.vmResources()
  const state = yield* log.state
  const at = yield* Clock.currentTimeMillis
  const events: Array<ShardEvent> = []
  const highest = Math.max(0, ...vms.map((vm) => vm.vmid))
  if (highest > state.vmidHighWater) events.push(VmidsSeen.make({ highest }))
  for (const vm of unknownOwnedVms(vms, state, shard.clusterId, shard.shard)) {
    // The listing lags ~10 s: a VM the previous leader deleted moments ago is still in it. Adopting that
    // ghost would bring a gone instance back (chaos seed 1005); its node has the fresh word.
    const gone = yield* pve.vmConfig(vm.node, vm.vmid).pipe(
      Effect.map((config) => config.name !== vm.name),
      Effect.catchAll((error) => Effect.succeed(error._tag === "PveApiError" && error.classification === "notFound"))
    )
    if (gone) continue
    const event = yield* adoptionOf(vm, at)
    events.push(event)
    yield* Effect.logInfo(`${vm.name}: adopted VM ${vm.vmid} on ${vm.node} (${vm.status}${event.group === undefined ? ", group unknown" : `, group ${event.tenant ?? "?"}/${event.group}`})`)
  }
  if (events.length > 0) yield* log.append(events)
  const owned = vms.filter((vm) => !vm.template && hasAssociationTags(vm.tags, shard.clusterId, shard.shard)).length
  return { owned, adopted: events.filter((event) => event._tag === "Adopted").length }
})
