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
import { GiB, KiB, normaliseTags, sortConfig } from "./model/config.js"
import { SimCore } from "./model/core.js"
import { ResourcesView } from "./model/resources.js"
import { markStopped } from "./model/lifecycle.js"
import { rebootNode } from "./model/reboot.js"
import { createTemplate, seedCluster } from "./model/seed.js"
import type {
  BootRecord,
  Handler,
  ModelOptions,
  RequestLogEntry,
  SimAcl,
  SimIface,
  SimNode,
  SimStorage,
  SimTask,
  SimVm,
  SimVolume
} from "./model/state.js"
import { nodeUsage } from "./model/status.js"
import { networkRoutes } from "./model/network.js"
import { storageRoutes } from "./model/storage.js"
import { taskRoutes } from "./model/tasks.js"
import { vmRoutes } from "./model/vms.js"
import type { Params } from "./schema.js"

export { formatSize, parseSize } from "./model/config.js"
export { effectivePrivileges } from "./model/cluster.js"
export { SIM_PRIVILEGES } from "./model/seed.js"
export { PveHttpError } from "./model/state.js"
export type {
  BootRecord,
  CallContext,
  ModelOptions,
  RequestLogEntry,
  SimAcl,
  SimIface,
  SimNode,
  SimStorage,
  SimTask,
  SimVm,
  SimVolume
} from "./model/state.js"

/** A VM as a finished create leaves it, for `SimModel.seedRunningVm`. */
export interface SeededVm {
  readonly vmid: number
  readonly node: string
  readonly name: string
  /** PVE's `;` list, e.g. `nstance;<cluster>;<shard>`. */
  readonly tags: string
  /** The VM's notes (its managed-notes block). */
  readonly description: string
  readonly cores: number
  readonly memoryMiB: number
  /** The cloud-init ISO in `ide2` (e.g. `local:iso/nstance-<id>.iso`); the volume is created on the node. */
  readonly isoVolid?: string
}

export class SimModel {
  readonly nodes: Map<string, SimNode>
  readonly storages: Map<string, SimStorage>
  readonly vms: Map<number, SimVm>
  /** Each node's network interfaces. */
  readonly networks: Map<string, Array<SimIface>>
  /** The API token's privileges by ACL path: privilege → propagate. */
  readonly acl: SimAcl
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
    this.networks = core.networks
    this.acl = core.acl
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
    this.routes = { ...clusterRoutes(core, this.resources), ...vmRoutes(core), ...storageRoutes(core), ...networkRoutes(core), ...taskRoutes(core) }
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

  /** What `GET /version` answers from now on (`8.4.1` → release `8.4`). */
  setPveVersion(version: string): void {
    this.core.pveVersion = { version, release: version.split(".").slice(0, 2).join("."), repoid: "deadbeef" }
  }

  /** Takes `privilege` away from the token on ACL path `path` (default `/`, where the seed grants everything). */
  revokePrivilege(privilege: string, path = "/"): void {
    this.acl.get(path)?.delete(privilege)
  }

  /** Grants `privileges` on ACL path `path`; an ACL of its own on a path replaces what it inherited, as in PVE. */
  setAcl(path: string, privileges: ReadonlyArray<string>, propagate = true): void {
    this.acl.set(path, new Map(privileges.map((privilege) => [privilege, propagate])))
  }

  /** Changes a storage's definition (content types, shared flag, the nodes it is configured for). */
  updateStorage(id: string, change: Partial<Omit<SimStorage, "id">>): void {
    const storage = this.storages.get(id)
    if (storage === undefined) throw new Error(`no such storage ${id}`)
    this.storages.set(id, { ...storage, ...change })
  }

  /** Removes interface `iface` (a bridge, say) from `node`'s network config. */
  removeInterface(node: string, iface: string): void {
    const list = this.networks.get(node)
    if (list === undefined) throw new Error(`no such node ${node}`)
    this.networks.set(node, list.filter((entry) => entry.iface !== iface))
  }

  /** Creates template `name` at `vmid` on `node`, its disks on `storage` (as vm-template-setup.sh would). */
  addTemplate(vmid: number, node: string, name: string, storage = "local-lvm"): void {
    if (this.vms.has(vmid)) throw new Error(`VM ${vmid} exists`)
    if (!this.nodes.has(node)) throw new Error(`no such node ${node}`)
    createTemplate(this.core, vmid, node, name, storage)
  }

