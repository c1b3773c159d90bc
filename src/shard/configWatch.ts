/**
 * Keeps the shard config current while the daemon runs: every few seconds a HEAD of `config.jsonc` and of
 * `groups.jsonc` (the dynamic groups), and the bodies only when an etag moved. A valid new config is published to the `SubscriptionRef` the leader's
 * reconcile loop follows, so a `config push` that changes group sizes converges without a restart; an
 * invalid one (or one naming another shard) is reported once and the last good config stays in force.
 */
import { Effect, Schedule, SubscriptionRef } from "effect"
import { formatProblem, type ParsedShardConfig } from "../domain/config/index.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { GROUPS_KEY } from "../domain/dynamicGroups.js"
import { type ConfigSource, loadConfig } from "./shardConfig.js"
import { CONFIG_POLL } from "./policies.js"

/** Config warnings (fields this build ignores, the Proxmox provider's answers) are said once per config. */
const logWarnings = (config: ParsedShardConfig) =>
  Effect.forEach(config.warnings, (warning) => Effect.logWarning(`config: ${formatProblem(warning)}`), { discard: true })

const desiredVms = (config: ParsedShardConfig) =>
  Object.values(config.config.groups).flatMap((groups) => Object.values(groups)).reduce((sum, group) => sum + group.size, 0)

/**
 * Loads the config (with the dynamic groups) now and publishes it when it is valid; an invalid one is
 * reported and the last good config stays. What the watcher does on a change, and what the admin
 * endpoint's `RefreshConfig` and group writes do at once instead of waiting for the next poll.
 */
export const reloadConfig = (source: ConfigSource, ref: SubscriptionRef.SubscriptionRef<ParsedShardConfig>, why: string) =>
  Effect.gen(function* () {
    const loaded = yield* loadConfig(source).pipe(Effect.either)
    if (loaded._tag === "Right") {
      const before = yield* SubscriptionRef.get(ref)
      yield* SubscriptionRef.set(ref, loaded.right)
      yield* logWarnings(loaded.right)
      yield* Effect.logInfo(`shard config reloaded (${why}): ${desiredVms(before)} → ${desiredVms(loaded.right)} desired VMs`)
      return loaded.right
    }
    const error = loaded.left
    const lines = error._tag === "ConfigUnavailable" ? error.lines : [error.message]
    yield* Effect.forEach(lines, (line) => Effect.logError(`new shard config not used: ${line}`), { discard: true })
    return yield* Effect.fail(error)
  })

export const watchConfig = (source: ConfigSource, ref: SubscriptionRef.SubscriptionRef<ParsedShardConfig>) =>
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
      seen = now
      yield* reloadConfig(source, ref, `etags ${now.trim()}`).pipe(Effect.ignore)
    })
    yield* check.pipe(Effect.repeat(Schedule.spaced(CONFIG_POLL)))
  })
