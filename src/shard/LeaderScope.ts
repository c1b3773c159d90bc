/**
 * What a replica does for as long as it holds the lease with term T, in order: replay the event log and
 * append `LeaderElected{T}` (from then on a deposed writer is fenced), look at the cluster once to raise the
 * VMID high-water mark and adopt our VMs the log does not know, and only then start the work — the saga
 * runner, the reconcile loop and the garbage collector. The preflight against PVE (`Preflight.ts`, read-only)
 * begins then too, and runs beside the work (placement waits a bounded time for its first verdict). The scope ends on the first fatal failure (a
 * fenced log above all), and the lease then resigns; losing the lease interrupts it.
 */
import { Duration, Effect, HashMap, Layer, Option, Schedule, SubscriptionRef } from "effect"
import type { ParsedShardConfig } from "../domain/config/index.js"
import { IsoBuilder9660 } from "../layers/IsoBuilder9660.js"
import { UserDataSourceLive } from "../layers/UserDataSourceHttp.js"
import { SchedulerTopsis } from "../layers/SchedulerTopsis.js"
import { EventLogStore, type EventLogOptions } from "../layers/EventLogStore.js"
import { corruptObject, EventLog, type EventLogShape } from "../services/EventLog.js"
import { InstanceIdsLive } from "../services/InstanceIds.js"
import type { ObjectStore } from "../services/ObjectStore.js"
import type { ProxmoxApi } from "../services/ProxmoxApi.js"
import { adoptFromCluster } from "./adopt.js"
import { reportAnomalies } from "./anomalies.js"
import { ClusterView, ClusterViewLive } from "./ClusterView.js"
import { gcLoop } from "./gc.js"
import { OwnershipLive } from "./Ownership.js"
import { Preflight, PreflightLive } from "./Preflight.js"
import { sagaRestart } from "./policies.js"
import { reconcileLoop } from "./reconcile.js"
import { SagaLimits, SagaLimitsLive } from "./SagaLimits.js"
import { SagaRunner, SagaRunnerLive } from "./SagaRunner.js"
import { type GcGraces, type RegistrationSettings, ShardContext } from "./ShardContext.js"
import { AgentTermLive } from "./AgentBackendShard.js"
import { livenessLoop } from "./liveness.js"
import { type LeaderServices, type ShardReplicaShape } from "./ShardReplica.js"

export interface LeaderScopeSettings {
  readonly clusterId: string
  readonly shard: string
  readonly replica: string
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  readonly eventLog?: EventLogOptions
  /** Overrides of the GC grace periods (default: `ORPHAN_GRACE`, `VM_LOSS_GRACE`). */
  readonly graces?: GcGraces
  /**
   * Agent registration (nonces in the user-data, the liveness TTL); absent: off. The agent endpoint itself
   * is served by every replica (`agentEndpoint.ts`) and reaches this term's `AgentTerm` through `handle`.
   */
  readonly registration?: RegistrationSettings
  /** `--advertise-host`, for the advertised addresses user-data and args templates see. */
  readonly advertiseHost?: string
  /** How often an idle leader looks at the log's next seq (default: the election's `frequent_interval`). */
  readonly tailCheck?: Duration.DurationInput
  /** The replica's handle: the term's services are published there once the term has started (absent in tests). */
  readonly handle?: ShardReplicaShape
}

/** The services of one leadership term, built fresh for each term and released when it ends. */
export const leaderLayer = (settings: LeaderScopeSettings, term: number) => {
  const context = Layer.succeed(ShardContext, ShardContext.of({ ...settings, term }))
  const log = EventLogStore(settings.eventLog)
  const base = Layer.mergeAll(context, log, InstanceIdsLive, IsoBuilder9660, SchedulerTopsis, UserDataSourceLive)
  // The preflight reads the cluster through the view's shared read, so the view is built below it.
  const limitsAndView = Layer.mergeAll(SagaLimitsLive, AgentTermLive, OwnershipLive, PreflightLive).pipe(
    Layer.provideMerge(ClusterViewLive),
    Layer.provideMerge(base)
  )
  return SagaRunnerLive.pipe(Layer.provideMerge(limitsAndView))
}

