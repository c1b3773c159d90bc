/**
 * Failover: how long a shard is without a working leader when the leader's process dies. Two replicas of
 * one shard (the real lease, the real leader scope with its replica handle) on one memory store and one
 * in-process simulator (fast latency model, real clock); replica `a` leads and brings the example config's
 * groups to size, replica `b` stands by; then `a` is killed (its scope closes without resigning, as
 * `kill -9` would leave the record) and the clock runs until `b` publishes its term — it has replayed the
 * log, read the cluster and is reconciling.
 *
 * Each run splits the outage into waiting for the lease (the record must look dead: `leader_timeout`, seen
 * at the follower's next poll) and taking over (replay + cluster read). Default timings (renew 5 s, timeout
 * 15 s) and fast ones (1 s / 3 s). Writes bench/results/failover.json.
 */
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Clock, Context, Duration, Effect, Either, Exit, HashMap, Layer, Logger, LogLevel, Option, Scope, SubscriptionRef } from "effect"
import { parseShardConfig } from "../src/domain/config/index.js"
import { makeLeaderLeaseOn } from "../src/layers/LeaderLeaseStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { EventLog } from "../src/services/EventLog.js"
import { ObjectStore, type ObjectStoreShape } from "../src/services/ObjectStore.js"
import type { ProxmoxApi } from "../src/services/ProxmoxApi.js"
import { leaderScope } from "../src/shard/LeaderScope.js"
import { makeShardReplica, type ShardReplicaShape } from "../src/shard/ShardReplica.js"
import { LatencyFast } from "../src/sim/latency.js"
import { ProxmoxApiSim, type SimHandle } from "../src/sim/ProxmoxApiSim.js"
import { writeResult } from "./lib/results.js"

const here = dirname(fileURLToPath(import.meta.url))
const RUNS = Number(process.env["FAILOVER_RUNS"] ?? 3)

interface Timings {
  readonly name: string
  readonly frequentInterval: Duration.DurationInput
  readonly leaderTimeout: Duration.DurationInput
}
const TIMINGS: ReadonlyArray<Timings> = [
  { name: "default (renew 5 s, timeout 15 s)", frequentInterval: "5 seconds", leaderTimeout: "15 seconds" },
  { name: "fast (renew 1 s, timeout 3 s)", frequentInterval: "1 second", leaderTimeout: "3 seconds" }
]

const parsed = parseShardConfig(readFileSync(join(here, "..", "examples", "single-cluster.jsonc"), "utf8"))
if (Either.isLeft(parsed)) throw new Error(`examples/single-cluster.jsonc: ${parsed.left.message}`)
const config = parsed.right

/** Polls `check` every 20 ms until it holds; fails after `limit`. */
const until = (what: string, check: Effect.Effect<boolean>, limit: Duration.DurationInput = "2 minutes") =>
  Effect.gen(function* () {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(Duration.decode(limit))
    while (!(yield* check)) {
      if ((yield* Clock.currentTimeMillis) > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep("20 millis")
    }
  })

/** A replica with its own scope: lease, handle and leader work, as one `nstance-server` process would have. */
const startReplica = (id: string, timings: Timings, store: ObjectStoreShape, pve: Context.Context<ProxmoxApi | SimHandle>) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const configRef = yield* SubscriptionRef.make(config)
    const lease = yield* makeLeaderLeaseOn(store, {
      id,
      address: `${id}.bench:8991`,
      frequentInterval: timings.frequentInterval,
      leaderTimeout: timings.leaderTimeout,
      resignOnClose: false
    }).pipe(Effect.orDie, Scope.extend(scope))
    const handle = yield* makeShardReplica({ clusterId: config.config.cluster.id, shard: config.config.shard.id, replica: id, config: configRef, lease })
    const work = leaderScope({ clusterId: config.config.cluster.id, shard: config.config.shard.id, replica: id, config: configRef, handle })
    yield* lease.whileLeader((term) => work(term).pipe(Effect.provide(pve), Effect.provide(Layer.succeed(ObjectStore, store)))).pipe(Scope.extend(scope))
    return { id, lease, handle, kill: Scope.close(scope, Exit.void) }
  })

const leading = (handle: ShardReplicaShape) => Effect.map(handle.currentTerm, Option.isSome)

const oneRun = (timings: Timings) =>
  Effect.gen(function* () {
    const store = makeMemoryStore()
    const pve = yield* Layer.build(ProxmoxApiSim({ nodes: 3, latency: LatencyFast, sharedStorage: true, nodeMemoryGiB: 128 }))
    const a = yield* startReplica("a", timings, store, pve)
    yield* until("a to lead", leading(a.handle))
    // Let `a` bring the groups to size, so `b` replays a real log.
    const desired = Object.values(config.config.groups).flatMap((groups) => Object.values(groups)).reduce((sum, group) => sum + group.size, 0)
    yield* until("the groups to reach their size", Effect.flatMap(a.handle.currentTerm, Option.match({
      onNone: () => Effect.succeed(false),
      onSome: (term) => Effect.map(Effect.provide(EventLog, term.context).pipe(Effect.flatMap((log) => log.state)), (state) =>
        [...HashMap.values(state.instances)].filter((i) => i.phase === "running" || i.phase === "registered").length >= desired)
    })))
    const b = yield* startReplica("b", timings, store, pve)
    // b has seen a's record at least once (it is a standby following a live leader).
    yield* until("b to see the leader", Effect.map(b.lease.currentLeader, (leader) => Option.isSome(leader) && leader.value.id === "a"))
    const seq = yield* Effect.flatMap(a.handle.currentTerm, Option.match({
      onNone: () => Effect.succeed(0),
      onSome: (term) => Effect.flatMap(Effect.provide(EventLog, term.context), (log) => log.seq)
    }))
    const killedAt = yield* Clock.currentTimeMillis
    yield* a.kill
    yield* until("b to hold the lease", SubscriptionRef.get(b.lease.isLeader))
    const leaseAt = yield* Clock.currentTimeMillis
    yield* until("b to reconcile", leading(b.handle))
    const reconcilingAt = yield* Clock.currentTimeMillis
    yield* b.kill
    return { logSeq: seq, instances: desired, leaseWaitMs: leaseAt - killedAt, takeOverMs: reconcilingAt - leaseAt, totalMs: reconcilingAt - killedAt }
  }).pipe(Effect.scoped)

const results = await Effect.gen(function* () {
  const out = []
  for (const timings of TIMINGS) {
    const runs = []
    for (let i = 0; i < RUNS; i++) {
      const run = yield* oneRun(timings)
      runs.push(run)
      console.log(`${timings.name}: run ${i + 1}: lease after ${(run.leaseWaitMs / 1000).toFixed(2)} s, reconciling ${run.takeOverMs} ms later — ${(run.totalMs / 1000).toFixed(2)} s without a leader (log seq ${run.logSeq})`)
    }
    const totals = runs.map((r) => r.totalMs).sort((x, y) => x - y)
    out.push({ timings: timings.name, runs, minMs: totals[0], medianMs: totals[Math.floor(totals.length / 2)], maxMs: totals.at(-1) })
  }
  return out
}).pipe(Effect.orDie, Logger.withMinimumLogLevel(process.env["BENCH_LOG"] === "info" ? LogLevel.Info : LogLevel.Error), Effect.runPromise)

const file = writeResult("failover", { note: "real clock; in-process simulator on the fast latency model; memory store", results })
console.log(`\nwrote ${file}`)
