/**
 * nstance's only door to Proxmox VE: one typed call per endpoint in the integration guide's permissions
 * table, plus `waitTask`. Every failure is typed — `PveApiError` says what PVE answered and what that means
 * (transient / conflict / notFound / permanent / unauthorized), `PveDecodeError` names the field of an
 * answer we could not read, `TaskFailed`/`TaskTimeout` cover asynchronous work — so callers decide by
 * class, never by parsing text.
 */
import { Context, Data, type Duration, type Effect, type Option } from "effect"
import type { PveErrorClass } from "../domain/pve/errors.js"
import type {
  ClusterStatusEntry,
  ClusterVmResource,
  NetworkInterface,
  NodeResource,
  NodeStatus,
  Permissions,
  PveVersion,
  QemuListEntry,
  StorageContentEntry,
  StorageEntry,
  StorageResource,
  TaskListEntry,
  TaskStatus,
  Upid,
  VmConfig,
  VmResource,
  VmStatusCurrent,
  VolumeAttributes
} from "../domain/pve/schemas.js"
import type { InstanceStatus } from "../domain/pve/status.js"

export type { PveErrorClass } from "../domain/pve/errors.js"
export type { InstanceStatus } from "../domain/pve/status.js"
export type { Upid } from "../domain/pve/schemas.js"

/** A PVE call that failed: HTTP status (0 = no answer), PVE's message and what it means. */
export class PveApiError extends Data.TaggedError("PveApiError")<{
  readonly method: string
  /** The concrete path, e.g. `/nodes/pve1/qemu/9000/clone`. */
  readonly path: string
  /** The path template, e.g. `POST /nodes/{node}/qemu/{vmid}/clone`. */
  readonly endpoint: string
  readonly status: number
  /** PVE's message (status line, else body), without the trailing newline. */
  readonly pveMessage: string
  /** PVE's per-parameter `errors` object of a 400, if any. */
  readonly errors?: Readonly<Record<string, string>>
  readonly classification: PveErrorClass
  /** How many times the call was sent (more than 1 after transient failures were retried). */
  readonly attempts: number
}> {
  override get message() {
    const errors = this.errors === undefined ? "" : `: ${Object.entries(this.errors).map(([k, v]) => `${k}: ${v.trim().replace(/\s*\n\s*/g, "; ")}`).join(", ")}`
    const status = this.status === 0 ? "no response" : String(this.status)
    const tries = this.attempts > 1 ? ` (${this.classification}, gave up after ${this.attempts} attempts)` : ` (${this.classification})`
    return `${this.method} ${this.path}: ${status} ${this.pveMessage}${errors}${tries}`
  }
}

/** PVE answered something we cannot read; names the endpoint and the offending field. */
export class PveDecodeError extends Data.TaggedError("PveDecodeError")<{
  readonly method: string
  readonly path: string
  readonly endpoint: string
  /** Path of the bad field inside the answer, e.g. `data[2].vmid`. */
  readonly field: string
  readonly problem: string
}> {
  override get message() {
    return `${this.method} ${this.path}: unexpected PVE answer at ${this.field}: ${this.problem}`
  }
}

/** A task ended with an exit status other than `OK` / `WARNINGS: n`; carries PVE's error text. */
export class TaskFailed extends Data.TaggedError("TaskFailed")<{
  readonly node: string
  readonly upid: string
  readonly taskType: string
  readonly exitstatus: string
  readonly classification: PveErrorClass
}> {
  override get message() {
    return `PVE task ${this.taskType} on ${this.node} failed: ${this.exitstatus} (${this.upid})`
  }
}

/** A task still ran when the wait's time bound ran out (the task itself may still finish). */
export class TaskTimeout extends Data.TaggedError("TaskTimeout")<{
  readonly node: string
  readonly upid: string
  readonly taskType: string
  readonly timeout: Duration.Duration
}> {
  override get message() {
    return `PVE task ${this.taskType} on ${this.node} still running after ${this.timeout.toString()} (${this.upid})`
  }
}

export type PveError = PveApiError | PveDecodeError

