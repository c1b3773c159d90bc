/**
 * The Proxmox meaning of Nstance's provider-neutral fields: a SubnetID is a bridge with an optional VLAN
 * (`vmbr0`, `vmbr0.100`), an InstanceType is a resource spec (`cpu:4,memory:8192,disk:50`, disk in GiB),
 * and template args are typed. The original passes args through unchecked (a string `"4"` for `Cores`
 * is silently dropped); here every wrong type is reported.
 */
import { Either } from "effect"

/** PVE's `pve-bridge-id` format, without the `.` we use as the VLAN separator. */
const BRIDGE = /^[-_\w]+$/
/** PVE's `size` of `PUT …/resize`: `+` grows by the amount, none is absolute; no unit means bytes. */
const DISK_SIZE = /^(\+?)(\d+(?:\.\d+)?)([KMGT]?)$/
/** PVE's `pve-storage-id` format: what `StoragePool` (and `cloud_init_iso_storage`) must look like. */
export const STORAGE_ID = /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i
/** PVE's `pve-poolid` format. */
const POOL_ID = /^[A-Za-z0-9_\-./]+$/
/** PVE's `dns-name` format: the only names a VM, and so a template, can have. */
const DNS_NAME = /^(?:(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.)*(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)$/i

/**
 * Upper bounds of a VM's size. They are far beyond any Proxmox VE node (so never a real limit), and are
 * here so a typo such as `cpu:1000000` or `DiskSize: "99999999999T"` is refused by the validator, naming
 * the field, instead of by PVE at every create.
 */
export const MAX_CORES = 1024
/** PVE's minimum (`memory` ≥ 16 MiB) and 16 TiB. */
export const MIN_MEMORY_MIB = 16
export const MAX_MEMORY_MIB = 16 * 1024 * 1024
/** 1 PiB. */
export const MAX_DISK_GIB = 1024 * 1024
/** PVE's VMID range. */
export const MIN_VMID = 100
export const MAX_VMID = 999_999_999

const BYTES_PER_UNIT: Readonly<Record<string, number>> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }

/** Why a size (cores, MiB, GiB) is out of its bounds, or undefined. */
const cpuProblem = (cpu: number) => (cpu > MAX_CORES ? `must be at most ${MAX_CORES} (got ${cpu})` : undefined)
const memoryProblem = (mib: number) =>
  mib < MIN_MEMORY_MIB ? `must be at least ${MIN_MEMORY_MIB} MiB (got ${mib})` : mib > MAX_MEMORY_MIB ? `must be at most ${MAX_MEMORY_MIB} MiB (16 TiB; got ${mib})` : undefined
const diskProblem = (gib: number, written: string) => (gib > MAX_DISK_GIB ? `must be at most ${MAX_DISK_GIB} GiB (1 PiB; got ${written})` : undefined)

export interface Subnet {
  readonly bridge: string
  readonly vlanTag?: number
}

const isVlan = (value: number) => Number.isInteger(value) && value >= 1 && value <= 4094

export const parseSubnetId = (id: string): Either.Either<Subnet, string> => {
  const parts = id.split(".")
  const bridge = parts[0] ?? ""
  if (parts.length > 2 || !BRIDGE.test(bridge)) {
    return Either.left(`${JSON.stringify(id)} is not a Proxmox subnet; use a bridge, optionally with a VLAN: "vmbr0" or "vmbr0.100"`)
  }
  if (parts.length === 1) return Either.right({ bridge })
  const vlanText = parts[1] ?? ""
  const vlan = /^\d+$/.test(vlanText) ? Number(vlanText) : Number.NaN
  if (!isVlan(vlan)) return Either.left(`${JSON.stringify(id)} has VLAN ${JSON.stringify(vlanText)}; a VLAN tag is an integer 1-4094`)
  return Either.right({ bridge, vlanTag: vlan })
}

export const formatSubnetId = (subnet: Subnet): string =>
  subnet.vlanTag === undefined ? subnet.bridge : `${subnet.bridge}.${subnet.vlanTag}`

export interface InstanceType {
  readonly cpu?: number
  readonly memoryMiB?: number
  readonly diskGiB?: number
}

const INSTANCE_TYPE_KEYS = { cpu: "cpu", memory: "memoryMiB", disk: "diskGiB" } as const

