/** How the event log writer batches, snapshots and prunes, and the checks on those settings. */
import { Duration, Effect, Option } from "effect"
import type { LogFollower } from "./follower.js"
import type { SnapshotCache } from "./snapshotCache.js"

export interface EventLogOptions {
  /** How long the writer waits after the first queued append for others to join its segment (default 20 ms). */
  readonly batchWindow?: Duration.DurationInput
  /** Flush as soon as this many events are queued; a segment holds at most this many unless one append is larger (default 256). */
  readonly maxBatch?: number
  /** Write a snapshot after this many events since the last one (default 1000). */
  readonly snapshotEvery?: number
  /** Segments kept behind the newest snapshot when pruning (default 100). */
  readonly keepSegments?: number
  /** A local copy of the newest snapshot, written with every store snapshot and tried first on replay. */
  readonly cache?: SnapshotCache
  /** This replica's warm copy of the log while it stood by: `open` replays only what came after it. */
  readonly follower?: LogFollower
}

export interface Resolved {
  readonly windowMillis: number
  readonly maxBatch: number
  readonly snapshotEvery: number
  readonly keepSegments: number
}

/** The options with their defaults; a nonsensical setting is a programming error, so it dies naming it. */
export const resolve = (options: EventLogOptions): Effect.Effect<Resolved> => {
  const window = Duration.decodeUnknown(options.batchWindow ?? "20 millis")
  const windowMillis = Option.isSome(window) ? Duration.toMillis(window.value) : Number.NaN
  const maxBatch = options.maxBatch ?? 256
  const snapshotEvery = options.snapshotEvery ?? 1000
  const keepSegments = options.keepSegments ?? 100
  if (!Number.isFinite(windowMillis) || windowMillis < 0) return Effect.dieMessage(`EventLogStore: batchWindow must be a finite duration >= 0, got ${String(options.batchWindow)}`)
  if (!Number.isInteger(maxBatch) || maxBatch < 1) return Effect.dieMessage(`EventLogStore: maxBatch must be an integer >= 1, got ${maxBatch}`)
  if (!Number.isInteger(snapshotEvery) || snapshotEvery < 1) return Effect.dieMessage(`EventLogStore: snapshotEvery must be an integer >= 1, got ${snapshotEvery}`)
  if (!Number.isInteger(keepSegments) || keepSegments < 0) return Effect.dieMessage(`EventLogStore: keepSegments must be an integer >= 0, got ${keepSegments}`)
  return Effect.succeed({ windowMillis, maxBatch, snapshotEvery, keepSegments })
}
