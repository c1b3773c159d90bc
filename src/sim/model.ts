/**
 * The simulated Proxmox VE cluster: nodes, VMs, storages, volumes, tasks and locks, with the semantics of
 * qemu-server / pve-manager / pve-storage 9.x (which checks run in the API handler and answer 500, which
 * run in the forked worker and end as the task's exit status; per-node config locks; the storage lock
 * held through a full clone's copy; templates and linked clones; a lagging /cluster/resources) and PVE's
 * response shapes. It knows nothing about HTTP: each endpoint maps checked parameters to the `data` PVE
 * would answer, or a `PveHttpError`.
 *
 * This module is the model's face: it builds the shared state (`model/core.ts`), seeds the cluster, and
 * joins the endpoint tables of the capability modules under `model/`; it also holds the operations a test
 * drives directly (crash a VM, pause it, take a node away).
 */
import type { FileLock, SimTime, WorkerPool } from "./locks.js"
import { clusterRoutes, createForeignVm, lowestFreeVmid } from "./model/cluster.js"
import { SimCore } from "./model/core.js"
import { ResourcesView } from "./model/resources.js"
import { seedCluster } from "./model/seed.js"
import type {
  BootRecord,
  Handler,
  ModelOptions,
  RequestLogEntry,
  SimNode,
  SimStorage,
  SimTask,
  SimVm,
  SimVolume
} from "./model/state.js"
import { nodeUsage } from "./model/status.js"
import { storageRoutes } from "./model/storage.js"
import { taskRoutes } from "./model/tasks.js"
import { vmRoutes } from "./model/vms.js"
import type { Params } from "./schema.js"

export { formatSize, parseSize } from "./model/config.js"
export { PveHttpError } from "./model/state.js"
export type {
  BootRecord,
  CallContext,
  ModelOptions,
  RequestLogEntry,
  SimNode,
  SimStorage,
  SimTask,
  SimVm,
  SimVolume
} from "./model/state.js"

export class SimModel {
  readonly nodes: Map<string, SimNode>
  readonly storages: Map<string, SimStorage>
  readonly vms: Map<number, SimVm>
  /** Keyed by `<node>/<volid>` for local storage and by `*` + `/<volid>` for shared storage. */
  readonly volumes: Map<string, SimVolume>
  readonly tasks: Map<string, SimTask>
  readonly requests: Array<RequestLogEntry>
  readonly boots: Array<BootRecord>
  /** pveproxy's worker pool: every API call holds one of these while it runs. */
  readonly workers: WorkerPool
  readonly startedAt: number
  /** The time source: `options.time`, else real time. */
  readonly time: SimTime
  /** Upload bodies parked by the HTTP layer under a temp name, like pveproxy's /var/tmp/pveupload-*. */
  readonly uploads: Map<string, Uint8Array>
  /** Endpoints, keyed like the schema: "<METHOD> <path template>". */
  readonly routes: Readonly<Record<string, Handler>>

  private readonly core: SimCore
  private readonly resources: ResourcesView

  constructor(options: ModelOptions) {
    const core = new SimCore(options)
    this.core = core
    this.nodes = core.nodes
    this.storages = core.storages
    this.vms = core.vms
    this.volumes = core.volumes
    this.tasks = core.tasks
    this.requests = core.requests
    this.boots = core.boots
    this.workers = core.workers
    this.startedAt = core.startedAt
    this.time = core.time
    this.uploads = core.uploads
    seedCluster(core)
    this.resources = new ResourcesView(core)
    this.routes = { ...clusterRoutes(core, this.resources), ...vmRoutes(core), ...storageRoutes(core), ...taskRoutes(core) }
  }

  volume(node: string, volid: string): SimVolume | undefined {
    return this.core.volume(node, volid)
  }

  /** Config locks are flock files in each node's /var/lock, so they are per node, not cluster-wide. */
  vmLock(node: string, vmid: number): FileLock {
    return this.core.vmLock(node, vmid)
  }

  /** Node memory and CPU as the VMs on it make them. */
  nodeUsage(node: SimNode): { readonly mem: number; readonly cpu: number } {
    return nodeUsage(this.core, node)
  }

  /** The node a request is for; an offline node answers like pveproxy failing to proxy to it. */
  onlineNode(p: Params): SimNode {
    return this.core.onlineNode(p)
  }

  /** Appends to the request log, dropping the oldest half once it reaches its cap. */
  logRequest(entry: RequestLogEntry): void {
    this.core.logRequest(entry)
  }

  parkUpload(data: Uint8Array): string {
    return this.core.parkUpload(data)
  }

  /** Rebuilds the resources view now (tests use this instead of waiting a refresh interval). */
  refreshResources(): void {
    this.resources.refresh()
  }

  lowestFreeVmid(): number {
    return lowestFreeVmid(this.core)
  }

  // ---- operations a test may drive directly ----

  /** Pauses or resumes a running VM (as `qm suspend` / `qm resume` would). */
  setPaused(vmid: number, paused: boolean): void {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.status !== "running") throw new Error(`VM ${vmid} is not running`)
    vm.paused = paused
  }

  setNodeOnline(node: string, online: boolean): void {
    const n = this.nodes.get(node)
    if (n === undefined) throw new Error(`no such node ${node}`)
    n.online = online
  }

  /** The guest of a running VM dies (a crash, an OOM kill): PVE then reports it stopped. */
  crashVm(vmid: number): void {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.status !== "running") throw new Error(`VM ${vmid} is not running`)
    vm.status = "stopped"
    vm.paused = false
    vm.startedAt = undefined
    vm.pid = undefined
    this.core.log(`VM ${vmid} on ${vm.node} crashed (simulated)`)
  }

  /** Another user's VM appearing at `vmid` (the losing side of a nextid race). */
  createForeignVm(node: string, vmid: number): void {
    createForeignVm(this.core, node, vmid)
  }

  /** Calls per endpoint template, for benches that count PVE calls per operation. */
  requestCounts(since = 0): ReadonlyMap<string, number> {
    const counts = new Map<string, number>()
    for (const r of this.requests) {
      if (r.at < since) continue
      const key = r.endpoint ?? `${r.method} ${r.path}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
    return counts
  }

  /** Resolves when every task and boot started so far has finished. */
  settle(): Promise<void> {
    return this.core.settle()
  }

  /** Lets running tasks and boots finish, but never waits longer than `maxWaitMs` (realistic tasks take seconds). */
  close(maxWaitMs = 2_000): Promise<void> {
    return this.core.close(maxWaitMs)
  }

  get isClosed(): boolean {
    return this.core.isClosed
  }
}
