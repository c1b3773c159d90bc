/**
 * The shard config as the stack holds it: where it comes from, the last good version (a `SubscriptionRef`
 * the leader's reconcile loop follows), and which stored objects are held back while invalid. The live
 * layer reads the first version before anything else starts and keeps it current for as long as the
 * stack runs; tests provide their own `SubscriptionRef` with `shardConfigOf`.
 */
import { type Duration, Context, Effect, Layer, Schedule, Stream, SubscriptionRef } from "effect"
import type { ParsedShardConfig } from "../domain/config/index.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { type ConfigHeld, makeConfigHeld } from "../shard/configHeld.js"
import { reloadConfig, watchConfig } from "../shard/configWatch.js"
import { type ConfigSource, loadConfig, ShardMismatch } from "../shard/shardConfig.js"
import { ReplicaIdentity } from "./ReplicaIdentity.js"

export interface ShardConfigShape {
  readonly source: ConfigSource
  readonly current: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  readonly held: ConfigHeld
}

export class ShardConfig extends Context.Tag("nstance/app/ShardConfig")<ShardConfig, ShardConfigShape>() {}

export interface ShardConfigSettings {
  readonly source: ConfigSource
  /** How often the bucket's config is checked for a change (default `CONFIG_POLL`, 5 s; tests shorten it). */
  readonly poll?: Duration.DurationInput
  /** Each element asks for the config to be re-read now (SIGHUP), naming why; absent: only the poll re-reads it. */
  readonly reloadRequests?: Stream.Stream<string>
}

// Startup keeps trying to read a missing or invalid config rather than exiting: a restart loop would only
// multiply bucket reads, and the operator's fix (a config push) is picked up at the next attempt.
const startupRetry = Schedule.exponential("1 second", 2).pipe(Schedule.either(Schedule.spaced("30 seconds")))

// A config of another shard is the exception: waiting would not fix it, and it must never be acted on.
const firstConfig = (source: ConfigSource, prefix: string): Effect.Effect<ParsedShardConfig, ShardMismatch, ObjectStore> =>
  loadConfig(source).pipe(
    Effect.tapError((error) =>
      error._tag === "ShardMismatch"
        ? Effect.void
        : Effect.forEach(error._tag === "ConfigUnavailable" ? error.lines : [error.message], (line) => Effect.logWarning(line), { discard: true })),
    Effect.retry({ schedule: startupRetry, while: (error) => error._tag !== "ShardMismatch" }),
    Effect.catchAll((error) => error._tag === "ShardMismatch" ? Effect.fail(new ShardMismatch({ ...error, key: `${prefix}${error.key}` })) : Effect.die(error))
  )

/**
 * Reads the first valid config (waiting out a missing or invalid one), then watches the bucket for a new
 * version and re-reads on each reload request, until the stack's scope closes.
 */
export const ShardConfigLive = (settings: ShardConfigSettings): Layer.Layer<ShardConfig, ShardMismatch, ObjectStore | ReplicaIdentity> =>
  Layer.scoped(
    ShardConfig,
    Effect.gen(function* () {
      const identity = yield* ReplicaIdentity
      const store = yield* ObjectStore
      const first = yield* firstConfig(settings.source, identity.prefix)
      const current = yield* SubscriptionRef.make(first)
      const held = yield* makeConfigHeld(first.config.shard.id)
      const source = settings.source
      yield* watchConfig(source, current, held, settings.poll).pipe(Effect.provideService(ObjectStore, store), Effect.forkScoped)
      if (settings.reloadRequests !== undefined) {
        yield* settings.reloadRequests.pipe(
          Stream.runForEach((why) =>
            source._tag === "Local"
              ? Effect.logInfo(`${why}: the shard config comes from ${source.path} (--config), which is read only at start; nothing re-read`)
              // A config that does not load is logged by reloadConfig and the last good one stays.
              : reloadConfig(source, current, why, held).pipe(Effect.provideService(ObjectStore, store), Effect.ignore)),
          Effect.forkScoped
        )
      }
      return { source, current, held }
    })
  )

/** A config the caller keeps current itself (tests, the chaos world): nothing watches the bucket. */
export const shardConfigOf = (
  current: SubscriptionRef.SubscriptionRef<ParsedShardConfig>,
  source: ConfigSource,
  held?: ConfigHeld
): Layer.Layer<ShardConfig> =>
  Layer.effect(
    ShardConfig,
    Effect.gen(function* () {
      const shard = (yield* SubscriptionRef.get(current)).config.shard.id
      return { source, current, held: held ?? (yield* makeConfigHeld(shard)) }
    })
  )
