/**
 * The simulated Proxmox VE cluster: nodes, VMs, storages, volumes, tasks and locks, with the semantics of
 * qemu-server / pve-manager / pve-storage 9.x (which checks run in the API handler and answer 500, which
 * run in the forked worker and end as the task's exit status; per-node config locks; the storage lock
 * held through a full clone's copy; templates and linked clones; a lagging /cluster/resources) and PVE's
 * response shapes. It knows nothing about HTTP: each endpoint maps checked parameters to the `data` PVE
 * would answer, or a `PveHttpError`.
 */
import { createHash } from "node:crypto"
import { Data, Option } from "effect"
import type { FaultController } from "./faults.js"
import { type GuestHook, readSeed } from "./guest.js"
import { type LatencyModel, PVE_SECONDS, scaled } from "./latency.js"
import { FileLock, LockTimeout, realTime, type SimTime, WorkerPool } from "./locks.js"
import type { Prng } from "./prng.js"
import type { ParamSpec, Params } from "./schema.js"
import { formatUpid, type ParsedUpid, parseUpid } from "../domain/pve/upid.js"

export class PveHttpError extends Data.TaggedError("PveHttpError")<{
  readonly status: number
  readonly message: string
  readonly errors?: Readonly<Record<string, string>>
}> {}

const fail = (message: string, status = 500) => new PveHttpError({ status, message })
const paramError = (errors: Readonly<Record<string, string>>) =>
  new PveHttpError({ status: 400, message: "Parameter verification failed.", errors })

const KiB = 1024
/** Storage types backed by a file system, which take uploads (pve-storage's `path`-based plugins). */
const FILE_STORAGE_TYPES = new Set(["dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs"])
const MAX_TASKS = 50_000
const MAX_REQUESTS = 200_000
const MiB = 1024 * KiB
const GiB = 1024 * MiB

// ---------------------------------------------------------------------------------------------------------
// State

export interface SimNode {
  readonly name: string
  readonly nodeid: number
  readonly ip: string
  online: boolean
  readonly maxcpu: number
  readonly maxmem: number
  readonly baseMem: number
  readonly baseCpu: number
  readonly bootedAt: number
}

export interface SimStorage {
  readonly id: string
  readonly type: "dir" | "lvmthin" | "rbd" | "cephfs"
  readonly content: ReadonlyArray<string>
  readonly shared: boolean
  readonly total: number
}

export interface SimVolume {
  readonly volid: string
  readonly storage: string
  /** Node the volume lives on; undefined on shared storage. */
  readonly node: string | undefined
  readonly content: string
  readonly format: string
  size: number
  readonly vmid?: number
  /** Base volume of a linked clone. */
  readonly parent?: string
  readonly data?: Uint8Array
  readonly ctime: number
}

export interface SimVm {
  readonly vmid: number
  node: string
  /** The VM's config file in order, values as PVE writes them. */
  config: Map<string, string>
  status: "running" | "stopped"
  paused: boolean
  startedAt: number | undefined
  pid: number | undefined
  readonly createdAt: number
}

/** A worker task: the parts of its UPID, plus its run state. */
export interface SimTask extends ParsedUpid {
  readonly upid: string
  status: "running" | "stopped"
  exitstatus: string | undefined
  endtime: number | undefined
  readonly log: Array<string>
  readonly done: Promise<void>
}

export interface RequestLogEntry {
  readonly at: number
  readonly method: string
  readonly path: string
  readonly query: string
  readonly status: number
  /** The schema endpoint the call matched, e.g. `POST /nodes/{node}/qemu/{vmid}/clone` (undefined if none). */
  readonly endpoint: string | undefined
  readonly durationMs: number
  /** Time spent waiting for a pveproxy worker. */
  readonly queuedMs: number
}

export interface BootRecord {
  readonly at: number
  readonly node: string
  readonly vmid: number
  readonly name: string
  readonly outcome: "booted" | "failed"
  readonly instanceId?: string
  readonly reason?: string
}

export interface ModelOptions {
  readonly nodes: number
  readonly prng: Prng
  readonly latency: LatencyModel
  readonly faults: () => FaultController
  readonly guestHook?: GuestHook | undefined
  readonly sharedStorage?: boolean | undefined
  /** Memory of each node in GiB (default 64). */
  readonly nodeMemoryGiB?: number | undefined
  /** Parameter specs of `POST …/config`, used to type config values in GET answers (integers as numbers). */
  readonly configSpecs: Readonly<Record<string, ParamSpec>>
  readonly log?: ((line: string) => void) | undefined
  /**
   * The clock and timers of the simulated cluster (task durations, lock timeouts, boots, the resources lag);
   * default: `Date.now` and real timers.
   */
  readonly time?: { now(): number; sleep(ms: number): Promise<void> } | undefined
}

export interface CallContext {
  readonly user: string
}

type Handler = (params: Params, ctx: CallContext) => Promise<unknown>

// ---------------------------------------------------------------------------------------------------------
// Helpers: sizes, property strings, config files

/** PVE's `format_size`: the largest unit that represents the size exactly. */
export const formatSize = (bytes: number): string => {
  const kb = Math.floor(bytes / 1024)
  if (kb * 1024 !== bytes) return String(bytes)
  const mb = Math.floor(kb / 1024)
  if (mb * 1024 !== kb) return `${kb}K`
  const gb = Math.floor(mb / 1024)
  if (gb * 1024 !== mb) return `${mb}M`
  const tb = Math.floor(gb / 1024)
  if (tb * 1024 !== gb) return `${gb}G`
  return `${tb}T`
}

const UNIT: Readonly<Record<string, number>> = { K: KiB, M: MiB, G: GiB, T: 1024 * GiB }

export const parseSize = (text: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?)([KMGT])?$/.exec(text)
  if (m === null) return undefined
  return Math.floor(Number(m[1]) * (m[2] === undefined ? 1 : UNIT[m[2]] ?? 1))
}

/** Splits `file,k=v,…` (drive strings) into the leading volume and the options. */
const parseDrive = (value: string): { readonly file: string; readonly opts: Map<string, string> } => {
  const parts = value.split(",")
  const opts = new Map<string, string>()
  let file = ""
  parts.forEach((part, i) => {
    const eq = part.indexOf("=")
    if (i === 0 && eq < 0) file = part
    else if (eq >= 0 && part.slice(0, eq) === "file") file = part.slice(eq + 1)
    else if (eq >= 0) opts.set(part.slice(0, eq), part.slice(eq + 1))
  })
  return { file, opts }
}

const formatDrive = (file: string, opts: ReadonlyMap<string, string>): string =>
  [file, ...[...opts].map(([k, v]) => `${k}=${v}`)].join(",")

const DRIVE_KEY = /^(?:ide[0-3]|sata[0-5]|scsi\d+|virtio\d+|efidisk0|tpmstate0|unused\d+)$/

const isCdrom = (value: string) => parseDrive(value).opts.get("media") === "cdrom"

const volumeStorage = (volid: string): string | undefined => {
  const colon = volid.indexOf(":")
  return colon > 0 ? volid.slice(0, colon) : undefined
}

const memoryMiB = (config: ReadonlyMap<string, string>): number => {
  const raw = config.get("memory") ?? "512"
  const m = /^(?:current=)?(\d+)/.exec(raw)
  return m === null ? 512 : Number(m[1])
}

const coresOf = (config: ReadonlyMap<string, string>): number =>
  Number(config.get("cores") ?? "1") * Number(config.get("sockets") ?? "1")

/** Tag lists are stored `;`-joined, de-duplicated, empty entries dropped (PVE ≥ 7.3). */
const normaliseTags = (value: string): string => {
  const seen: Array<string> = []
  for (const tag of value.split(/[;, ]/)) if (tag !== "" && !seen.includes(tag)) seen.push(tag)
  return seen.join(";")
}

const configDigest = (config: ReadonlyMap<string, string>): string =>
  createHash("sha1").update([...config].map(([k, v]) => `${k}: ${v}\n`).join("")).digest("hex")

// ---------------------------------------------------------------------------------------------------------

interface ResourcesSnapshot {
  readonly at: number
  readonly items: ReadonlyArray<Readonly<Record<string, unknown>>>
}

