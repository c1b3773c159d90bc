/**
 * The Proxmox meaning of Nstance's provider-neutral fields: a SubnetID is a bridge with an optional VLAN
 * (`vmbr0`, `vmbr0.100`), an InstanceType is a resource spec (`cpu:4,memory:8192,disk:50`, disk in GiB),
 * and template args are typed. The original passes args through unchecked (a string `"4"` for `Cores`
 * is silently dropped); here every wrong type is reported.
 */
import { Either } from "effect"

/** PVE's `pve-bridge-id` format, without the `.` we use as the VLAN separator. */
const BRIDGE = /^[-_\w]+$/
const DISK_SIZE = /^([1-9]\d*)([KMGT])$/

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
    out[field] = Number(rawValue)
  }
  return Either.right(out)
}

export const isDiskSize = (value: string): boolean => DISK_SIZE.test(value)

const positiveInt = (value: unknown) => typeof value === "number" && Number.isSafeInteger(value) && value > 0
const nonEmptyString = (value: unknown) => typeof value === "string" && value.trim() !== ""

/** Why a Proxmox arg's value is unusable, or undefined when it is fine (unknown keys are not judged here). */
export const checkProxmoxArg = (key: string, value: unknown): string | undefined => {
  switch (key) {
    case "StoragePool":
    case "TemplateName":
    case "Pool":
      return nonEmptyString(value) ? undefined : "must be a non-empty string"
    case "Bridge":
      return typeof value === "string" && BRIDGE.test(value) ? undefined : `must be a bridge name such as "vmbr0"`
    case "TemplateVMID":
    case "Cores":
      return positiveInt(value) ? undefined : "must be a positive integer"
    case "Memory":
      return positiveInt(value) ? undefined : "must be a positive integer (MiB)"
    case "VLANTag":
      return typeof value === "number" && isVlan(value) ? undefined : "must be an integer 1-4094"
    case "DiskSize":
      return typeof value === "string" && isDiskSize(value) ? undefined : `must be a size such as "50G" (integer + K, M, G or T)`
    case "StartOnBoot":
      return typeof value === "boolean" ? undefined : "must be true or false"
    default:
      return undefined
  }
}

/** `50` GiB → `"50G"`, PVE's disk-size format. */
export const diskSizeOfGiB = (gib: number): string => `${gib}G`
