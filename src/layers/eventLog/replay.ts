/**
 * Replay: the newest valid snapshot (the local cached copy when it is at least as new and matches the store,
 * else the store's), then every segment after it in order. Read-only, so usable offline (`nstance-admin state`).
 * A standby that follows the log (`follower.ts`) replays from the state it has folded so far instead, once the
 * store has shown that state to be of this log and not behind a pruning (`WarmStart`).
 */
import { Chunk, Effect, Either, Option, Stream } from "effect"
import { emptyState, startFold, type State } from "../../domain/shard/state.js"
import type { ShardEvent } from "../../domain/shard/events.js"
import { LogCorrupt } from "../../services/EventLog.js"
import type { ObjectStoreShape } from "../../services/ObjectStore.js"
import { type CachedSnapshot, parseSegment, parseSnapshot, sha256 } from "./format.js"
import { SEGMENT_KEY, segmentKey, seqOf, SNAPSHOT_KEY, snapshotKey } from "./paths.js"
import { FETCH_CONCURRENCY, listKeys, readKey, unavailable } from "./segmentStore.js"
import { readCache, type SnapshotCache } from "./snapshotCache.js"

export interface LoggedEvent {
  readonly seq: number
  readonly event: ShardEvent
}

export interface Replayed {
  readonly state: State
  /** Sequence number of the last segment (0 for an empty log). */
  readonly seq: number
  /** The last events of the replayed tail (after the snapshot used), oldest first. */
  readonly lastEvents: ReadonlyArray<LoggedEvent>
  /** Sequence number of the snapshot replay started from (0 when none was usable). */
  readonly snapshotSeq: number
  /**
   * Where replay started: a store snapshot, the local cached copy, the state a following standby had folded
   * (`snapshotSeq` is then the store's newest snapshot, for when the next one is due), or seq 1.
   */
  readonly snapshotSource: "store" | "cache" | "warm" | "none"
  /** SHA-256 of segment `seq`'s bytes when replay read it or was given it; absent when it ended on a snapshot. */
  readonly lastSegmentHash: string | undefined
}

/**
 * A state folded earlier from this log's segments up to `seq` (a standby following the log), with the hash of
 * segment `seq`'s bytes. Like the cached copy, it is only a shortcut: used when the store still holds that
 * segment with those bytes and has no snapshot newer than it (segments behind the newest snapshot may be
 * pruned while we read, and a gap there must not read as a corrupt log).
 */
export type WarmStart = CachedSnapshot

const LAST_EVENTS = 100

/** Sequence numbers of the store's snapshots, newest first. */
const snapshotSeqs = (store: ObjectStoreShape) =>
  Effect.gen(function* () {
    const seqs: Array<number> = []
    for (const key of yield* listKeys(store, "snapshot/")) {
      const seq = seqOf(SNAPSHOT_KEY, key)
      if (seq === undefined) yield* Effect.logWarning(`event log: ignoring ${key}: not a snapshot name`)
      else seqs.push(seq)
    }
    return seqs.sort((a, b) => b - a)
  })

/** The newest of `seqs` that reads, decodes and matches its checksum; corrupt ones are skipped with a warning. */
const newestValidSnapshot = Effect.fn("eventLog.snapshot.load")(function* (store: ObjectStoreShape, seqs: ReadonlyArray<number>) {
  for (const seq of seqs) {
    const key = snapshotKey(seq)
    const body = yield* readKey(store, key)
    if (body === undefined) continue
    const parsed = parseSnapshot(seq, body)
    if (Either.isRight(parsed)) return Option.some({ seq, state: parsed.right })
    yield* Effect.logWarning(`event log: skipping snapshot ${key} (${parsed.left}); trying the one before it`)
  }
  return Option.none<{ seq: number; state: State }>()
})

/**
 * Whether the store still holds segment `cached.seq` with the bytes the copy was taken after. This is what
 * ties the copy to this log: a copy of another log, of a log since rewritten, or one pruned past, is refused.
 */
const cacheMatchesStore = (store: ObjectStoreShape, cached: CachedSnapshot, what = "the cached snapshot") =>
  Effect.gen(function* () {
    const segment = yield* readKey(store, segmentKey(cached.seq))
    if (segment === undefined) {
      yield* Effect.logInfo(`event log: ignoring ${what} at seq ${cached.seq}: the store has no ${segmentKey(cached.seq)}`)
      return false
    }
    if (sha256(segment) !== cached.segmentHash) {
      yield* Effect.logInfo(`event log: ignoring ${what} at seq ${cached.seq}: ${segmentKey(cached.seq)} differs (a copy of another log)`)
      return false
    }
    return true
  })