export class SimModel {
  readonly nodes = new Map<string, SimNode>()
  readonly storages = new Map<string, SimStorage>()
  readonly vms = new Map<number, SimVm>()
  /** Keyed by `<node>/<volid>` for local storage and by `*` + `/<volid>` for shared storage. */
  readonly volumes = new Map<string, SimVolume>()
  readonly tasks = new Map<string, SimTask>()
  readonly requests: Array<RequestLogEntry> = []
  readonly boots: Array<BootRecord> = []
  /** pveproxy's worker pool: every API call holds one of these while it runs. */
  readonly workers = new WorkerPool(3)
  readonly startedAt: number
  /** The time source: `options.time`, else real time. */
  readonly time: SimTime

  private readonly vmLocks = new Map<string, FileLock>()
  private readonly storageLocks = new Map<string, FileLock>()
  private nextPid = 0x1000
  private snapshot: ResourcesSnapshot | undefined
  private readonly pending = new Set<Promise<unknown>>()
  private closed = false

  constructor(private readonly options: ModelOptions) {
    this.time = options.time ?? realTime
    this.startedAt = this.time.now()
    const prng = options.prng
    for (let i = 1; i <= options.nodes; i++) {
      const name = `pve${i}`
      this.nodes.set(name, {
        name, nodeid: i, ip: `10.10.0.${10 + i}`, online: true,
        maxcpu: 16, maxmem: (options.nodeMemoryGiB ?? 64) * GiB,
        baseMem: Math.round(prng.between(2, 6) * GiB), baseCpu: prng.between(0.01, 0.05),
        bootedAt: this.startedAt - prng.int(2, 40) * 86_400_000
      })
    }
    this.storages.set("local", { id: "local", type: "dir", content: ["iso", "vztmpl", "backup"], shared: false, total: 100 * GiB })
    this.storages.set("local-lvm", { id: "local-lvm", type: "lvmthin", content: ["images", "rootdir"], shared: false, total: 800 * GiB })
    if (options.sharedStorage === true) {
      this.storages.set("ceph-vm", { id: "ceph-vm", type: "rbd", content: ["images", "rootdir"], shared: true, total: 4096 * GiB })
      this.storages.set("cephfs", { id: "cephfs", type: "cephfs", content: ["iso", "vztmpl", "backup"], shared: true, total: 1024 * GiB })
    }
    let index = 0
    for (const node of this.nodes.values()) {
      this.createTemplate(9000 + index, node.name, "debian-13-template", "local-lvm")
      index++
    }
    if (options.sharedStorage === true) {
      const first = [...this.nodes.keys()][0]
      if (first !== undefined) this.createTemplate(9100, first, "debian-13-shared", "ceph-vm")
    }
  }

  private log(line: string) {
    this.options.log?.(line)
  }

  private get faults(): FaultController {
    return this.options.faults()
  }

  private ms(seconds: number): number {
    return scaled(this.options.latency, seconds)
  }

  private jittered(seconds: number): number {
    const j = this.options.latency.jitter
    return this.ms(seconds) * (1 + this.options.prng.between(-j, j))
  }

  /** Tracks background work so `close` can wait for it and tests can `settle()`. */
  private track<A>(promise: Promise<A>): Promise<A> {
    this.pending.add(promise)
    void promise.finally(() => this.pending.delete(promise)).catch(() => undefined)
    return promise
  }

  // ---- identifiers ----

  private mac(): string {
    const p = this.options.prng
    const b = () => p.int(0, 255).toString(16).toUpperCase().padStart(2, "0")
    return `BC:24:11:${b()}:${b()}:${b()}`
  }

  private uuid(): string {
    const p = this.options.prng
    const hex = (n: number) => Array.from({ length: n }, () => p.int(0, 15).toString(16)).join("")
    return `${hex(8)}-${hex(4)}-4${hex(3)}-${(8 + p.int(0, 3)).toString(16)}${hex(3)}-${hex(12)}`
  }

  // ---- volumes ----

  private storage(id: string): SimStorage {
    const s = this.storages.get(id)
    if (s === undefined) throw fail(`storage '${id}' does not exist`)
    return s
  }

  private volumeKey(node: string, volid: string): string {
    const storageId = volumeStorage(volid)
    const shared = storageId !== undefined && this.storages.get(storageId)?.shared === true
    return `${shared ? "*" : node}/${volid}`
  }

  volume(node: string, volid: string): SimVolume | undefined {
    return this.volumes.get(this.volumeKey(node, volid))
  }

  private addVolume(node: string, v: Omit<SimVolume, "node" | "ctime">): SimVolume {
    const shared = this.storages.get(v.storage)?.shared === true
    const volume: SimVolume = { ...v, node: shared ? undefined : node, ctime: Math.floor(this.time.now() / 1000) }
    this.volumes.set(this.volumeKey(node, v.volid), volume)
    return volume
  }

  private removeVolume(node: string, volid: string): void {
    this.volumes.delete(this.volumeKey(node, volid))
  }

  private volumesOn(node: string, storageId: string): Array<SimVolume> {
    const shared = this.storages.get(storageId)?.shared === true
    return [...this.volumes.values()].filter((v) => v.storage === storageId && (shared || v.node === node))
  }

  private storageLock(node: string, storageId: string): FileLock {
    const key = this.storages.get(storageId)?.shared === true ? storageId : `${node}/${storageId}`
    let lock = this.storageLocks.get(key)
    if (lock === undefined) {
      lock = new FileLock(`/var/lock/pve-manager/pve-storage-${storageId}`, this.options.time === undefined ? undefined : this.time)
      this.storageLocks.set(key, lock)
    }
    return lock
  }

  /** Config locks are flock files in each node's /var/lock, so they are per node, not cluster-wide. */
  vmLock(node: string, vmid: number): FileLock {
    const key = `${node}/${vmid}`
    let lock = this.vmLocks.get(key)
    if (lock === undefined) {
      lock = new FileLock(`/var/lock/qemu-server/lock-${vmid}.conf`, this.options.time === undefined ? undefined : this.time)
      this.vmLocks.set(key, lock)
    }
    return lock
  }

  // ---- VMs ----

  private createTemplate(vmid: number, node: string, name: string, storageId: string): void {
    const disk = `${storageId}:base-${vmid}-disk-0`
    const cloudinit = `${storageId}:vm-${vmid}-cloudinit`
    this.addVolume(node, { volid: disk, storage: storageId, content: "images", format: "raw", size: 2 * GiB, vmid })
    this.addVolume(node, { volid: cloudinit, storage: storageId, content: "images", format: "raw", size: 4 * MiB, vmid })
    const config = new Map<string, string>([
      ["agent", "1"],
      ["boot", "order=scsi0"],
      ["cores", "2"],
      ["cpu", "x86-64-v2-AES"],
      ["ide2", `${cloudinit},media=cdrom`],
      ["memory", "2048"],
      ["meta", `creation-qemu=9.2.0,ctime=${Math.floor(this.startedAt / 1000) - 86_400}`],
      ["name", name],
      ["net0", `virtio=${this.mac()},bridge=vmbr0`],
      ["ostype", "l26"],
      ["scsi0", `${disk},size=2G`],
      ["scsihw", "virtio-scsi-single"],
      ["serial0", "socket"],
      ["smbios1", `uuid=${this.uuid()}`],
      ["template", "1"],
      ["vga", "serial0"],
      ["vmgenid", this.uuid()]
    ])
    this.vms.set(vmid, { vmid, node, config, status: "stopped", paused: false, startedAt: undefined, pid: undefined, createdAt: 0 })
  }

