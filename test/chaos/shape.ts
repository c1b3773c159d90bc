/**
 * A chaos world's shape, drawn from its seed: how many shards and replicas, how many PVE nodes, how fast
 * PVE answers, the groups' sizes and the shard config, how long the faults go on. Every draw comes from a
 * PRNG stream in a fixed order: a seed's world stays the same only while that order does.
 */
import { LatencyDemo, type LatencyModel, LatencyRealistic } from "../../src/sim/latency.js"
import { makePrng, type Prng } from "../../src/sim/prng.js"
import type { GroupSizes, LifecycleConfig, WorldConfig } from "./config.js"

/**
 * Seeds from 3000 on: one in five runs two shards in one process against the same PVE cluster and bucket.
 * Drawn from a PRNG stream of its own, so the worlds of every other seed keep their draws.
 */
export const isTwoShardSeed = (seed: number): boolean => seed >= 3000 && makePrng(seed * 53 + 11).int(1, 5) === 1

/**
 * Seeds from 4000 on: one in three one-shard worlds runs with agent registration on — a cluster PKI in the
 * bucket, nonces in the user-data, simulated guests registering through each replica's agent handlers in
 * memory — and is judged by the nonce rules too. A stream of its own, like the shard count.
 */
export const isRegistrationSeed = (seed: number): boolean => seed >= 4000 && !isTwoShardSeed(seed) && makePrng(seed * 67 + 19).int(1, 3) === 1

/** The first `count` registration seeds from `from` on. */
export const registrationSeeds = (from: number, count: number): Array<number> => {
  const out: Array<number> = []
  for (let seed = Math.max(from, 4000); out.length < count; seed++) if (isRegistrationSeed(seed)) out.push(seed)
  return out
}

/** The first `count` two-shard seeds from `from` on. */
export const twoShardSeeds = (from: number, count: number): Array<number> => {
  const out: Array<number> = []
  for (let seed = Math.max(from, 3000); out.length < count; seed++) if (isTwoShardSeed(seed)) out.push(seed)
  return out
}

/**
 * A world that rolls out: its shard config has drains short enough to finish (or none), sometimes expiry ages
 * (in force during the faults only: a rule that keeps replacing instances never lets the world come to rest),
 * and at one or two times during the faults the group's user-data changes, so every instance of both groups
 * drifts and is replaced. An operator may acknowledge drains meanwhile.
 */
export interface RolloutPlan {
  /** Index of the shard that rolls out (two-shard worlds: one of the two). */
  readonly shard: number
  readonly lifecycle: LifecycleConfig
  /** Virtual milliseconds after the start at which the user-data changes. */
  readonly changes: ReadonlyArray<number>
  /** Virtual milliseconds after the start at which an operator begins looking for a drain to acknowledge. */
  readonly acks: ReadonlyArray<number>
}

/**
 * One world in four rolls out (a rollout about doubles a world's work: one in four keeps the fixed seeds'
 * time within about a fifth more). Drawn from a stream of its own, after the shape: every other draw of the
 * seed stays as it was (the world then runs differently, of course).
 */
const drawRollout = (seed: number, chaosMs: number, shards: number): RolloutPlan | undefined => {
  const r = makePrng(seed * 79 + 31)
  if (r.int(1, 4) !== 1) return undefined
  const shard = r.int(0, shards - 1)
  const seconds = (lo: number, hi: number) => `${r.int(lo, hi)}s`
  const drain = r.int(1, 10)
  const drainTimeouts: Partial<Record<keyof GroupSizes, string>> = drain <= 4
    ? {}
    : drain <= 7
    ? { [pick(r, ["web", "api"] as const)]: seconds(15, 60) }
    : { web: seconds(10, 40), api: seconds(10, 40) }
  const defaultDrainTimeout = drain <= 7 ? "0s" : seconds(10, 40)
  // Forced expiry retires more than one instance of a group at once: what holds the group to size + 1.
  const expiry = r.int(1, 4)
  const eligible = r.int(90, 180)
  const lifecycle: LifecycleConfig = {
    defaultDrainTimeout,
    drainTimeouts,
    ...(expiry === 1 ? { eligibleAge: `${eligible}s` } : expiry === 2 ? { eligibleAge: `${eligible}s`, forcedAge: `${eligible + r.int(20, 60)}s` } : {})
  }
  const changes = Array.from({ length: r.int(1, 10) <= 8 ? 1 : 2 }, () => r.int(5, chaosMs / 1000) * 1000).sort((a, b) => a - b)
  const drains = Object.keys(drainTimeouts).length > 0 || defaultDrainTimeout !== "0s"
  const acks = drains ? Array.from({ length: r.int(0, 2) }, () => r.int(5, chaosMs / 1000) * 1000) : []
  return { shard, lifecycle, changes, acks }
}

