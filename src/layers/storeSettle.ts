/**
 * What every remote object store layer does the same way: retry transient failures with bounded, jittered
 * backoff, and settle a conditional write whose outcome is unknown (a timeout, a 500 from Ceph RGW on a
 * lost race) by re-reading the key instead of guessing. Neutral, so no SDK is loaded by importing it.
 */
import { Effect, FiberRef, Schedule } from "effect"
import { type Precondition, PreconditionFailed, StoreUnavailable } from "../services/ObjectStore.js"

/**
 * The one backoff for transient store failures, whoever retries (the S3 and GCS layers, the event log over a
 * store that does not retry itself): 100 ms doubling, jittered so that replicas failing together do not retry
 * in step, at most `retries` retries. Each caller keeps its own bound.
 */
export const transientBackoff = (retries: number) =>
  Schedule.exponential("100 millis", 2).pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(retries)))

/**
 * The retry loop the current call runs inside, if any, for the loops beneath it to mark. A layer over a store
 * (the event log) cannot tell whether the store retries itself (S3 and GCS do; memory, a directory and the
 * tests' fault wrappers do not). Retrying around a store that retries multiplied the attempts (6 × 4 for the
 * log over S3) and the waits, so the innermost loop, the one next to the wire that also settles ambiguous
 * writes, owns the retries: an outer loop whose cell was marked passes failures through as they come.
 */
const enclosingLoop = FiberRef.unsafeMake<{ nested: boolean } | undefined>(undefined)

/**
 * Retries transient failures (StoreUnavailable) with `transientBackoff`, logging each one; definite answers
 * (NotFound, PreconditionFailed, AccessDenied, InvalidKey) pass through at once, and so does everything when a
 * loop beneath this one (a store's own) has retried and logged already.
 */
export const retryTransient =
  (operation: string, key: string, retries: number) =>
  <A, E extends { readonly _tag: string; readonly message: string }>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.flatMap(FiberRef.get(enclosingLoop), (outer) => {
      if (outer !== undefined) outer.nested = true
      const loop = { nested: false }
      const transient = (error: E) => error._tag === "StoreUnavailable" && !loop.nested
      return effect.pipe(
        Effect.locally(enclosingLoop, loop),
        Effect.tapError((error) =>
          transient(error)
            ? Effect.logWarning(`object store: ${operation} ${key} failed transiently`).pipe(Effect.annotateLogs("reason", error.message))
            : Effect.void
        ),
        Effect.retry({ schedule: transientBackoff(retries), while: transient })
      )
    })

/**
 * Settles a conditional write whose outcome is unknown by reading what is there now. `read` yields the
 * current object or undefined when absent. Equal bytes mean our write landed (unless the etag is still
 * the one we matched against, i.e. nothing was written); a precondition that still holds means it did
 * not land and the caller may retry; anything else means another writer won.
 */
export const settleAmbiguousPut = <E>(
  key: string,
  body: Uint8Array,
  precondition: Precondition,
  read: Effect.Effect<{ readonly body: Uint8Array; readonly etag: string } | undefined, E>,
  reason: string
): Effect.Effect<{ readonly etag: string }, E | PreconditionFailed | StoreUnavailable> =>
  Effect.flatMap(read, (current): Effect.Effect<{ readonly etag: string }, PreconditionFailed | StoreUnavailable> => {
    const notApplied = new StoreUnavailable({
      operation: "put",
      key,
      reason: `conditional write outcome unknown (${reason}); re-read shows it did not apply`
    })
    const lost = new PreconditionFailed({ key, precondition })
    if (precondition._tag === "IfAbsent") {
      if (current === undefined) return Effect.fail(notApplied)
      return bytesEqual(current.body, body) ? Effect.succeed({ etag: current.etag }) : Effect.fail(lost)
    }
    if (current === undefined) return Effect.fail(lost)
    if (current.etag === precondition.etag) return Effect.fail(notApplied)
    return bytesEqual(current.body, body) ? Effect.succeed({ etag: current.etag }) : Effect.fail(lost)
  })

export const bytesEqual = (a: Uint8Array, b: Uint8Array) =>
  a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

