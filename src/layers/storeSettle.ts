/**
 * What every remote object store layer does the same way: retry transient failures with bounded, jittered
 * backoff, and settle a conditional write whose outcome is unknown (a timeout, a 500 from Ceph RGW on a
 * lost race) by re-reading the key instead of guessing. Neutral, so no SDK is loaded by importing it.
 */
import { Effect, Schedule } from "effect"
import { type Precondition, PreconditionFailed, StoreUnavailable } from "../services/ObjectStore.js"

/**
 * Retries transient failures (StoreUnavailable) with bounded, jittered exponential backoff, logging each
 * one; definite answers (NotFound, PreconditionFailed, AccessDenied, InvalidKey) pass through at once.
 */
export const retryTransient =
  (operation: string, key: string, retries: number) =>
  <A, E extends { readonly _tag: string; readonly message: string }>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    effect.pipe(
      Effect.tapError((error) =>
        error._tag === "StoreUnavailable"
          ? Effect.logWarning(`object store: ${operation} ${key} failed transiently`).pipe(Effect.annotateLogs("reason", error.message))
          : Effect.void
      ),
      Effect.retry({
        schedule: Schedule.exponential("100 millis", 2).pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(retries))),
        while: (error) => error._tag === "StoreUnavailable"
      })
    )

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

