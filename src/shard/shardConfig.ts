/**
 * Where a shard's config comes from and how it is read: `{prefix}config.jsonc` in the shard's bucket (what
 * operators push) or a local file (development). A config that is missing or invalid is unavailable for
 * now — the caller retries or keeps the last good one; a config naming another shard is refused for good,
 * since acting on it would make this replica take part in that shard's election and claim its VMs.
 */
import { Data, Effect, Either } from "effect"
import { formatProblem, type ParsedShardConfig, parseShardConfig } from "../domain/config/index.js"
import { ObjectStore } from "../services/ObjectStore.js"

export const CONFIG_KEY = "config.jsonc"

export type ConfigSource =
  /** `shard`: the replica's `--shard`; a config naming another shard is refused (ShardMismatch). */
  | { readonly _tag: "Store"; readonly key: string; readonly shard?: string }
  | { readonly _tag: "Local"; readonly parsed: ParsedShardConfig; readonly path: string }

/** A config that could not be used this tick; the reason is logged and the next tick tries again. */
export class ConfigUnavailable extends Data.TaggedError("ConfigUnavailable")<{ readonly lines: ReadonlyArray<string> }> {
  override get message() {
    return this.lines.join("; ")
  }
}

/**
 * The config in the shard's place names another shard: acting on it would make this replica join that
 * shard's election and claim its VMs. Never retried; the operator must fix the push or the flag.
 */
export class ShardMismatch extends Data.TaggedError("ShardMismatch")<{
  readonly shard: string
  readonly configShard: string
  readonly key: string
}> {
  override get message() {
    return `--shard ${JSON.stringify(this.shard)} does not match shard.id ${JSON.stringify(this.configShard)} in ${this.key}; ` +
      `refusing to act for another shard (push the right config, or fix --shard)`
  }
}

/** Reads and validates the shard config from its source. */
export const loadConfig = Effect.fn("shard.loadConfig")(function* (source: ConfigSource) {
  if (source._tag === "Local") return source.parsed
  const store = yield* ObjectStore
  const object = yield* store.get(source.key).pipe(
    Effect.catchTag("NotFound", () =>
      Effect.fail(new ConfigUnavailable({ lines: [`no shard config at ${source.key}; upload one with nstance-admin config push`] })))
  )
  const parsed = parseShardConfig(new TextDecoder().decode(object.body))
  if (Either.isLeft(parsed)) {
    return yield* new ConfigUnavailable({
      lines: [
        `shard config ${source.key} is invalid; keeping the leader idle until it is fixed:`,
        ...parsed.left.problems.map(formatProblem)
      ]
    })
  }
  if (source.shard !== undefined && parsed.right.config.shard.id !== source.shard) {
    return yield* new ShardMismatch({ shard: source.shard, configShard: parsed.right.config.shard.id, key: source.key })
  }
  return parsed.right
})
