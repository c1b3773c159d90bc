/**
 * What one writer holds between calls: its status (unopened, open at a sequence number with a segment perhaps in
 * doubt, fenced, closed) and the folded state. Shared by the writer, fencing and snapshots; it changes only
 * under the writer's lock.
 */
import { Deferred, Effect, Ref, SubscriptionRef } from "effect"
import type { ShardEvent, ShardEventEncoded } from "../../domain/shard/events.js"
import { emptyState, fold, type State } from "../../domain/shard/state.js"
import { type Fenced, LogUnavailable } from "../../services/EventLog.js"
import { sha256 } from "./format.js"

/** One append waiting in the group-commit queue. */
export interface Pending {
  readonly events: ReadonlyArray<ShardEvent>
  readonly encoded: ReadonlyArray<ShardEventEncoded>
  readonly done: Deferred.Deferred<{ readonly seq: number }, Fenced | LogUnavailable>
}

/** A segment whose PUT ended without a known outcome; settled by reading it back before the next write. */
export interface InDoubt {
  readonly seq: number
  readonly body: Uint8Array
  readonly events: ReadonlyArray<ShardEvent>
}

export type Status =
  | { readonly _tag: "Unopened" }
  | {
      readonly _tag: "Open"
      readonly term: number
      readonly lastSeq: number
      readonly sinceSnapshot: number
      readonly inDoubt: InDoubt | undefined
    }
  | { readonly _tag: "Fenced"; readonly error: Fenced }
  | { readonly _tag: "Closed" }

export interface WriterState {
  readonly stateRef: SubscriptionRef.SubscriptionRef<State>
  readonly status: Ref.Ref<Status>
  /** Last durable segment, kept after a fence too (for status views). */
  readonly lastSeqRef: Ref.Ref<number>
  /** SHA-256 of the last durable segment's bytes, for the cached snapshot copy. */
  readonly lastSegmentHash: Ref.Ref<string>
}

export const makeWriterState: Effect.Effect<WriterState> = Effect.gen(function* () {
  const stateRef = yield* SubscriptionRef.make<State>(emptyState)
  const status = yield* Ref.make<Status>({ _tag: "Unopened" })
  const lastSeqRef = yield* Ref.make(0)
  const lastSegmentHash = yield* Ref.make("")
  return { stateRef, status, lastSeqRef, lastSegmentHash }
})

/** Why `operation` cannot run now: the fence that stopped this writer, or that it is closed or not open yet. */
export const notOpen = (writer: WriterState, operation: string) =>
  Effect.map(Ref.get(writer.status), (s) =>
    s._tag === "Fenced"
      ? s.error
      : new LogUnavailable({ operation, key: "log/", reason: s._tag === "Closed" ? "the event log is closed" : "the event log is not open yet" })
  )

/** Folds durable segment `seq` into the state; called only once its bytes are in the store. */
export const commit = (writer: WriterState, seq: number, events: ReadonlyArray<ShardEvent>, body: Uint8Array) =>
  Effect.gen(function* () {
    const next = fold(events, yield* SubscriptionRef.get(writer.stateRef), seq)
    yield* SubscriptionRef.set(writer.stateRef, next)
    yield* Ref.set(writer.lastSeqRef, seq)
    yield* Ref.set(writer.lastSegmentHash, sha256(body))
    yield* Ref.update(writer.status, (s) =>
      s._tag === "Open" ? { ...s, lastSeq: seq, sinceSnapshot: s.sinceSnapshot + events.length, inDoubt: undefined } : s
    )
  })
