/**
 * One replica process of a chaos world, built from the daemon's own stack (`ReplicaCore`): the real lease on
 * the incarnation's skewed clock, the replica's handle, agent handlers on it (registration worlds), and the
 * real leader loop, whose every term runs on the incarnation's recording, fault-injecting wrappers.
 */
import { type Clock, Context, Effect, Exit, Layer, Scope, Stream, SubscriptionRef } from "effect"
import { makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import type { ClusterPkiShape } from "../../src/services/ClusterPki.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { ProxmoxApi } from "../../src/services/ProxmoxApi.js"
import { makeAgentBackendReplica } from "../../src/shard/AgentBackendShard.js"
import { makeAgentEndpoints } from "../support/agentMemory.js"
import { ShardReplica } from "../../src/shard/ShardReplica.js"
import { type AroundTerm, ReplicaCore, registrationOf, replicaIdentity, shardConfigOf } from "../../src/app/stack.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { LeaderLease } from "../../src/services/LeaderLease.js"
import { skewedClock } from "../support/virtualClock.js"
import { CLUSTER } from "./config.js"
import type { History } from "./history.js"
import { gatedClock } from "./pause.js"
import type { Replica, ShardWorld } from "./state.js"
import type { Wrappers } from "./wrappers.js"

/** What a replica process takes from its world. */
export interface ReplicaProcessEnv extends Wrappers {
  /** The world's clock; the incarnation's lease runs on it shifted by `Replica.skew`. */
  readonly clock: Clock.Clock
  readonly history: History
  readonly snapshotEvery: number
  /** The cluster PKI (registration worlds only). */
  readonly pki: ClusterPkiShape | undefined
  /** Holds an incarnation's lease timers while it is paused (pause.ts). */
  readonly leaseGate: (who: string) => Effect.Effect<void>
}

/**
 * Starts the process of `replica` (an incarnation already in its slot) in the incarnation's scope, where it
 * runs until the scope closes: `graceful`, it then resigns its lease; else it dies without resigning. Its
 * lease losses and terms go into the history.
 */
export const startReplicaProcess = (env: ReplicaProcessEnv, shard: ShardWorld, replica: Replica, graceful: boolean): Effect.Effect<void> =>
  Effect.gen(function* () {
    const { history, pki, snapshotEvery, wrapPve, wrapStore } = env
    const { id, who, scope, skew } = replica
    const lease = yield* makeLeaderLeaseOn(wrapStore(who, undefined, shard.store), {
      id,
      address: `${id}.chaos:8991`,
      frequentInterval: "5 seconds",
      leaderTimeout: "15 seconds",
      resignOnClose: graceful
    }).pipe(Effect.withClock(gatedClock(skewedClock(env.clock, skew), env.leaseGate(who))), Scope.extend(scope), Effect.orDie)
    yield* lease.isLeader.changes.pipe(
      Stream.changes,
      Stream.runForEach((leading) =>
        Effect.sync(() => {
          if (!leading && replica.leaderTerm !== undefined) history.mark(who, "leaseLost", replica.leaderTerm)
        })
      ),
      Effect.forkIn(scope)
    )
    // The replica as the daemon builds it (src/app's ReplicaCore), on this incarnation's backends: every term
    // on its own recording, fault-injecting view of PVE and the store.
    const aroundTerm: AroundTerm = (term) => (work) =>
      Effect.suspend(() => {
        replica.leaderTerm = term
        history.mark(who, "termStart", term)
        return work.pipe(
          Effect.provideService(ProxmoxApi, wrapPve(who, term)),
          Effect.provideService(ObjectStore, wrapStore(who, term, shard.store)),
          Effect.onExit((exit) => Effect.sync(() => history.mark(who, "termEnd", term, Exit.isInterrupted(exit) ? "interrupted" : "failed"))),
          Effect.annotateLogs({ who: `${who} t${term}` })
        )
      })
    const stack = ReplicaCore({ eventLog: { batchWindow: "20 millis", snapshotEvery }, graces: { orphan: "60 seconds", vmLoss: "20 seconds" }, aroundTerm }).pipe(
      Layer.provide(Layer.mergeAll(
        Layer.succeed(LeaderLease, lease),
        shardConfigOf(shard.config, { _tag: "Store", key: CONFIG_KEY, shard: shard.id }),
        registrationOf(pki),
        replicaIdentity({ id, advertiseHost: `${id}.chaos`, prefix: "" }),
        // Every term replaces these with its own wrappers (aroundTerm); outside a term nothing calls them.
        Layer.succeed(ProxmoxApi, wrapPve(who, 0)),
        Layer.succeed(ObjectStore, wrapStore(who, undefined, shard.store))
      ))
    )
    const handle = Context.get(yield* Layer.build(stack).pipe(Scope.extend(scope)), ShardReplica)
    replica.handle = handle
    // Registration worlds: the agent endpoints' handlers on the replica's handle, as the daemon serves them over TLS.
    if (pki !== undefined) {
      replica.endpoint = yield* makeAgentEndpoints(
        pki,
        { registration: makeAgentBackendReplica(handle, "registration"), channel: makeAgentBackendReplica(handle, "agent") },
        {
          cluster: CLUSTER,
          shard: shard.id,
          certificateTtl: Effect.map(SubscriptionRef.get(shard.config), (current) => current.config.certificates.agentTtl),
          agentUrl: `wss://${id}.chaos:8994/agent`
        }
      ).pipe(Scope.extend(scope))
    }
  })
