/**
 * The leader's shared, briefly cached view of the cluster that every create saga needs: node usage for
 * TOPSIS (one `/cluster/resources?type=node` read shared by concurrent sagas, each placement charged to its
 * node until PVE's own numbers catch up) and template lookups (by name on a node, or a VMID's node and
 * whether its disks allow a clone onto another node). Cached answers are dropped when a read fails.
 */
import { Clock, Context, Duration, Effect, Layer, Ref } from "effect"
import { type Demand, markUnfit, type NoPlacement, nodeResourcesFrom, type NodeResources, withVmPlaced } from "../domain/placement.js"
import type { StorageEntry } from "../domain/pve/schemas.js"
import type { PvePowerState } from "../domain/pve/status.js"
import { resolveTemplate } from "../domain/shard/preflight.js"
import { type PveError, ProxmoxApi } from "../services/ProxmoxApi.js"
import { Scheduler } from "../services/Scheduler.js"
import { NODE_RESOURCES_TTL, PLACEMENT_CHARGE_TTL } from "./policies.js"

export interface TemplateRef {
  readonly vmid: number
  readonly node: string
  /** Every disk of the template is on shared storage, so PVE can clone it onto any node. */
  readonly clonesAnywhere: boolean
}


export interface ClusterViewShape {
  /**
   * Best node for `demand` among `allowed` (all online nodes when undefined), never one of `unfit` (node →
   * what it lacks for the VM's group); the node is charged with it.
   */
  readonly place: (
    demand: Demand,
    allowed?: ReadonlyArray<string>,
    unfit?: ReadonlyMap<string, string>
  ) => Effect.Effect<{ readonly node: string; readonly score: number }, NoPlacement | PveError>
  /** The one template named `name` on `node`; a string when there are none or several. */
  readonly templateByName: (node: string, name: string) => Effect.Effect<TemplateRef | string, PveError>
  /** Where template `vmid` lives and whether it clones onto other nodes; a string when it is not a template. */
  readonly templateByVmid: (vmid: number) => Effect.Effect<TemplateRef | string, PveError>
  /** Whether `storage` as seen from `node` is shared by all nodes (PVE then locks it cluster-wide). */
  readonly isShared: (node: string, storage: string) => Effect.Effect<boolean, PveError>
  /** Forget cached answers (after a failure that may have come from stale data). */
  readonly invalidate: Effect.Effect<void>
  /**
   * PVE's power state of each instance's VM (instance ID → state) as the last GC pass saw it — in memory for
   * the term, for the admin views, the metrics and the liveness log; an instance whose VM was not seen is absent.
   */
  readonly vmStates: Effect.Effect<ReadonlyMap<string, PvePowerState>>
  /** Replaces the recorded states with one GC pass's. */
  readonly recordVmStates: (states: ReadonlyMap<string, PvePowerState>) => Effect.Effect<void>
}

export class ClusterView extends Context.Tag("nstance/ClusterView")<ClusterView, ClusterViewShape>() {}

interface Charge {
  readonly node: string
  readonly demand: Demand
  readonly until: number
}

const TEMPLATE_TTL = Duration.minutes(1)

/** Drives in a VM config whose value names a storage volume (`local-lvm:vm-9000-disk-0,size=8G`). */
const DISK_KEY = /^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$/