/** The lifecycle settings and draws of a rollout, in a line of the world's plan. */
export const describeRollout = (p: RolloutPlan): string => {
  const l = p.lifecycle
  const groups = Object.entries(l.drainTimeouts).map(([g, d]) => ` ${g} ${d}`).join("")
  const expiry = l.eligibleAge === undefined ? "" : `, expiry eligible ${l.eligibleAge}${l.forcedAge === undefined ? "" : ` forced ${l.forcedAge}`} (while the faults last)`
  return `rollout: user-data changes at ${p.changes.map((at) => `${at / 1000}s`).join(", ")}; drains: default ${l.defaultDrainTimeout}${groups}${expiry}` +
    `${p.acks.length === 0 ? "" : `; an operator acknowledges a drain from ${p.acks.map((at) => `${at / 1000}s`).join(", ")}`}`
}

const LatencyJittery: LatencyModel = { name: "jittery", timeScale: 1, requestMs: [5, 400], jitter: 0.6 }

export const pick = <A>(prng: Prng, items: ReadonlyArray<A>): A => items[prng.int(0, items.length - 1)]!

/** Sizes of the two groups; storms have bigger groups. */
export const drawSizes = (prng: Prng, storm: boolean): GroupSizes =>
  storm ? { web: prng.int(0, 6), api: prng.int(0, 4) } : { web: prng.int(0, 3), api: prng.int(0, 2) }

const drawWorldConfig = (prng: Prng, storm: boolean): WorldConfig => ({
  sizes: drawSizes(prng, storm),
  gcInterval: pick(prng, ["5s", "10s", "30s"]),
  createRateLimit: pick(prng, ["", "", "1s"]),
  diskGiB: pick(prng, [2, 4])
})

export interface WorldShape {
  readonly seed: number
  /** Seeds from 1000 on: bigger groups, more faults. */
  readonly storm: boolean
  readonly twoShards: boolean
  readonly registrationOn: boolean
  /** Replicas of the first shard, and of the second (0 in a one-shard world). */
  readonly replicaCount: number
  readonly replicaCountB: number
  readonly totalReplicas: number
  readonly latency: LatencyModel
  readonly nodes: number
  /** The shard config (sizes at the start), and the second shard's. */
  readonly world: WorldConfig
  readonly worldB: WorldConfig | undefined
  readonly snapshotEvery: number
  /** Virtual time the faults go on. */
  readonly chaosMs: number
  /** Virtual time the world has to converge once the faults stop. */
  readonly boundMs: number
  /** Worlds that roll out (one in four). */
  readonly rollout: RolloutPlan | undefined
}

/** `prng`: the seed's main stream; `shardPrng`: the second shard's (see `isTwoShardSeed`). */
export const drawShape = (seed: number, convergeBoundMs: number | undefined, prng: Prng, shardPrng: Prng): WorldShape => {
  const storm = seed >= 1000
  const twoShards = isTwoShardSeed(seed)
  const replicaCount = prng.int(1, 3)
  const latency = pick(prng, [LatencyRealistic, LatencyRealistic, LatencyDemo, LatencyJittery])
  const nodes = prng.int(2, 4)
  const world = drawWorldConfig(prng, storm)
  const snapshotEvery = pick(prng, [15, 40, 1000])
  const chaosMs = prng.int(90, 300) * 1000
  const drawnB = twoShards ? drawWorldConfig(shardPrng, storm) : undefined
  const replicaCountB = twoShards ? shardPrng.int(1, 3) : 0
  const rollout = drawRollout(seed, chaosMs, twoShards ? 2 : 1)
  const withLifecycle = (c: WorldConfig, shard: number): WorldConfig => (rollout?.shard === shard ? { ...c, lifecycle: rollout.lifecycle } : c)
  const worldB = drawnB === undefined ? undefined : withLifecycle(drawnB, 1)
  return {
    seed,
    storm,
    twoShards,
    registrationOn: isRegistrationSeed(seed),
    replicaCount,
    replicaCountB,
    totalReplicas: replicaCount + replicaCountB,
    latency,
    nodes,
    world: withLifecycle(world, 0),
    worldB,
    snapshotEvery,
    chaosMs,
    boundMs: convergeBoundMs ?? 25 * 60_000,
    rollout
  }
}
