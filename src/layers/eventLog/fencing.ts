/**
 * The fence: segment keys are created with IfAbsent, so of two writers only one can own a sequence number, and
 * the loser stops writing at once. Here is what a writer does when it finds a segment it did not write, or one
 * whose write ended without a known outcome.
 */
import { Effect, Either, Option, Ref } from "effect"
import { Fenced } from "../../services/EventLog.js"
import type { ObjectStoreShape } from "../../services/ObjectStore.js"
import { bytesEqual } from "../storeSettle.js"
import { parseSegment } from "./format.js"
import { segmentKey } from "./paths.js"
import { readKey } from "./segmentStore.js"
import { commit, type InDoubt, type WriterState } from "./writerState.js"

/** Marks this writer fenced: no further writes of any kind. */
export const fence = (writer: WriterState, term: number, seq: number, reason: string, corruptKey?: string) =>
  Effect.gen(function* () {
    const error = new Fenced({ term, seq, reason, ...(corruptKey === undefined ? {} : { corruptKey }) })
    yield* Ref.set(writer.status, { _tag: "Fenced", error })
    yield* Effect.logError(`event log: ${error.message}; this writer stops writing`)
    return error
  })

/**
 * Segment `seq` exists and is not ours. A valid segment is another writer's (a newer leader): fenced. An
 * object that does not decode is a corrupt log: fenced too (nothing can be appended after it), and it
 * is named, so the operator learns which object to look at rather than "written by another writer".
 */
export const fenceTaken = (writer: WriterState, term: number, seq: number, body: Uint8Array | undefined) => {
  const key = segmentKey(seq)
  const parsed = body === undefined ? Either.right([]) : parseSegment(key, seq, body)
  return Either.isLeft(parsed)
    ? fence(writer, term, seq, `${key} is not a valid segment (${parsed.left.reason}); nothing can be appended after it`, key)
    : fence(writer, term, seq, `${key} was written by another writer`)
}

/** Settles an in-doubt segment: folds it when it landed, forgets it when absent, fences when another writer owns it. */
export const settleInDoubt = (store: ObjectStoreShape, writer: WriterState, term: number, doubt: InDoubt) =>
  Effect.gen(function* () {
    const current = yield* readKey(store, segmentKey(doubt.seq))
    if (current === undefined) {
      yield* Ref.update(writer.status, (s) => (s._tag === "Open" ? { ...s, inDoubt: undefined } : s))
      return Option.none<Fenced>()
    }
    if (bytesEqual(current, doubt.body)) {
      yield* Effect.logWarning(`event log: segment ${doubt.seq}, reported unavailable, had landed; folding it in`)
      yield* commit(writer, doubt.seq, doubt.events, doubt.body)
      return Option.none<Fenced>()
    }
    return Option.some(yield* fenceTaken(writer, term, doubt.seq, current))
  })
