/**
 * One replica of a shard, leader or standby: what the endpoints that run on every replica (agent, admin,
 * health) need to answer. The lease says who leads; while this replica leads, its leader scope publishes
 * the services of its term here, so an endpoint runs a request against the term that is current when the
 * request arrives. A standby (or a leader between terms) answers with where the leader serves that endpoint.
 */
import { Context, Data, Effect, Option, Ref, type Scope, SubscriptionRef } from "effect"
import { type Address, isWildcardHost, type ParsedShardConfig } from "../domain/config/index.js"
import type { EventLog } from "../services/EventLog.js"
import type { AgentTerm } from "./AgentBackendShard.js"
import type { InstanceIds } from "../services/InstanceIds.js"
import type { LeaderInfo, LeaderLeaseShape } from "../services/LeaderLease.js"
import type { ObjectStore } from "../services/ObjectStore.js"
import type { ProxmoxApi } from "../services/ProxmoxApi.js"
import type { ClusterView } from "./ClusterView.js"
import type { SagaLimits } from "./SagaLimits.js"
import type { Ownership } from "./Ownership.js"
import type { Preflight } from "./Preflight.js"
import type { SagaRunner } from "./SagaRunner.js"
import { advertisedAddress, type ShardContext } from "./ShardContext.js"
import { type ConfigHeld, makeConfigHeld } from "./configHeld.js"

/** The services a leadership term runs on; an endpoint's leader-side handler may use any of them. */
export type LeaderServices = ShardContext | EventLog | InstanceIds | SagaRunner | SagaLimits | ClusterView | ObjectStore | ProxmoxApi | AgentTerm | Ownership | Preflight

export interface LeaderTerm {
  readonly term: number
  readonly context: Context.Context<LeaderServices>
}

/** The endpoints a client may be redirected to; each is advertised in `shard.advertise.*_addr`. */
export type Endpoint = "registration" | "operator" | "agent" | "health"

/**
 * This replica does not lead (or its term has not finished starting): `leaderAddr` is where the leader
 * serves the endpoint asked for, "" when no leader is known. Each RPC group maps it to its own
 * `NotLeader{leaderAddr}` error.
 */
export class NotLeaderHere extends Data.TaggedError("NotLeaderHere")<{ readonly leaderAddr: string }> {
  override get message() {
    return this.leaderAddr === "" ? "not the leader; no leader is known" : `not the leader; the leader is ${this.leaderAddr}`
  }
}

/** A corrupt event log a leadership term of this replica met: the object to look at, and why. */
export interface LogProblem {
  readonly term: number
  readonly key: string
  readonly reason: string
}

export interface ShardReplicaShape {
  readonly clusterId: string
  readonly shard: string
  /** This replica's id (`--id`). */
  readonly replica: string
  /** Fills in empty or wildcard advertised hosts (`--advertise-host`, else the hostname). */
  readonly advertiseHost: string | undefined
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** Which stored config objects are invalid while the last good config stays in force (for `/readyz`, `/metrics`). */
  readonly configHeld: ConfigHeld
  readonly lease: LeaderLeaseShape
  /** The current term's services while this replica leads and its leader scope has started; else none. */
  readonly currentTerm: Effect.Effect<Option.Option<LeaderTerm>>
  /** Called by the leader scope once its term is ready: published until the scope closes. */
  readonly publishTerm: (term: LeaderTerm) => Effect.Effect<void, never, Scope.Scope>
  /** Where the current leader serves `endpoint` ("" when no leader is known). */
  readonly leaderAddress: (endpoint: Endpoint) => Effect.Effect<string>
  /**
   * The corrupt object the last term of this replica ended on, until a later term of it starts: readiness
   * and the admin endpoint name it while no newer leader is known.
   */
  readonly logProblem: Effect.Effect<Option.Option<LogProblem>>
  readonly noteLogProblem: (problem: LogProblem) => Effect.Effect<void>
}

export class ShardReplica extends Context.Tag("nstance/ShardReplica")<ShardReplica, ShardReplicaShape>() {}