  /** Deletes a template VM and its disks (as `qm destroy` of a template would). */
  destroyTemplate(vmid: number): void {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.config.get("template") !== "1") throw new Error(`VM ${vmid} is not a template`)
    this.vms.delete(vmid)
    for (const [key, volume] of this.volumes) if (volume.vmid === vmid) this.volumes.delete(key)
  }

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

  /**
   * The node reboots (model/reboot.ts): its running tasks die where they are — a clone leaves its `lock: clone`
   * placeholder and partial disks —, its VMs stop, it is offline for `downMs`, then back with the `onboot` VMs started.
   */
  rebootNode(node: string, downMs: number): void {
    rebootNode(this.core, node, downMs)
  }

  /** The guest of a running VM dies (a crash, an OOM kill): PVE then reports it stopped. */
  crashVm(vmid: number): void {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.status !== "running") throw new Error(`VM ${vmid} is not running`)
    markStopped(vm)
    this.core.log(`VM ${vmid} on ${vm.node} crashed (simulated)`)
  }

  /** Another user's VM appearing at `vmid` (the losing side of a nextid race). */
  createForeignVm(node: string, vmid: number): void {
    createForeignVm(this.core, node, vmid)
  }

  /**
   * Puts a running VM in place at once, without tasks, locks or a boot — a linked clone of the node's first
   * template with `vm`'s name, tags, notes and size, its ISO attached and present. For benches that start a
   * leader on a seeded world (a synthetic event log and the VMs it says exist): cloning 10k VMs through the
   * API would take longer than the bench measures. Call `refreshResources()` after the last one.
   */
  seedRunningVm(vm: SeededVm): void {
    if (this.vms.has(vm.vmid)) throw new Error(`VM ${vm.vmid} exists`)
    if (!this.nodes.has(vm.node)) throw new Error(`no such node ${vm.node}`)
    const template = [...this.vms.values()].find((other) => other.node === vm.node && other.config.get("template") === "1")
    if (template === undefined) throw new Error(`no template on ${vm.node}`)
    const base = `local-lvm:base-${template.vmid}-disk-0`
    const disk = `${base}/vm-${vm.vmid}-disk-0`
    this.core.addVolume(vm.node, { volid: disk, storage: "local-lvm", content: "images", format: "raw", size: 2 * GiB, vmid: vm.vmid, parent: base })
    if (vm.isoVolid !== undefined && this.core.volume(vm.node, vm.isoVolid) === undefined) {
      const storage = vm.isoVolid.slice(0, vm.isoVolid.indexOf(":"))
      this.core.addVolume(vm.node, { volid: vm.isoVolid, storage, content: "iso", format: "iso", size: 368 * KiB })
    }
    const config = new Map<string, string>([
      ["agent", "1"],
      ["boot", "order=scsi0"],
      ["cores", String(vm.cores)],
      ["cpu", "x86-64-v2-AES"],
      ["description", vm.description],
      ["memory", String(vm.memoryMiB)],
      ["meta", `creation-qemu=9.2.0,ctime=${Math.floor(this.core.startedAt / 1000)}`],
      ["name", vm.name],
      ["net0", `virtio=${this.core.mac()},bridge=vmbr0`],
      ["ostype", "l26"],
      ["scsi0", `${disk},size=2G`],
      ["scsihw", "virtio-scsi-single"],
      ["serial0", "socket"],
      ["smbios1", `uuid=${this.core.uuid()}`],
      ["tags", normaliseTags(vm.tags)],
      ["vga", "serial0"],
      ["vmgenid", this.core.uuid()]
    ])
    if (vm.isoVolid !== undefined) config.set("ide2", `${vm.isoVolid},media=cdrom`)
    const now = this.time.now()
    this.vms.set(vm.vmid, {
      vmid: vm.vmid, node: vm.node, config: sortConfig(config), status: "running", paused: false,
      startedAt: now, pid: 100_000 + this.core.options.prng.int(0, 899_999), createdAt: now
    })
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
