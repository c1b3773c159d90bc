/**
 * The writer: `open` fences out earlier leaders by writing the segment that elects this one; concurrent appends
 * share one segment (group commit) through a queue drained by a single writer fiber, and the folded state is
 * updated only after the segment is durable; a snapshot follows every `snapshotEvery` events.
 */
import { randomBytes } from "node:crypto"
import { Clock, Deferred, Duration, Effect, Either, Option, Queue, Ref, type Scope, SubscriptionRef } from "effect"
import { makeInstanceIdGenerator } from "../../domain/instanceId.js"
import { encodeEvent, LeaderElected, LogIdentity, type ShardEvent, type ShardEventEncoded } from "../../domain/shard/events.js"
import { fold, type State } from "../../domain/shard/state.js"
import { type EventLogShape, type Fenced, LogUnavailable } from "../../services/EventLog.js"
import type { ObjectStoreShape } from "../../services/ObjectStore.js"
import { fence, fenceTaken, settleInDoubt } from "./fencing.js"
import { parseProblem, parseSegment, segmentBody, sha256 } from "./format.js"
import { type EventLogOptions, resolve } from "./options.js"
import { segmentKey } from "./paths.js"
import { replayStore } from "./replay.js"
import { putSegment, readKey } from "./segmentStore.js"
import { writeSnapshot as snapshotOf } from "./snapshots.js"
import { commit, makeWriterState, notOpen, type Pending, type Status } from "./writerState.js"

/**
 * A new log identity: "log" and a UUIDv7 in the instance IDs' base32, its time from Effect's Clock. The random
 * part comes from the OS, not Effect's `Random`: two servers started at the same moment must never mint the same
 * identity, and drawing from a seeded simulation's `Random` would shift every later draw of its world (the
 * chaos seeds replay the same histories with or without identities). Nothing is decided from its value.
 */
const mintLogId = Effect.map(Clock.currentTimeMillis, (now) => makeInstanceIdGenerator()("log", now, new Uint8Array(randomBytes(16))))

