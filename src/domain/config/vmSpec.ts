/**
 * What a VM of a group looks like on Proxmox, resolved once from defaults, template and group so the
 * create saga consumes one plain value.
 *
 * Precedence (documented in README "Shard configuration"): every setting comes from the most specific
 * level that sets it — group, then template, then defaults. At one level, a provider-native arg
 * (`Cores`, `Memory`, `DiskSize`, `Bridge`) wins over the provider-neutral field (`instance_type`,
 * `subnet_pool`), because it is the more precise statement. So `defaults.args.Cores: 2` does not
 * override a group's `instance_type: "cpu:8"`, but the group's own `args.Cores` would.
 * A subnet gives bridge and VLAN together; a `Bridge` arg takes its VLAN from the merged `VLANTag`.
 */
import { Either } from "effect"
import { mergeArgs } from "./merge.js"
import type { Problem } from "./problems.js"
import { diskSizeOfGiB, type InstanceType, parseInstanceType, parseSubnetId } from "./proxmox.js"
import type { JsonObject } from "./schema.js"
import type { Group, ShardConfig, Template } from "./types.js"

export interface VmSpec {
  readonly cores: number
  readonly memoryMiB: number
  /** PVE disk-size string (`"50G"`); absent = keep the template's disk. */
  readonly diskSize?: string
  readonly bridge: string
  readonly vlanTag?: number
  readonly storagePool: string
  readonly template: { readonly name: string } | { readonly vmid: number }
  readonly startOnBoot: boolean
  readonly pool?: string
  /** The subnet the NIC came from, when it came from a subnet pool. */
  readonly subnet?: { readonly pool: string; readonly id: string }
}

type Level = 0 | 1 | 2
const LEVEL_NAMES = ["defaults", "template", "group"] as const

interface Sourced<A> {
  readonly value: A
  readonly level: Level
}

const argAt = (layers: ReadonlyArray<JsonObject | undefined>, key: string): Sourced<unknown> | undefined => {
  let found: Sourced<unknown> | undefined
  layers.forEach((layer, index) => {
    if (layer === undefined || !Object.hasOwn(layer, key)) return
    const value = layer[key]
    found = value === null ? undefined : { value, level: index as Level }
  })
  return found
}

const instanceTypeOf = (template: Template, group: Group): Sourced<InstanceType> | undefined => {
  const written = group.instanceType !== undefined
    ? { text: group.instanceType, level: 2 as const }
    : template.instanceType !== undefined
    ? { text: template.instanceType, level: 1 as const }
    : undefined
  if (written === undefined) return undefined
  const parsed = parseInstanceType(written.text)
  return Either.isRight(parsed) ? { value: parsed.right, level: written.level } : undefined
}

const typed = <A>(sourced: Sourced<unknown> | undefined, guard: (value: unknown) => value is A): Sourced<A> | undefined =>
  sourced !== undefined && guard(sourced.value) ? { value: sourced.value, level: sourced.level } : undefined

const isNumber = (value: unknown): value is number => typeof value === "number"
const isString = (value: unknown): value is string => typeof value === "string"
const isBoolean = (value: unknown): value is boolean => typeof value === "boolean"

/** Arg beats instance_type at the same or a more specific level. */
const pick = <A>(arg: Sourced<A> | undefined, fromType: Sourced<A> | undefined): A | undefined => {
  if (arg !== undefined && (fromType === undefined || arg.level >= fromType.level)) return arg.value
  return fromType?.value
}

/**
 * Resolves the VM spec of one group, or the problems that prevent it (paths under `groups.T.G`).
 * Type errors of individual args are reported by validation where they are written; here a wrongly
 * typed arg simply counts as missing.
 */
