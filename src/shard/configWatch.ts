/**
 * Keeps the shard config current while the daemon runs: every few seconds a HEAD of `config.jsonc`, and the
 * body only when its etag moved. A valid new config is published to the `SubscriptionRef` the leader's
 * reconcile loop follows, so a `config push` that changes group sizes converges without a restart; an
 * invalid one (or one naming another shard) is reported once and the last good config stays in force.
 */
import { Effect, Schedule, SubscriptionRef } from "effect"
import { formatProblem, type ParsedShardConfig } from "../domain/config/index.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { type ConfigSource, loadConfig } from "./shardConfig.js"
import { CONFIG_POLL } from "./policies.js"

/** Config warnings (fields this build ignores, the Proxmox provider's answers) are said once per config. */
const logWarnings = (config: ParsedShardConfig) =>
  Effect.forEach(config.warnings, (warning) => Effect.logWarning(`config: ${formatProblem(warning)}`), { discard: true })

export const watchConfig = (source: ConfigSource, ref: SubscriptionRef.SubscriptionRef<ParsedShardConfig>) =>
  Effect.gen(function* () {
    yield* logWarnings(yield* SubscriptionRef.get(ref))
    if (source._tag === "Local") return
    const store = yield* ObjectStore
    let seenEtag = (yield* store.head(source.key).pipe(Effect.option)).pipe((meta) => (meta._tag === "Some" ? meta.value.etag : ""))
    const check = Effect.gen(function* () {
      const meta = yield* store.head(source.key).pipe(Effect.option)
      const etag = meta._tag === "Some" ? meta.value.etag : ""
      if (etag === seenEtag) return
      seenEtag = etag
      const loaded = yield* loadConfig(source).pipe(Effect.either)
      if (loaded._tag === "Right") {
        const before = yield* SubscriptionRef.get(ref)
        const sizes = (config: ParsedShardConfig) =>
          Object.values(config.config.groups).flatMap((groups) => Object.values(groups)).reduce((sum, group) => sum + group.size, 0)
        yield* SubscriptionRef.set(ref, loaded.right)
        yield* logWarnings(loaded.right)
        yield* Effect.logInfo(`shard config reloaded (etag ${etag}): ${sizes(before)} → ${sizes(loaded.right)} desired VMs`)
        return
      }
      const error = loaded.left
      const lines = error._tag === "ConfigUnavailable" ? error.lines : [error.message]
      yield* Effect.forEach(lines, (line) => Effect.logError(`new shard config not used: ${line}`), { discard: true })
    })
    yield* check.pipe(Effect.repeat(Schedule.spaced(CONFIG_POLL)))
  })