/** Splits queued appends into segments of at most `max` events (one append is never split). */
const chunkByEvents = (items: ReadonlyArray<Pending>, max: number): Array<Array<Pending>> => {
  const chunks: Array<Array<Pending>> = []
  let current: Array<Pending> = []
  let count = 0
  for (const item of items) {
    if (current.length > 0 && count + item.events.length > max) {
      chunks.push(current)
      current = []
      count = 0
    }
    current.push(item)
    count += item.events.length
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

/** The event log over `store`; the writer fiber lives as long as the calling scope. */
export const makeEventLog: (store: ObjectStoreShape, options?: EventLogOptions) => Effect.Effect<EventLogShape, never, Scope.Scope> =
  Effect.fn("eventLog.make")(function* (store: ObjectStoreShape, options: EventLogOptions = {}) {
    const cfg = yield* resolve(options)
    const writer = yield* makeWriterState
    const { stateRef, status, lastSeqRef, lastSegmentHash } = writer
    const queue = yield* Queue.unbounded<Pending>()
    /** Appends queued or in flight, until their callers hear the outcome (see `settledState`). */
    const unsettled = yield* Ref.make<ReadonlySet<{ readonly events: ReadonlyArray<ShardEvent>; readonly done: Deferred.Deferred<{ readonly seq: number }, Fenced | LogUnavailable> }>>(new Set())
    /** Events queued and not yet taken by the writer; reaching `maxBatch` ends the batch window early. */
    const queuedEvents = yield* Ref.make(0)
    const available = yield* Effect.makeLatch(false)
    const full = yield* Effect.makeLatch(false)
    /** Serialises open, segment writes and snapshots: the status and the state change only under it. */
    const lock = yield* Effect.makeSemaphore(1)

    const settleAll = (items: ReadonlyArray<Pending>, exit: Effect.Effect<{ readonly seq: number }, Fenced | LogUnavailable>) =>
      Effect.forEach(items, (item) => Deferred.complete(item.done, exit), { discard: true })

    const writeSnapshot = snapshotOf(store, writer, cfg.keepSegments, options.cache)

    // -- one segment --

    const flush = (batch: ReadonlyArray<Pending>) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          let s = yield* Ref.get(status)
          if (s._tag === "Open" && s.inDoubt !== undefined) {
            const settled = yield* Effect.either(settleInDoubt(store, writer, s.term, s.inDoubt))
            if (Either.isLeft(settled)) return yield* settleAll(batch, Effect.fail(settled.left))
            s = yield* Ref.get(status)
          }
          if (s._tag !== "Open") return yield* settleAll(batch, Effect.fail(yield* notOpen(writer, "append")))
          const seq = s.lastSeq + 1
          const events = batch.flatMap((item) => item.events)
          const body = segmentBody(seq, batch.flatMap((item) => item.encoded))
          const outcome = yield* Effect.either(putSegment(store, seq, body))
          if (Either.isLeft(outcome)) {
            if (outcome.left.inDoubt === true) {
              yield* Ref.update(status, (current) => (current._tag === "Open" ? { ...current, inDoubt: { seq, body, events } } : current))
            }
            yield* Effect.logWarning(`event log: ${outcome.left.message}`)
            return yield* settleAll(batch, Effect.fail(outcome.left))
          }
          if (outcome.right._tag === "Taken") {
            const error = yield* fenceTaken(writer, s.term, seq, outcome.right.body)
            return yield* settleAll(batch, Effect.fail(error))
          }
          yield* commit(writer, seq, events, body)
          yield* settleAll(batch, Effect.succeed({ seq }))
          const after = yield* Ref.get(status)
          if (after._tag === "Open" && after.sinceSnapshot >= cfg.snapshotEvery) {
            yield* writeSnapshot.pipe(Effect.catchAll((error) => Effect.logWarning(`event log: automatic snapshot failed: ${error.message}`)))
          }
        })
      ).pipe(Effect.withSpan("eventLog.flush", { attributes: { appends: batch.length } }))

    // -- the writer fiber: wait for work, hold the window open, take everything, write it --

    const writerRound = Effect.gen(function* () {
      yield* available.await
      if (cfg.windowMillis > 0) yield* Effect.raceFirst(Effect.sleep(Duration.millis(cfg.windowMillis)), full.await)
      // Close before taking: an append that lands after the take reopens the latch for the next round.
      yield* available.close
      yield* full.close
      const items = Array.from(yield* Queue.takeAll(queue))
      yield* Ref.update(queuedEvents, (n) => Math.max(0, n - items.reduce((sum, item) => sum + item.events.length, 0)))
      yield* Effect.forEach(chunkByEvents(items, cfg.maxBatch), flush, { discard: true }).pipe(
        Effect.onInterrupt(() =>
          settleAll(items, Effect.fail(new LogUnavailable({ operation: "append", key: "log/", reason: "the event log closed while writing", inDoubt: true })))
        )
      )
    })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Ref.update(status, (s): Status => (s._tag === "Fenced" ? s : { _tag: "Closed" }))
        const left = Array.from(yield* Queue.takeAll(queue))
        yield* settleAll(left, Effect.fail(new LogUnavailable({ operation: "append", key: "log/", reason: "the event log is closed" })))
      })
    )
    yield* Effect.forkScoped(
      writerRound.pipe(
        Effect.forever,
        Effect.catchAllCause((cause) => Effect.logError("event log: the writer failed; appends fail until the log is reopened", cause)),
        Effect.annotateLogs({ component: "eventLog" })
      )
    )

    // -- the interface --

    const open = (replica: string, term: number) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const before = yield* Ref.get(status)
          if (before._tag !== "Unopened") {
            return yield* new LogUnavailable({ operation: "open", key: "log/", reason: `open called on a log that is ${before._tag.toLowerCase()}` })
          }
          const warm = options.follower === undefined ? Option.none() : yield* options.follower.take
          const replayed = yield* replayStore(store, options.cache, Option.getOrUndefined(warm))
          let state = replayed.state
          let seq = replayed.seq
          let lastBody: Uint8Array | undefined
          const fencedBy = (candidate: State) =>
            // Our own term and replica means an earlier open of ours whose LeaderElected was in doubt.
            candidate.term > term || (candidate.term === term && candidate.leader !== replica)
          if (fencedBy(state)) {
            return yield* yield* fence(writer, term, seq + 1, `the log already has term ${state.term} (leader ${state.leader ?? "unknown"})`)
          }
          const elected = LeaderElected.make({ term, replica })
          // A log without an identity gets one in the segment that elects this leader: the first segment of
          // a new log, or the next one of a log written before identities existed.
          const identity = LogIdentity.make({ logId: yield* mintLogId, at: yield* Clock.currentTimeMillis })
          for (;;) {
            const next = seq + 1
            const events = state.logId === undefined ? [elected, identity] : [elected]
            const encoded: Array<ShardEventEncoded> = []
            for (const event of events) {
              const result = encodeEvent(event)
              if (Either.isLeft(result)) return yield* Effect.dieMessage(`event log: cannot encode ${event._tag}: ${parseProblem(result.left)}`)
              encoded.push(result.right)
            }
            const body = segmentBody(next, encoded)
            const outcome = yield* putSegment(store, next, body)
            if (outcome._tag === "Written") {
              if (state.logId === undefined) {
                yield* Effect.logInfo(seq === 0
                  ? `event log: a new log, identity ${identity.logId} (written into the notes of every VM it creates)`
                  : `event log: a log written before identities; it is ${identity.logId} from now on (written into the notes of every VM it creates)`)
              }
              state = fold(events, state, next)
              seq = next
              lastBody = body
              break
            }
            // A straggling write of the previous leader, or a newer leader: fold it in and decide.
            if (outcome.body === undefined) {
              return yield* yield* fence(writer, term, next, `${segmentKey(next)} existed and then vanished`)
            }
            state = fold(yield* parseSegment(segmentKey(next), next, outcome.body), state, next)
            seq = next
            lastBody = outcome.body
            if (fencedBy(state)) {
              return yield* yield* fence(writer, term, next, `${segmentKey(next)} carries term ${state.term} (leader ${state.leader ?? "unknown"})`)
            }
          }
          yield* SubscriptionRef.set(stateRef, state)
          yield* Ref.set(status, { _tag: "Open", term, lastSeq: seq, sinceSnapshot: seq - replayed.snapshotSeq, inDoubt: undefined })
          yield* Ref.set(lastSeqRef, seq)
          yield* Ref.set(lastSegmentHash, lastBody === undefined ? "" : sha256(lastBody))
          // The warm start is what makes a large shard's take-over quick; say when it was used (and when not).
          const from = Option.isNone(warm)
            ? ""
            : replayed.snapshotSource === "warm" ? `, replayed from the state followed to seq ${warm.value.seq}` : `, the state followed to seq ${warm.value.seq} not usable`
          yield* Effect.logInfo(`event log: opened at seq ${seq} as ${replica}, term ${term} (log ${state.logId ?? "?"}${from})`)
        })
      ).pipe(Effect.withSpan("eventLog.open", { attributes: { replica, term } }), Effect.annotateLogs({ component: "eventLog" }))

    const append = (events: ReadonlyArray<ShardEvent>) =>
      Effect.gen(function* () {
        const s = yield* Ref.get(status)
        if (s._tag !== "Open") return yield* yield* notOpen(writer, "append")
        if (events.length === 0) return { seq: s.lastSeq }
        const encoded: Array<ShardEventEncoded> = []
        for (const event of events) {
          const result = encodeEvent(event)
          if (Either.isLeft(result)) return yield* Effect.dieMessage(`event log: refusing to append an invalid ${event._tag}: ${parseProblem(result.left)}`)
          encoded.push(result.right)
        }
        const done = yield* Deferred.make<{ readonly seq: number }, Fenced | LogUnavailable>()
        const pending = { events, done }
        yield* Ref.update(unsettled, (set) => new Set(set).add(pending))
        yield* Queue.offer(queue, { events, encoded, done })
        const queued = yield* Ref.updateAndGet(queuedEvents, (n) => n + events.length)
        yield* available.open
        if (queued >= cfg.maxBatch) yield* full.open
        return yield* Deferred.await(done).pipe(Effect.ensuring(Ref.update(unsettled, (set) => {
          const rest = new Set(set)
          rest.delete(pending)
          return rest
        })))
      })

    const settledState = (touches: (event: ShardEvent) => boolean) =>
      Effect.gen(function* () {
        const waiting = [...(yield* Ref.get(unsettled))].filter((p) => p.events.some(touches))
        yield* Effect.forEach(waiting, (p) => Effect.exit(Deferred.await(p.done)), { discard: true })
        return yield* SubscriptionRef.get(stateRef)
      })

    /**
     * The GET happens outside the lock: a store that hangs must not hold up the writer (whose queued
     * segment would then go out only once the lease is lost). What it found is judged under the lock: our own
     * segment, written meanwhile, has moved `lastSeq` past it or is the one in doubt.
     */
    const checkTail = () =>
      Effect.gen(function* () {
        const before = yield* Ref.get(status)
        if (before._tag === "Fenced") return yield* before.error
        if (before._tag !== "Open") return
        const next = before.lastSeq + 1
        const body = yield* readKey(store, segmentKey(next))
        if (body === undefined) return
        return yield* lock.withPermits(1)(
          Effect.gen(function* () {
            const s = yield* Ref.get(status)
            if (s._tag === "Fenced") return yield* s.error
            if (s._tag !== "Open" || s.lastSeq >= next) return
            if (s.inDoubt !== undefined) {
              const settled = yield* settleInDoubt(store, writer, s.term, s.inDoubt)
              if (Option.isSome(settled)) return yield* settled.value
              return
            }
            return yield* yield* fenceTaken(writer, s.term, next, body)
          })
        )
      }).pipe(Effect.withSpan("eventLog.checkTail"), Effect.annotateLogs({ component: "eventLog" }))

    return {
      open,
      append,
      state: SubscriptionRef.get(stateRef),
      settledState,
      seq: Ref.get(lastSeqRef),
      changes: stateRef.changes,
      snapshot: () => lock.withPermits(1)(writeSnapshot),
      checkTail
    } satisfies EventLogShape
  })
