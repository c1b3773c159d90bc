/**
 * Moving a corrupt object of a shard's event log out of the way: the repair `nstance-admin quarantine`
 * offers, refused for anything that could lose a decision. Allowed: the newest segment when it does not
 * decode (nothing follows it, and nobody could read what it held), and a snapshot that does not read
 * (replay skips it anyway). Refused: a segment with others after it (the hole would stop every replay), a
 * valid segment or snapshot, and a segment shaped like one that this version cannot read (a newer nstance
 * may have written it; deleting it would drop real decisions). The bytes are copied to
 * `quarantine/{key}.{time}` and read back before the original is deleted, so nothing is lost for good.
 */
import { Clock, Data, Effect, Either, Schema, Stream } from "effect"
import { boundText } from "../domain/errorText.js"
import { ifAbsent, type ObjectStoreShape } from "../services/ObjectStore.js"
import { parseSegment, parseSnapshot, SEGMENT_KEY, SNAPSHOT_KEY } from "./EventLogStore.js"

export class QuarantineRefused extends Data.TaggedError("QuarantineRefused")<{ readonly key: string; readonly reason: string }> {
  override get message() {
    return `not quarantining ${this.key}: ${this.reason}`
  }
}

export interface QuarantinePlan {
  readonly key: string
  /** Why the object cannot be read: what makes it safe to move. */
  readonly problem: string
  readonly movedTo: string
  readonly body: Uint8Array
}

/** A body that parses as JSON with a numeric `seq` and an `events` array: a segment, perhaps of a newer writer. */
const SegmentShape = Schema.parseJson(Schema.Struct({ seq: Schema.Number, events: Schema.Array(Schema.Unknown) }))
const segmentShape = Schema.decodeUnknownEither(SegmentShape)

const stamp = (millis: number) => new Date(millis).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z")

/** What `quarantine` would do with `key` (relative to the shard prefix), or why it refuses. */
export const planQuarantine = (store: ObjectStoreShape, key: string, options: { readonly force?: boolean } = {}) =>
  Effect.gen(function* () {
    const refuse = (reason: string) => Effect.fail(new QuarantineRefused({ key: boundText(key, 120), reason }))
    const segment = SEGMENT_KEY.exec(key)
    const snapshot = SNAPSHOT_KEY.exec(key)
    if (segment === null && snapshot === null) return yield* refuse("only a log segment (log/{seq:016}.json) or a snapshot (snapshot/{seq:016}.json) can be quarantined")
    const object = yield* store.get(key).pipe(Effect.catchTag("NotFound", () => refuse("no such object")))
    const body = object.body
    let problem: string
    if (segment !== null) {
      const seq = Number.parseInt(segment[1] ?? "0", 10)
      const after = yield* store.list("log/", key).pipe(Stream.take(1), Stream.runCollect)
      for (const next of after) {
        return yield* refuse(`${next.key} follows it: removing a segment in the middle of the log leaves a hole no replay passes; only the newest segment can be quarantined`)
      }
      const parsed = parseSegment(key, seq, body)
      if (Either.isRight(parsed)) return yield* refuse(`it is a valid segment (${parsed.right.length} events); quarantining it would lose them`)
      const shaped = segmentShape(new TextDecoder().decode(body))
      if (Either.isRight(shaped) && options.force !== true) {
        return yield* refuse(
          `it is shaped like a segment (seq ${shaped.right.seq}, ${shaped.right.events.length} events) that this version cannot read (${parsed.left.reason}): ` +
            "a newer nstance may have written it, and its events would be lost; upgrade instead, or give --force if it is known to be garbage"
        )
      }
      problem = parsed.left.reason
    } else {
      const parsed = parseSnapshot(Number.parseInt(snapshot?.[1] ?? "0", 10), body)
      if (Either.isRight(parsed)) return yield* refuse("it is a valid snapshot")
      problem = parsed.left
    }
    const movedTo = `quarantine/${key}.${stamp(yield* Clock.currentTimeMillis)}`
    return { key, problem, movedTo, body } satisfies QuarantinePlan
  })

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && Buffer.from(a).equals(Buffer.from(b))

/** Copies the object to `plan.movedTo`, reads the copy back, then deletes the original if it is still the same bytes. */
export const applyQuarantine = (store: ObjectStoreShape, plan: QuarantinePlan) =>
  Effect.gen(function* () {
    const refuse = (reason: string) => Effect.fail(new QuarantineRefused({ key: plan.key, reason }))
    yield* store.put(plan.movedTo, plan.body, ifAbsent).pipe(Effect.catchTag("PreconditionFailed", () => refuse(`${plan.movedTo} exists already`)))
    const copy = yield* store.get(plan.movedTo).pipe(Effect.catchTag("NotFound", () => refuse(`the copy ${plan.movedTo} did not read back`)))
    if (!sameBytes(copy.body, plan.body)) return yield* refuse(`the copy ${plan.movedTo} did not read back the same; the original is kept`)
    const current = yield* store.get(plan.key).pipe(Effect.catchTag("NotFound", () => refuse("it vanished meanwhile (the copy is kept)")))
    if (!sameBytes(current.body, plan.body)) return yield* refuse("it changed meanwhile; the original is kept (the copy too)")
    yield* store.delete(plan.key)
  })
