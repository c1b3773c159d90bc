/**
 * What one reconcile pass and one GC pass cost the leader's CPU at 10k instances (50 groups of ~180).
 *
 * - Fold: the 10k-instance history (~105k events, bench/lib/syntheticLog.ts) into the state, once.
 * - Plan: `planReconcile` — the pure core of a reconcile pass — with every group at size (the steady case,
 *   the one that runs every period), 10 % short (scale-up) and 10 % over (scale-down).
 * - GC: the real `makeGc` pass (the same code the leader runs) over a listing of the 9k live VMs, all
 *   running, and 9k ISOs all in use: the steady pass that finds nothing to do, with the PVE answers
 *   served from memory so only our CPU is measured.
 *
 * CPU is process user+system time per pass (median of many), so a busy machine inflates it less than wall
 * time would. Prints a table and writes bench/results/reconcile.json.
 */
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Either, HashMap, Layer, Logger, LogLevel, Stream, SubscriptionRef } from "effect"
import { parseShardConfig } from "../src/domain/config/index.js"
import type { GroupTarget } from "../src/domain/shard/plan.js"
import { planReconcile } from "../src/domain/shard/plan.js"
import { fold, liveInstances, type State } from "../src/domain/shard/state.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { ObjectStore } from "../src/services/ObjectStore.js"
import { EventLog } from "../src/services/EventLog.js"
import { ProxmoxApi, type VmResourceInfo } from "../src/services/ProxmoxApi.js"
import { makeGc } from "../src/shard/gc.js"
import { ClusterViewLive } from "../src/shard/ClusterView.js"
import { SchedulerTopsis } from "../src/layers/SchedulerTopsis.js"
import { OwnershipLive } from "../src/shard/Ownership.js"
import { ShardContext } from "../src/shard/ShardContext.js"
import { ProxmoxApiSim } from "../src/sim/ProxmoxApiSim.js"
import { percentile } from "./lib/stats.js"
import { writeResult } from "./lib/results.js"
import { planLifecycle } from "../src/domain/shard/lifecycle.js"
import { buildEvents } from "./lib/syntheticLog.js"

const INSTANCES = 10_000
const GROUPS = 50
const here = dirname(fileURLToPath(import.meta.url))

const summary = (samples: Array<number>) => {
  samples.sort((a, b) => a - b)
  return { medianMs: percentile(samples, 0.5), p99Ms: percentile(samples, 0.99), rounds: samples.length }
}

/** CPU milliseconds (user + system) of `run`, median and p99 over `rounds` calls after two warm-ups. */
const cpuOf = (rounds: number, run: () => void) => {
  run()
  run()
  const samples: Array<number> = []
  for (let i = 0; i < rounds; i++) {
    const before = process.cpuUsage()
    run()
    const used = process.cpuUsage(before)
    samples.push((used.user + used.system) / 1000)
  }
  return summary(samples)
}

const cpuOfEffect = <E, R>(rounds: number, run: Effect.Effect<unknown, E, R>) =>
  Effect.gen(function* () {
    yield* run
    const samples: Array<number> = []
    for (let i = 0; i < rounds; i++) {
      const before = process.cpuUsage()
      yield* run
      const used = process.cpuUsage(before)
      samples.push((used.user + used.system) / 1000)
    }
    return summary(samples)
  })

// ---- fold ----------------------------------------------------------------------------------------------------

const events = buildEvents(INSTANCES, GROUPS)
const foldStart = process.cpuUsage()
const state: State = fold(events)
const foldUsed = process.cpuUsage(foldStart)
const foldMs = (foldUsed.user + foldUsed.system) / 1000
const live = liveInstances(state)
console.log(`state: ${HashMap.size(state.instances)} instances (${live.length} live) from ${events.length} events, folded in ${foldMs.toFixed(0)} ms CPU`)

// ---- plan ----------------------------------------------------------------------------------------------------

const sizes = new Map<string, number>()
for (const instance of live) if (instance.group !== undefined) sizes.set(instance.group, (sizes.get(instance.group) ?? 0) + 1)
const targetsScaled = (factor: number): ReadonlyArray<GroupTarget> =>
  [...sizes].map(([group, size]) => ({ tenant: "shop", group, kind: "web", size: Math.round(size * factor), specHash: "9f2c4e1ab07d3c55", infraHash: "sha256:9f2c", drainTimeoutMs: 300_000 }))