/**
 * The followed state as replay's start, when it is no older than the store's newest snapshot and the store still
 * holds its last segment byte for byte; else none (the caller replays as if it had none).
 */
const warmStart = (store: ObjectStoreShape, warm: WarmStart) =>
  Effect.gen(function* () {
    const seqs = yield* snapshotSeqs(store)
    const newest = seqs[0] ?? 0
    if (warm.seq < newest) {
      yield* Effect.logInfo(`event log: ignoring the followed state at seq ${warm.seq}: the store has a snapshot at seq ${newest}`)
      return Option.none<{ seq: number; state: State; source: "warm"; snapshotSeq: number; segmentHash: string }>()
    }
    if (!(yield* cacheMatchesStore(store, warm, "the followed state"))) return Option.none()
    return Option.some({ seq: warm.seq, state: warm.state, source: "warm" as const, snapshotSeq: newest, segmentHash: warm.segmentHash })
  })

/** Where replay starts: the cached copy when it is at least as new as the store's and matches it, else the store's newest valid snapshot. */
const replayStart = (store: ObjectStoreShape, cache: SnapshotCache | undefined) =>
  Effect.gen(function* () {
    const seqs = yield* snapshotSeqs(store)
    const cached = cache === undefined ? Option.none<CachedSnapshot>() : yield* readCache(cache)
    const useCached = (above: number) =>
      Effect.gen(function* () {
        if (Option.isNone(cached)) return Option.none<CachedSnapshot>()
        if (cached.value.seq < above) {
          yield* Effect.logDebug(`event log: ignoring the cached snapshot at seq ${cached.value.seq}: the store has one at seq ${above}`)
          return Option.none<CachedSnapshot>()
        }
        return (yield* cacheMatchesStore(store, cached.value)) ? cached : Option.none<CachedSnapshot>()
      })
    // At least as new as every listed snapshot: no snapshot download at all (the point of the copy).
    const first = yield* useCached(seqs[0] ?? 0)
    if (Option.isSome(first)) return { ...first.value, source: "cache" as const, snapshotSeq: first.value.seq }
    const fromStore = yield* newestValidSnapshot(store, seqs)
    const storeSeq = Option.match(fromStore, { onNone: () => 0, onSome: (snapshot) => snapshot.seq })
    // The newest listed snapshots were corrupt, and the copy is newer than the one that was valid.
    if (Option.isSome(cached) && cached.value.seq < (seqs[0] ?? 0) && cached.value.seq > storeSeq) {
      const second = yield* useCached(storeSeq)
      if (Option.isSome(second)) return { ...second.value, source: "cache" as const, snapshotSeq: second.value.seq }
    }
    return Option.match(fromStore, {
      onNone: () => ({ seq: 0, state: emptyState, source: "none" as const, snapshotSeq: 0, segmentHash: undefined }),
      onSome: (snapshot) => ({ ...snapshot, source: "store" as const, snapshotSeq: snapshot.seq, segmentHash: undefined })
    })
  })

/** The newest snapshot after `from` that does not read (replay skipped it), and why. */
const unreadableSnapshot = (store: ObjectStoreShape, from: number) =>
  Effect.gen(function* () {
    for (const seq of yield* snapshotSeqs(store)) {
      if (seq <= from) continue
      const body = yield* readKey(store, snapshotKey(seq))
      if (body === undefined) continue
      const parsed = parseSnapshot(seq, body)
      if (Either.isLeft(parsed)) return Option.some({ key: snapshotKey(seq), reason: `snapshot unreadable (${parsed.left})` })
    }
    return Option.none<{ key: string; reason: string }>()
  })

/** Segments per batch of reads during replay. */
const FETCH_BATCH = 64

const fetchSegment = (store: ObjectStoreShape, key: string) =>
  Effect.gen(function* () {
    const seq = seqOf(SEGMENT_KEY, key)
    if (seq === undefined) return yield* new LogCorrupt({ key, reason: "not a segment name (log/{seq:016}.json)" })
    const body = yield* readKey(store, key)
    if (body === undefined) return yield* new LogCorrupt({ key, reason: "listed but vanished during replay" })
    return { key, seq, body, events: yield* parseSegment(key, seq, body) }
  })

