/**
 * Validates a shard's config as the servers would load it: `{prefix}config.jsonc` with the dynamic groups of
 * `{prefix}groups.jsonc` merged in. Shared by the admin endpoint's `ValidateConfig` and `nstance-server
 * --validate` without a file (the original's remote validation).
 */
import { Effect, Either } from "effect"
import { CONFIG_KEY } from "../domain/bucketKeys.js"
import { formatProblem, type ParsedShardConfig } from "../domain/config/index.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { mergeAndValidate, readDynamicGroups } from "../shard/shardConfig.js"

export interface StoredConfigValidation {
  readonly valid: boolean
  readonly key: string
  /** What makes it invalid, one line each (`path: message`). */
  readonly problems: ReadonlyArray<string>
  readonly warnings: ReadonlyArray<string>
  readonly groups: number
  readonly desiredVms: number
}

export const desiredVmsOf = (config: ParsedShardConfig) =>
  Object.values(config.config.groups).flatMap((groups) => Object.values(groups)).reduce((sum, group) => sum + group.size, 0)
export const groupCountOf = (config: ParsedShardConfig) =>
  Object.values(config.config.groups).reduce((sum, groups) => sum + Object.keys(groups).length, 0)

/** The stored config of the shard whose store (scoped to its prefix) is provided; `shard`: the expected `shard.id`. */
export const validateStoredConfig = (shard: string | undefined, key = CONFIG_KEY): Effect.Effect<StoredConfigValidation, never, ObjectStore> =>
  Effect.gen(function* () {
    const store = yield* ObjectStore
    const object = yield* store.get(key).pipe(Effect.either)
    if (Either.isLeft(object)) {
      const reason = object.left._tag === "NotFound" ? `no shard config at ${key}; upload one with nstance-admin config push` : object.left.message
      return { valid: false, key, problems: [reason], warnings: [], groups: 0, desiredVms: 0 }
    }
    const dynamic = yield* readDynamicGroups().pipe(
      Effect.orElseSucceed(() => ({ groups: {}, problem: "could not be read from the store" }))
    )
    const merged = mergeAndValidate(new TextDecoder().decode(object.right.body), dynamic.groups, key, dynamic.problem)
    if (Either.isLeft(merged)) return { valid: false, key, problems: merged.left.flatMap((r) => r.problems), warnings: [], groups: 0, desiredVms: 0 }
    const parsed = merged.right.parsed
    const problems = shard !== undefined && parsed.config.shard.id !== shard
      ? [`shard.id: ${JSON.stringify(parsed.config.shard.id)} is not the shard asked for (${JSON.stringify(shard)})`]
      : []
    return {
      valid: problems.length === 0,
      key,
      problems,
      warnings: parsed.warnings.map(formatProblem),
      groups: groupCountOf(parsed),
      desiredVms: desiredVmsOf(parsed)
    }
  })
