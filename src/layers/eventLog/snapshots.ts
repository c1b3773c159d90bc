/**
 * Snapshots and pruning: the writer's state written as `snapshot/{seq:016}.json` (with a checksum), the local
 * cached copy refreshed with it, then older snapshots and segments deleted, keeping one fallback snapshot and
 * the segments after it. Callers hold the writer's lock.
 */
import { Effect, Ref, Stream, SubscriptionRef } from "effect"
import type { Fenced, LogUnavailable } from "../../services/EventLog.js"
import { ifAbsent, type ObjectStoreShape } from "../../services/ObjectStore.js"
import { cachedSnapshotBodyOf, snapshotBodyOf, snapshotJson } from "./format.js"
import { segmentKey, seqOf, SNAPSHOT_KEY, snapshotKey } from "./paths.js"
import { FETCH_CONCURRENCY, listKeys, retryStore, unavailable } from "./segmentStore.js"
import type { SnapshotCache } from "./snapshotCache.js"
import { notOpen, type WriterState } from "./writerState.js"

/** Deletes what snapshot `newSeq` makes unnecessary; a failure is logged and left for the next snapshot. */
const prune = (store: ObjectStoreShape, keepSegments: number, newSeq: number) =>
  Effect.gen(function* () {
    const snapshots = (yield* listKeys(store, "snapshot/"))
      .map((key) => seqOf(SNAPSHOT_KEY, key))
      .filter((seq): seq is number => seq !== undefined && seq < newSeq)
      .sort((a, b) => a - b)
    // The previous snapshot stays as a fallback, and so do the segments after it: a corrupt newest
    // snapshot must still replay exactly.
    const previous = snapshots.at(-1) ?? 0
    for (const seq of snapshots.slice(0, -1)) yield* retryStore("delete", snapshotKey(seq))(store.delete(snapshotKey(seq)))
    const cutoff = Math.min(previous, newSeq - keepSegments)
    if (cutoff < 1) return
    yield* store.list("log/").pipe(
      Stream.takeWhile((meta) => meta.key <= segmentKey(cutoff)),
      Stream.mapEffect((meta) => retryStore("delete", meta.key)(store.delete(meta.key)), { concurrency: FETCH_CONCURRENCY }),
      Stream.runDrain
    )
  }).pipe(
    Effect.catchAll((error) => Effect.logWarning(`event log: pruning after snapshot ${newSeq} failed: ${error.message}`)),
    Effect.withSpan("eventLog.prune")
  )

/** Writes the snapshot at the writer's last segment, then the cached copy, then prunes. */
export const writeSnapshot = (
  store: ObjectStoreShape,
  writer: WriterState,
  keepSegments: number,
  cache: SnapshotCache | undefined
): Effect.Effect<{ readonly seq: number }, Fenced | LogUnavailable> =>
  Effect.gen(function* () {
    const s = yield* Ref.get(writer.status)
    if (s._tag !== "Open") return yield* yield* notOpen(writer, "snapshot")
    const seq = s.lastSeq
    if (seq === 0) return { seq }
    const key = snapshotKey(seq)
    const json = snapshotJson(seq, yield* SubscriptionRef.get(writer.stateRef))
    const body = snapshotBodyOf(json)
    yield* retryStore("put", key)(store.put(key, body, ifAbsent)).pipe(
      // Someone already wrote the snapshot of this seq: a fold of the same segments, so the same state.
      Effect.catchTag("PreconditionFailed", () => Effect.void),
      Effect.mapError(unavailable("put", key))
    )
    yield* Ref.update(writer.status, (current) => (current._tag === "Open" ? { ...current, sinceSnapshot: 0 } : current))
    yield* Effect.logDebug(`event log: snapshot ${key} written`)
    if (cache !== undefined) {
      // Only ever a shortcut for the next replay: a failure costs that replay a download, nothing else.
      yield* cache.write(cachedSnapshotBodyOf(json, yield* Ref.get(writer.lastSegmentHash))).pipe(
        Effect.catchAll((error) => Effect.logWarning(`event log: the local snapshot copy was not updated: ${error.message}`))
      )
    }
    yield* prune(store, keepSegments, seq)
    return { seq }
  }).pipe(Effect.withSpan("eventLog.snapshot"))
