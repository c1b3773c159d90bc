/**
 * A warm standby's copy of the log: a replica that does not lead folds the segments the leader appends as they
 * appear, so that when it wins the lease its replay reads only what came after (`WarmStart`) instead of the
 * whole log. It only ever reads: no segment, snapshot or cached copy is written here, whatever happens.
 *
 * Nothing is decided from the followed state. The term's `open` replays from it under the same rules as from a
 * snapshot: the store must still hold its last segment with the same bytes and no newer snapshot, every segment
 * after it is read and must follow without a gap, and `LeaderElected` is then created with IfAbsent at the next
 * sequence number — a segment the leader wrote after our last look is folded in before the term acts.
 */
import { Effect, Option, Ref } from "effect"
import type { ObjectStoreShape } from "../../services/ObjectStore.js"
import { sha256 } from "./format.js"
import { segmentKey } from "./paths.js"
import { replayStore, type WarmStart } from "./replay.js"
import { readKey } from "./segmentStore.js"
import type { SnapshotCache } from "./snapshotCache.js"

type Following =
  /** Nothing folded yet (or dropped): the next look replays from a snapshot. */
  | { readonly _tag: "Cold" }
  | { readonly _tag: "Warm"; readonly warm: WarmStart }
  /**
   * The log did not replay (a corrupt or gapped log): following stops rather than replaying the whole log at
   * every look; the term that wins the lease replays it and names the object.
   */
  | { readonly _tag: "Stopped" }

export interface LogFollower {
  /**
   * One look at the log: folds the segments appended since the last one (reads only). `standingBy` is asked
   * once the look holds the follower: a term that has started meanwhile (and taken the state) is not followed.
   */
  readonly follow: (standingBy?: Effect.Effect<boolean>) => Effect.Effect<void>
  /**
   * What the term's replay starts from, handed over once: the follower forgets it (the term's log holds the
   * state from then on, and a deposed term's writes are followed afresh after it).
   */
  readonly take: Effect.Effect<Option.Option<WarmStart>>
  /** The sequence number folded so far (0: nothing), for logs and tests. */
  readonly seq: Effect.Effect<number>
}

/** A follower of the log in `store`; `cache` is the local snapshot copy a cold start may begin from. */
export const makeLogFollower = (store: ObjectStoreShape, cache?: SnapshotCache): Effect.Effect<LogFollower> =>
  Effect.gen(function* () {
    const following = yield* Ref.make<Following>({ _tag: "Cold" })
    // A look and a hand-over never overlap: the term waits for a look in flight and gets what it folded.
    const lock = yield* Effect.makeSemaphore(1)

    const replayFrom = (warm: WarmStart | undefined) =>
      Effect.gen(function* () {
        const replayed = yield* replayStore(store, cache, warm)
        if (replayed.seq === 0) return Option.none<WarmStart>()
        // Replay that ended on a snapshot did not read the segment it ends at; its hash ties the state to this log.
        const hash = replayed.lastSegmentHash ?? Option.match(Option.fromNullable(yield* readKey(store, segmentKey(replayed.seq))), {
          onNone: () => undefined,
          onSome: sha256
        })
        return hash === undefined ? Option.none<WarmStart>() : Option.some<WarmStart>({ seq: replayed.seq, state: replayed.state, segmentHash: hash })
      })

    const look = Effect.gen(function* () {
      const now = yield* Ref.get(following)
      if (now._tag === "Stopped") return
      if (now._tag === "Warm") {
        // An idle leader appends nothing: one read of the next key answers most looks.
        const next = yield* readKey(store, segmentKey(now.warm.seq + 1))
        if (next === undefined) return
      }
      const folded = yield* replayFrom(now._tag === "Warm" ? now.warm : undefined)
      yield* Ref.set(following, Option.match(folded, { onNone: (): Following => ({ _tag: "Cold" }), onSome: (warm): Following => ({ _tag: "Warm", warm }) }))
    }).pipe(
      Effect.catchTags({
        LogCorrupt: (error) =>
          Effect.zipRight(Ref.set(following, { _tag: "Stopped" }), Effect.logWarning(`event log: not following the log while standing by: ${error.message}`)),
        // The store did not answer: keep what was folded and look again next time.
        LogUnavailable: (error) => Effect.logDebug(`event log: following the log failed: ${error.message}`)
      }),
      Effect.withSpan("eventLog.follow"),
      Effect.annotateLogs({ component: "eventLog" })
    )

    return {
      follow: (standingBy = Effect.succeed(true)) => lock.withPermits(1)(Effect.flatMap(standingBy, (yes) => (yes ? look : Effect.void))),
      take: lock.withPermits(1)(
        Effect.map(Ref.getAndSet(following, { _tag: "Cold" }), (now) => (now._tag === "Warm" ? Option.some(now.warm) : Option.none()))
      ),
      seq: Effect.map(Ref.get(following), (now) => (now._tag === "Warm" ? now.warm.seq : 0))
    } satisfies LogFollower
  })