export const ClusterViewLive = Layer.effect(
  ClusterView,
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const scheduler = yield* Scheduler
    const [nodes, invalidateNodes] = yield* Effect.cachedInvalidateWithTTL(pve.nodeResources(), NODE_RESOURCES_TTL)
    const [vms, invalidateVms] = yield* Effect.cachedInvalidateWithTTL(pve.vmResources(), TEMPLATE_TTL)
    const charges = yield* Ref.make<ReadonlyArray<Charge>>([])
    const vmStates = yield* Ref.make<ReadonlyMap<string, PvePowerState>>(new Map())
    /** Per node, one shared (single-flight) read of its VM list: concurrent template lookups make one call. */
    const byNode = new Map<string, Effect.Effect<ReadonlyArray<{ readonly vmid: number; readonly name?: string | undefined; readonly template: boolean }>, PveError>>()
    /** Per node, one shared read of its storages (whether each is shared decides which storage lock a clone takes). */
    const storageByNode = new Map<string, Effect.Effect<ReadonlyArray<StorageEntry>, PveError>>()
    const invalidate = Effect.all([invalidateNodes, invalidateVms], { discard: true }).pipe(
      Effect.zipRight(Effect.sync(() => { byNode.clear(); storageByNode.clear() }))
    )

    const place: ClusterViewShape["place"] = (demand, allowed, unfit) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const entries = yield* nodes.pipe(Effect.tapError(() => invalidateNodes))
        const live = (yield* Ref.updateAndGet(charges, (list) => list.filter((charge) => charge.until > now)))
        let view: ReadonlyArray<NodeResources> = entries.map(nodeResourcesFrom)
        for (const charge of live) view = view.map((node) => (node.node === charge.node ? withVmPlaced(node, charge.demand) : node))
        if (allowed !== undefined) view = view.filter((node) => allowed.includes(node.node))
        if (unfit !== undefined) view = markUnfit(view, unfit)
        const placed = yield* scheduler.place(view, demand)
        yield* Ref.update(charges, (list) => [...list, { node: placed.node, demand, until: now + Duration.toMillis(PLACEMENT_CHARGE_TTL) }])
        return { node: placed.node, score: placed.score }
      })

    const qemuOn = (node: string) =>
      Effect.gen(function* () {
        let shared = byNode.get(node)
        if (shared === undefined) {
          const [list, drop] = yield* Effect.cachedInvalidateWithTTL(pve.listQemu(node), TEMPLATE_TTL)
          // A failed read is not kept: the next lookup asks again.
          shared = list.pipe(Effect.tapError(() => drop))
          byNode.set(node, shared)
        }
        return yield* shared
      })

    /** One `GET /nodes/{node}/storage` per node for the term, shared by concurrent callers; a failed read is not kept. */
    const storagesOn = (node: string) =>
      Effect.gen(function* () {
        let shared = storageByNode.get(node)
        if (shared === undefined) {
          const [list, drop] = yield* Effect.cachedInvalidateWithTTL(pve.listStorage(node), Duration.infinity)
          shared = list.pipe(Effect.tapError(() => drop))
          storageByNode.set(node, shared)
        }
        return yield* shared
      })

    const isShared = (node: string, storage: string) =>
      Effect.map(storagesOn(node), (storages) => storages.find((entry) => entry.storage === storage)?.shared === true)

    const templateByName: ClusterViewShape["templateByName"] = (node, name) =>
      Effect.gen(function* () {
        // The one rule for "exactly one template of that name on the node" (and its messages) is the domain's.
        const vms = (yield* qemuOn(node)).map((vm) => ({ ...vm, node, status: "" }))
        const found = resolveTemplate(vms, { name }, node)
        return found._tag === "Resolved" ? { vmid: found.vmid, node, clonesAnywhere: false } : found.reason
      })

    const templateByVmid: ClusterViewShape["templateByVmid"] = (vmid) =>
      Effect.gen(function* () {
        const vm = (yield* vms.pipe(Effect.tapError(() => invalidateVms))).find((entry) => entry.vmid === vmid)
        if (vm === undefined) return `no VM with VMID ${vmid} in the cluster`
        if (!vm.template) return `VM ${vmid} (${vm.name ?? "no name"}) on ${vm.node} is not a template`
        const config = yield* pve.vmConfig(vm.node, vmid)
        const storages = Object.entries(config)
          .filter(([key, value]) => DISK_KEY.test(key) && typeof value === "string" && !value.includes("media=cdrom"))
          .map(([, value]) => String(value).split(":")[0] ?? "")
          .filter((storage) => storage !== "" && storage !== "none")
        let clonesAnywhere = storages.length > 0
        for (const storage of storages) clonesAnywhere = clonesAnywhere && (yield* isShared(vm.node, storage))
        return { vmid, node: vm.node, clonesAnywhere }
      })

    return ClusterView.of({
      place,
      templateByName,
      templateByVmid,
      isShared,
      invalidate,
      vmStates: Ref.get(vmStates),
      recordVmStates: (states) => Ref.set(vmStates, states)
    })
  })
)

