/**
 * What the simulated cluster is made of (nodes, storages, volumes, VMs, tasks, the request and boot logs), the
 * options it is built from, and the two ways a call goes wrong: a `PveHttpError` the API handler answers, or
 * a `TaskFailed` that ends a worker task with its message as the exit status.
 */
import { Data } from "effect"
import type { FaultController } from "../faults.js"
import type { GuestHook } from "../guest.js"
import type { LatencyModel } from "../latency.js"
import type { Prng } from "../prng.js"
import type { ParamSpec, Params } from "../schema.js"
import type { ParsedUpid } from "../../domain/pve/upid.js"

export class PveHttpError extends Data.TaggedError("PveHttpError")<{
  readonly status: number
  readonly message: string
  readonly errors?: Readonly<Record<string, string>>
}> {}

export const fail = (message: string, status = 500) => new PveHttpError({ status, message })
export const paramError = (errors: Readonly<Record<string, string>>) =>
  new PveHttpError({ status: 400, message: "Parameter verification failed.", errors })

/**
 * A task's worker died with its node (a reboot): it stops where it is, with no clean-up — a clone leaves its
 * `lock: clone` placeholder and the disks it made so far, as qemu-server's killed worker does.
 */
export class TaskKilled extends Data.TaggedError("TaskKilled")<{ readonly upid: string }> {}

/** A task's own failure; its message becomes the task's exitstatus. */
export class TaskFailed extends Data.TaggedError("TaskFailed")<{ readonly message: string }> {}

export interface SimNode {
  readonly name: string
  readonly nodeid: number
  readonly ip: string
  online: boolean
  readonly maxcpu: number
  readonly maxmem: number
  readonly baseMem: number
  readonly baseCpu: number
  bootedAt: number
  /** Counts the node's reboots: a task started in an older generation was killed by one. */
  generation: number
}

export interface SimStorage {
  readonly id: string
  readonly type: "dir" | "lvmthin" | "rbd" | "cephfs"
  readonly content: ReadonlyArray<string>
  readonly shared: boolean
  readonly total: number
  /** The nodes the storage is configured for (`nodes` in storage.cfg); absent: every node. */
  readonly nodes?: ReadonlyArray<string>
}

/** A network interface of a node, as `/etc/network/interfaces` declares it (the fields PVE lists). */
export interface SimIface {
  readonly iface: string
  readonly type: "bridge" | "eth" | "bond" | "vlan" | "OVSBridge" | "vnet"
  readonly bridgePorts?: string
  readonly vlanAware?: boolean
  readonly cidr?: string
  readonly gateway?: string
}

/**
 * The token's effective privileges as PVE's ACL tree would give them: ACL path → privilege → propagate
 * (whether the privilege reaches the paths below).
 */
export type SimAcl = Map<string, Map<string, boolean>>

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
  /** Its worker dies now (a reboot): the step it sleeps in ends at once, so the locks it holds go with it. */
  readonly kill: () => void
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
  /** Keep every uploaded volume's bytes in this directory, as PVE's file storages do (`volumeFiles.ts`). */
  readonly volumesDir?: string | undefined
  /** Privileges the API token holds, all on `/` with propagation (default: every privilege nstance uses). */
  readonly privileges?: ReadonlyArray<string> | undefined
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

export type Handler = (params: Params, ctx: CallContext) => Promise<unknown>
