/**
 * The operator's bucket and the shard's view of it. The cluster PKI lives at the bucket root
 * (`pki/{cluster}/…`, shared by every shard of the cluster); everything else a shard keeps — its config,
 * lease and event log — lives under the shard's prefix, which is the `ObjectStore` the rest of the stack sees.
 */
import { Context, Effect, Layer } from "effect"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { ObjectStore, type ObjectStoreShape } from "../services/ObjectStore.js"
import { ReplicaIdentity } from "./ReplicaIdentity.js"

export class BucketStore extends Context.Tag("nstance/app/BucketStore")<BucketStore, ObjectStoreShape>() {}

/** The bucket root from a store layer (`--storage`/`--bucket`, or a test's memory store). */
export const bucketFrom = <E, R>(store: Layer.Layer<ObjectStore, E, R>): Layer.Layer<BucketStore, E, R> =>
  Layer.effect(BucketStore, ObjectStore).pipe(Layer.provide(store))

/** `ObjectStore` as the shard's prefix of the bucket. */
export const ShardStoreLive: Layer.Layer<ObjectStore, never, BucketStore | ReplicaIdentity> = Layer.effect(
  ObjectStore,
  Effect.gen(function* () {
    const bucket = yield* BucketStore
    const { prefix } = yield* ReplicaIdentity
    return scopeStore(bucket, prefix)
  })
)