/**
 * Looks at the log's next sequence number every `every`: an idle leader appends nothing, and a segment
 * another writer (or a hand edit) put there would otherwise go unnoticed — the leader would renew its lease
 * and answer ready while it can no longer write. Fails with `Fenced` when it finds one; a store that does
 * not answer is left to the lease's own watchdog.
 */
const watchTail = (log: EventLogShape, every: Duration.Duration) =>
  log.checkTail === undefined
    ? Effect.never
    : log.checkTail().pipe(
      Effect.catchTag("LogUnavailable", (error) => Effect.logDebug(`event log: looking at the tail failed: ${error.message}`)),
      Effect.repeat(Schedule.spaced(every)),
      Effect.zipRight(Effect.never)
    )

/** The leader's work for `term`; runs until interrupted (lease lost) or a fatal failure. */
export const leaderScope = (settings: LeaderScopeSettings) => (term: number): Effect.Effect<never, unknown, ObjectStore | ProxmoxApi> =>
  Effect.gen(function* () {
    const log = yield* EventLog
    // The cluster read the term's first look needs starts beside the replay (both are reads, and neither needs
    // the other): with a large log and a large cluster the new leader acts about a second sooner. Nothing is
    // decided from it before the log is open; a failed read is not kept, and the first look reads again.
    yield* Effect.forkScoped(Effect.ignore((yield* ClusterView).resources))
    yield* log.open(settings.replica, term)
    const state = yield* log.state
    yield* Effect.logInfo(`leader for term ${term}: log replayed at seq ${yield* log.seq} (${HashMap.size(state.instances)} instances, VMID high-water ${state.vmidHighWater})`)
    yield* Effect.forkScoped(reportAnomalies)
    // PVE must answer before anything is decided; refused credentials are an error the operator must see.
    const adopted = yield* adoptFromCluster().pipe(
      Effect.tapError((error) =>
        error._tag === "Fenced" || error._tag === "LogUnavailable"
          ? Effect.void
          : Effect.logError(`cannot read the cluster, nothing is created or deleted until it answers: ${error.message}`)),
      Effect.retry({ schedule: sagaRestart, while: (error) => error._tag !== "Fenced" && error._tag !== "LogUnavailable" })
    )
    yield* Effect.logInfo(`cluster read: ${adopted.owned} VMs carry this shard's tags, ${adopted.adopted} adopted`)
    yield* (yield* SagaLimits).noteClusterVmids(adopted.vmids)
    yield* (yield* Preflight).begin
    if (adopted.otherShards.size > 0) {
      // One cluster is one shard: two shards' allocators and GCs on one cluster only see their own VMs.
      const shards = [...adopted.otherShards].sort(([a], [b]) => a.localeCompare(b)).map(([other, count]) => `${other} (${count} VMs)`)
      yield* Effect.logWarning(`VMs of another shard of cluster ${settings.clusterId} are on this PVE cluster: ${shards.join(", ")}; run one shard per PVE cluster`)
    }
    const runner = yield* SagaRunner
    if (settings.handle !== undefined) yield* settings.handle.publishTerm({ term, context: yield* Effect.context<LeaderServices>() })
    const agentWork = settings.registration === undefined ? Effect.never : livenessLoop
    const tail = watchTail(log, settings.tailCheck === undefined
      ? (yield* SubscriptionRef.get(settings.config)).config.shard.leaderElection.frequentInterval
      : Duration.decode(settings.tailCheck))
    return yield* Effect.raceFirst(
      Effect.raceFirst(runner.fatal, tail),
      Effect.raceFirst(Effect.raceFirst(reconcileLoop, gcLoop), agentWork)
    ).pipe(Effect.zipRight(Effect.never))
  }).pipe(
    Effect.scoped,
    Effect.provide(leaderLayer(settings, term)),
    // A corrupt log ends every term that meets it: the replica keeps saying which object, until a term starts.
    Effect.tapError((error) =>
      Option.match(corruptObject(error), {
        onNone: () => Effect.void,
        onSome: ({ key, reason }) => settings.handle === undefined ? Effect.void : settings.handle.noteLogProblem({ term, key, reason })
      })),
    Effect.annotateLogs({ term })
  )
