/**
 * What a replica does for as long as it holds the lease with term T, in order: replay the event log and
 * append `LeaderElected{T}` (from then on a deposed writer is fenced), look at the cluster once to raise the
 * VMID high-water mark and adopt our VMs the log does not know, and only then start the work — the saga
 * runner, the reconcile loop and the garbage collector. The scope ends on the first fatal failure (a fenced
 * log above all), and the lease then resigns; losing the lease interrupts it.
 */
import { Effect, HashMap, Layer, SubscriptionRef } from "effect"
import type { ParsedShardConfig } from "../domain/config/index.js"
import { IsoBuilder9660 } from "../layers/IsoBuilder9660.js"
import { SchedulerTopsis } from "../layers/SchedulerTopsis.js"
import { EventLogStore, type EventLogOptions } from "../layers/EventLogStore.js"
import { EventLog } from "../services/EventLog.js"
import { InstanceIdsLive } from "../services/InstanceIds.js"
import type { ObjectStore } from "../services/ObjectStore.js"
import type { ProxmoxApi } from "../services/ProxmoxApi.js"
import { adoptFromCluster } from "./adopt.js"
import { ClusterViewLive } from "./ClusterView.js"
import { gcLoop } from "./gc.js"
import { sagaRestart } from "./policies.js"
import { reconcileLoop } from "./reconcile.js"
import { SagaLimitsLive } from "./SagaLimits.js"
import { SagaRunner, SagaRunnerLive } from "./SagaRunner.js"
import { type GcGraces, registrationUrl, type RegistrationSettings, ShardContext } from "./ShardContext.js"
import { type HealthSeen, makeAgentBackendShard } from "./AgentBackendShard.js"
import { livenessLoop } from "./liveness.js"
import { AgentServerLive } from "../rpc/AgentServer.js"
import { AgentBackend } from "../services/AgentBackend.js"
import { ClusterPki } from "../services/ClusterPki.js"
import { type LeaderServices, type ShardReplicaShape } from "./ShardReplica.js"

export interface LeaderScopeSettings {
  readonly clusterId: string
  readonly shard: string
  readonly replica: string
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  readonly eventLog?: EventLogOptions
  /** Overrides of the GC grace periods (default: `ORPHAN_GRACE`, `VM_LOSS_GRACE`). */
  readonly graces?: GcGraces
  /** Agent registration (nonces in the user-data, the agent endpoint, the liveness TTL); absent: off. */
  readonly registration?: RegistrationSettings
  /** The replica's handle: the term's services are published there once the term has started (absent in tests). */
  readonly handle?: ShardReplicaShape
}

/** Default lifetime of an agent's client certificate. */
export const DEFAULT_CERTIFICATE_TTL = "24 hours"

/**
 * The agent endpoint on `shard.bind.registration_addr` for as long as this term lasts. A bind failure is
 * logged as an error and does not end the leadership (the sagas and GC go on; registrations then time out).
 */
const serveAgents = (settings: LeaderScopeSettings, registration: RegistrationSettings, healthSeen: HealthSeen) =>
  Effect.gen(function* () {
    const shard = yield* ShardContext
    const config = yield* SubscriptionRef.get(shard.config)
    const bind = config.config.shard.bind.registration
    const backend = yield* makeAgentBackendShard(healthSeen)
    const server = AgentServerLive({
      cluster: settings.clusterId,
      shard: settings.shard,
      certificateTtl: registration.certificateTtl ?? DEFAULT_CERTIFICATE_TTL,
      ...(bind.host === "" ? {} : { host: bind.host }),
      port: bind.port,
      path: "/agent"
    }).pipe(Layer.provide(Layer.succeed(ClusterPki, registration.pki)), Layer.provide(Layer.succeed(AgentBackend, backend)))
    yield* Effect.scoped(Effect.gen(function* () {
      yield* Layer.build(server)
      yield* Effect.logInfo(`agent endpoint: listening on ${bind.text}, agents register at ${registrationUrlFor(config, registration)}`)
      return yield* Effect.never
    })).pipe(
      Effect.catchAllCause((cause) => Effect.logError(`agent endpoint: cannot serve on ${bind.text}; agents cannot register with this leader`, cause))
    )
    return yield* Effect.never
  })

const registrationUrlFor = (config: ParsedShardConfig, registration: RegistrationSettings) => registrationUrl(config, registration.advertiseHost)

/** The services of one leadership term, built fresh for each term and released when it ends. */
export const leaderLayer = (settings: LeaderScopeSettings, term: number) => {
  const context = Layer.succeed(ShardContext, ShardContext.of({ ...settings, term }))
  const log = EventLogStore(settings.eventLog)
  const base = Layer.mergeAll(context, log, InstanceIdsLive, IsoBuilder9660, SchedulerTopsis)
  const limitsAndView = Layer.mergeAll(SagaLimitsLive, ClusterViewLive).pipe(Layer.provideMerge(base))
  return SagaRunnerLive.pipe(Layer.provideMerge(limitsAndView))
}

/** The leader's work for `term`; runs until interrupted (lease lost) or a fatal failure. */
export const leaderScope = (settings: LeaderScopeSettings) => (term: number): Effect.Effect<never, unknown, ObjectStore | ProxmoxApi> =>
  Effect.gen(function* () {
    const log = yield* EventLog
    yield* log.open(settings.replica, term)
    const state = yield* log.state
    yield* Effect.logInfo(`leader for term ${term}: log replayed at seq ${yield* log.seq} (${HashMap.size(state.instances)} instances, VMID high-water ${state.vmidHighWater})`)
    // PVE must answer before anything is decided; refused credentials are an error the operator must see.
    const adopted = yield* adoptFromCluster().pipe(
      Effect.tapError((error) =>
        error._tag === "Fenced" || error._tag === "LogUnavailable"
          ? Effect.void
          : Effect.logError(`cannot read the cluster, nothing is created or deleted until it answers: ${error.message}`)),
      Effect.retry({ schedule: sagaRestart, while: (error) => error._tag !== "Fenced" && error._tag !== "LogUnavailable" })
    )
    yield* Effect.logInfo(`cluster read: ${adopted.owned} VMs carry this shard's tags, ${adopted.adopted} adopted`)
    const runner = yield* SagaRunner
    if (settings.handle !== undefined) yield* settings.handle.publishTerm({ term, context: yield* Effect.context<LeaderServices>() })
    const registration = settings.registration
    const healthSeen: HealthSeen = new Map()
    const agentWork = registration === undefined
      ? Effect.never
      : Effect.raceFirst(serveAgents(settings, registration, healthSeen), livenessLoop(healthSeen))
    return yield* Effect.raceFirst(
      runner.fatal,
      Effect.raceFirst(Effect.raceFirst(reconcileLoop, gcLoop), agentWork)
    ).pipe(Effect.zipRight(Effect.never))
  }).pipe(Effect.scoped, Effect.provide(leaderLayer(settings, term)), Effect.annotateLogs({ term }))
