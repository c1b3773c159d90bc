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

/**
 * How instances retire in a world that rolls out (see `RolloutPlan`): drain timeouts short enough for a
 * rollout of every instance to finish within the convergence bound, and optionally expiry ages.
 */
export interface LifecycleConfig {
  /** `shard.default_drain_timeout`: "0s" deletes a retired instance as soon as its replacement is ready. */
  readonly defaultDrainTimeout: string
  /** Groups with a `drain_timeout` of their own. */
  readonly drainTimeouts: Partial<Readonly<Record<keyof GroupSizes, string>>>
  /** `shard.expiry.eligible_age` and `forced_age` (absent: off). */
  readonly eligibleAge?: string | undefined
  readonly forcedAge?: string | undefined
}

export interface WorldConfig {
  readonly sizes: GroupSizes
  readonly gcInterval: string
  /** `shard.create_rate_limit`; empty: none. */
  readonly createRateLimit: string
  /** Disk of the instance type in GiB; the template's is 2 GiB, so more means a resize step. */
  readonly diskGiB: number
  /** What the user-data echoes (default "chaos"): a change drifts every instance of both groups (a rollout). */
  readonly greeting?: string | undefined
  /** Absent: the product's defaults (5 m drains, no expiry). */
  readonly lifecycle?: LifecycleConfig | undefined
}

const expiryJson = (l: LifecycleConfig): string | undefined => {
  const fields = [["eligible_age", l.eligibleAge], ["forced_age", l.forcedAge]].filter((f): f is [string, string] => f[1] !== undefined)
  return fields.length === 0 ? undefined : `{ ${fields.map(([k, v]) => `"${k}": "${v}"`).join(", ")} }`
}

export const configText = (c: WorldConfig, shard: string = SHARD): string =>
  shardConfigText({
    title: "chaos world",
    shard,
    gcInterval: c.gcInterval,
    registrationTimeout: "5m",
    ...(c.createRateLimit === "" ? {} : { createRateLimit: c.createRateLimit }),
    ...(c.lifecycle === undefined ? {} : { defaultDrainTimeout: c.lifecycle.defaultDrainTimeout, expiry: expiryJson(c.lifecycle) }),
    greeting: c.greeting ?? "chaos",
    groups: GROUPS.map((g) => ({ ...g, diskGiB: c.diskGiB, size: c.sizes[g.group], drainTimeout: c.lifecycle?.drainTimeouts[g.group] }))
  })
