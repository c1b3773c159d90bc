/**
 * The leader's shared, briefly cached view of the cluster that every create saga needs, all from one
 * unfiltered `GET /cluster/resources` (nodes, guests and storages in one answer) shared by concurrent callers:
 * node usage for TOPSIS (a read at most `NODE_RESOURCES_TTL` old, each placement charged to its node until PVE's
 * own numbers catch up), template lookups on the same read (by name on a node, or a VMID's node and whether
 * its disks allow a clone onto another node) and storage sharedness (from a read up to a minute old: storages
 * seldom change). A lookup that misses asks once more of a fresh read before saying "not there"; a storage
 * the token may use but not audit is looked up in its node's own list. PVE's `/cluster/resources` is itself
 * up to ~10 s behind: a template deleted seconds ago is still listed, and its clone then fails (not found),
 * which drops the cached answers.
 * Templates' own configs (their disks, tags and notes) are cached per template. A failed read is not kept.
 */
import { Clock, Context, Duration, Effect, Either, Layer, Option, Ref } from "effect"
import { type Demand, markUnfit, type NoPlacement, nodeResourcesFrom, type NodeResources, withVmPlaced } from "../domain/placement.js"
import type { StorageEntry, VmConfig } from "../domain/pve/schemas.js"
import type { PvePowerState } from "../domain/pve/status.js"
import { resolveTemplate } from "../domain/shard/preflight.js"
import { type ClusterResources, type PveError, ProxmoxApi } from "../services/ProxmoxApi.js"
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
  /**
   * Template `vmid`'s config on `node` (its disks, tags and notes, which every clone of it starts with), read
   * at most once per `TEMPLATE_TTL` per template.
   */
  readonly templateConfig: (node: string, vmid: number) => Effect.Effect<VmConfig, PveError>
  /**
   * The shared `/cluster/resources` read, at most `NODE_RESOURCES_TTL` old (concurrent callers share one):
   * what the term's first look at the cluster (adoption) and the preflight read, so they cost no read of
   * their own.
   */
  readonly resources: Effect.Effect<ClusterResources, PveError>
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

/** One `/cluster/resources` answer and when its request began (what "fresh enough" is judged by). */
interface Snapshot {
  readonly begun: number
  readonly resources: ClusterResources
}

const TEMPLATE_TTL = Duration.minutes(1)
/**
 * How old a read storage lookups take. Storages seldom change, and a miss asks again, so sagas that wait
 * minutes for a storage lock do not each read the cluster again for the same answer. Template lookups take
 * the placement's read (`NODE_RESOURCES_TTL`): they come right after it, so they cost no read of their own.
 */
const STORAGE_LOOKUP_MAX_AGE = Duration.minutes(1)

/** Drives in a VM config whose value names a storage volume (`local-lvm:vm-9000-disk-0,size=8G`). */
const DISK_KEY = /^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$/