export const resolveVmSpec = (
  config: ShardConfig,
  tenant: string,
  groupName: string,
  options: { readonly argTypesReported?: boolean } = {}
): Either.Either<VmSpec, ReadonlyArray<Problem>> => {
  const base = `groups.${tenant}.${groupName}`
  const group = config.groups[tenant]?.[groupName]
  if (group === undefined) return Either.left([{ path: base, message: "no such group" }])
  const template = config.templates[group.template]
  if (template === undefined) return Either.left([{ path: `${base}.template`, message: `unknown template ${JSON.stringify(group.template)}` }])
  const layers = [config.defaults.args, template.args, group.args] as const
  const problems: Array<Problem> = []
  // An arg that is set but wrongly typed counts as missing; say so once, not twice when validation
  // has already reported it where it is written.
  const missing = (key: string, path: string, message: string) => {
    if (argAt(layers, key) === undefined) problems.push({ path, message })
    else if (options.argTypesReported !== true) problems.push({ path: `${base}.args.${key}`, message: "has a value of the wrong type" })
  }
  const where = `set it in defaults.args, templates.${template.name}.args or ${base}.args`

  const storagePool = typed(argAt(layers, "StoragePool"), isString)
  if (storagePool === undefined) missing("StoragePool", `${base}.args.StoragePool`, `required for proxmox; ${where}`)

  const templateName = typed(argAt(layers, "TemplateName"), isString)
  const templateVmid = typed(argAt(layers, "TemplateVMID"), isNumber)
  if (templateName !== undefined && templateVmid !== undefined) {
    problems.push({
      path: `${base}.args`,
      message: `TemplateName (from ${LEVEL_NAMES[templateName.level]}) and TemplateVMID (from ${LEVEL_NAMES[templateVmid.level]}) are both set; set exactly one (null removes an inherited one)`
    })
  } else if (templateName === undefined && templateVmid === undefined) {
    if (argAt(layers, "TemplateVMID") !== undefined) missing("TemplateVMID", `${base}.args`, "")
    else missing("TemplateName", `${base}.args`, `one of TemplateName or TemplateVMID is required for proxmox; ${where}`)
  }

  const instanceType = instanceTypeOf(template, group)
  const fromType = <A>(value: A | undefined): Sourced<A> | undefined =>
    value === undefined || instanceType === undefined ? undefined : { value, level: instanceType.level }
  const cores = pick(typed(argAt(layers, "Cores"), isNumber), fromType(instanceType?.value.cpu))
  if (cores === undefined) missing("Cores", `${base}.args.Cores`, "no CPU count; set Cores in args or cpu in instance_type")
  const memoryMiB = pick(typed(argAt(layers, "Memory"), isNumber), fromType(instanceType?.value.memoryMiB))
  if (memoryMiB === undefined) missing("Memory", `${base}.args.Memory`, "no memory size; set Memory (MiB) in args or memory in instance_type")
  const diskSize = pick(
    typed(argAt(layers, "DiskSize"), isString),
    fromType(instanceType?.value.diskGiB === undefined ? undefined : diskSizeOfGiB(instanceType.value.diskGiB))
  )

  // Network: the most specific of the Bridge arg and the subnet pool; the arg wins at the same level.
  const bridgeArg = typed(argAt(layers, "Bridge"), isString)
  const vlanArg = typed(argAt(layers, "VLANTag"), isNumber)
  const poolName = group.subnetPool ?? template.subnetPool
  const poolLevel: Level = group.subnetPool !== undefined ? 2 : 1
  let network: { bridge: string; vlanTag?: number; subnet?: { pool: string; id: string } } | undefined
  if (bridgeArg !== undefined && (poolName === undefined || bridgeArg.level >= poolLevel)) {
    network = vlanArg === undefined ? { bridge: bridgeArg.value } : { bridge: bridgeArg.value, vlanTag: vlanArg.value }
  } else if (poolName !== undefined) {
    const first = config.shard.subnetPools[poolName]?.[0]
    const subnet = first === undefined ? undefined : parseSubnetId(first)
    if (first !== undefined && subnet !== undefined && Either.isRight(subnet)) {
      network = { ...subnet.right, subnet: { pool: poolName, id: first } }
    }
  }
  if (network === undefined && poolName === undefined) {
    missing("Bridge", `${base}.args.Bridge`, "no network for the VM; set subnet_pool or the Bridge arg")
  }

  if (problems.length > 0 || storagePool === undefined || cores === undefined || memoryMiB === undefined || network === undefined) {
    return Either.left(problems)
  }
  const startOnBoot = typed(argAt(layers, "StartOnBoot"), isBoolean)?.value ?? false
  const pool = typed(argAt(layers, "Pool"), isString)?.value
  return Either.right({
    cores,
    memoryMiB,
    ...(diskSize === undefined ? {} : { diskSize }),
    ...network,
    storagePool: storagePool.value,
    template: templateVmid !== undefined ? { vmid: templateVmid.value } : { name: templateName?.value ?? "" },
    startOnBoot,
    ...(pool === undefined ? {} : { pool })
  })
}

/** The args a group's VMs get: defaults → template → group, sharing nothing with the config. */
export const mergedArgsOf = (config: ShardConfig, group: Group): JsonObject =>
  mergeArgs(config.defaults.args, config.templates[group.template]?.args, group.args)