/**
 * The segments of `metas`, in their order, read by `FETCH_CONCURRENCY` workers that each take the next key:
 * a fiber per worker rather than per segment, so fewer short-lived objects per segment outlive the young
 * generation (the first to fail ends the batch).
 */
const fetchBatch = (store: ObjectStoreShape, metas: ReadonlyArray<{ readonly key: string }>) =>
  Effect.gen(function* () {
    const segments: Array<Effect.Effect.Success<ReturnType<typeof fetchSegment>>> = []
    let next = 0
    const worker = Effect.gen(function* () {
      while (next < metas.length) {
        const i = next++
        segments[i] = yield* fetchSegment(store, metas[i]!.key)
      }
    })
    yield* Effect.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, metas.length) }, () => worker), { concurrency: "unbounded", discard: true })
    return segments
  })

/**
 * Replays the log read-only: newest valid snapshot (or the cached copy, see `replayStart`), then every
 * segment after it in order. A segment that does not decode, or a missing sequence number, fails with
 * `LogCorrupt`; nothing is skipped. Usable offline (`nstance-admin state`) since it never writes.
 */
export const replayStore = Effect.fn("eventLog.replay")(function* (store: ObjectStoreShape, cache?: SnapshotCache, warm?: WarmStart) {
  const fromWarm = warm === undefined ? Option.none() : yield* warmStart(store, warm)
  // With a followed state there is no snapshot to parse: the cached copy is not even read.
  const start = Option.isSome(fromWarm) ? fromWarm.value : yield* replayStart(store, cache)
  if (start.source === "cache") yield* Effect.logInfo(`event log: replaying from the cached snapshot at seq ${start.seq}`)
  if (start.source === "warm") yield* Effect.logDebug(`event log: replaying from the followed state at seq ${start.seq}`)
  const last: Array<LoggedEvent> = []
  // One fold over every segment, merged into the state once at the end: the segments stream through it and
  // only the instances they touch are held, never the events nor a state per segment.
  const folding = startFold(start.state)
  let lastSeq = start.seq
  let lastBody: Uint8Array | undefined
  yield* store.list("log/", start.seq === 0 ? undefined : segmentKey(start.seq)).pipe(
    Stream.mapError(unavailable("list", "log/")),
    // Read in batches by a few workers: a stream element and a fiber per segment cost ~5x the time and left
    // more garbage for the old space (30k small segments: 18 s and a 177 MB heap, against ~3 s and ~115 MB).
    Stream.grouped(FETCH_BATCH),
    Stream.mapEffect((metas) => fetchBatch(store, Chunk.toReadonlyArray(metas))),
    Stream.flattenIterables,
    Stream.runForEach((segment) => {
      if (segment.seq !== lastSeq + 1) {
        // Right after the snapshot replay started from: the segments were pruned behind a newer snapshot
        // that did not read. That snapshot is the object to name, not the first missing segment.
        const prunedPast = lastSeq === start.seq ? unreadableSnapshot(store, start.seq) : Effect.succeed(Option.none())
        return Effect.flatMap(prunedPast, (snapshot) =>
          Effect.fail(
            Option.match(snapshot, {
              onSome: ({ key, reason }) =>
                new LogCorrupt({ key, reason: `${reason}; the segments before seq ${segment.seq} were pruned behind it, so the log cannot be replayed` }),
              onNone: () =>
                new LogCorrupt({
                  key: segmentKey(lastSeq + 1),
                  reason: `missing: the log jumps from seq ${lastSeq} to ${segment.seq}${lastSeq === start.seq ? " (pruned beyond every valid snapshot?)" : ""}`
                })
            })
          ))
      }
      for (const event of segment.events) {
        last.push({ seq: segment.seq, event })
        if (last.length > 2 * LAST_EVENTS) last.splice(0, last.length - LAST_EVENTS)
      }
      folding.add(segment.events, segment.seq)
      lastSeq = segment.seq
      lastBody = segment.body
      return Effect.void
    })
  )
  return {
    state: folding.state(),
    seq: lastSeq,
    lastEvents: last.slice(-LAST_EVENTS),
    snapshotSeq: start.snapshotSeq,
    snapshotSource: start.source,
    lastSegmentHash: lastBody === undefined ? start.segmentHash : sha256(lastBody)
  } satisfies Replayed
})
