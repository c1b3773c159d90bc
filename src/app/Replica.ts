/**
 * The replica's place in the election and its handle for the endpoints. The lease runs on the shard's
 * store with the timings of the shard config; the replica (`ShardReplica`) is what the health, agent and
 * admin endpoints answer from, leader or standby, and where a leadership term publishes its services.
 */
import { Duration, Effect, Layer, SubscriptionRef } from "effect"
import { makeLeaderLeaseOn } from "../layers/LeaderLeaseStore.js"
import { LeaderLease } from "../services/LeaderLease.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { advertisedAddress } from "../shard/ShardContext.js"
import { makeShardReplica, ShardReplica } from "../shard/ShardReplica.js"
import { ReplicaIdentity } from "./ReplicaIdentity.js"
import { ShardConfig } from "./ShardConfig.js"

/**
 * The leader lease on the shard's store, with the election timings of the config the replica started
 * with (a change to them takes a restart: every replica must agree on them).
 */
export const LeaseLive: Layer.Layer<LeaderLease, never, ObjectStore | ShardConfig | ReplicaIdentity> = Layer.scoped(
  LeaderLease,
  Effect.gen(function* () {
    const identity = yield* ReplicaIdentity
    const { config } = yield* SubscriptionRef.get((yield* ShardConfig).current)
    const election = config.shard.leaderElection
    yield* Effect.logInfo(
      `shard ${config.shard.id} of cluster ${config.cluster.id}: replica ${identity.id} joins the election ` +
        `(renew ${Duration.format(election.frequentInterval)}, timeout ${Duration.format(election.leaderTimeout)})`
    )
    return yield* makeLeaderLeaseOn(yield* ObjectStore, {
      id: identity.id,
      // The address written into `leader.json`: the configured one, its wildcard host filled in.
      address: advertisedAddress(config.shard.advertise.election, identity.advertiseHost),
      frequentInterval: election.frequentInterval,
      infrequentInterval: election.infrequentInterval,
      leaderTimeout: election.leaderTimeout
    }).pipe(Effect.orDie)
  })
)

/** The replica's handle over whichever lease is provided (the real one, or a test's double). */
export const ReplicaLive: Layer.Layer<ShardReplica, never, LeaderLease | ShardConfig | ReplicaIdentity> = Layer.effect(
  ShardReplica,
  Effect.gen(function* () {
    const identity = yield* ReplicaIdentity
    const shardConfig = yield* ShardConfig
    const { config } = yield* SubscriptionRef.get(shardConfig.current)
    return yield* makeShardReplica({
      clusterId: config.cluster.id,
      shard: config.shard.id,
      replica: identity.id,
      ...(identity.advertiseHost === undefined ? {} : { advertiseHost: identity.advertiseHost }),
      config: shardConfig.current,
      configHeld: shardConfig.held,
      lease: yield* LeaderLease
    })
  })
)