  private vmOn(node: string, vmid: number): SimVm {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.node !== node) {
      throw fail(`Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist`)
    }
    return vm
  }

  private checkLock(vm: SimVm): void {
    const lock = vm.config.get("lock")
    if (lock !== undefined) throw fail(`VM is locked (${lock})`)
  }

  private isTemplate(vm: SimVm): boolean {
    return vm.config.get("template") === "1"
  }

  private runningVms(node: string): Array<SimVm> {
    return [...this.vms.values()].filter((vm) => vm.node === node && vm.status === "running")
  }

  /** Node memory and CPU as the VMs on it make them. */
  nodeUsage(node: SimNode): { readonly mem: number; readonly cpu: number } {
    const running = this.runningVms(node.name)
    const mem = node.baseMem + running.reduce((sum, vm) => sum + memoryMiB(vm.config) * MiB, 0)
    const cpu = Math.min(1, node.baseCpu + running.reduce((sum, vm) => sum + (vm.paused ? 0 : coresOf(vm.config) * 0.03), 0) / node.maxcpu)
    return { mem: Math.min(mem, node.maxmem), cpu }
  }

  private vmDiskSize(vm: SimVm): number {
    for (const [key, value] of vm.config) {
      if (!/^(?:scsi|virtio|sata|ide)\d+$/.test(key) || isCdrom(value)) continue
      const size = parseSize(parseDrive(value).opts.get("size") ?? "")
      if (size !== undefined) return size
    }
    return 0
  }

  private vmUptime(vm: SimVm): number {
    return vm.status === "running" && vm.startedAt !== undefined ? Math.floor((this.time.now() - vm.startedAt) / 1000) : 0
  }

  // Deterministic per VM: drawing from the PRNG here would make status polling shift later random draws.
  private vmCpu(vm: SimVm): number {
    return vm.status === "running" && !vm.paused ? 0.02 + ((vm.vmid * 7919) % 30) / 1000 : 0
  }

  /** Fields common to `/nodes/{node}/qemu` items and `status/current` (PVE's vmstatus). */
  private vmStatus(vm: SimVm): Record<string, unknown> {
    const maxmem = memoryMiB(vm.config) * MiB
    const running = vm.status === "running"
    const out: Record<string, unknown> = {
      vmid: vm.vmid,
      status: vm.status,
      name: vm.config.get("name") ?? `VM ${vm.vmid}`,
      cpus: Math.min(coresOf(vm.config), this.nodes.get(vm.node)?.maxcpu ?? 1),
      maxmem,
      mem: running ? Math.round(maxmem * 0.4) : 0,
      maxdisk: this.vmDiskSize(vm),
      disk: 0,
      cpu: this.vmCpu(vm),
      uptime: this.vmUptime(vm),
      netin: running ? 1500 : 0,
      netout: running ? 300 : 0,
      diskread: 0,
      diskwrite: 0
    }
    const tags = vm.config.get("tags")
    if (tags !== undefined) out["tags"] = tags
    const lock = vm.config.get("lock")
    if (lock !== undefined) out["lock"] = lock
    if (this.isTemplate(vm)) out["template"] = 1
    if (running && vm.pid !== undefined) out["pid"] = vm.pid
    if (vm.config.get("serial0") !== undefined) out["serial"] = 1
    return out
  }

  /** A config value typed as PVE's GET answers it: integer/boolean/number keys as JSON numbers. */
  private typedConfigValue(key: string, value: string): unknown {
    const spec = this.options.configSpecs[key] ?? this.options.configSpecs[key.replace(/\d+$/, "[n]")]
    if (spec !== undefined && (spec.type === "integer" || spec.type === "boolean" || spec.type === "number")) {
      const n = Number(value)
      return Number.isFinite(n) ? n : value
    }
    return value
  }

  // ---- tasks ----

  private startTask(node: string, type: string, id: string, user: string, vmid: number | undefined,
    body: (task: TaskRun) => Promise<void>): SimTask {
    const starttime = Math.floor(this.time.now() / 1000)
    const pid = this.nextPid++
    const nodeInfo = this.nodes.get(node)
    const pstart = Math.floor((this.time.now() - (nodeInfo?.bootedAt ?? this.startedAt)) / 10) & 0x7fffffff
    const upid = formatUpid({ node, pid, pstart, starttime, type, id, user })
    const faults = this.faults
    const failure = faults.taskFailure(type, vmid)
    // A clone has three steps (setup, cloud-init drive, disk copy): failing at any of them exercises the
    // clean-up of what the earlier ones made. Other tasks commit after their only step, so fail there.
    const failAt = failure !== undefined && type === "qmclone" ? this.options.prng.int(1, 3) : 1
    let steps = 0
    const run: TaskRun = {
      slow: faults.taskSlowFactor(type, vmid),
      failure,
      warnings: faults.taskWarningCount(type, vmid),
      log: [],
      step: async (ms: number) => {
        await this.time.sleep(ms * run.slow)
        steps++
        if (run.failure !== undefined && steps >= failAt) {
          const message = run.failure
          run.failure = undefined
          throw new TaskFailed({ message })
        }
      }
    }
    let finish: () => void = () => undefined
    const done = new Promise<void>((resolve) => { finish = resolve })
    const task: SimTask = {
      upid, node, pid, pstart, starttime, type, id, user, status: "running", exitstatus: undefined, endtime: undefined,
      log: run.log, done
    }
    this.tasks.set(upid, task)
    this.pruneTasks()
    this.track((async () => {
      try {
        await body(run)
        // An injected failure that no step consumed still fails the task, at its end.
        if (run.failure !== undefined) throw new TaskFailed({ message: run.failure })
        task.exitstatus = run.warnings > 0 ? `WARNINGS: ${run.warnings}` : "OK"
        run.log.push(task.exitstatus === "OK" ? "TASK OK" : `TASK ${task.exitstatus}`)
      } catch (error) {
        const message = error instanceof Error ? error.message.split("\n")[0] ?? "unknown error" : String(error)
        task.exitstatus = message
        run.log.push(`TASK ERROR: ${message}`)
        this.log(`task ${type} ${id} on ${node} failed: ${message}`)
      } finally {
        task.status = "stopped"
        task.endtime = Math.floor(this.time.now() / 1000)
        finish()
      }
    })())
    return task
  }

  /** Long demo runs must not grow without bound: forget the oldest finished tasks beyond a cap. */
  private pruneTasks(): void {
    if (this.tasks.size <= MAX_TASKS) return
    for (const [upid, task] of this.tasks) {
      if (this.tasks.size <= MAX_TASKS * 0.9) break
      if (task.status === "stopped") this.tasks.delete(upid)
    }
  }

  /** Appends to the request log, dropping the oldest half once it reaches its cap. */
  logRequest(entry: RequestLogEntry): void {
    if (this.requests.length >= MAX_REQUESTS) this.requests.splice(0, MAX_REQUESTS / 2)
    this.requests.push(entry)
  }

  /** Waits for a lock inside a task: a timeout fails the task with PVE's message. */
  private async lockInTask(lock: FileLock, timeoutSeconds: number, shared = false): Promise<() => void> {
    return lock.acquire(this.ms(timeoutSeconds), shared)
  }

  /** Waits for a lock inside an API handler (holding a worker): a timeout is a 500. */
  private async lockInHandler(lock: FileLock, timeoutSeconds: number, shared = false): Promise<() => void> {
    try {
      return await lock.acquire(this.ms(timeoutSeconds), shared)
    } catch (error) {
      if (error instanceof LockTimeout) throw fail(error.message)
      throw error
    }
  }

  // ---- /cluster/resources with pvestatd's refresh lag ----

  /** Rebuilds the resources view now (tests use this instead of waiting a refresh interval). */
  refreshResources(): void {
    this.snapshot = { at: this.time.now(), items: this.buildResources(this.time.now()) }
  }

  private resources(): ReadonlyArray<Readonly<Record<string, unknown>>> {
    const interval = this.ms(PVE_SECONDS.resourcesRefresh)
    const now = this.time.now()
    // Refresh ticks sit on a fixed grid from start-up, like pvestatd's loop; state changed since the last
    // tick becomes visible at the next one, never earlier.
    const tick = this.startedAt + Math.floor((now - this.startedAt) / interval) * interval
    if (this.snapshot === undefined || this.snapshot.at < tick) {
      this.snapshot = { at: tick, items: this.buildResources(tick) }
    }
    // Online/offline comes from corosync membership, which is immediate.
    return this.snapshot.items.map((item) => {
      const node = typeof item["node"] === "string" ? this.nodes.get(item["node"]) : undefined
      if (node === undefined || node.online) return item
      if (item["type"] === "node") return { ...item, status: "offline", cpu: 0, mem: 0, uptime: 0 }
      return { ...item, status: "unknown" }
    })
  }

  private buildResources(asOf: number): Array<Record<string, unknown>> {
    const items: Array<Record<string, unknown>> = []
    for (const node of this.nodes.values()) {
      const usage = this.nodeUsage(node)
      items.push({
        id: `node/${node.name}`, type: "node", node: node.name, status: "online",
        cpu: usage.cpu, maxcpu: node.maxcpu, mem: usage.mem, maxmem: node.maxmem,
        disk: 8 * GiB, maxdisk: 100 * GiB, uptime: Math.floor((this.time.now() - node.bootedAt) / 1000),
        level: "", "cgroup-mode": 2
      })
    }
    for (const vm of this.vms.values()) {
      if (vm.createdAt > asOf) continue
      const st = this.vmStatus(vm)
      const item: Record<string, unknown> = {
        id: `qemu/${vm.vmid}`, type: "qemu", vmid: vm.vmid, node: vm.node, status: vm.status,
        name: st["name"] ?? "", template: this.isTemplate(vm) ? 1 : 0,
        cpu: st["cpu"], maxcpu: st["cpus"], mem: st["mem"], maxmem: st["maxmem"], disk: 0, maxdisk: st["maxdisk"],
        uptime: st["uptime"], netin: st["netin"], netout: st["netout"], diskread: 0, diskwrite: 0
      }
      if (st["tags"] !== undefined) item["tags"] = st["tags"]
      if (st["lock"] !== undefined) item["lock"] = st["lock"]
      const pool = vm.config.get("pool")
      if (pool !== undefined) item["pool"] = pool
      items.push(item)
    }
    for (const node of this.nodes.values()) {
      for (const s of this.storages.values()) {
        const used = this.volumesOn(node.name, s.id).reduce((sum, v) => sum + v.size, 0)
        items.push({
          id: `storage/${node.name}/${s.id}`, type: "storage", storage: s.id, node: node.name, status: "available",
          content: s.content.join(","), plugintype: s.type, shared: s.shared ? 1 : 0, disk: used, maxdisk: s.total
        })
      }
    }
    return items
  }

  // ---- guest boot ----

  private boot(vm: SimVm): void {
    const name = vm.config.get("name") ?? ""
    const record = (r: Omit<BootRecord, "at" | "node" | "vmid" | "name">) => {
      this.boots.push({ at: this.time.now(), node: vm.node, vmid: vm.vmid, name, ...r })
      if (r.outcome === "failed") this.log(`VM ${vm.vmid} (${name}) boot failed: ${r.reason ?? ""}`)
    }
    const ide2 = vm.config.get("ide2")
    const file = ide2 === undefined ? undefined : parseDrive(ide2).file
    if (file === undefined || file === "none" || file === "cdrom") {
      record({ outcome: "failed", reason: "no cloud-init ISO attached (ide2 empty)" })
      return
    }
    const volume = this.volume(vm.node, file)
    if (volume === undefined || volume.content !== "iso" || volume.data === undefined) {
      record({ outcome: "failed", reason: `ide2 ${file} is not an uploaded ISO (PVE-generated cloud-init drives carry no nstance seed)` })
      return
    }
    const seed = readSeed(volume.data)
    if (seed._tag === "Unreadable") {
      record({ outcome: "failed", reason: seed.reason })
      return
    }
    const hook = this.options.guestHook
    const boot = {
      node: vm.node, vmid: vm.vmid, name, instanceId: seed.instanceId, metaData: seed.metaData,
      userData: seed.userData, volumeId: seed.volumeId,
      ...(seed.networkConfig === undefined ? {} : { networkConfig: seed.networkConfig })
    }
    if (hook === undefined) {
      record({ outcome: "booted", instanceId: seed.instanceId })
      return
    }
    this.track((async () => {
      try {
        await hook(boot)
        record({ outcome: "booted", instanceId: seed.instanceId })
      } catch (error) {
        record({ outcome: "failed", instanceId: seed.instanceId, reason: `guest hook failed: ${error instanceof Error ? error.message : String(error)}` })
      }
    })())
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
    this.log(`VM ${vmid} on ${vm.node} crashed (simulated)`)
  }

  /** Another user's VM appearing at `vmid` (the losing side of a nextid race). */
  createForeignVm(node: string, vmid: number): void {
    if (this.vms.has(vmid)) return
    this.vms.set(vmid, {
      vmid, node, status: "stopped", paused: false, startedAt: undefined, pid: undefined, createdAt: this.time.now(),
      config: new Map([["cores", "1"], ["memory", "512"], ["name", `foreign-${vmid}`]])
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
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  /** Lets running tasks and boots finish, but never waits longer than `maxWaitMs` (realistic tasks take seconds). */
  async close(maxWaitMs = 2_000): Promise<void> {
    this.closed = true
    let timer: ReturnType<typeof setTimeout> | undefined
    // The timer is cleared (not just outraced) so it cannot keep a stopping process alive.
    await Promise.race([this.settle(), new Promise<void>((resolve) => { timer = setTimeout(resolve, maxWaitMs) })])
    clearTimeout(timer)
  }

  get isClosed(): boolean {
    return this.closed
  }

  lowestFreeVmid(): number {
    let id = 100
    while (this.vms.has(id)) id++
    return id
  }

  // ---------------------------------------------------------------------------------------------------------
  // Endpoints, keyed like the schema: "<METHOD> <path template>"

  readonly routes: Readonly<Record<string, Handler>> = {
    "GET /version": async () => ({ version: "9.0.10", release: "9.0", repoid: "deadbeef" }),

    "GET /access/permissions": async (p) => {
      const all = Object.fromEntries([
        "Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.PowerMgmt", "VM.Config.CPU", "VM.Config.Memory",
        "VM.Config.Network", "VM.Config.Disk", "VM.Config.CDROM", "VM.Config.Options", "VM.Config.Cloudinit",
        "Datastore.Audit", "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "SDN.Use"
      ].map((k) => [k, 1]))
      const path = p["path"]
      return path === undefined ? { "/": all } : path === "/" || path.startsWith("/") ? { [path]: all } : {}
    },

    "GET /cluster/status": async () => {
      const nodes = [...this.nodes.values()]
      const online = nodes.filter((n) => n.online).length
      return [
        { type: "cluster", id: "cluster", name: "sim", nodes: nodes.length, quorate: online * 2 > nodes.length ? 1 : 0, version: nodes.length + 2 },
        ...nodes.map((n, i) => ({
          type: "node", id: `node/${n.name}`, name: n.name, nodeid: n.nodeid, ip: n.ip, online: n.online ? 1 : 0,
          local: i === 0 ? 1 : 0, level: ""
        }))
      ]
    },

    "GET /cluster/resources": async (p) => {
      const type = p["type"]
      const items = this.resources()
      if (type === undefined) return items
      const wanted = type === "vm" ? ["qemu", "lxc"] : [type]
      return items.filter((item) => typeof item["type"] === "string" && wanted.includes(item["type"]))
    },

    "GET /cluster/nextid": async (p) => {
      const asked = p["vmid"]
      if (asked !== undefined) {
        const vmid = Number(asked)
        if (this.vms.has(vmid)) throw paramError({ vmid: `VM ${vmid} already exists` })
        return String(vmid)
      }
      const id = this.lowestFreeVmid()
      if (this.faults.nextidRaceFires()) {
        const node = [...this.nodes.values()].find((n) => n.online)?.name ?? "pve1"
        // Another client's clone lands on the same ID a moment after we answered.
        this.faults.recordRace(id)
        setImmediate(() => this.createForeignVm(node, id))
      }
      return String(id)
    },

    "GET /nodes/{node}/status": async (p) => {
      const node = this.onlineNode(p)
      const usage = this.nodeUsage(node)
      return {
        cpu: usage.cpu,
        cpuinfo: { cores: node.maxcpu / 2, cpus: node.maxcpu, sockets: 1, model: "Simulated CPU @ 3.00GHz", mhz: "3000.000", hvm: "1", flags: "" },
        memory: { total: node.maxmem, used: usage.mem, free: node.maxmem - usage.mem, available: node.maxmem - usage.mem },
        swap: { total: 8 * GiB, used: 0, free: 8 * GiB },
        rootfs: { total: 100 * GiB, used: 8 * GiB, free: 92 * GiB, avail: 92 * GiB },
        ksm: { shared: 0 },
        uptime: Math.floor((this.time.now() - node.bootedAt) / 1000),
        loadavg: [(usage.cpu * node.maxcpu).toFixed(2), "0.50", "0.40"],
        idle: 0,
        wait: 0.001,
        kversion: "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2",
        pveversion: "pve-manager/9.0.10/deadbeef",
        "current-kernel": { sysname: "Linux", release: "6.14.8-2-pve", version: "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2", machine: "x86_64" },
        "boot-info": { mode: "efi", secureboot: 0 }
      }
    },

    "GET /nodes/{node}/qemu": async (p) => {
      const node = this.onlineNode(p)
      return [...this.vms.values()].filter((vm) => vm.node === node.name).map((vm) => this.vmStatus(vm))
    },

    "GET /nodes/{node}/qemu/{vmid}/config": async (p) => {
      const vm = this.vmOn(this.onlineNode(p).name, Number(p["vmid"]))
      const out: Record<string, unknown> = {}
      for (const [key, value] of vm.config) out[key] = this.typedConfigValue(key, value)
      out["digest"] = configDigest(vm.config)
      return out
    },

    "GET /nodes/{node}/qemu/{vmid}/status/current": async (p) => {
      const vm = this.vmOn(this.onlineNode(p).name, Number(p["vmid"]))
      const out: Record<string, unknown> = { ...this.vmStatus(vm), ha: { managed: 0 } }
      if (vm.config.get("agent") !== undefined) out["agent"] = Number(/^(?:enabled=)?([01])/.exec(vm.config.get("agent") ?? "")?.[1] ?? "0")
      // PVE's `status` is only running|stopped; a paused guest shows in qmpstatus (stopped mirrors status).
      out["qmpstatus"] = vm.status === "running" ? (vm.paused ? "paused" : "running") : "stopped"
      if (vm.status === "running") {
        out["running-machine"] = "pc-i440fx-9.2+pve1"
        out["running-qemu"] = "9.2.0"
      }
      return out
    },

    "POST /nodes/{node}/qemu/{vmid}/clone": async (p, ctx) => this.clone(p, ctx),

    "POST /nodes/{node}/qemu/{vmid}/config": async (p, ctx) => this.updateConfig(p, ctx, false),

    "PUT /nodes/{node}/qemu/{vmid}/config": async (p, ctx) => this.updateConfig(p, ctx, true),

    "PUT /nodes/{node}/qemu/{vmid}/resize": async (p, ctx) => this.resize(p, ctx),

    "POST /nodes/{node}/qemu/{vmid}/status/start": async (p, ctx) => this.start(p, ctx),

    "POST /nodes/{node}/qemu/{vmid}/status/stop": async (p, ctx) => this.stop(p, ctx, "qmstop"),

    "POST /nodes/{node}/qemu/{vmid}/status/shutdown": async (p, ctx) => this.stop(p, ctx, "qmshutdown"),

    "DELETE /nodes/{node}/qemu/{vmid}": async (p, ctx) => this.destroy(p, ctx),

    "GET /nodes/{node}/storage": async (p) => {
      const node = this.onlineNode(p)
      const content = p["content"]?.split(/[,;\s]+/).filter((c) => c !== "")
      return [...this.storages.values()]
        .filter((s) => p["storage"] === undefined || s.id === p["storage"])
        .filter((s) => content === undefined || content.some((c) => s.content.includes(c)))
        .map((s) => {
          const used = this.volumesOn(node.name, s.id).reduce((sum, v) => sum + v.size, 0)
          return {
            storage: s.id, type: s.type, content: s.content.join(","), active: 1, enabled: 1, shared: s.shared ? 1 : 0,
            total: s.total, used, avail: s.total - used, used_fraction: used / s.total
          }
        })
    },

    "GET /nodes/{node}/storage/{storage}/content": async (p) => {
      const node = this.onlineNode(p)
      const s = this.storage(p["storage"] ?? "")
      return this.volumesOn(node.name, s.id)
        .filter((v) => p["content"] === undefined || v.content === p["content"])
        .filter((v) => p["vmid"] === undefined || v.vmid === Number(p["vmid"]))
        .map((v) => ({
          volid: v.volid, content: v.content, format: v.format, size: v.size, ctime: v.ctime,
          ...(v.vmid === undefined ? {} : { vmid: v.vmid }),
          ...(v.parent === undefined ? {} : { parent: v.parent }),
          ...(v.content === "images" ? { used: 0 } : {})
        }))
    },

    "GET /nodes/{node}/storage/{storage}/content/{volume}": async (p) => {
      const node = this.onlineNode(p)
      const volid = this.volidOf(p)
      const v = this.volume(node.name, volid)
      if (v === undefined) throw fail(`volume_size_info on '${volid}' failed - no format`)
      const path = v.content === "iso"
        ? `/var/lib/vz/template/iso/${volid.slice(volid.indexOf("/") + 1)}`
        : `/dev/pve/${volid.slice(volid.indexOf(":") + 1)}`
      return { format: v.format, path, size: v.size, used: v.content === "iso" ? v.size : 0, protected: 0 }
    },

    "DELETE /nodes/{node}/storage/{storage}/content/{volume}": async (p, ctx) => {
      const node = this.onlineNode(p)
      const volid = this.volidOf(p)
      const storageId = volumeStorage(volid) ?? ""
      this.storage(storageId)
      const owner = this.volume(node.name, volid)?.vmid
      // PVE does not look before it forks: a missing volume is a warning in the task, not an error.
      const task = this.startTask(node.name, "imgdel", owner === undefined ? storageId : `${owner}@${storageId}`, ctx.user, owner, async (run) => {
        const release = await this.lockInTask(this.storageLock(node.name, storageId), PVE_SECONDS.lockTimeout)
        try {
          await run.step(this.jittered(PVE_SECONDS.deleteVolume))
          const v = this.volume(node.name, volid)
          if (v === undefined) {
            run.log.push(`WARN: disk image '${volid}' does not exist`)
            run.warnings++
          } else {
            if (v.parent === undefined && [...this.volumes.values()].some((other) => other.parent === volid)) {
              throw new TaskFailed({ message: `base volume '${volid}' is still in use by linked cloned` })
            }
            this.removeVolume(node.name, volid)
          }
          run.log.push(`Removed volume '${volid}'`)
        } finally {
          release()
        }
      })
      const delay = p["delay"]
      if (delay === undefined) return task.upid
      // With `delay`, PVE waits that long and answers null if the task finished well (its error if not).
      const finished = await Promise.race([task.done.then(() => true), this.time.sleep(this.ms(Number(delay))).then(() => false)])
      if (!finished) return task.upid
      if (task.exitstatus !== "OK" && !(task.exitstatus ?? "").startsWith("WARNINGS")) throw fail(task.exitstatus ?? "unknown error")
      return null
    },

    "POST /nodes/{node}/storage/{storage}/upload": async (p, ctx) => this.upload(p, ctx),

    "GET /nodes/{node}/tasks/{upid}/status": async (p) => {
      const node = this.onlineNode(p)
      const upid = p["upid"] ?? ""
      // PVE raises these as parameter errors (400), not as 500s.
      if (Option.isNone(parseUpid(upid))) throw paramError({ upid: "unable to parse worker upid" })
      const task = this.tasks.get(upid)
      if (task === undefined || task.node !== node.name) throw paramError({ upid: "no such task" })
      const out: Record<string, unknown> = {
        upid: task.upid, node: task.node, pid: task.pid, pstart: task.pstart, starttime: task.starttime,
        type: task.type, id: task.id, user: task.user, status: task.status
      }
      // A token's task shows its user and token separately, as pve-manager's task API splits them.
      const bang = task.user.indexOf("!")
      if (bang > 0) {
        out["user"] = task.user.slice(0, bang)
        out["tokenid"] = task.user.slice(bang + 1)
      }
      if (task.status === "stopped") out["exitstatus"] = task.exitstatus
      return out
    }
  }

  // ---- endpoint helpers ----

  /** The node a request is for; an offline node answers like pveproxy failing to proxy to it. */
  onlineNode(p: Params): SimNode {
    const name = p["node"] ?? ""
    const node = this.nodes.get(name)
    if (node === undefined) {
      throw fail(`hostname lookup '${name}' failed - failed to get address info for: ${name}: Name or service not known`)
    }
    if (!node.online) throw fail(`No route to host`, 595)
    return node
  }

  private volidOf(p: Params): string {
    const volume = p["volume"] ?? ""
    const storage = p["storage"]
    return volume.includes(":") || storage === undefined ? volume : `${storage}:${volume}`
  }

  /**
   * `POST …/clone` as qemu-server does it: early checks in the handler (500s), then a `qmclone` worker that
   * takes the source lock (shared unless running) and the new VMID's lock with a 1 s timeout, repeats the
   * checks, writes the `lock: clone` placeholder (which fails if the VMID exists on another node), copies
   * or links the disks (a full copy holding the storage lock) and finally writes the config.
   */
  private async clone(p: Params, ctx: CallContext): Promise<string> {
    const node = this.onlineNode(p)
    const vmid = Number(p["vmid"])
    const newid = Number(p["newid"])
    let target = p["target"]
    if (target === node.name || target === "localhost") target = undefined
    // check_running: the first thing the handler does, with its own message for a missing VM.
    if (this.vms.get(vmid)?.node !== node.name) throw fail(`unable to find configuration file for VM ${vmid} on node '${node.name}'`)
    const running = this.vms.get(vmid)?.status === "running"
    this.cloneChecks(node.name, vmid, newid, target, p, running)
    const destNode = target ?? node.name
    const task = this.startTask(node.name, "qmclone", String(vmid), ctx.user, vmid, async (run) => {
      const releaseSource = await this.lockInTask(this.vmLock(node.name, vmid), 1, !running)
      try {
        const releaseTarget = await this.lockInTask(this.vmLock(node.name, newid), 1)
        try {
          const { source, full, drives } = this.cloneChecks(node.name, vmid, newid, target, p, running)
          run.log.push(`creating a clone of VM ${vmid} with ID ${newid}`)
          const elsewhere = this.vms.get(newid)
          if (elsewhere !== undefined) {
            // pmxcfs refuses a second config for a VMID that lives on another node.
            throw new TaskFailed({ message: `close (rename) atomic file '/etc/pve/nodes/${node.name}/qemu-server/${newid}.conf' failed: File exists` })
          }
          const placeholder: SimVm = {
            vmid: newid, node: node.name, status: "stopped", paused: false, startedAt: undefined, pid: undefined,
            createdAt: this.time.now(), config: new Map([["lock", "clone"]])
          }
          this.vms.set(newid, placeholder)
          const created: Array<string> = []
          try {
            await run.step(this.jittered(PVE_SECONDS.cloneSetup))
            const config = new Map<string, string>()
            for (const [key, value] of source.config) {
              if (["template", "lock", "name", "description", "pool"].includes(key) || key.startsWith("unused")) continue
              if (/^net\d+$/.test(key)) {
                // Clones always get fresh MAC addresses.
                config.set(key, value.replace(/^(\w+)=([0-9A-Fa-f:]{17})/, (_m, model: string) => `${model}=${this.mac()}`))
              } else if (key === "smbios1") {
                config.set(key, value.replace(/uuid=[0-9a-f-]+/, `uuid=${this.uuid()}`))
              } else if (key === "vmgenid") {
                config.set(key, this.uuid())
              } else if (!drives.has(key)) {
                config.set(key, value)
              }
            }
            let diskIndex = 0
            for (const key of [...drives.keys()].sort()) {
              const value = drives.get(key) ?? ""
              const drive = parseDrive(value)
              const srcStorage = volumeStorage(drive.file) ?? ""
              const cloudinit = drive.file.includes("cloudinit")
              const destStorage = (full || cloudinit) ? p["storage"] ?? srcStorage : srcStorage
              const size = this.volume(node.name, drive.file)?.size ?? parseSize(drive.opts.get("size") ?? "") ?? 0
              if (cloudinit) {
                // A few MiB allocated in a moment: not worth modelling as storage-lock contention.
                await run.step(this.ms(PVE_SECONDS.storageOp))
                const volid = `${destStorage}:vm-${newid}-cloudinit`
                this.addVolume(node.name, { volid, storage: destStorage, content: "images", format: "raw", size, vmid: newid })
                created.push(volid)
                config.set(key, formatDrive(volid, drive.opts))
                continue
              }
              const release = await this.lockInTask(this.storageLock(node.name, destStorage), PVE_SECONDS.lockTimeout)
              try {
                let volid: string
                if (full) {
                  run.log.push(`drive mirror/copy ${drive.file} -> ${destStorage} (${formatSize(size)})`)
                  // The copy holds the storage lock throughout: not jittered, so the lock-timeout relations hold.
                  await run.step(this.ms(PVE_SECONDS.fullCopyPerGiB * size / GiB))
                  volid = `${destStorage}:vm-${newid}-disk-${diskIndex++}`
                  this.addVolume(node.name, { volid, storage: destStorage, content: "images", format: "raw", size, vmid: newid })
                } else {
                  await run.step(this.ms(PVE_SECONDS.linkedSnapshot))
                  volid = `${srcStorage}:${drive.file.slice(drive.file.indexOf(":") + 1)}/vm-${newid}-disk-${diskIndex++}`
                  this.addVolume(node.name, { volid, storage: srcStorage, content: "images", format: "raw", size, vmid: newid, parent: drive.file })
                }
                created.push(volid)
                config.set(key, formatDrive(volid, drive.opts))
              } finally {
                release()
              }
            }
            config.set("name", p["name"] ?? `Copy-of-VM-${source.config.get("name") ?? vmid}`)
            if (p["description"] !== undefined && p["description"] !== "") config.set("description", p["description"])
            if (p["pool"] !== undefined) config.set("pool", p["pool"])
            placeholder.config = sortConfig(config)
            // With `target` the finished config is renamed into the target node's directory.
            placeholder.node = destNode
            run.log.push(`clone ${vmid} -> ${newid} finished`)
          } catch (error) {
            for (const volid of created) this.removeVolume(node.name, volid)
            this.vms.delete(newid)
            throw new TaskFailed({ message: `clone failed: ${error instanceof Error ? error.message : String(error)}` })
          }
        } finally {
          releaseTarget()
        }
      } finally {
        releaseSource()
      }
    })
    return task.upid
  }

  /** qemu-server's `$load_and_check` for clone: run in the handler and again in the worker. */
  private cloneChecks(node: string, vmid: number, newid: number, target: string | undefined, p: Params, running: boolean):
    { readonly source: SimVm; readonly full: boolean; readonly drives: ReadonlyMap<string, string> } {
    if (target !== undefined && !this.nodes.has(target)) throw fail(`no such cluster node '${target}'`)
    const storageParam = p["storage"]
    if (storageParam !== undefined) {
      const s = this.storage(storageParam)
      if (!s.content.includes("images")) throw paramError({ storage: `storage '${storageParam}' does not support vm images` })
      if (target !== undefined && !s.shared) throw fail(`can't clone to non-shared storage '${storageParam}'`)
    }
    const online = [...this.nodes.values()].filter((n) => n.online).length
    if (online * 2 <= this.nodes.size) throw fail("cluster not ready - no quorum?")
    const source = this.vmOn(node, vmid)
    this.checkLock(source)
    if ((source.status === "running") !== running) throw fail("unexpected state change")
    const full = p["full"] === undefined ? !this.isTemplate(source) : p["full"] === "1"
    if (storageParam !== undefined && !full) throw fail("parameter 'storage' not allowed for linked clones")
    if (p["format"] !== undefined && !full) throw fail("parameter 'format' not allowed for linked clones")
    const drives = new Map<string, string>()
    for (const [key, value] of source.config) {
      if (!DRIVE_KEY.test(key) || key.startsWith("unused")) continue
      const drive = parseDrive(value)
      if (isCdrom(value) && !drive.file.includes("cloudinit")) continue
      drives.set(key, value)
    }
    // A VM can go to another node only when every volume it has (and the target storage) is shared.
    const shared = [...drives.values()].every((value) => this.storages.get(volumeStorage(parseDrive(value).file) ?? "")?.shared === true) &&
      (storageParam === undefined || this.storage(storageParam).shared)
    if (target !== undefined && !shared) throw fail(`can't clone VM to node '${target}' (VM uses local storage)`)
    const existing = this.vms.get(newid)
    if (existing !== undefined && existing.node === node) throw fail(`unable to create VM ${newid}: config file already exists`)
    for (const [key, value] of drives) {
      const file = parseDrive(value).file
      if (!full && !file.includes("cloudinit") && !/:base-\d+-disk-\d+$/.test(file)) {
        throw fail(`Linked clone feature is not supported for '${file}' (${key})`)
      }
    }
    return { source, full, drives }
  }

  /**
   * `POST …/config` (async, `qmconfig` worker) and `PUT …/config` (sync). Early checks run in the handler;
   * the config lock is taken in the worker for POST (a timeout fails the task) and in the handler for PUT
   * (a timeout is a 500 after holding a pveproxy worker for up to 10 s).
   */
  private async updateConfig(p: Params, ctx: CallContext, sync: boolean): Promise<string | null> {
    const node = this.onlineNode(p)
    const vmid = Number(p["vmid"])
    const meta = new Set(["node", "vmid", "digest", "delete", "skiplock", "background_delay", "revert", "force"])
    const settings = Object.entries(p).filter(([key]) => !meta.has(key))
    const deletions = (p["delete"] ?? "").split(/[,;\s]+/).filter((k) => k !== "").map((k) => (k === "cdrom" ? "ide2" : k))
    if (settings.length === 0 && deletions.length === 0 && p["revert"] === undefined) throw fail("no options specified")
    for (const key of deletions) {
      if (p[key] !== undefined) throw paramError({ delete: `you can't use '-${key}' and -delete ${key}' at the same time` })
      if (this.options.configSpecs[key] === undefined && this.options.configSpecs[key.replace(/\d+$/, "[n]")] === undefined) {
        throw paramError({ delete: `unknown option '${key}'` })
      }
    }
    for (const [key, value] of settings) {
      if (!DRIVE_KEY.test(key)) continue
      const drive = parseDrive(value)
      const storageId = volumeStorage(drive.file)
      if (storageId === undefined) continue
      this.storage(storageId)
      const volname = drive.file.slice(drive.file.indexOf(":") + 1)
      if (volname.startsWith("iso/") && drive.opts.get("media") !== "cdrom") {
        throw paramError({ [key]: "explicit 'media=cdrom' is required for iso images" })
      }
    }
    const loadAndCheck = (): SimVm => {
      const vm = this.vmOn(node.name, vmid)
      if (p["digest"] !== undefined && p["digest"] !== configDigest(vm.config)) {
        throw fail("checksum mismatch (file change by other user?)")
      }
      this.checkLock(vm)
      return vm
    }
    loadAndCheck()
    const apply = () => {
      const vm = loadAndCheck()
      const next = new Map(vm.config)
      for (const [key, value] of settings) {
        if (key === "tags") {
          const tags = normaliseTags(value)
          if (tags === "") next.delete(key)
          else next.set(key, tags)
          continue
        }
        const drive = DRIVE_KEY.test(key) ? parseDrive(value) : undefined
        if (drive !== undefined && /^[^:]+:cloudinit$/.test(drive.file)) {
          // `<storage>:cloudinit` asks PVE to allocate the VM's cloud-init drive.
          const storageId = volumeStorage(drive.file) ?? ""
          const volid = `${storageId}:vm-${vmid}-cloudinit`
          if (this.volume(node.name, volid) === undefined) {
            this.addVolume(node.name, { volid, storage: storageId, content: "images", format: "raw", size: 4 * MiB, vmid })
          }
          next.set(key, formatDrive(volid, new Map([["media", "cdrom"]])))
          continue
        }
        next.set(key, value)
      }
      for (const key of deletions) next.delete(key)
      const boot = p["boot"]
      const order = boot === undefined ? undefined : /(?:^|,)order=([^,]+)/.exec(boot)?.[1]
      if (order !== undefined) {
        for (const device of order.split(/[;,\s]+/)) {
          if (!next.has(device)) throw fail(`invalid bootorder: device '${device}' does not exist'`)
        }
      }
      vm.config = sortConfig(next)
    }
    if (sync) {
      const release = await this.lockInHandler(this.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
      try {
        apply()
      } finally {
        release()
      }
      return null
    }
    const task = this.startTask(node.name, "qmconfig", String(vmid), ctx.user, vmid, async (run) => {
      const release = await this.lockInTask(this.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
      try {
        run.log.push(`update VM ${vmid}: ${settings.map(([k, v]) => `-${k} ${v}`).join(" ")}`)
        await run.step(this.jittered(PVE_SECONDS.config))
        try {
          apply()
        } catch (error) {
          throw error instanceof PveHttpError ? new TaskFailed({ message: error.message }) : error
        }
      } finally {
        release()
      }
    })
    return task.upid
  }

  /** Everything of `PUT …/resize` — even the VM lookup — runs in its `resize` worker (qemu-server ≥ 8). */
  private async resize(p: Params, ctx: CallContext): Promise<string> {
    const node = this.onlineNode(p)
    const vmid = Number(p["vmid"])
    const disk = p["disk"] ?? ""
    const sizeText = p["size"] ?? ""
    const task = this.startTask(node.name, "resize", String(vmid), ctx.user, vmid, async (run) => {
      const release = await this.lockInTask(this.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
      try {
        const vm = this.taskVm(node.name, vmid)
        if (p["digest"] !== undefined && p["digest"] !== configDigest(vm.config)) {
          throw new TaskFailed({ message: "checksum mismatch (file change by other user?)" })
        }
        this.checkLockInTask(vm)
        const value = vm.config.get(disk)
        if (value === undefined) throw new TaskFailed({ message: `disk '${disk}' does not exist` })
        if (isCdrom(value)) throw new TaskFailed({ message: "you can't resize a cdrom" })
        const drive = parseDrive(value)
        const volume = this.volume(node.name, drive.file)
        if (volume === undefined) throw new TaskFailed({ message: `Could not determine current size of volume '${drive.file}'` })
        const current = volume.size
        const plus = sizeText.startsWith("+")
        const amount = parseSize(plus ? sizeText.slice(1) : sizeText) ?? 0
        const wanted = plus ? current + amount : amount
        if (wanted < current) throw new TaskFailed({ message: "shrinking disks is not supported" })
        if (wanted === current) return
        const releaseStorage = await this.lockInTask(this.storageLock(node.name, volume.storage), PVE_SECONDS.lockTimeout)
        try {
          await run.step(this.jittered(PVE_SECONDS.resize))
        } finally {
          releaseStorage()
        }
        volume.size = wanted
        drive.opts.set("size", formatSize(wanted))
        vm.config.set(disk, formatDrive(drive.file, drive.opts))
        run.log.push(`resized ${disk} to ${formatSize(wanted)}`)
      } finally {
        release()
      }
    })
    return task.upid
  }

  /** A VM looked up inside a worker: a missing config is the task's error. */
  private taskVm(node: string, vmid: number): SimVm {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.node !== node) {
      throw new TaskFailed({ message: `Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist` })
    }
    return vm
  }

  private checkLockInTask(vm: SimVm): void {
    const lock = vm.config.get("lock")
    if (lock !== undefined) throw new TaskFailed({ message: `VM is locked (${lock})` })
  }

  /** `status/start`: the handler only forks; config checks and the lock are in the `qmstart` worker. */
  private async start(p: Params, ctx: CallContext): Promise<string> {
    const node = this.onlineNode(p)
    const vmid = Number(p["vmid"])
    const task = this.startTask(node.name, "qmstart", String(vmid), ctx.user, vmid, async (run) => {
      const release = await this.lockInTask(this.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
      let booted: SimVm | undefined
      try {
        const vm = this.taskVm(node.name, vmid)
        if (this.isTemplate(vm)) throw new TaskFailed({ message: "you can't start a vm if it's a template" })
        this.checkLockInTask(vm)
        if (vm.status === "running") throw new TaskFailed({ message: `VM ${vmid} already running` })
        for (const [key, value] of vm.config) {
          if (!DRIVE_KEY.test(key) || key.startsWith("unused")) continue
          const file = parseDrive(value).file
          if (volumeStorage(file) !== undefined && this.volume(node.name, file) === undefined) {
            throw new TaskFailed({ message: `volume '${file}' does not exist` })
          }
        }
        await run.step(this.jittered(PVE_SECONDS.start))
        // KVM allocates guest memory lazily, so PVE overcommits; only a guest bigger than the host's RAM
        // plus swap fails to start (the kernel's overcommit heuristic refuses that single allocation).
        if (memoryMiB(vm.config) * MiB > node.maxmem + 8 * GiB) {
          run.log.push("kvm: cannot set up guest memory 'pc.ram': Cannot allocate memory")
          throw new TaskFailed({ message: "start failed: QEMU exited with code 1" })
        }
        vm.status = "running"
        vm.paused = false
        vm.startedAt = this.time.now()
        vm.pid = 100_000 + this.options.prng.int(0, 899_999)
        booted = vm
      } finally {
        release()
      }
      if (booted !== undefined) this.boot(booted)
    })
    return task.upid
  }

  /** `status/stop` and `status/shutdown`: a stopped VM is a no-op success, a missing one a task error. */
  private async stop(p: Params, ctx: CallContext, type: "qmstop" | "qmshutdown"): Promise<string> {
    const node = this.onlineNode(p)
    const vmid = Number(p["vmid"])
    const vm = this.vms.get(vmid)
    let graceful = type === "qmshutdown"
    if (graceful && vm?.node === node.name && vm.status === "running" && vm.paused) {
      // A graceful shutdown of a paused guest would hang; PVE refuses it unless told to force a stop.
      if (p["forceStop"] !== "1") throw fail("VM is paused - cannot shutdown")
      graceful = false
    }
    const task = this.startTask(node.name, type, String(vmid), ctx.user, vmid, async (run) => {
      const release = await this.lockInTask(this.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
      try {
        const current = this.vms.get(vmid)
        if (current === undefined || current.node !== node.name) {
          throw new TaskFailed({ message: `unable to find configuration file for VM ${vmid} on node '${node.name}'` })
        }
        if (current.status !== "running") return
        this.checkLockInTask(current)
        await run.step(this.jittered(graceful ? PVE_SECONDS.shutdown : PVE_SECONDS.stop))
        current.status = "stopped"
        current.paused = false
        current.startedAt = undefined
        current.pid = undefined
      } finally {
        release()
      }
    })
    return task.upid
  }

  /** `DELETE …/qemu/{vmid}`: existence and "running" checked in the handler, the rest in `qmdestroy`. */
  private async destroy(p: Params, ctx: CallContext): Promise<string> {
    const node = this.onlineNode(p)
    const vmid = Number(p["vmid"])
    const vm = this.vmOn(node.name, vmid)
    if (vm.status === "running") throw fail(`VM ${vmid} is running - destroy failed`)
    const unreferenced = p["destroy-unreferenced-disks"] === "1"
    const task = this.startTask(node.name, "qmdestroy", String(vmid), ctx.user, vmid, async (run) => {
      const release = await this.lockInTask(this.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
      try {
        const current = this.taskVm(node.name, vmid)
        if (current.status === "running") throw new TaskFailed({ message: `VM ${vmid} is running - destroy failed` })
        this.checkLockInTask(current)
        const volumes = [...current.config].filter(([key, value]) => DRIVE_KEY.test(key) && !(isCdrom(value) && !value.includes("cloudinit")))
          .map(([, value]) => parseDrive(value).file).filter((file) => volumeStorage(file) !== undefined)
        if (this.isTemplate(current)) {
          for (const file of volumes) {
            if ([...this.volumes.values()].some((v) => v.parent === file)) {
              throw new TaskFailed({ message: `base volume '${file}' is still in use by linked cloned` })
            }
          }
        }
        await run.step(this.jittered(PVE_SECONDS.destroy))
        // Only volumes this VM owns go (a linked clone's base stays with its template; ISOs are not owned).
        const doomed = new Set(volumes.filter((file) => this.volume(node.name, file)?.vmid === vmid))
        if (unreferenced) {
          for (const v of this.volumes.values()) {
            if (v.vmid === vmid && v.content === "images" && (v.node === undefined || v.node === node.name)) doomed.add(v.volid)
          }
        }
        for (const volid of doomed) {
          this.removeVolume(node.name, volid)
          run.log.push(`Removed volume '${volid}'`)
        }
        this.vms.delete(vmid)
        run.log.push(`destroyed VM ${vmid}`)
      } finally {
        release()
      }
    })
    return task.upid
  }

  /** Called by the HTTP layer with the file part already read; `filename` is the part's file name. */
  private async upload(p: Params, ctx: CallContext): Promise<string> {
    const node = this.onlineNode(p)
    const storageId = p["storage"] ?? ""
    const s = this.storage(storageId)
    // Uploads go to a directory, so block storages (lvmthin, rbd) cannot take them at all.
    if (!FILE_STORAGE_TYPES.has(s.type)) throw fail(`can't upload to storage type '${s.type}'`)
    const content = p["content"] ?? ""
    // PVE normalises the name: anything outside [A-Za-z0-9_.-] becomes an underscore.
    const filename = (p["filename"] ?? "").replace(/\n$/, "").replace(/^.*[/\\]/, "").replace(/[^A-Za-z0-9_.-]/g, "_")
    if (content === "iso" && !/[^/]+\.(?:iso|img)$/i.test(filename)) throw paramError({ filename: "wrong file extension" })
    if (content === "vztmpl" && !/[^/]+\.tar\.(?:gz|xz|zst|bz2)$/i.test(filename)) throw paramError({ filename: "wrong file extension" })
    if (content === "import") throw paramError({ filename: "invalid filename or wrong extension" })
    if (!s.content.includes(content)) throw fail(`storage '${storageId}' does not support '${content}' content`)
    const data = this.uploads.get(p["tmpfilename"] ?? "")
    if (data === undefined) throw fail("missing file upload (no 'filename' file part in the multipart body)")
    this.uploads.delete(p["tmpfilename"] ?? "")
    const checksum = p["checksum"]
    const algorithm = p["checksum-algorithm"]
    if ((checksum === undefined) !== (algorithm === undefined)) {
      throw paramError(checksum === undefined ? { checksum: "'checksum-algorithm' requires 'checksum'" } : { "checksum-algorithm": "'checksum' requires 'checksum-algorithm'" })
    }
    const volid = `${storageId}:${content}/${filename}`
    const task = this.startTask(node.name, "imgcopy", "", ctx.user, undefined, async (run) => {
      run.log.push(`starting file import from: /var/tmp/pveupload-${createHash("md5").update(filename).digest("hex")}`)
      if (checksum !== undefined && algorithm !== undefined) {
        const got = createHash(algorithm).update(data).digest("hex")
        if (got.toLowerCase() !== checksum.toLowerCase()) throw new TaskFailed({ message: `checksum mismatch: got '${got}' != expect '${checksum}'` })
        run.log.push("calculating checksum...OK, checksum verified")
      }
      await run.step(this.jittered(PVE_SECONDS.uploadBase + PVE_SECONDS.uploadPerMiB * data.length / MiB))
      this.addVolume(node.name, { volid, storage: storageId, content, format: content === "iso" ? "iso" : "tgz", size: data.length, data })
      run.log.push(`target file: ${volid}`)
      run.log.push("finished file import successfully")
    })
    return task.upid
  }

  /** Upload bodies parked by the HTTP layer under a temp name, like pveproxy's /var/tmp/pveupload-*. */
  readonly uploads = new Map<string, Uint8Array>()
  private uploadCounter = 0

  parkUpload(data: Uint8Array): string {
    const name = `/var/tmp/pveupload-${(++this.uploadCounter).toString(16).padStart(8, "0")}`
    this.uploads.set(name, data)
    return name
  }
}

/** Internal: a task body's view of its own run. */
interface TaskRun {
  readonly slow: number
  failure: string | undefined
  warnings: number
  readonly log: Array<string>
  /** Sleeps `ms` (times the slow factor); an injected failure surfaces at the first step. */
  readonly step: (ms: number) => Promise<void>
}

/** A task's own failure; its message becomes the task's exitstatus. */
class TaskFailed extends Data.TaggedError("TaskFailed")<{ readonly message: string }> {}

/** PVE writes config keys sorted; `lock` stays where PVE keeps it (sorted too). */
const sortConfig = (config: ReadonlyMap<string, string>): Map<string, string> =>
  new Map([...config].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
