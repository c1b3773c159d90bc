/**
 * The simulated cluster's state and the mechanics every endpoint shares: its clock and seeded randomness,
 * background work (`track`/`settle`), the volume table, per-node config and storage locks, the VM lookups
 * PVE does in handlers (500s) and in workers (task errors), and the request log. The endpoints themselves
 * live in the capability modules beside this one; `SimModel` (../model.ts) puts them together.
 */
import type { FaultController } from "../faults.js"
import { scaled } from "../latency.js"
import { FileLock, LockTimeout, realTime, type SimTime, WorkerPool } from "../locks.js"
import type { Params } from "../schema.js"
import { volumeStorage } from "./config.js"
import { removeVolumeFile, volumeFilePath, writeVolumeFile } from "./volumeFiles.js"
import {
  type BootRecord,
  fail,
  type ModelOptions,
  type RequestLogEntry,
  type SimAcl,
  type SimIface,
  type SimNode,
  type SimStorage,
  type SimTask,
  type SimVm,
  type SimVolume,
  TaskFailed
} from "./state.js"

const MAX_REQUESTS = 200_000

export class SimCore {
  readonly nodes = new Map<string, SimNode>()
  readonly storages = new Map<string, SimStorage>()
  readonly vms = new Map<number, SimVm>()
  /** Each node's network interfaces (`GET /nodes/{node}/network`). */
  readonly networks = new Map<string, Array<SimIface>>()
  /** The API token's privileges by ACL path (`GET /access/permissions`). */
  readonly acl: SimAcl = new Map()
  /** What `GET /version` answers. */
  pveVersion = { version: "9.0.10", release: "9.0", repoid: "deadbeef" }
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
  /** Upload bodies parked by the HTTP layer under a temp name, like pveproxy's /var/tmp/pveupload-*. */
  readonly uploads = new Map<string, Uint8Array>()

  private readonly vmLocks = new Map<string, FileLock>()
  private readonly storageLocks = new Map<string, FileLock>()
  private nextPid = 0x1000
  private readonly pending = new Set<Promise<unknown>>()
  private closed = false
  private uploadCounter = 0

  constructor(readonly options: ModelOptions) {
    this.time = options.time ?? realTime
    this.startedAt = this.time.now()
  }

  log(line: string) {
    this.options.log?.(line)
  }

  get faults(): FaultController {
    return this.options.faults()
  }

  ms(seconds: number): number {
    return scaled(this.options.latency, seconds)
  }

  jittered(seconds: number): number {
    const j = this.options.latency.jitter
    return this.ms(seconds) * (1 + this.options.prng.between(-j, j))
  }

  /** Tracks background work so `close` can wait for it and tests can `settle()`. */
  track<A>(promise: Promise<A>): Promise<A> {
    this.pending.add(promise)
    void promise.finally(() => this.pending.delete(promise)).catch(() => undefined)
    return promise
  }

  /** The next worker PID, as the node hands them out. */
  takePid(): number {
    return this.nextPid++
  }

  // ---- identifiers ----

  mac(): string {
    const p = this.options.prng
    const b = () => p.int(0, 255).toString(16).toUpperCase().padStart(2, "0")
    return `BC:24:11:${b()}:${b()}:${b()}`
  }

  uuid(): string {
    const p = this.options.prng
    const hex = (n: number) => Array.from({ length: n }, () => p.int(0, 15).toString(16)).join("")
    return `${hex(8)}-${hex(4)}-4${hex(3)}-${(8 + p.int(0, 3)).toString(16)}${hex(3)}-${hex(12)}`
  }

  // ---- volumes ----

  storage(id: string): SimStorage {
    const s = this.storages.get(id)
    if (s === undefined) throw fail(`storage '${id}' does not exist`)
    return s
  }

  /** Whether storage `id` is configured for `node` (storage.cfg's `nodes`; none listed: every node). */
  storageAvailableOn(node: string, s: SimStorage): boolean {
    return s.nodes === undefined || s.nodes.includes(node)
  }