export const ClusterViewLive = Layer.effect(
  ClusterView,
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const scheduler = yield* Scheduler
    const latest = yield* Ref.make(Option.none<Snapshot>())
    // One read at a time: callers queued behind a read find its answer and make none of their own.
    const gate = yield* Effect.makeSemaphore(1)
    const charges = yield* Ref.make<ReadonlyArray<Charge>>([])
    const vmStates = yield* Ref.make<ReadonlyMap<string, PvePowerState>>(new Map())
    /** Per template, one shared (single-flight) read of its config; a failed read is not kept. */
    const templateConfigs = new Map<string, Effect.Effect<VmConfig, PveError>>()
    /** Per node, its own storage list (`storagesOn`), read only when the cluster read does not list a storage. */
    const storageByNode = new Map<string, Effect.Effect<ReadonlyArray<StorageEntry>, PveError>>()

    /** A read begun at `notBefore` or later and at most `maxAge` old: the last one, or a new one. */
    const readSince = (notBefore: number, maxAge: Duration.Duration) =>
      gate.withPermits(1)(Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const last = yield* Ref.get(latest)
        if (Option.isSome(last) && last.value.begun >= notBefore && now - last.value.begun < Duration.toMillis(maxAge)) return last.value
        const snapshot: Snapshot = { begun: now, resources: yield* pve.clusterResources() }
        yield* Ref.set(latest, Option.some(snapshot))
        return snapshot
      }))

    const resources: ClusterViewShape["resources"] = Effect.map(Effect.suspend(() => readSince(0, NODE_RESOURCES_TTL)), (snapshot) => snapshot.resources)

    /**
     * `lookup` on a read up to `maxAge` old; a miss (Left) on a read older than this lookup is looked up once
     * more on a fresh read — a template or storage added since — before it is believed.
     */
    const lookupWithRefresh = <A>(maxAge: Duration.Duration, lookup: (resources: ClusterResources) => Either.Either<A, string>) =>
      Effect.gen(function* () {
        const began = yield* Clock.currentTimeMillis
        const first = yield* readSince(0, maxAge)
        const found = lookup(first.resources)
        if (Either.isRight(found) || first.begun >= began) return found
        return lookup((yield* readSince(began, maxAge)).resources)
      })

    const invalidate = Effect.all([
      Ref.set(latest, Option.none()),
      Effect.sync(() => { templateConfigs.clear(); storageByNode.clear() })
    ], { discard: true })

    const place: ClusterViewShape["place"] = (demand, allowed, unfit) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const entries = (yield* resources).nodes
        const live = (yield* Ref.updateAndGet(charges, (list) => list.filter((charge) => charge.until > now)))
        let view: ReadonlyArray<NodeResources> = entries.map(nodeResourcesFrom)
        for (const charge of live) view = view.map((node) => (node.node === charge.node ? withVmPlaced(node, charge.demand) : node))
        if (allowed !== undefined) view = view.filter((node) => allowed.includes(node.node))
        if (unfit !== undefined) view = markUnfit(view, unfit)
        const placed = yield* scheduler.place(view, demand)
        yield* Ref.update(charges, (list) => [...list, { node: placed.node, demand, until: now + Duration.toMillis(PLACEMENT_CHARGE_TTL) }])
        return { node: placed.node, score: placed.score }
      })

    const templateConfig: ClusterViewShape["templateConfig"] = (node, vmid) =>
      Effect.gen(function* () {
        const key = `${node}/${vmid}`
        let shared = templateConfigs.get(key)
        if (shared === undefined) {
          const [config, drop] = yield* Effect.cachedInvalidateWithTTL(pve.vmConfig(node, vmid), TEMPLATE_TTL)
          // A failed read is not kept: the next lookup asks again.
          shared = config.pipe(Effect.tapError(() => drop))
          templateConfigs.set(key, shared)
        }
        return yield* shared
      })

    /**
     * The node's own storage list, for the one case the cluster read cannot answer: PVE lists a storage in
     * `/cluster/resources` only to a token with `Datastore.Audit` on it, while the integration guide asks only
     * for `Datastore.AllocateSpace` on a `StoragePool` — which `GET /nodes/{node}/storage` honours. Read once per
     * node for the term (whether a storage is shared does not change under a running cluster).
     */
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

    const isShared: ClusterViewShape["isShared"] = (node, storage) =>
      Effect.gen(function* () {
        const found = yield* lookupWithRefresh(STORAGE_LOOKUP_MAX_AGE, (read) => {
          const entry = read.storages.find((candidate) => candidate.node === node && candidate.storage === storage)
          return entry === undefined ? Either.left(`no storage ${storage} on ${node}`) : Either.right(entry.shared === true)
        })
        if (Either.isRight(found)) return found.right
        return (yield* storagesOn(node)).find((entry) => entry.storage === storage)?.shared === true
      })

    /** Only QEMU guests: an LXC template cannot be cloned as a VM. */
    const qemuOf = (read: ClusterResources) => read.vms.filter((vm) => vm.type === "qemu")

    const templateByName: ClusterViewShape["templateByName"] = (node, name) =>
      lookupWithRefresh(NODE_RESOURCES_TTL, (read): Either.Either<TemplateRef, string> => {
        // The one rule for "exactly one template of that name on the node" (and its messages) is the domain's.
        const found = resolveTemplate(qemuOf(read), { name }, node)
        return found._tag === "Resolved" ? Either.right({ vmid: found.vmid, node, clonesAnywhere: false }) : Either.left(found.reason)
      }).pipe(Effect.map(Either.merge))

    const templateByVmid: ClusterViewShape["templateByVmid"] = (vmid) =>
      Effect.gen(function* () {
        const found = yield* lookupWithRefresh(NODE_RESOURCES_TTL, (read) => {
          const vm = qemuOf(read).find((entry) => entry.vmid === vmid)
          if (vm === undefined) return Either.left(`no VM with VMID ${vmid} in the cluster`)
          if (!vm.template) return Either.left(`VM ${vmid} (${vm.name ?? "no name"}) on ${vm.node} is not a template`)
          return Either.right(vm.node)
        })
        if (Either.isLeft(found)) return found.left
        const node = found.right
        const config = yield* templateConfig(node, vmid)
        const storages = Object.entries(config)
          .filter(([key, value]) => DISK_KEY.test(key) && typeof value === "string" && !value.includes("media=cdrom"))
          .map(([, value]) => String(value).split(":")[0] ?? "")
          .filter((storage) => storage !== "" && storage !== "none")
        let clonesAnywhere = storages.length > 0
        for (const storage of storages) clonesAnywhere = clonesAnywhere && (yield* isShared(node, storage))
        return { vmid, node, clonesAnywhere }
      })

    return ClusterView.of({
      place,
      templateByName,
      templateByVmid,
      isShared,
      templateConfig,
      resources,
      invalidate,
      vmStates: Ref.get(vmStates),
      recordVmStates: (states) => Ref.set(vmStates, states)
    })
  })
)
