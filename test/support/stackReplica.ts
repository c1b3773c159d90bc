/**
 * A replica as the daemon builds it (`ReplicaCore` of src/app: the replica's handle and its leader loop),
 * over the backends a test brings: its lease (real, on a memory store, or a double), the config it keeps
 * current, a PKI or none, PVE (the simulator) and the store. Endpoints are the test's to bind, on port 0.
 */
import { Context, Effect, Layer, type Scope, SubscriptionRef } from "effect"
import { type LeaderLoopSettings, ReplicaCore, ReplicaLive, registrationOf, replicaIdentity, shardConfigOf } from "../../src/app/stack.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import type { ParsedShardConfig } from "../../src/domain/config/index.js"
import type { ClusterPkiShape } from "../../src/services/ClusterPki.js"
import { LeaderLease, type LeaderLeaseShape } from "../../src/services/LeaderLease.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import type { ProxmoxApi } from "../../src/services/ProxmoxApi.js"
import { ShardReplica, type ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import type { ConfigSource } from "../../src/shard/shardConfig.js"

export interface StackReplicaSettings {
  readonly id: string
  readonly advertiseHost?: string
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** Where the admin endpoint re-reads the config from (default: the store's `config.jsonc`). */
  readonly source?: ConfigSource
  readonly lease: LeaderLeaseShape
  readonly pki?: ClusterPkiShape
  readonly store: ObjectStoreShape
  /**
   * The leader loop's backends and settings; `false`: the replica's handle alone (`ReplicaLive`), for
   * suites that publish terms by hand and judge only what the endpoints answer.
   */
  readonly leader: { readonly pve: Layer.Layer<ProxmoxApi, unknown>; readonly loop?: LeaderLoopSettings } | false
}

/** Builds the replica in the calling scope: its leader loop runs whenever `lease` says it leads. */
export const buildReplica = (settings: StackReplicaSettings): Effect.Effect<ShardReplicaShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const shard = (yield* SubscriptionRef.get(settings.config)).config.shard.id
    const source: ConfigSource = settings.source ?? { _tag: "Store", key: CONFIG_KEY, shard }
    const backends = Layer.mergeAll(
      Layer.succeed(LeaderLease, settings.lease),
      shardConfigOf(settings.config, source),
      registrationOf(settings.pki),
      replicaIdentity({ id: settings.id, prefix: "", ...(settings.advertiseHost === undefined ? {} : { advertiseHost: settings.advertiseHost }) }),
      Layer.succeed(ObjectStore, settings.store)
    )
    const stack = settings.leader === false
      ? ReplicaLive.pipe(Layer.provide(backends))
      : ReplicaCore(settings.leader.loop).pipe(Layer.provide(Layer.merge(backends, Layer.orDie(settings.leader.pve))))
    const context = yield* Layer.build(stack)
    return Context.get(context, ShardReplica)
  })
