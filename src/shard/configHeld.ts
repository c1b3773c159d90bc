/**
 * Which of a shard's stored config objects are not in force as stored. A `config.jsonc` or `groups.jsonc`
 * that does not parse or validate leaves the last good config in force as a whole; the replica says so
 * here until a good version arrives, so it is loud everywhere an operator looks: the error log (once per
 * version), `/readyz`'s reason and the `nstance_config_stale` gauge.
 */
import { Effect, Ref } from "effect"

/** One object not in force (`config.jsonc`, `groups.jsonc`), and why in one bounded line. */
export interface HeldObject {
  readonly object: string
  readonly problem: string
}

export interface ConfigHeld {
  /** The shard (for the metrics' labels). */
  readonly shard: string
  /** Empty while the stored config is the one in force. */
  readonly objects: Ref.Ref<ReadonlyArray<HeldObject>>
}

export const makeConfigHeld = (shard: string): Effect.Effect<ConfigHeld> =>
  Effect.map(Ref.make<ReadonlyArray<HeldObject>>([]), (objects) => ({ shard, objects }))
