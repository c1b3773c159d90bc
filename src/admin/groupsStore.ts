/**
 * Writes of `{prefix}groups.jsonc`: read the document with its etag, apply a change, check that the merged
 * config is still valid, and write it back only if nobody wrote in between (If-Match, or If-None-Match
 * for a first write). A lost race re-reads and re-applies the change, so concurrent updates — from this
 * replica or a former leader — never overwrite each other; after a bounded number of lost races the call
 * fails with `GroupConflict` having written nothing.
 */
import { Data, Effect, Either, Option, Schedule } from "effect"
import { formatProblem, parseJsonc, validateShardConfig } from "../domain/config/index.js"
import { type DynamicGroups, encodeDynamicGroups, mergeDynamicGroups, parseDynamicGroups } from "../domain/dynamicGroups.js"
import { ifAbsent, ifMatch, ObjectStore, type StoreError } from "../services/ObjectStore.js"
import { CONFIG_KEY, GROUPS_KEY } from "../domain/bucketKeys.js"

/** The change cannot be made (a rule for runtime changes, or the merged config would be invalid). */
export class GroupChangeRefused extends Data.TaggedError("GroupChangeRefused")<{ readonly problems: ReadonlyArray<string> }> {
  override get message() {
    return this.problems.join("; ")
  }
}

/** Every attempt lost to a concurrent writer. */
export class GroupWriteConflict extends Data.TaggedError("GroupWriteConflict")<{ readonly attempts: number }> {
  override get message() {
    return `groups.jsonc changed under each of ${this.attempts} attempts`
  }
}

class LostRace extends Data.TaggedError("LostRace")<{}> {}

/** Attempts at a contended write: 20 in all, a few milliseconds apart at first, jittered so racers spread out. */
export const GROUP_WRITE_ATTEMPTS = 20
const lostRaceRetry = Schedule.exponential("5 millis", 1.5).pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("250 millis")),
  Schedule.intersect(Schedule.recurs(GROUP_WRITE_ATTEMPTS - 1))
)

const text = (body: Uint8Array) => new TextDecoder().decode(body)

/**
 * Applies `change` to the current dynamic groups (given the static config's parsed JSON) and writes the
 * result with optimistic concurrency. `change` returns the new document and a result for the caller, or
 * refuses. Returns the result, the new etag and how many attempts it took.
 */
export const updateDynamicGroups = <A>(
  change: (groups: DynamicGroups, configJson: unknown) => Either.Either<{ readonly groups: DynamicGroups; readonly result: A }, ReadonlyArray<string>>
): Effect.Effect<{ readonly result: A; readonly etag: string; readonly attempts: number }, GroupChangeRefused | GroupWriteConflict | StoreError, ObjectStore> =>
  Effect.gen(function* () {
    const store = yield* ObjectStore
    let attempts = 0
    const attempt = Effect.gen(function* () {
      attempts++
      const configObject = yield* store.get(CONFIG_KEY).pipe(
        Effect.catchTag("NotFound", () => Effect.fail(new GroupChangeRefused({ problems: [`no shard config at ${CONFIG_KEY}; push one first`] })))
      )
      const configJson = parseJsonc(text(configObject.body))
      if (Either.isLeft(configJson)) return yield* new GroupChangeRefused({ problems: [`${CONFIG_KEY} does not parse; fix it first`] })
      const current = yield* store.get(GROUPS_KEY).pipe(Effect.map(Option.some), Effect.catchTag("NotFound", () => Effect.succeed(Option.none())))
      let groups: DynamicGroups = {}
      if (Option.isSome(current)) {
        const parsed = parseDynamicGroups(text(current.value.body))
        // A document broken by hand is not silently replaced: the operator must look at it.
        if (Either.isLeft(parsed)) return yield* new GroupChangeRefused({ problems: [`${GROUPS_KEY} does not parse (${parsed.left}); fix or delete it first`] })
        groups = parsed.right
      }
      const changed = change(groups, configJson.right)
      if (Either.isLeft(changed)) return yield* new GroupChangeRefused({ problems: changed.left })
      const merged = validateShardConfig(mergeDynamicGroups(configJson.right, changed.right.groups))
      if (Either.isLeft(merged)) return yield* new GroupChangeRefused({ problems: merged.left.errors.map(formatProblem) })
      const body = new TextEncoder().encode(encodeDynamicGroups(changed.right.groups))
      const written = yield* store.put(GROUPS_KEY, body, Option.isSome(current) ? ifMatch(current.value.etag) : ifAbsent).pipe(
        Effect.catchTag("PreconditionFailed", () => Effect.fail(new LostRace()))
      )
      return { result: changed.right.result, etag: written.etag, attempts }
    })
    return yield* attempt.pipe(
      Effect.retry({ schedule: lostRaceRetry, while: (error) => error._tag === "LostRace" }),
      Effect.catchTag("LostRace", () => Effect.fail(new GroupWriteConflict({ attempts })))
    )
  }).pipe(Effect.withSpan("admin.updateDynamicGroups"))