/** `cpu:4,memory:8192,disk:50` (memory in MiB, disk in GiB); any subset, each key once. */
export const parseInstanceType = (text: string): Either.Either<InstanceType, string> => {
  const out: { cpu?: number; memoryMiB?: number; diskGiB?: number } = {}
  const hint = `use e.g. "cpu:4,memory:8192,disk:50" (memory in MiB, disk in GiB)`
  if (text.trim() === "") return Either.left(`empty instance type; ${hint}`)
  for (const part of text.split(",")) {
    const [rawKey, rawValue, extra] = part.split(":").map((piece) => piece.trim())
    if (rawKey === undefined || rawValue === undefined || extra !== undefined) {
      return Either.left(`${JSON.stringify(part.trim())} is not key:value; ${hint}`)
    }
    if (!Object.hasOwn(INSTANCE_TYPE_KEYS, rawKey)) {
      return Either.left(`unknown key ${JSON.stringify(rawKey)}; keys are cpu, memory, disk`)
    }
    const field = INSTANCE_TYPE_KEYS[rawKey as keyof typeof INSTANCE_TYPE_KEYS]
    if (out[field] !== undefined) return Either.left(`${rawKey} is given twice`)
    if (!/^[1-9]\d*$/.test(rawValue) || !Number.isSafeInteger(Number(rawValue))) {
      return Either.left(`${rawKey} must be a positive integer, got ${JSON.stringify(rawValue)}`)
    }
    const value = Number(rawValue)
    const bound = field === "cpu" ? cpuProblem(value) : field === "memoryMiB" ? memoryProblem(value) : diskProblem(value, `${value}`)
    if (bound !== undefined) return Either.left(`${rawKey} ${bound}`)
    out[field] = value
  }
  return Either.right(out)
}

/** A `DiskSize` as PVE reads it: `+10G` grows the disk by 10 GiB, `50G` makes it 50 GiB (never smaller). */
export interface DiskSize {
  readonly relative: boolean
  /** Whole bytes, rounded down as PVE does (`1.5T` is 1649267441664). */
  readonly bytes: number
}

/** Parses PVE's size syntax (`\+?\d+(\.\d+)?[KMGT]?`); undefined for anything else. */
export const parseDiskSize = (text: string): DiskSize | undefined => {
  const match = DISK_SIZE.exec(text)
  if (match === null) return undefined
  return { relative: match[1] === "+", bytes: Math.floor(Number(match[2]) * (BYTES_PER_UNIT[match[3] ?? ""] ?? 1)) }
}

/** Bytes in PVE's size syntax with the largest unit that keeps it exact: `12884901888` → `"12G"`. */
export const formatDiskSize = (bytes: number): string => {
  for (const unit of ["T", "G", "M", "K"] as const) {
    const per = BYTES_PER_UNIT[unit] ?? 1
    if (bytes >= per && bytes % per === 0) return `${bytes / per}${unit}`
  }
  return String(bytes)
}

export const isDiskSize = (value: string): boolean => parseDiskSize(value) !== undefined

const positiveInt = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value > 0

/** Why a Proxmox arg's value is unusable, or undefined when it is fine (unknown keys are not judged here). */
export const checkProxmoxArg = (key: string, value: unknown): string | undefined => {
  switch (key) {
    case "StoragePool":
      return typeof value === "string" && STORAGE_ID.test(value) ? undefined : `must be a PVE storage ID such as "local-lvm" (letters, digits, '-', '_', '.')`
    case "TemplateName":
      return typeof value === "string" && value.length <= 253 && DNS_NAME.test(value) ? undefined : `must be a PVE VM name such as "debian-13-template" (letters, digits, '-', '.')`
    case "Pool":
      return typeof value === "string" && POOL_ID.test(value) ? undefined : `must be a PVE pool ID such as "nstance" (letters, digits, '-', '_', '.', '/')`
    case "Bridge":
      return typeof value === "string" && BRIDGE.test(value) ? undefined : `must be a bridge name such as "vmbr0"`
    case "TemplateVMID":
      return positiveInt(value) && value >= MIN_VMID && value <= MAX_VMID ? undefined : `must be a VMID, an integer ${MIN_VMID}-${MAX_VMID}`
    case "Cores":
      return positiveInt(value) ? cpuProblem(value) : "must be a positive integer"
    case "Memory":
      return positiveInt(value) ? memoryProblem(value) : "must be a positive integer (MiB)"
    case "VLANTag":
      return typeof value === "number" && isVlan(value) ? undefined : "must be an integer 1-4094"
    case "DiskSize": {
      const size = typeof value === "string" ? parseDiskSize(value) : undefined
      if (size === undefined) return `must be a PVE size such as "50G", "1.5T" or "+10G" (number + K, M, G or T; "+" grows the template's disk)`
      if (size.bytes === 0) return `must be more than 0 (got ${String(value)})`
      return diskProblem(size.bytes / (BYTES_PER_UNIT["G"] ?? 1), String(value))
    }
    case "StartOnBoot":
      return typeof value === "boolean" ? undefined : "must be true or false"
    default:
      return undefined
  }
}

/** `50` GiB → `"50G"`, PVE's disk-size format. */
export const diskSizeOfGiB = (gib: number): string => `${gib}G`
