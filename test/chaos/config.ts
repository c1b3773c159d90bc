/**
 * The shard config of a chaos world: one tenant with two groups of different kinds, so scale changes of one
 * group and the other's steady state interleave. Sizes are pushed through the config `SubscriptionRef`
 * as the config watcher would after an operator's edit.
 */
import { Either } from "effect"
import { type ParsedShardConfig, parseShardConfig } from "../../src/domain/config/index.js"

export const CLUSTER = "acme"
export const SHARD = "pve-a"
/** The second shard of a two-shard world: same cluster, same bucket, same PVE cluster, its own prefix. */
export const SHARD_B = "pve-b"
export const TENANT = "shop"
export const ISO_STORAGE = "local"
/** The tags a VM of `shard` carries. */
export const ourTags = (shard: string) => `nstance;${CLUSTER};${shard}`
export const OUR_TAGS = ourTags(SHARD)

export interface GroupSizes {
  readonly web: number
  readonly api: number
}

export const GROUPS: ReadonlyArray<{ readonly group: keyof GroupSizes; readonly kind: string }> = [
  { group: "web", kind: "web" },
  { group: "api", kind: "api" }
]

export interface WorldConfig {
  readonly sizes: GroupSizes
  readonly gcInterval: string
  /** `shard.create_rate_limit`; empty: none. */
  readonly createRateLimit: string
  /** Disk of the instance type in GiB; the template's is 2 GiB, so more means a resize step. */
  readonly diskGiB: number
}

export const configText = (c: WorldConfig, shard: string = SHARD): string => `// chaos world
{
  "cluster": { "id": "${CLUSTER}" },
  "shard": {
    "id": "${shard}",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z1", "options": { "cloud_init_iso_storage": "${ISO_STORAGE}" } },
    "bind": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": ":8992", "operator_addr": ":8993", "agent_addr": ":8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "10.0.0.1:8992", "operator_addr": "10.0.0.1:8993", "agent_addr": "10.0.0.1:8994" },
    "subnet_pools": { "edge": ["vmbr1"] },
    "garbage_collection": { "interval": "${c.gcInterval}", "registration_timeout": "5m" },${c.createRateLimit === "" ? "" : `
    "create_rate_limit": "${c.createRateLimit}",`}
  },
  "defaults": {
    "args": { "StoragePool": "local-lvm", "TemplateName": "debian-13-template", "StartOnBoot": true },
    "userdata": { "content": "#!/bin/sh\\necho chaos\\n" },
  },
  "templates": {
    "web": { "kind": "web", "instance_type": "cpu:1,memory:512,disk:${c.diskGiB}", "subnet_pool": "edge" },
    "api": { "kind": "api", "instance_type": "cpu:2,memory:1024,disk:${c.diskGiB}", "subnet_pool": "edge" },
  },
  "groups": { "${TENANT}": {
    "web": { "template": "web", "size": ${c.sizes.web} },
    "api": { "template": "api", "size": ${c.sizes.api} },
  } },
}
`

export const parseConfig = (text: string): ParsedShardConfig => {
  const parsed = parseShardConfig(text)
  if (Either.isLeft(parsed)) throw new Error(`chaos config does not parse: ${JSON.stringify(parsed.left.problems)}`)
  return parsed.right
}
