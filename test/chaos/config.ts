/**
 * The shard config of a chaos world: one tenant with two groups of different kinds, so scale changes of one
 * group and the other's steady state interleave. Sizes are pushed through the config `SubscriptionRef`
 * as the config watcher would after an operator's edit.
 */
import { SHARD, shardConfigText } from "../support/shardConfig.js"

export { CLUSTER, ISO_STORAGE, ourTags, parseConfig, SHARD, TENANT } from "../support/shardConfig.js"
/** The second shard of a two-shard world: same cluster, same bucket, same PVE cluster, its own prefix. */
export const SHARD_B = "pve-b"

export interface GroupSizes {
  readonly web: number
  readonly api: number
}

export const GROUPS: ReadonlyArray<{ readonly group: keyof GroupSizes; readonly kind: string; readonly cpu: number; readonly memoryMiB: number }> = [
  { group: "web", kind: "web", cpu: 1, memoryMiB: 512 },
  { group: "api", kind: "api", cpu: 2, memoryMiB: 1024 }
]

export interface WorldConfig {
  readonly sizes: GroupSizes
  readonly gcInterval: string
  /** `shard.create_rate_limit`; empty: none. */
  readonly createRateLimit: string
  /** Disk of the instance type in GiB; the template's is 2 GiB, so more means a resize step. */
  readonly diskGiB: number
}

export const configText = (c: WorldConfig, shard: string = SHARD): string =>
  shardConfigText({
    title: "chaos world",
    shard,
    gcInterval: c.gcInterval,
    registrationTimeout: "5m",
    ...(c.createRateLimit === "" ? {} : { createRateLimit: c.createRateLimit }),
    greeting: "chaos",
    groups: GROUPS.map((g) => ({ ...g, diskGiB: c.diskGiB, size: c.sizes[g.group] }))
  })