  /** A storage used on `node`: PVE's `storage_check_enabled` refuses one restricted to other nodes. */
  storageOn(node: string, id: string): SimStorage {
    const s = this.storage(id)
    if (!this.storageAvailableOn(node, s)) throw fail(`storage '${id}' is not available on node '${node}'`)
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

  addVolume(node: string, v: Omit<SimVolume, "node" | "ctime">): SimVolume {
    const shared = this.storages.get(v.storage)?.shared === true
    const volume: SimVolume = { ...v, node: shared ? undefined : node, ctime: Math.floor(this.time.now() / 1000) }
    const file = this.volumeFile(volume)
    if (file !== undefined && volume.data !== undefined) writeVolumeFile(file, volume.data)
    this.volumes.set(this.volumeKey(node, v.volid), volume)
    return volume
  }

  removeVolume(node: string, volid: string): void {
    const key = this.volumeKey(node, volid)
    const volume = this.volumes.get(key)
    this.volumes.delete(key)
    const file = volume === undefined ? undefined : this.volumeFile(volume)
    if (file !== undefined && volume?.data !== undefined) removeVolumeFile(file)
  }

  /** The file under `options.volumesDir` that keeps an uploaded volume's bytes (`volumeFiles.ts`), if any. */
  private volumeFile(volume: SimVolume): string | undefined {
    const dir = this.options.volumesDir
    return dir === undefined ? undefined : volumeFilePath(dir, volume, volume.node)
  }

  volumesOn(node: string, storageId: string): Array<SimVolume> {
    const shared = this.storages.get(storageId)?.shared === true
    return [...this.volumes.values()].filter((v) => v.storage === storageId && (shared || v.node === node))
  }

  // ---- locks ----

  storageLock(node: string, storageId: string): FileLock {
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

  /** Waits for a lock inside a task: a timeout fails the task with PVE's message. */
  async lockInTask(lock: FileLock, timeoutSeconds: number, shared = false): Promise<() => void> {
    return lock.acquire(this.ms(timeoutSeconds), shared)
  }

  /** Waits for a lock inside an API handler (holding a worker): a timeout is a 500. */
  async lockInHandler(lock: FileLock, timeoutSeconds: number, shared = false): Promise<() => void> {
    try {
      return await lock.acquire(this.ms(timeoutSeconds), shared)
    } catch (error) {
      if (error instanceof LockTimeout) throw fail(error.message)
      throw error
    }
  }

  // ---- VM lookups ----

  vmOn(node: string, vmid: number): SimVm {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.node !== node) {
      throw fail(`Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist`)
    }
    return vm
  }

  checkLock(vm: SimVm): void {
    const lock = vm.config.get("lock")
    if (lock !== undefined) throw fail(`VM is locked (${lock})`)
  }

  isTemplate(vm: SimVm): boolean {
    return vm.config.get("template") === "1"
  }

  /** A VM looked up inside a worker: a missing config is the task's error. */
  taskVm(node: string, vmid: number): SimVm {
    const vm = this.vms.get(vmid)
    if (vm === undefined || vm.node !== node) {
      throw new TaskFailed({ message: `Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist` })
    }
    return vm
  }

  checkLockInTask(vm: SimVm): void {
    const lock = vm.config.get("lock")
    if (lock !== undefined) throw new TaskFailed({ message: `VM is locked (${lock})` })
  }

  // ---- requests ----

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

  /** Appends to the request log, dropping the oldest half once it reaches its cap. */
  logRequest(entry: RequestLogEntry): void {
    if (this.requests.length >= MAX_REQUESTS) this.requests.splice(0, MAX_REQUESTS / 2)
    this.requests.push(entry)
  }

  parkUpload(data: Uint8Array): string {
    const name = `/var/tmp/pveupload-${(++this.uploadCounter).toString(16).padStart(8, "0")}`
    this.uploads.set(name, data)
    return name
  }

  // ---- background work ----

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
}
