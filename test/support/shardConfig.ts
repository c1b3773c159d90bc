/**
 * The shard config of the simulated worlds (the chaos runs, `simWorld` and the HTTP leader harness): one
 * cluster, one shard on the simulator's PVE cluster, one tenant whose groups each have a template of their
 * own. What differs between the worlds is an option; the text is JSONC, as an operator writes it.
 */
import { Either } from "effect"
import { type ParsedShardConfig, parseShardConfig } from "../../src/domain/config/index.js"

export const CLUSTER = "acme"
export const SHARD = "pve-a"
export const TENANT = "shop"
export const BRIDGE = "vmbr1"
export const ISO_STORAGE = "local"
/** The tags a VM of `shard` carries. */
export const ourTags = (shard: string) => `nstance;${CLUSTER};${shard}`

/** A group of the tenant, with the template of the same name it is cloned from. */
export interface GroupSpec {
  readonly group: string
  readonly kind: string
  readonly cpu: number
  readonly memoryMiB: number
  /** `disk:` of the instance type in GiB; the simulator's template disk is 2 GiB, so more means a resize. */
  readonly diskGiB: number
  readonly size: number
  /** The group's `drain_timeout` (default: the shard's). */
  readonly drainTimeout?: string
}

export interface ShardConfigOptions {
  /** The comment on the first line: whose config it is. */
  readonly title: string
  /** Default `SHARD`. */
  readonly shard?: string
  readonly gcInterval: string
  readonly registrationTimeout: string
  /** `shard.bind.registration_addr` and `shard.advertise.registration_addr` (default `:8992` / `10.0.0.1:8992`). */
  readonly registrationAddr?: string
  /** `shard.bind.agent_addr` and `shard.advertise.agent_addr` (default `:8994` / `10.0.0.1:8994`). */
  readonly agentAddr?: string
  /** `shard.create_rate_limit` (default: none). */
  readonly createRateLimit?: string
  /** `shard.health_check_interval` (default: the product's). */
  readonly healthCheckInterval?: string
  /** Default `debian-13-template`. */
  readonly templateName?: string
  /** `shard.default_drain_timeout` (default: the product's, 5 m). */
  readonly defaultDrainTimeout?: string
  /** `shard.expiry`, as JSON (e.g. `{ "eligible_age": "10m" }`). */
  readonly expiry?: string
  /** What the user-data script echoes. */
  readonly greeting: string
  readonly groups: ReadonlyArray<GroupSpec>
}

const optionalLine = (key: string, value: string | undefined) => (value === undefined ? "" : `\n    "${key}": "${value}",`)

export const shardConfigText = (o: ShardConfigOptions): string => `// ${o.title}
{
  "cluster": { "id": "${CLUSTER}" },
  "shard": {
    "id": "${o.shard ?? SHARD}",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z1", "options": { "cloud_init_iso_storage": "${ISO_STORAGE}" } },
    "bind": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "${o.registrationAddr ?? ":8992"}", "operator_addr": ":8993", "agent_addr": "${o.agentAddr ?? ":8994"}" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "${o.registrationAddr ?? "10.0.0.1:8992"}", "operator_addr": "10.0.0.1:8993", "agent_addr": "${o.agentAddr ?? "10.0.0.1:8994"}" },
    "subnet_pools": { "edge": ["${BRIDGE}"] },
    "garbage_collection": { "interval": "${o.gcInterval}", "registration_timeout": "${o.registrationTimeout}" },${optionalLine("create_rate_limit", o.createRateLimit)}${optionalLine("health_check_interval", o.healthCheckInterval)}${optionalLine("default_drain_timeout", o.defaultDrainTimeout)}${o.expiry === undefined ? "" : `\n    "expiry": ${o.expiry},`}
  },
  "defaults": {
    "args": { "StoragePool": "local-lvm", "TemplateName": "${o.templateName ?? "debian-13-template"}", "StartOnBoot": true },
    "userdata": { "content": "#!/bin/sh\\necho ${o.greeting}\\n" },
  },
  "templates": {
${o.groups.map((g) => `    "${g.group}": { "kind": "${g.kind}", "instance_type": "cpu:${g.cpu},memory:${g.memoryMiB},disk:${g.diskGiB}", "subnet_pool": "edge" },\n`).join("")}  },
  "groups": { "${TENANT}": {
${o.groups.map((g) => `    "${g.group}": { "template": "${g.group}", "size": ${g.size}${g.drainTimeout === undefined ? "" : `, "drain_timeout": "${g.drainTimeout}"`} },\n`).join("")}  } },
}
`

/** A test's own config: one that does not parse is a bug of the test, so it throws. */
export const parseConfig = (text: string): ParsedShardConfig => {
  const parsed = parseShardConfig(text)
  if (Either.isLeft(parsed)) throw new Error(`test config does not parse: ${JSON.stringify(parsed.left.problems)}`)
  return parsed.right
}
