/**
 * What every part of one shard's leader needs to know about where it runs: cluster and shard ids (for the
 * ownership tags), this replica and its term, and the shard config as a `SubscriptionRef`, so a config
 * push reaches the reconcile loop without a restart.
 */
import { Context, type Duration, type SubscriptionRef } from "effect"
import type { ParsedShardConfig } from "../domain/config/index.js"

export interface ShardContextShape {
  readonly clusterId: string
  readonly shard: string
  readonly replica: string
  readonly term: number
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** Overrides of the GC grace periods (`ORPHAN_GRACE`, `VM_LOSS_GRACE` in policies.ts), for tests and demos. */
  readonly graces?: GcGraces
}

export interface GcGraces {
  readonly orphan?: Duration.DurationInput
  readonly vmLoss?: Duration.DurationInput
}

export class ShardContext extends Context.Tag("nstance/ShardContext")<ShardContext, ShardContextShape>() {}