export const isTransient = (error: { readonly _tag: string; readonly classification?: PveErrorClass }): boolean =>
  (error._tag === "PveApiError" || error._tag === "TaskFailed") && error.classification === "transient"

export type VmResourceInfo = VmResource & { readonly instanceStatus: InstanceStatus }
/** A guest of the unfiltered `/cluster/resources` read: the fields nstance reads (no usage figures). */
export type ClusterVmInfo = ClusterVmResource & { readonly instanceStatus: InstanceStatus }
export type VmStatusInfo = VmStatusCurrent & { readonly instanceStatus: InstanceStatus }
export type QemuListInfo = QemuListEntry & { readonly instanceStatus: InstanceStatus }

/** One unfiltered `GET /cluster/resources`: nodes, guests and storages of one snapshot (pvestatd's, ~10 s behind). */
export interface ClusterResources {
  readonly nodes: ReadonlyArray<NodeResource>
  readonly vms: ReadonlyArray<ClusterVmInfo>
  readonly storages: ReadonlyArray<StorageResource>
}

export interface CloneOptions {
  readonly newid: number
  readonly name?: string
  /** Node the clone lands on; PVE only allows another node when the template is on shared storage. */
  readonly target?: string
  readonly storage?: string
  readonly full?: boolean
  readonly pool?: string
  readonly description?: string
}

/** The settings nstance writes with one `POST …/config`. Booleans go out as 0/1. */
export interface VmConfigUpdate {
  readonly cores?: number
  /** MiB */
  readonly memory?: number
  readonly net0?: string
  readonly onboot?: boolean
  readonly description?: string
  /** `;`-joined tag list. */
  readonly tags?: string
  /** e.g. `local:iso/nstance-….iso,media=cdrom` */
  readonly ide2?: string
  /** e.g. `order=scsi0;ide2` */
  readonly boot?: string
  /** Keys to remove. */
  readonly delete?: ReadonlyArray<string>
  /** Refuse the change if the config's digest differs (concurrent edit). */
  readonly digest?: string
}

export interface DeleteVmOptions {
  /** Remove the VMID from backup/replication/HA configs too. */
  readonly purge?: boolean
  readonly destroyUnreferencedDisks?: boolean
}

export interface StopOptions {
  /** Seconds PVE waits for the stop. */
  readonly timeout?: number
}

export interface ShutdownOptions {
  readonly timeout?: number
  /** Hard-stop the VM if the guest does not shut down in time. */
  readonly forceStop?: boolean
}

export interface UploadOptions {
  /** File name PVE stores (normalised by PVE to [A-Za-z0-9_.-]). */
  readonly filename: string
  readonly content: "iso" | "vztmpl" | "import"
  readonly data: Uint8Array
}

/** The `type` filter of `GET /nodes/{node}/network` nstance uses (the schema allows more). */
export type NetworkInterfaceFilter = "bridge" | "any_bridge" | "any_local_bridge"

export interface ListTasksFilter {
  readonly source?: "active" | "archive" | "all"
  /** The task type, e.g. `qmclone`. */
  readonly type?: string
  readonly vmid?: number
  readonly limit?: number
}

export interface WaitTaskOptions {
  /** Bound on the whole wait (default from the layer's settings). */
  readonly timeout?: Duration.DurationInput
}

