/**
 * Runs the shards of one process (`nstance-server --shard a,b`), each as its own daemon fiber in a
 * `FiberMap` keyed by shard id, so one shard's crash or bad config never stops the others. With a single
 * shard nothing is supervised: a fatal start error (a config of another shard) ends the process with that
 * one line, as an operator running one shard expects.
 */
import { Cause, Effect, FiberMap, Option, Schedule, type Scope } from "effect"
import type { PveSettingsError } from "../layers/ProxmoxApiHttp.js"
import type { PkiLoadError } from "../services/ClusterPki.js"
import { DuplicateReplica } from "../services/LeaderLease.js"
import type { StoreError } from "../services/ObjectStore.js"
import { type DaemonSettings, runDaemon } from "./daemon.js"
import type { ShardMismatch } from "../shard/shardConfig.js"

export interface SupervisedShard {
  readonly shard: string
  readonly settings: DaemonSettings
}

export interface SupervisorOptions {
  /** Delays between restarts of a failed shard when several run (default `shardRestart`). */
  readonly restart?: Schedule.Schedule<unknown, unknown>
}

/**
 * 5 s doubling to 5 min: a shard whose config names another shard, or whose store refuses us, is retried
 * without a tight loop of bucket reads, and still recovers within minutes of the operator's fix.
 */
export const shardRestart: Schedule.Schedule<unknown, unknown> = Schedule.exponential("5 seconds", 2).pipe(
  Schedule.either(Schedule.spaced("5 minutes"))
)

const oneLine = (cause: Cause.Cause<unknown>): string =>
  Option.match(Cause.failureOption(cause), {
    onNone: () => Cause.pretty(cause),
    onSome: (error) =>
      typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" ? error.message : String(error)
  })

/** A second process with our --id: a restart would meet it again, so it ends the whole process. */
const duplicateIn = (cause: Cause.Cause<unknown>): Option.Option<DuplicateReplica> =>
  Option.filter(Cause.failureOption(cause), (error): error is DuplicateReplica => error instanceof DuplicateReplica)

/**
 * One shard's daemon, restarted after `schedule`'s delay whenever it fails or dies; interruption ends it,
 * and so does a duplicate `--id` (which fails it).
 */
const supervised = (shard: SupervisedShard, schedule: Schedule.Schedule<unknown, unknown>): Effect.Effect<never, DuplicateReplica> =>
  Effect.scoped(runDaemon(shard.settings)).pipe(
    Effect.sandbox,
    Effect.tapError((cause) =>
      Cause.isInterruptedOnly(cause) || Option.isSome(duplicateIn(cause))
        ? Effect.void
        : Effect.logError(`shard ${shard.shard} stopped: ${oneLine(cause)}; the other shards keep running, restarting it after a backoff`)),
    Effect.retry({ schedule, while: (cause) => !Cause.isInterruptedOnly(cause) && Option.isNone(duplicateIn(cause)) }),
    // Only an interruption or a duplicate --id gets here (the retry never gives up on anything else).
    Effect.catchAll((cause) => Option.match(duplicateIn(cause), { onNone: () => Effect.interrupt, onSome: Effect.fail })),
    Effect.annotateLogs({ shard: shard.shard })
  )

/**
 * Runs every shard until the scope closes (SIGINT/SIGTERM); each resigns its lease on the way out. With one
 * shard its daemon's failure is this effect's failure; with several, failures are logged and restarted.
 */
export const runShards = (
  shards: ReadonlyArray<SupervisedShard>,
  options: SupervisorOptions = {}
): Effect.Effect<never, StoreError | PveSettingsError | ShardMismatch | PkiLoadError | DuplicateReplica, Scope.Scope> =>
  Effect.gen(function* () {
    const fibers = yield* FiberMap.make<string, never, StoreError | PveSettingsError | ShardMismatch | PkiLoadError | DuplicateReplica>()
    const only = shards.length === 1 ? shards[0] : undefined
    if (only !== undefined) {
      yield* FiberMap.run(fibers, only.shard, Effect.scoped(runDaemon(only.settings)).pipe(Effect.annotateLogs({ shard: only.shard })))
    } else {
      for (const shard of shards) yield* FiberMap.run(fibers, shard.shard, supervised(shard, options.restart ?? shardRestart))
    }
    // Fails with the first failure (with several shards only a duplicate --id); otherwise waits until interrupted.
    yield* FiberMap.join(fibers)
    return yield* Effect.never
  })
