/**
 * The agent endpoint on `shard.bind.registration_addr`, served by every replica of the shard for as long as
 * the daemon runs: the leader answers from its current term (`makeAgentBackendReplica`), a standby with
 * `NotLeader{leaderAddr}` so an agent that reached it (a stale DNS entry, a VIP mid-failover) learns where
 * to go. Certificates live `certificates.agent.ttl`, read from the config at every issue.
 */
import { Effect, Layer, SubscriptionRef } from "effect"
import { keepServing } from "../rpc/keepServing.js"
import { AgentServerLive } from "../rpc/AgentServer.js"
import { AgentBackend } from "../services/AgentBackend.js"
import { ClusterPki, type ClusterPkiShape } from "../services/ClusterPki.js"
import { makeAgentBackendReplica } from "../shard/AgentBackendShard.js"
import { certificateHosts, registrationUrl } from "../shard/ShardContext.js"
import type { ShardReplicaShape } from "../shard/ShardReplica.js"

export interface AgentEndpointOptions {
  /** Called with the bound port once the endpoint listens (tests bind port 0). */
  readonly onListening?: (port: number) => void
}

/**
 * Serves the agent endpoint until interrupted. A bind failure is logged as an error and the effect then
 * waits forever: the daemon goes on (as leader it still creates VMs, whose registrations then time out).
 * The bind address is read once; changing it takes a restart.
 */
export const serveAgentEndpoint = (
  replica: ShardReplicaShape,
  pki: ClusterPkiShape,
  options: AgentEndpointOptions = {}
): Effect.Effect<never> =>
  Effect.gen(function* () {
    const config = yield* SubscriptionRef.get(replica.config)
    const bind = config.config.shard.bind.registration
    const server = AgentServerLive({
      cluster: replica.clusterId,
      shard: replica.shard,
      certificateTtl: Effect.map(SubscriptionRef.get(replica.config), (current) => current.config.certificates.agentTtl),
      ...(bind.host === "" ? {} : { host: bind.host }),
      tls: { pki, hosts: certificateHosts(config, "registration", replica.advertiseHost) },
      port: bind.port,
      path: "/agent"
    }).pipe(
      Layer.provide(Layer.succeed(ClusterPki, pki)),
      Layer.provide(Layer.succeed(AgentBackend, makeAgentBackendReplica(replica)))
    )
    return yield* keepServing(server, {
      listening: (address) =>
        Effect.gen(function* () {
          if (address._tag === "TcpAddress") options.onListening?.(address.port)
          yield* Effect.logInfo(
            `agent endpoint: listening on ${bind.text}, agents register at ${registrationUrl(config, replica.advertiseHost)}`
          )
        }),
      cannotServe: `agent endpoint: cannot serve on ${bind.text}; agents cannot register through this replica`
    })
  })
