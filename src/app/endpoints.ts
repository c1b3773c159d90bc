/**
 * The endpoints every replica serves, leader or standby, each bound to its own `shard.bind.*_addr` for as
 * long as the stack runs. A standby answers with where the leader is; a bind failure is logged and the
 * replica goes on without that endpoint (losing the lease over a busy port would be worse).
 */
import { Effect, Layer, type Redacted, SubscriptionRef } from "effect"
import { serveHealth } from "../http/HealthServer.js"
import { serveAdmin } from "../rpc/AdminServer.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { ShardReplica } from "../shard/ShardReplica.js"
import { serveAgentEndpoint } from "./agentEndpoint.js"
import { Registration } from "./Registration.js"
import { ShardConfig } from "./ShardConfig.js"

/** `/healthz`, `/readyz` and `/metrics` on `shard.bind.health_addr`. */
export const HealthEndpointLive: Layer.Layer<never, never, ShardReplica> = Layer.scopedDiscard(
  Effect.flatMap(ShardReplica, serveHealth)
)

/** The agent endpoint on `shard.bind.registration_addr` while registration is on; nothing otherwise. */
export const AgentEndpointLive: Layer.Layer<never, never, ShardReplica | Registration | ObjectStore> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const { pki, secrets } = yield* Registration
    if (pki !== undefined) yield* Effect.forkScoped(serveAgentEndpoint(yield* ShardReplica, pki, { secrets, storage: yield* ObjectStore }))
  })
)

/** The admin endpoint on `shard.bind.operator_addr`, over TLS; without a token or a PKI it is not started (and says so). */
export const AdminEndpointLive = (token: Redacted.Redacted<string> | undefined): Layer.Layer<never, never, ShardReplica | ShardConfig | ObjectStore | Registration> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const replica = yield* ShardReplica
      const shardConfig = yield* ShardConfig
      const { pki } = yield* Registration
      const bind = (yield* SubscriptionRef.get(shardConfig.current)).config.shard.bind.operator
      yield* Effect.forkScoped(serveAdmin({ token, bind, source: shardConfig.source, store: yield* ObjectStore, replica, pki }))
    })
  )

/**
 * The three endpoints, started one after the other in this order (a merge would start them at once, and
 * the order of their first log lines would vary from run to run).
 */
export const EndpointsLive = (adminToken: Redacted.Redacted<string> | undefined) =>
  AdminEndpointLive(adminToken).pipe(Layer.provideMerge(AgentEndpointLive), Layer.provideMerge(HealthEndpointLive))