const plans = {
  steady: { ...cpuOf(50, () => planReconcile(state, targetsScaled(1))), actions: planReconcile(state, targetsScaled(1)).length },
  scaleUp10: { ...cpuOf(50, () => planReconcile(state, targetsScaled(1.1))), actions: planReconcile(state, targetsScaled(1.1)).length },
  scaleDown10: { ...cpuOf(50, () => planReconcile(state, targetsScaled(0.9))), actions: planReconcile(state, targetsScaled(0.9)).length }
}
for (const [name, plan] of Object.entries(plans)) {
  console.log(`plan ${name.padEnd(11)}: ${plan.actions.toString().padStart(5)} actions, ${plan.medianMs.toFixed(1)} ms CPU median, p99 ${plan.p99Ms.toFixed(1)} ms`)
}

// The lifecycle plan runs before every reconcile pass. The synthetic instances carry no infra hash (none is
// rotated) and are older than eligible_age: one expiry per group, every instance looked at.
const lifecyclePolicy = { now: Date.now(), eligibleAgeMs: 14 * 86_400_000, forcedAgeMs: 21 * 86_400_000, defaultDrainTimeoutMs: 300_000, blocked: new Set<string>() }
const lifecycle = { ...cpuOf(50, () => planLifecycle(state, targetsScaled(1), lifecyclePolicy)), actions: planLifecycle(state, targetsScaled(1), lifecyclePolicy).actions.length }
console.log(`lifecycle  : ${lifecycle.actions.toString().padStart(5)} actions, ${lifecycle.medianMs.toFixed(1)} ms CPU median, p99 ${lifecycle.p99Ms.toFixed(1)} ms`)

// ---- GC ------------------------------------------------------------------------------------------------------

const configText = readFileSync(join(here, "..", "examples", "single-cluster.jsonc"), "utf8")
const parsed = parseShardConfig(configText)
if (Either.isLeft(parsed)) throw new Error(`examples/single-cluster.jsonc: ${parsed.left.message}`)
const config = parsed.right
const clusterId = config.config.cluster.id
const shard = config.config.shard.id
const isoStorage = config.config.shard.infra.options.cloudInitIsoStorage

const listing: ReadonlyArray<VmResourceInfo> = live.flatMap((instance) =>
  instance.vmid === undefined || instance.node === undefined
    ? []
    : [{
      id: `qemu/${instance.vmid}`, type: "qemu", vmid: instance.vmid, node: instance.node, status: "running", name: instance.id,
      tags: `nstance;${clusterId};${shard}`, template: false, instanceStatus: "Running" as const
    }])
const isoListing = live.map((instance) => ({ volid: `${isoStorage}:iso/nstance-${instance.id}.iso`, content: "iso", format: "iso", size: 4096 }))

/** The simulator's API with the cluster listings answered from memory: the pass's PVE reads cost no CPU of their own. */
const pveFromMemory = Layer.effect(
  ProxmoxApi,
  Effect.map(ProxmoxApi, (pve) => ProxmoxApi.of({
    ...pve,
    vmResources: () => Effect.succeed(listing),
    listStorageContent: () => Effect.succeed(isoListing)
  }))
).pipe(Layer.provide(ProxmoxApiSim()))

const logOfState = Layer.succeed(EventLog, EventLog.of({
  open: () => Effect.void,
  append: () => Effect.succeed({ seq: 0 }),
  state: Effect.succeed(state),
  seq: Effect.succeed(0),
  changes: Stream.empty,
  snapshot: () => Effect.succeed({ seq: 0 })
}))

const gc = await Effect.gen(function* () {
  const configRef = yield* SubscriptionRef.make(config)
  const context = Layer.succeed(ShardContext, ShardContext.of({ clusterId, shard, replica: "bench", term: 1, config: configRef }))
  return yield* Effect.gen(function* () {
    const { pass } = yield* makeGc
    const found = yield* pass
    const cpu = yield* cpuOfEffect(20, pass)
    return { ...cpu, vms: listing.length, isos: isoListing.length, found }
  }).pipe(Effect.provide(Layer.mergeAll(
    context,
    logOfState,
    pveFromMemory,
    OwnershipLive,
    // Adoption reads the original server's instance records from the shard's bucket.
    Layer.succeed(ObjectStore, makeMemoryStore()),
    ClusterViewLive.pipe(Layer.provide(Layer.merge(pveFromMemory, SchedulerTopsis)))
  )))
}).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.Warning), Effect.runPromise)
console.log(`gc pass    : ${gc.vms} VMs and ${gc.isos} ISOs listed, nothing to do (${JSON.stringify(gc.found)}), ${gc.medianMs.toFixed(1)} ms CPU median, p99 ${gc.p99Ms.toFixed(1)} ms`)

const file = writeResult("reconcile", {
  instances: HashMap.size(state.instances),
  live: live.length,
  groups: GROUPS,
  events: events.length,
  foldCpuMs: foldMs,
  plan: plans,
  lifecycle,
  gc
})
console.log(`\nwrote ${file}`)
