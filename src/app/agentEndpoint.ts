/**
 * The agent's two endpoints, served by every replica of the shard for as long as the daemon runs:
 * registration on `shard.bind.registration_addr` and the agent channel on `shard.bind.agent_addr`. The
 * leader answers from its current term (`makeAgentBackendReplica`), a standby with `NotLeader{leaderAddr}`
 * naming the leader's address for that endpoint, so an agent that reached it (a stale DNS entry, a VIP
 * mid-failover) learns where to go. Certificates live `certificates.agent.ttl`, read from the config at
 * every issue.
 */
import { HttpServer, SocketServer } from "@effect/platform"
import { Context, type Duration, Effect, Layer, SubscriptionRef } from "effect"
import { makeFileDelivery } from "../shard/FileDelivery.js"
import type { ObjectStoreShape } from "../services/ObjectStore.js"
import type { SecretStoreShape } from "../services/SecretStore.js"
import { keepServing } from "../rpc/keepServing.js"
import { AgentChannelServerLive, RegistrationServerLive } from "../rpc/AgentServer.js"
import { AgentBackend } from "../services/AgentBackend.js"
import { ClusterPki, type ClusterPkiShape } from "../services/ClusterPki.js"
import { makeAgentBackendReplica } from "../shard/AgentBackendShard.js"
import { advertisedAddress, agentChannelUrl, certificateHosts, registrationUrl } from "../shard/ShardContext.js"
import type { ShardReplicaShape } from "../shard/ShardReplica.js"

export interface AgentEndpointOptions {
  /** Called with the bound ports once each endpoint listens (tests bind port 0). */
  readonly onListening?: (endpoint: "registration" | "agent", port: number) => void
  /** The cluster's secrets store, for `secret` files. */
  readonly secrets?: SecretStoreShape | undefined
  /** The shard's storage, where `storage` files are read; absent: VMs are sent no files. */
  readonly storage?: ObjectStoreShape
  /** How often secrets' and objects' versions are looked at (default 5 seconds). */
  readonly filesPollEvery?: Duration.DurationInput
}

/**
 * Serves both endpoints until interrupted. A bind failure is logged as an error and that endpoint then
 * waits forever: the daemon goes on (as leader it still creates VMs, whose registrations or health
 * reports then time out). The bind addresses are read once; changing them takes a restart.
 */
export const serveAgentEndpoint = (
  replica: ShardReplicaShape,
  pki: ClusterPkiShape,
  options: AgentEndpointOptions = {}
): Effect.Effect<never> =>
  Effect.gen(function* () {
    const config = yield* SubscriptionRef.get(replica.config)
    const { agent, registration } = config.config.shard.bind
    const certificateTtl = Effect.map(SubscriptionRef.get(replica.config), (current) => current.config.certificates.agentTtl)
    const services = (endpoint: "registration" | "agent") =>
      Layer.merge(Layer.succeed(ClusterPki, pki), Layer.succeed(AgentBackend, makeAgentBackendReplica(replica, endpoint)))
    const channelUrl = agentChannelUrl(config, replica.advertiseHost)
    const storage = options.storage
    const files = storage === undefined ? undefined : yield* makeFileDelivery({
      backend: makeAgentBackendReplica(replica, "agent"),
      config: replica.config,
      pki,
      secrets: options.secrets,
      storage,
      serverAddresses: (current) => ({
        registrationAddr: advertisedAddress(current.config.shard.advertise.registration, replica.advertiseHost),
        agentAddr: advertisedAddress(current.config.shard.advertise.agent, replica.advertiseHost),
        operatorAddr: advertisedAddress(current.config.shard.advertise.operator, replica.advertiseHost)
      }),
      ...(options.filesPollEvery === undefined ? {} : { pollEvery: options.filesPollEvery })
    })
    const registrationServer = RegistrationServerLive({
      cluster: replica.clusterId,
      shard: replica.shard,
      certificateTtl,
      agentUrl: channelUrl,
      ...(registration.host === "" ? {} : { host: registration.host }),
      tls: { pki, hosts: certificateHosts(config, "registration", replica.advertiseHost) },
      port: registration.port,
      path: "/agent"
    }).pipe(Layer.provide(services("registration")))
    const channelServer = AgentChannelServerLive({
      certificateTtl,
      ...(files === undefined ? {} : { files }),
      ...(agent.host === "" ? {} : { host: agent.host }),
      tls: { pki, hosts: certificateHosts(config, "agent", replica.advertiseHost) },
      port: agent.port,
      path: "/agent"
    }).pipe(Layer.provide(services("agent")))
    const registering = keepServing(registrationServer, {
      address: (context) => Context.get(context, HttpServer.HttpServer).address,
      listening: (address) =>
        Effect.gen(function* () {
          if (address._tag === "TcpAddress") options.onListening?.("registration", address.port)
          yield* Effect.logInfo(
            `agent endpoint: listening on ${registration.text}, agents register at ${registrationUrl(config, replica.advertiseHost)}`
          )
        }),
      cannotServe: `agent endpoint: cannot serve on ${registration.text}; agents cannot register through this replica`
    })
    const channel = keepServing(channelServer, {
      address: (context) => Context.get(context, SocketServer.SocketServer).address,
      listening: (address) =>
        Effect.gen(function* () {
          if (address._tag === "TcpAddress") options.onListening?.("agent", address.port)
          yield* Effect.logInfo(`agent channel: listening on ${agent.text}, agents report at ${channelUrl}`)
        }),
      cannotServe: `agent channel: cannot serve on ${agent.text}; registered agents cannot report through this replica`
    })
    return yield* Effect.all([registering, channel], { concurrency: 2, discard: true }).pipe(Effect.zipRight(Effect.never))
  })
