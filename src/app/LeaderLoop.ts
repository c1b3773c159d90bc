/**
 * The leader's work, started each time this replica wins the lease and interrupted the moment it loses it
 * (`leaderScope`: replay the log, fence, read the cluster, then sagas, reconcile and GC). The term's
 * services are published on the replica's handle, where the endpoints find them. `ProxmoxApi` and
 * `ObjectStore` are whatever the stack was given: the operator's cluster and bucket, or a test's.
 */
import { type Duration, Effect, Layer } from "effect"
import type { EventLogOptions } from "../layers/EventLogStore.js"
import { LeaderLease } from "../services/LeaderLease.js"
import type { ObjectStore } from "../services/ObjectStore.js"
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
      const work = leaderScope({
        clusterId: replica.clusterId,
        shard: replica.shard,
        replica: replica.replica,
        config: replica.config,
        handle: replica,
        ...(pki === undefined ? {} : { registration: { pki, ...(identity.advertiseHost === undefined ? {} : { advertiseHost: identity.advertiseHost }) } }),
        ...(identity.advertiseHost === undefined ? {} : { advertiseHost: identity.advertiseHost }),
        ...(settings.eventLog === undefined ? {} : { eventLog: settings.eventLog }),
        ...(settings.graces === undefined ? {} : { graces: settings.graces }),
        ...(settings.tailCheck === undefined ? {} : { tailCheck: settings.tailCheck })
      })
      const around = settings.aroundTerm
      yield* lease.whileLeader((term) => {
        // Provided outside the wrapper, so a wrapper's own ProxmoxApi or ObjectStore takes precedence.
        const wrapped = around === undefined ? work(term) : around(term)(work(term))
        return wrapped.pipe(Effect.provide(backends))
      })
    })
  )
