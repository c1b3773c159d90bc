/**
 * Where a shard's config comes from and how it is read: `{prefix}config.jsonc` in the shard's bucket (what
 * operators push) with the dynamic groups of `{prefix}groups.jsonc` merged in, or a local file (development,
 * no dynamic groups). A config that is missing or invalid is unavailable for
 * now — the caller retries or keeps the last good one; a config naming another shard is refused for good,
 * since acting on it would make this replica take part in that shard's election and claim its VMs.
 */
import { Data, Effect, Either, Option } from "effect"
import {
  formatProblem,
  formatSyntaxError,
  type ParsedShardConfig,
  parseJsonc,
  type Problem,
  validateShardConfig
} from "../domain/config/index.js"
import { type DynamicGroups, GROUPS_KEY, mergeDynamicGroups, parseDynamicGroups } from "../domain/dynamicGroups.js"
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

/** The config and the dynamic groups as read from the store, before and after their merge. */
export interface LoadedSources {
  readonly parsed: ParsedShardConfig
  /** `config.jsonc` as parsed JSON (not validated): what dynamic group writes check against. */
  readonly configJson: unknown
  readonly dynamic: DynamicGroups
}

const readText = (object: { readonly body: Uint8Array }) => new TextDecoder().decode(object.body)

/**
 * `{prefix}groups.jsonc` (none when missing). A document that does not parse is reported and ignored, so
 * one bad write by hand never keeps the static groups from being reconciled.
 */
export const readDynamicGroups = Effect.fn("shard.readDynamicGroups")(function* () {
  const store = yield* ObjectStore
  const object = yield* store.get(GROUPS_KEY).pipe(Effect.map(Option.some), Effect.catchTag("NotFound", () => Effect.succeed(Option.none())))
  if (Option.isNone(object)) return { groups: {} as DynamicGroups, etag: Option.none<string>(), problem: undefined }
  const parsed = parseDynamicGroups(readText(object.value))
  return Either.isLeft(parsed)
    ? { groups: {} as DynamicGroups, etag: Option.some(object.value.etag), problem: `${GROUPS_KEY} is not used: ${parsed.left}` }
    : { groups: parsed.right, etag: Option.some(object.value.etag), problem: undefined }
})

/**
 * `config.jsonc` text and a dynamic groups document → the validated, merged config. Dynamic groups that
 * would make the config invalid are left out as a whole (and said in a warning); the static config alone
 * must be valid.
 */
export const mergeAndValidate = (
  text: string,
  dynamic: DynamicGroups,
  key: string,
  dynamicProblem?: string
): Either.Either<{ readonly parsed: ParsedShardConfig; readonly configJson: unknown }, ReadonlyArray<string>> => {
  const json = parseJsonc(text)
  const invalid = (problems: ReadonlyArray<Problem>) => [`shard config ${key} is invalid; keeping the leader idle until it is fixed:`, ...problems.map(formatProblem)]
  if (Either.isLeft(json)) return Either.left(invalid(json.left.map((error) => ({ path: "", message: formatSyntaxError(error) }))))
  const extra = dynamicProblem === undefined ? [] : [{ path: GROUPS_KEY, message: dynamicProblem }]
  if (Object.keys(dynamic).length > 0) {
    const merged = validateShardConfig(mergeDynamicGroups(json.right, dynamic))
    if (Either.isRight(merged)) return Either.right({ parsed: { config: merged.right.config, warnings: [...merged.right.warnings, ...extra] }, configJson: json.right })
    const alone = validateShardConfig(json.right)
    if (Either.isLeft(alone)) return Either.left(invalid(alone.left.errors))
    const why = merged.left.errors.map(formatProblem).join("; ")
    return Either.right({
      parsed: { config: alone.right.config, warnings: [...alone.right.warnings, { path: GROUPS_KEY, message: `dynamic groups are not applied: ${why}` }] },
      configJson: json.right
    })
  }
  const alone = validateShardConfig(json.right)
  if (Either.isLeft(alone)) return Either.left(invalid(alone.left.errors))
  return Either.right({ parsed: { config: alone.right.config, warnings: [...alone.right.warnings, ...extra] }, configJson: json.right })
}

/** Reads the config and the dynamic groups from the store and merges them (a local config has no dynamic groups). */
export const loadSources = Effect.fn("shard.loadSources")(function* (source: ConfigSource) {
  if (source._tag === "Local") return { parsed: source.parsed, configJson: undefined, dynamic: {} } satisfies LoadedSources
  const store = yield* ObjectStore
  const object = yield* store.get(source.key).pipe(
    Effect.catchTag("NotFound", () =>
      Effect.fail(new ConfigUnavailable({ lines: [`no shard config at ${source.key}; upload one with nstance-admin config push`] })))
  )
  const dynamic = yield* readDynamicGroups()
  const merged = mergeAndValidate(readText(object), dynamic.groups, source.key, dynamic.problem)
  if (Either.isLeft(merged)) return yield* new ConfigUnavailable({ lines: merged.left })
  if (source.shard !== undefined && merged.right.parsed.config.shard.id !== source.shard) {
    return yield* new ShardMismatch({ shard: source.shard, configShard: merged.right.parsed.config.shard.id, key: source.key })
  }
  return { parsed: merged.right.parsed, configJson: merged.right.configJson, dynamic: dynamic.groups } satisfies LoadedSources
})

/** Reads and validates the shard config from its source, with the dynamic groups merged in. */
export const loadConfig = (source: ConfigSource) => Effect.map(loadSources(source), (loaded) => loaded.parsed)
