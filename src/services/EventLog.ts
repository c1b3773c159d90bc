/**
 * The shard's event log as the leader sees it: replay on election, fenced and group-committed appends, and
 * the folded state kept current after every durable write. The contract hides where segments live (an
 * object store) and how concurrent appends share one write.
 */
import { Context, Data, type Effect, Option, type Stream } from "effect"
import type { ShardEvent } from "../domain/shard/events.js"
import type { State } from "../domain/shard/state.js"

/**
 * This writer lost the log: another writer (a newer leader) owns the sequence number it tried to write, or
 * the log already carries a term at least as high. Every later append fails the same way.
 */
export class Fenced extends Data.TaggedError("Fenced")<{
  readonly term: number
  readonly seq: number
  readonly reason: string
  /** Set when the object that took our sequence number is not a valid segment: the log is corrupt there. */
  readonly corruptKey?: string
}> {
  override get message() {
    return `event log writer of term ${this.term} is fenced at seq ${this.seq}: ${this.reason}`
  }
}

/**
 * The store could not be read or written (after retries), or the log is not open / already closed. For an
 * append, `inDoubt` says the segment may still have landed; the writer settles that before its next write.
 */
export class LogUnavailable extends Data.TaggedError("LogUnavailable")<{
  readonly operation: string
  readonly key: string
  readonly reason: string
  readonly inDoubt?: boolean
  readonly cause?: unknown
}> {
  override get message() {
    return `event log unavailable (${this.operation} ${this.key}): ${this.reason}${this.inDoubt === true ? " (the write may still have landed)" : ""}`
  }
}

/** A log segment cannot be read as events, or the sequence has a hole: replay stops rather than skip it. */
export class LogCorrupt extends Data.TaggedError("LogCorrupt")<{ readonly key: string; readonly reason: string }> {
  override get message() {
    return `event log corrupt at ${this.key}: ${this.reason}`
  }
}

/**
 * The object that makes the log unusable, when `error` says the log is corrupt (a segment that does not
 * decode, a hole, a snapshot whose segments were pruned): what `/readyz` and `nstance-admin status` name.
 */
export const corruptObject = (error: unknown): Option.Option<{ readonly key: string; readonly reason: string }> =>
  error instanceof LogCorrupt
    ? Option.some({ key: error.key, reason: error.reason })
    : error instanceof Fenced && error.corruptKey !== undefined
    ? Option.some({ key: error.corruptKey, reason: error.reason })
    : Option.none()

export interface EventLogShape {
  /**
   * Replays the log (newest valid snapshot + the segments after it), then appends `LeaderElected{term,
   * replica}` at the next sequence number. Fails with `Fenced` when the log already has a term >= `term`
   * or a newer leader wins that sequence number. Once per layer instance.
   */
  readonly open: (replica: string, term: number) => Effect.Effect<void, Fenced | LogCorrupt | LogUnavailable>
  /**
   * Appends `events` in one segment shared with concurrent callers (group commit); succeeds once the
   * segment is durable, with its sequence number. The state reflects the events when this returns.
   */
  readonly append: (events: ReadonlyArray<ShardEvent>) => Effect.Effect<{ readonly seq: number }, Fenced | LogUnavailable>
  /** The state folded from every durable segment. */
  readonly state: Effect.Effect<State>
  /**
   * The state once every append already queued or in flight with an event matching `touches` has finished
   * (written, or failed). A step that must not act against a decision being written — a clone against the
   * instance's DeleteRequested whose segment is still in flight, or in doubt and being settled — reads this
   * instead of `state`. Optional for test doubles (they read `state`).
   */
  readonly settledState?: (touches: (event: ShardEvent) => boolean) => Effect.Effect<State>
  /** Sequence number of the last durable segment (0 before the first). */
  readonly seq: Effect.Effect<number>
  /** The current state, then every new one after each durable write. */
  readonly changes: Stream.Stream<State>
  /** Writes a snapshot of the current state now (the writer also does so every `snapshotEvery` events). */
  readonly snapshot: () => Effect.Effect<{ readonly seq: number }, Fenced | LogUnavailable>
  /**
   * Looks whether something now occupies the next sequence number (a newer leader's segment, or a corrupt
   * object): then this writer is fenced, as its next append would be. Lets an idle leader learn it can no
   * longer write without waiting for work to append. Optional for test doubles.
   */
  readonly checkTail?: () => Effect.Effect<void, Fenced | LogUnavailable>
}

export class EventLog extends Context.Tag("nstance/EventLog")<EventLog, EventLogShape>() {}
