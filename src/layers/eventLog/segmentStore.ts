/**
 * The event log's access to the object store: listing, reading, and creating a segment with IfAbsent (the
 * fence), with transient failures retried and every store failure turned into `LogUnavailable`.
 */
import { Effect, Stream } from "effect"
import { LogUnavailable } from "../../services/EventLog.js"
import { ifAbsent, type ObjectStoreShape } from "../../services/ObjectStore.js"
import { bytesEqual, retryTransient } from "../storeSettle.js"
import { segmentKey } from "./paths.js"

/**
 * The log's bound on retrying a store that does not retry itself (memory, a directory): brief, since the writer
 * settles segments in doubt itself. Over a store that retries (S3, GCS) this loop passes failures through, so
 * the store's own bound and backoff are the only ones (see `retryTransient`).
 */
const LOG_RETRIES = 3

/** Segments fetched (replay) or deleted (pruning) at once. */
export const FETCH_CONCURRENCY = 8

/** `effect` retried by the stores' one policy (`transientBackoff`) within the log's bound. */
export const retryStore = (operation: string, key: string) => retryTransient(operation, key, LOG_RETRIES)

export const unavailable = (operation: string, key: string, inDoubt?: boolean) => (error: { readonly message: string }) =>
  new LogUnavailable({ operation, key, reason: error.message, cause: error, ...(inDoubt === true ? { inDoubt } : {}) })

export const listKeys = (store: ObjectStoreShape, prefix: string, startAfter?: string) =>
  store.list(prefix, startAfter).pipe(
    Stream.map((meta) => meta.key),
    Stream.runCollect,
    Effect.map((chunk) => Array.from(chunk)),
    retryStore("list", prefix),
    Effect.mapError(unavailable("list", prefix))
  )

/** Reads `key`; undefined when it does not exist. */
export const readKey = (store: ObjectStoreShape, key: string) =>
  retryStore("get", key)(store.get(key)).pipe(
    Effect.map((object): Uint8Array | undefined => object.body),
    Effect.catchTag("NotFound", () => Effect.succeed(undefined)),
    Effect.mapError(unavailable("get", key))
  )

export type PutOutcome = { readonly _tag: "Written" } | { readonly _tag: "Taken"; readonly body: Uint8Array | undefined }

/**
 * Creates segment `seq`. When the key exists already, it is ours if its bytes equal ours (a retried write
 * of ours that had landed), else it is `Taken` by another writer.
 */
export const putSegment = (store: ObjectStoreShape, seq: number, body: Uint8Array): Effect.Effect<PutOutcome, LogUnavailable> => {
  const key = segmentKey(seq)
  return retryStore("put", key)(store.put(key, body, ifAbsent)).pipe(
    Effect.as<PutOutcome>({ _tag: "Written" }),
    Effect.catchTag("PreconditionFailed", () =>
      Effect.map(readKey(store, key), (current): PutOutcome =>
        current !== undefined && bytesEqual(current, body) ? { _tag: "Written" } : { _tag: "Taken", body: current }
      )
    ),
    Effect.catchTags({
      StoreUnavailable: (error) => Effect.fail(unavailable("put", key, true)(error)),
      AccessDenied: (error) => Effect.fail(unavailable("put", key)(error)),
      InvalidKey: (error) => Effect.fail(unavailable("put", key)(error))
    })
  )
}
