/**
 * The shard config API the rest of nstance uses: parse a `config.jsonc` text into a validated
 * `ShardConfig` (defaults applied, durations as `Duration`) plus warnings, or get every problem at once;
 * then ask it for a group's merged args, its Proxmox VM spec, or the desired groups.
 */
import { type Duration, Either } from "effect"
import { type JsoncSyntaxError, parseJsonc } from "./jsonc.js"
import { InvalidShardConfig, type Problem } from "./problems.js"
import type { Group, ShardConfig } from "./types.js"
import { validateShardConfig } from "./validate.js"
import { mergedArgsOf, resolveVmSpec, type VmSpec } from "./vmSpec.js"
import type { JsonObject } from "./schema.js"

export type { Address, Addresses, Expiry, Group, LeaderElection, ShardConfig, Template, Userdata } from "./types.js"
export type { JsonObject } from "./schema.js"
export type { VmSpec } from "./vmSpec.js"
export { formatProblem, InvalidShardConfig, type Problem } from "./problems.js"
export { DEFAULTS, identifierProblem, isWildcardHost, MAX_CERTIFICATE_TTL_HOURS, MAX_GROUP_SIZE, parseAddress, validateShardConfig } from "./validate.js"
export { cloneJson, mergeArgs } from "./merge.js"
export { checkProxmoxArg, formatSubnetId, type InstanceType, parseInstanceType, parseSubnetId, type Subnet } from "./proxmox.js"
export { jsoncBoundsProblem, type JsoncSyntaxError, MAX_JSONC_BYTES, MAX_JSONC_DEPTH, parseJsonc } from "./jsonc.js"
export { clusterEndpointOf, PROXMOX_ENV_KEYS, readProxmoxEnv, readProxmoxEnvFile, type ProxmoxEnv } from "./proxmoxEnv.js"

/** `line L, column C: message`, or the message alone for a problem of the whole text. */
export const formatSyntaxError = (error: JsoncSyntaxError): string =>
  error.line === 0 ? error.message : `line ${error.line}, column ${error.column}: ${error.message}`

export interface ParsedShardConfig {
  readonly config: ShardConfig
  readonly warnings: ReadonlyArray<Problem>
}

/**
 * JSONC text → validated config. Syntax errors come back as `line L, column C: …` problems; otherwise
 * every shape and rule problem is returned together.
 */
export const parseShardConfig = (text: string): Either.Either<ParsedShardConfig, InvalidShardConfig> => {
  const json = parseJsonc(text)
  if (Either.isLeft(json)) {
    return Either.left(new InvalidShardConfig({
      problems: json.left.map((error) => ({ path: "", message: formatSyntaxError(error) }))
    }))
  }
  return Either.mapLeft(validateShardConfig(json.right), ({ errors }) => new InvalidShardConfig({ problems: errors }))
}

/** The group's provider args: defaults → template → group, as fresh objects (mutating them changes nothing else). */
export const mergedArgsFor = (config: ShardConfig, tenant: string, group: string): JsonObject | undefined => {
  const found = config.groups[tenant]?.[group]
  return found === undefined ? undefined : mergedArgsOf(config, found)
}

/** The resolved Proxmox VM of a group (see `vmSpec.ts` for the precedence rules). */
export const vmSpecFor = (config: ShardConfig, tenant: string, group: string): Either.Either<VmSpec, InvalidShardConfig> =>
  Either.mapLeft(resolveVmSpec(config, tenant, group), (problems) => new InvalidShardConfig({ problems }))

export interface DesiredGroup {
  readonly tenant: string
  readonly group: string
  readonly template: string
  /** Instance-ID prefix of the group's VMs. */
  readonly kind: string
  readonly size: number
  readonly infraHash: string
  /** The group's `drain_timeout`, else `shard.default_drain_timeout`. */
  readonly drainTimeout: Duration.Duration
}

/** Every static group with its desired size, sorted by tenant then group. */
export const desiredGroups = (config: ShardConfig): ReadonlyArray<DesiredGroup> =>
  Object.values(config.groups)
    .flatMap((groups) => Object.values(groups))
    .map((group: Group) => ({
      tenant: group.tenant,
      group: group.name,
      template: group.template,
      kind: config.templates[group.template]?.kind ?? "",
      size: group.size,
      infraHash: group.infraHash,
      drainTimeout: group.drainTimeout ?? config.shard.defaultDrainTimeout
    }))
    .sort((a, b) => a.tenant.localeCompare(b.tenant) || a.group.localeCompare(b.group))
