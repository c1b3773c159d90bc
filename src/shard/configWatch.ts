/**
 * Keeps the shard config current while the daemon runs: every few seconds a HEAD of `config.jsonc` and of
 * `groups.jsonc` (the dynamic groups), and the bodies only when an etag moved. A valid new config is published to the `SubscriptionRef` the leader's
 * reconcile loop follows, so a `config push` that changes group sizes converges without a restart; an
 * invalid one (or one naming another shard) is reported once and the last good config stays in force —
 * the whole of it: a `groups.jsonc` that does not parse, or whose entries no longer validate, never turns
 * into "no dynamic groups". Until a good version arrives the replica says which object is held and why
 * (`ConfigHeld`: `/readyz`, `nstance_config_stale`), and every rejected version is counted.
 */
import { type Duration, Effect, Ref, Schedule, SubscriptionRef } from "effect"
import { formatProblem, type ParsedShardConfig } from "../domain/config/index.js"
import { recordConfigRejected } from "../metrics/metrics.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { GROUPS_KEY } from "../domain/bucketKeys.js"
import type { ConfigHeld, HeldObject } from "./configHeld.js"
import { type ConfigSource, loadConfig, type RejectedObject, summarizeRejected } from "./shardConfig.js"
import { CONFIG_POLL } from "./policies.js"

/** Config warnings (fields this build ignores, the Proxmox provider's answers) are said once per config. */
const logWarnings = (config: ParsedShardConfig) =>
  Effect.forEach(config.warnings, (warning) => Effect.logWarning(`config: ${formatProblem(warning)}`), { discard: true })

const desiredVms = (config: ParsedShardConfig) =>
  Object.values(config.config.groups).flatMap((groups) => Object.values(groups)).reduce((sum, group) => sum + group.size, 0)

/** Problems logged per rejected version; a runaway document must not become a runaway log. */
const MAX_LOGGED_PROBLEMS = 20

const logRejected = (rejected: ReadonlyArray<RejectedObject>) =>
  Effect.forEach(rejected, (r) =>
    Effect.gen(function* () {
      const shown = r.problems.slice(0, MAX_LOGGED_PROBLEMS)
      yield* Effect.forEach(shown, (line) =>
        Effect.logError(`${r.object} not used, the last good config stays in force: ${line.startsWith(`${r.object}: `) ? line.slice(r.object.length + 2) : line}`), { discard: true })
      if (r.problems.length > shown.length) {
        yield* Effect.logError(`${r.object}: and ${r.problems.length - shown.length} more problems (nstance-server --validate lists them all)`)
      }
    }), { discard: true })

/**
 * Loads the config (with the dynamic groups) now and publishes it when it is valid; an invalid one is
 * reported and the last good config stays. What the watcher does on a change, and what the admin
 * endpoint's `RefreshConfig` and group writes do at once instead of waiting for the next poll. `held`
 * (the replica's) records which objects are not in force; a store that does not answer changes nothing there.
 */
export const reloadConfig = (source: ConfigSource, ref: SubscriptionRef.SubscriptionRef<ParsedShardConfig>, why: string, held?: ConfigHeld) =>
  Effect.gen(function* () {
    const loaded = yield* loadConfig(source).pipe(Effect.either)
    if (loaded._tag === "Right") {
      const before = yield* SubscriptionRef.get(ref)
      yield* SubscriptionRef.set(ref, loaded.right)
      yield* logWarnings(loaded.right)
      if (held !== undefined) {
        const was = yield* Ref.getAndSet(held.objects, [])
        if (was.length > 0) yield* Effect.logInfo(`${was.map((h) => h.object).join(" and ")} valid again; the stored config is in force`)
      }
      yield* Effect.logInfo(`shard config reloaded (${why}): ${desiredVms(before)} → ${desiredVms(loaded.right)} desired VMs`)
      return loaded.right
    }
    const error = loaded.left
    const rejected: ReadonlyArray<RejectedObject> | undefined = error._tag === "ConfigUnavailable"
      ? error.rejected
      : error._tag === "ShardMismatch"
      ? [{ object: error.key, problems: [error.message] }]
      : undefined
    if (rejected === undefined) {
      // The store did not answer: nothing is known about the objects, so nothing is marked.
      yield* Effect.logError(`shard config not reloaded: ${error.message}`)
      return yield* Effect.fail(error)
    }
    yield* logRejected(rejected)
    if (held !== undefined) {
      const now: ReadonlyArray<HeldObject> = rejected.map((r) => ({ object: r.object, problem: summarizeRejected(r) }))
      yield* Ref.set(held.objects, now)
      yield* Effect.forEach(rejected, (r) => recordConfigRejected(held.shard, r.object), { discard: true })
    }
    return yield* Effect.fail(error)
  })

export const watchConfig = (
  source: ConfigSource,
  ref: SubscriptionRef.SubscriptionRef<ParsedShardConfig>,
  held?: ConfigHeld,
  poll: Duration.DurationInput = CONFIG_POLL
) =>
  Effect.gen(function* () {
    yield* logWarnings(yield* SubscriptionRef.get(ref))
    if (source._tag === "Local") return
    const store = yield* ObjectStore
    const etags = Effect.all([source.key, GROUPS_KEY].map((key) =>
      store.head(key).pipe(Effect.option, Effect.map((meta) => (meta._tag === "Some" ? meta.value.etag : "")))))
    let seen = (yield* etags).join(" ")
    const check = Effect.gen(function* () {
      const now = (yield* etags).join(" ")
      if (now === seen) return
      const previous = seen
      seen = now
      yield* reloadConfig(source, ref, `etags ${now.trim()}`, held).pipe(
        // A read that failed on the store is tried again at the next poll; a rejected version is not.
        Effect.catchAll((error) => (error._tag === "ConfigUnavailable" || error._tag === "ShardMismatch" ? Effect.void : Effect.sync(() => { seen = previous })))
      )
    })
    yield* check.pipe(Effect.repeat(Schedule.spaced(poll)))
  })