export interface ProxmoxApiShape {
  readonly version: () => Effect.Effect<PveVersion, PveError>
  readonly permissions: (path?: string) => Effect.Effect<Permissions, PveError>
  readonly nodeResources: () => Effect.Effect<ReadonlyArray<NodeResource>, PveError>
  readonly vmResources: () => Effect.Effect<ReadonlyArray<VmResourceInfo>, PveError>
  /** Nodes, guests and storages in one call: what placement, template lookups and storage sharedness read. */
  readonly clusterResources: () => Effect.Effect<ClusterResources, PveError>
  readonly clusterStatus: () => Effect.Effect<ReadonlyArray<ClusterStatusEntry>, PveError>
  /** PVE's lowest free VMID; with `vmid`, that VMID if free — a taken one fails with classification `conflict`. */
  readonly nextId: (vmid?: number) => Effect.Effect<number, PveError>
  readonly nodeStatus: (node: string) => Effect.Effect<NodeStatus, PveError>
  readonly listQemu: (node: string) => Effect.Effect<ReadonlyArray<QemuListInfo>, PveError>
  readonly vmConfig: (node: string, vmid: number) => Effect.Effect<VmConfig, PveError>
  readonly vmStatus: (node: string, vmid: number) => Effect.Effect<VmStatusInfo, PveError>
  /**
   * `POST /nodes/{node}/qemu/{vmid}/clone` — `node` is the template's node. Not idempotent: if a retry
   * follows a lost answer, PVE may already have the clone and the retry fails with `conflict`; callers
   * then look the VM up by name (= instance ID) to tell their own clone from someone else's.
   */
  readonly clone: (node: string, vmid: number, options: CloneOptions) => Effect.Effect<Upid, PveError>
  /** Asynchronous `POST …/config`; PVE may answer null (nothing left to wait for). */
  readonly updateConfig: (node: string, vmid: number, update: VmConfigUpdate) => Effect.Effect<Option.Option<Upid>, PveError>
  /** `PUT …/resize`; `size` is absolute (`50G`) or relative (`+10G`); older PVE answers null. */
  readonly resize: (node: string, vmid: number, disk: string, size: string) => Effect.Effect<Option.Option<Upid>, PveError>
  readonly start: (node: string, vmid: number) => Effect.Effect<Upid, PveError>
  readonly stop: (node: string, vmid: number, options?: StopOptions) => Effect.Effect<Upid, PveError>
  readonly shutdown: (node: string, vmid: number, options?: ShutdownOptions) => Effect.Effect<Upid, PveError>
  readonly deleteVm: (node: string, vmid: number, options?: DeleteVmOptions) => Effect.Effect<Upid, PveError>
  readonly listStorage: (node: string, filter?: { readonly content?: string; readonly enabled?: boolean }) => Effect.Effect<ReadonlyArray<StorageEntry>, PveError>
  /** `GET /nodes/{node}/network`; `type: "any_bridge"` lists the node's Linux and OVS bridges and SDN VNets. */
  readonly listNetwork: (node: string, filter?: { readonly type?: NetworkInterfaceFilter }) => Effect.Effect<ReadonlyArray<NetworkInterface>, PveError>
  readonly listStorageContent: (node: string, storage: string, filter?: { readonly content?: string; readonly vmid?: number }) => Effect.Effect<ReadonlyArray<StorageContentEntry>, PveError>
  readonly volumeAttributes: (node: string, storage: string, volid: string) => Effect.Effect<VolumeAttributes, PveError>
  /** Multipart upload (`content`, file part `filename`). Re-sending the same name overwrites it. */
  readonly upload: (node: string, storage: string, options: UploadOptions) => Effect.Effect<Upid, PveError>
  readonly deleteVolume: (node: string, storage: string, volid: string) => Effect.Effect<Option.Option<Upid>, PveError>
  /**
   * `GET /nodes/{node}/tasks`: the node's workers the token may see (its own, or all with `Sys.Audit` on the
   * node); `source: "active"` only those still running. A task's `id` is its VM — a clone's is the source's.
   */
  readonly listTasks: (node: string, filter: ListTasksFilter) => Effect.Effect<ReadonlyArray<TaskListEntry>, PveError>
  readonly taskStatus: (node: string, upid: string) => Effect.Effect<TaskStatus, PveError>
  /**
   * Polls the task (on the node its UPID names) on an adaptive schedule until it stops. `exitstatus`
   * other than `OK` / `WARNINGS: n` → `TaskFailed`; still running at the bound → `TaskTimeout`.
   */
  readonly waitTask: (node: string, upid: Upid, options?: WaitTaskOptions) => Effect.Effect<TaskStatus, PveError | TaskFailed | TaskTimeout>
}

export class ProxmoxApi extends Context.Tag("nstance/ProxmoxApi")<ProxmoxApi, ProxmoxApiShape>() {}