/** The host of a `host:port` or `[v6]:port` address ("" when it has none). */
const hostOf = (address: string): string => {
  const bracketed = /^\[([^\]]*)\]:\d+$/.exec(address)
  if (bracketed !== null) return bracketed[1] ?? ""
  const colon = address.lastIndexOf(":")
  return colon < 0 ? address : address.slice(0, colon)
}

/**
 * Where `leader` serves an endpoint advertised as `advertised` in the shared config. An explicit host there
 * is the same for every replica (a VIP or a DNS name that follows the leader) and is used as it is; a
 * wildcard is replaced by the host of the leader's election address from `leader.json`.
 */
export const endpointOfLeader = (advertised: Address, leader: LeaderInfo): string => {
  if (!isWildcardHost(advertised.host)) return advertised.host.includes(":") ? `[${advertised.host}]:${advertised.port}` : `${advertised.host}:${advertised.port}`
  const host = hostOf(leader.address)
  if (host === "") return ""
  return host.includes(":") ? `[${host}]:${advertised.port}` : `${host}:${advertised.port}`
}

export interface ShardReplicaSettings {
  readonly clusterId: string
  readonly shard: string
  readonly replica: string
  readonly advertiseHost?: string
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** The one the config watcher writes (default: a fresh one nothing writes). */
  readonly configHeld?: ConfigHeld
  readonly lease: LeaderLeaseShape
}

export const makeShardReplica = (settings: ShardReplicaSettings): Effect.Effect<ShardReplicaShape> =>
  Effect.gen(function* () {
    const current = yield* Ref.make<Option.Option<LeaderTerm>>(Option.none())
    const configHeld = settings.configHeld ?? (yield* makeConfigHeld(settings.shard))
    const problem = yield* Ref.make<Option.Option<LogProblem>>(Option.none())
    const advertised = (endpoint: Endpoint) =>
      Effect.map(SubscriptionRef.get(settings.config), (config) => config.config.shard.advertise[endpoint])
    return ShardReplica.of({
      clusterId: settings.clusterId,
      shard: settings.shard,
      replica: settings.replica,
      advertiseHost: settings.advertiseHost,
      config: settings.config,
      configHeld,
      lease: settings.lease,
      currentTerm: Ref.get(current),
      logProblem: Ref.get(problem),
      noteLogProblem: (p) => Ref.set(problem, Option.some(p)),
      publishTerm: (term) =>
        // A term that starts has replayed the log: whatever an earlier term met has been repaired.
        Effect.acquireRelease(Ref.set(current, Option.some(term)).pipe(Effect.zipRight(Ref.set(problem, Option.none()))), () =>
          Ref.update(current, (now) => (Option.isSome(now) && now.value.term === term.term ? Option.none() : now))),
      leaderAddress: (endpoint) =>
        Effect.gen(function* () {
          const address = yield* advertised(endpoint)
          const leader = yield* settings.lease.currentLeader
          if (Option.isNone(leader)) return ""
          if (leader.value.id === settings.replica) return advertisedAddress(address, settings.advertiseHost)
          return endpointOfLeader(address, leader.value)
        })
    })
  })

/**
 * Runs `effect` on the current term's services, or fails with `NotLeaderHere` naming where the leader serves
 * `endpoint`. The term is read once: a request that began in a term finishes against it (a deposed term's
 * log appends fail `Fenced`, so nothing it does after losing the lease becomes durable).
 */
export const withLeader = <A, E>(
  endpoint: Endpoint,
  effect: Effect.Effect<A, E, LeaderServices>
): Effect.Effect<A, E | NotLeaderHere, ShardReplica> =>
  Effect.flatMap(ShardReplica, (replica) =>
    Effect.flatMap(replica.currentTerm, (term): Effect.Effect<A, E | NotLeaderHere> =>
      Option.isSome(term)
        ? Effect.provide(effect, term.value.context)
        : Effect.flatMap(replica.leaderAddress(endpoint), (leaderAddr) => Effect.fail(new NotLeaderHere({ leaderAddr })))))
