/**
 * Where a shard's config comes from and how it is read: `{prefix}config.jsonc` in the shard's bucket (what
 * operators push) with the dynamic groups of `{prefix}groups.jsonc` merged in, or a local file (development,
 * no dynamic groups). The two are one config: when either is missing, does not parse or does not validate
 * (alone, or merged), the config is unavailable for now, naming the object at fault — the caller retries or
 * keeps the last good one as a whole. Dropping only the bad part would run a config nobody wrote: a broken
 * `groups.jsonc` read as "no dynamic groups" scales every dynamic group to zero. A config naming another
 * shard is refused for good, since acting on it would make this replica take part in that shard's election
 * and claim its VMs.
 */
import { Data, Effect, Either, Option } from "effect"
import { GROUPS_KEY } from "../domain/bucketKeys.js"
import {
  formatProblem,
  formatSyntaxError,
  type ParsedShardConfig,
  parseJsonc,
  validateShardConfig
} from "../domain/config/index.js"
import { type DynamicGroups, parseDynamicGroups, validateWithDynamicGroups } from "../domain/dynamicGroups.js"
import { oneLineText } from "../domain/errorText.js"
import { ObjectStore } from "../services/ObjectStore.js"

export type ConfigSource =
  /** `shard`: the replica's `--shard`; a config naming another shard is refused (ShardMismatch). */
  | { readonly _tag: "Store"; readonly key: string; readonly shard?: string }
  | { readonly _tag: "Local"; readonly parsed: ParsedShardConfig; readonly path: string }

/** A stored object (`config.jsonc`, `groups.jsonc`) that cannot be used as it is, with one line per problem. */
export interface RejectedObject {
  readonly object: string
  readonly problems: ReadonlyArray<string>
}

/** The first problem (and how many more), without the object's name: one bounded line for `/readyz`. */
export const summarizeRejected = (rejected: RejectedObject): string => {
  const [first = "unusable"] = rejected.problems
  const more = rejected.problems.length - 1
  const bare = first.startsWith(`${rejected.object}: `) ? first.slice(rejected.object.length + 2) : first
  return `${oneLineText(bare, 300)}${more > 0 ? ` (and ${more} more)` : ""}`
}

/** A config that could not be used this tick; the reason is logged and the next tick tries again. */
export class ConfigUnavailable extends Data.TaggedError("ConfigUnavailable")<{ readonly rejected: ReadonlyArray<RejectedObject> }> {
  /** Every problem, one line each, naming its object (`config.jsonc: shard.id: …`) where it does not already. */
  get lines(): ReadonlyArray<string> {
    return this.rejected.flatMap((r) => r.problems.map((line) => (line.includes(r.object) ? line : `${r.object}: ${line}`)))
  }
  override get message() {
    return this.rejected.map((r) => `${r.object}: ${summarizeRejected(r)}`).join("; ")
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
 * `{prefix}groups.jsonc` (none when missing), or why it cannot be used: a document that does not parse is
 * never read as "no dynamic groups" — that would scale every dynamic group to zero.
 */
export const readDynamicGroups = Effect.fn("shard.readDynamicGroups")(function* () {
  const store = yield* ObjectStore
  const object = yield* store.get(GROUPS_KEY).pipe(Effect.map(Option.some), Effect.catchTag("NotFound", () => Effect.succeed(Option.none())))
  if (Option.isNone(object)) return { groups: {} as DynamicGroups, etag: Option.none<string>(), problem: undefined }
  const parsed = parseDynamicGroups(readText(object.value))
  return Either.isLeft(parsed)
    ? { groups: {} as DynamicGroups, etag: Option.some(object.value.etag), problem: parsed.left }
    : { groups: parsed.right, etag: Option.some(object.value.etag), problem: undefined }
})

/**
 * `config.jsonc` text and a dynamic groups document → the validated, merged config, or the objects that
 * keep it from being used: `config.jsonc` when it is invalid by itself, `groups.jsonc` when it does not
 * parse or its entries make the merged config invalid (each problem naming its entry).
 */
export const mergeAndValidate = (
  text: string,
  dynamic: DynamicGroups,
  key: string,
  dynamicProblem?: string
): Either.Either<{ readonly parsed: ParsedShardConfig; readonly configJson: unknown }, ReadonlyArray<RejectedObject>> => {
  const groupsDocument: ReadonlyArray<RejectedObject> = dynamicProblem === undefined ? [] : [{ object: GROUPS_KEY, problems: [`${GROUPS_KEY}: ${dynamicProblem}`] }]
  const json = parseJsonc(text)
  if (Either.isLeft(json)) return Either.left([{ object: key, problems: json.left.map(formatSyntaxError) }, ...groupsDocument])
  const alone = validateShardConfig(json.right)
  if (Either.isLeft(alone)) return Either.left([{ object: key, problems: alone.left.errors.map(formatProblem) }, ...groupsDocument])
  if (groupsDocument.length > 0) return Either.left(groupsDocument)
  const merged = Object.keys(dynamic).length === 0 ? Either.right(alone.right) : validateWithDynamicGroups(json.right, dynamic)
  if (Either.isLeft(merged)) return Either.left([{ object: GROUPS_KEY, problems: merged.left.problems }])
  return Either.right({ parsed: { config: merged.right.config, warnings: merged.right.warnings }, configJson: json.right })
}

/** Reads the config and the dynamic groups from the store and merges them (a local config has no dynamic groups). */
export const loadSources = Effect.fn("shard.loadSources")(function* (source: ConfigSource) {
  if (source._tag === "Local") return { parsed: source.parsed, configJson: undefined, dynamic: {} } satisfies LoadedSources
  const store = yield* ObjectStore
  const object = yield* store.get(source.key).pipe(
    Effect.catchTag("NotFound", () =>
      Effect.fail(new ConfigUnavailable({ rejected: [{ object: source.key, problems: [`no shard config at ${source.key}; upload one with nstance-admin config push`] }] })))
  )
  const dynamic = yield* readDynamicGroups()
  const merged = mergeAndValidate(readText(object), dynamic.groups, source.key, dynamic.problem)
  if (Either.isLeft(merged)) return yield* new ConfigUnavailable({ rejected: merged.left })
  if (source.shard !== undefined && merged.right.parsed.config.shard.id !== source.shard) {
    return yield* new ShardMismatch({ shard: source.shard, configShard: merged.right.parsed.config.shard.id, key: source.key })
  }
  return { parsed: merged.right.parsed, configJson: merged.right.configJson, dynamic: dynamic.groups } satisfies LoadedSources
})

/** Reads and validates the shard config from its source, with the dynamic groups merged in. */
export const loadConfig = (source: ConfigSource) => Effect.map(loadSources(source), (loaded) => loaded.parsed)
