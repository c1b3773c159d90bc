/**
 * The leader's work, started each time this replica wins the lease and interrupted the moment it loses it
 * (`leaderScope`: replay the log, fence, read the cluster, then sagas, reconcile and GC). The term's
 * services are published on the replica's handle, where the endpoints find them. `ProxmoxApi` and
 * `ObjectStore` are whatever the stack was given: the operator's cluster and bucket, or a test's.
 */
import { Context, Duration, Effect, Layer, Ref, SubscriptionRef } from "effect"
import type { EventLogOptions } from "../layers/EventLogStore.js"
import { makeLogFollower } from "../layers/eventLog/follower.js"
import { LeaderLease } from "../services/LeaderLease.js"
import { ObjectStore } from "../services/ObjectStore.js"
import type { ProxmoxApi } from "../services/ProxmoxApi.js"
import { leaderScope } from "../shard/LeaderScope.js"
import type { GcGraces } from "../shard/ShardContext.js"
import { ShardReplica } from "../shard/ShardReplica.js"
import { Registration } from "./Registration.js"
import { ReplicaIdentity } from "./ReplicaIdentity.js"

/** Wraps one term's work: the chaos world gives each term its own view of PVE and the store, and marks its history. */
export type AroundTerm = (term: number) => <A, E, R>(work: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

export interface LeaderLoopSettings {
  readonly eventLog?: EventLogOptions
  /** Overrides of the GC grace periods (tests). */
  readonly graces?: GcGraces
  /** How often an idle leader looks at the log's tail (default: the election's `frequent_interval`). */
  readonly tailCheck?: Duration.DurationInput
  readonly aroundTerm?: AroundTerm
  /**
   * A warm standby: while this replica does not lead, it folds the log's new segments every
   * `frequent_interval` (reads only), so a term it wins replays just the tail. Off by default: the simulated
   * worlds (chaos) keep the store traffic their seeds were recorded with.
   */
  readonly followLog?: boolean
  /** How often a standby looks at the log (default: the election's `frequent_interval`). */
  readonly followEvery?: Duration.DurationInput
}

export const LeaderLoopLive = (
  settings: LeaderLoopSettings = {}
): Layer.Layer<never, never, LeaderLease | ShardReplica | Registration | ReplicaIdentity | ProxmoxApi | ObjectStore> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const lease = yield* LeaderLease
      const replica = yield* ShardReplica
      const { pki } = yield* Registration
      const identity = yield* ReplicaIdentity
      const backends = yield* Effect.context<ProxmoxApi | ObjectStore>()
      const follower = settings.followLog === true ? yield* makeLogFollower(Context.get(backends, ObjectStore), settings.eventLog?.cache) : undefined
      const leading = yield* Ref.make(false)
      if (follower !== undefined) {
        // Looks only between terms: a leader's own log is the state, and a look would replay what it wrote. The
        // first look waits one interval: a replica that wins the lease at start (every shard of a fresh fleet)
        // replays once, in its term, instead of beside a follower's replay.
        yield* Effect.forkScoped(
          Effect.gen(function* () {
            yield* Effect.sleep(settings.followEvery === undefined
              ? (yield* SubscriptionRef.get(replica.config)).config.shard.leaderElection.frequentInterval
              : Duration.decode(settings.followEvery))
            yield* follower.follow(Effect.map(Ref.get(leading), (now) => !now))
          }).pipe(Effect.forever)
        )
      }
      const eventLog: EventLogOptions | undefined = follower === undefined ? settings.eventLog : { ...settings.eventLog, follower }
      const work = leaderScope({
        clusterId: replica.clusterId,
        shard: replica.shard,
        replica: replica.replica,
        config: replica.config,
        handle: replica,
        ...(pki === undefined ? {} : { registration: { pki, ...(identity.advertiseHost === undefined ? {} : { advertiseHost: identity.advertiseHost }) } }),
        ...(identity.advertiseHost === undefined ? {} : { advertiseHost: identity.advertiseHost }),
        ...(eventLog === undefined ? {} : { eventLog }),
        ...(settings.graces === undefined ? {} : { graces: settings.graces }),
        ...(settings.tailCheck === undefined ? {} : { tailCheck: settings.tailCheck })
      })
      const around = settings.aroundTerm
      yield* lease.whileLeader((term) => {
        // Provided outside the wrapper, so a wrapper's own ProxmoxApi or ObjectStore takes precedence.
        const wrapped = around === undefined ? work(term) : around(term)(work(term))
        // Set before the term's replay takes the follower's state, so no look starts after the hand-over.
        return Effect.zipRight(Ref.set(leading, true), wrapped.pipe(Effect.provide(backends))).pipe(Effect.ensuring(Ref.set(leading, false)))
      })
    })
  )
