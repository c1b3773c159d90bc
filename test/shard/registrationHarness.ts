/**
 * The leader harness with agent registration on: agents of the simulator report health every 200 ms, and
 * replica "replica-1" (the one `h.leader(1, { handle })` runs as) serves the agent endpoint on free loopback
 * ports, as `runDaemon` does. The endpoint's log lines go to `endpointLogs`.
 */
import { randomBytes } from "node:crypto"
import { Deferred, Effect, Logger, Option, Ref, type SubscriptionRef } from "effect"
import type { Address, ParsedShardConfig } from "../../src/domain/config/index.js"
import { allInstances } from "../../src/domain/shard/state.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import type { LeaderInfo } from "../../src/services/LeaderLease.js"
import { serveAgentEndpoint } from "../../src/app/agentEndpoint.js"
import { freeLoopbackPorts } from "../../src/app/embedded.js"
import type { ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import { makeSimAgents } from "../../src/sim/agent.js"
import type { GuestBoot } from "../../src/sim/server.js"
import { buildReplica } from "../support/stackReplica.js"
import { leaseDouble } from "../support/leaseDouble.js"
import { CLUSTER, type HarnessOptions, makeHarness } from "./leaderHarness.js"

export const address = (host: string, port: number): Address => ({ host, port, text: `${host}:${port}` })

export const registrationHarness = (options: Partial<HarnessOptions> & { readonly size: number; readonly mute?: (boot: GuestBoot) => boolean }) =>
  Effect.gen(function* () {
    const [port, agentPort] = (yield* freeLoopbackPorts(2)) as [number, number]
    const agents = yield* makeSimAgents({ healthEvery: "200 millis", ...(options.mute === undefined ? {} : { mute: options.mute }) })
    const encryptionKey = new Uint8Array(randomBytes(32))
    const harness = yield* makeHarness({
      registrationAddr: `127.0.0.1:${port}`,
      agentAddr: `127.0.0.1:${agentPort}`,
      registrationTimeout: "1m",
      gcInterval: "1s", // the validator's floor (every loop interval is at least 1 s)
      ...options,
      encryptionKey,
      guestHook: agents.hook
    })
    agents.attach(harness.sim.model)
    // The harness created the cluster PKI in its store; every replica loads the same one.
    const pki = yield* makeClusterPki(harness.store, { clusterId: CLUSTER, encryptionKey }).pipe(Effect.orDie)
    const leaderInfo = yield* Ref.make(Option.some<LeaderInfo>({ id: "replica-1", address: "127.0.0.1:8991", term: 1 }))
    const endpointLogs: Array<string> = []
    const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => {
      endpointLogs.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
    }))
    /** A replica of the shard serving the agent endpoint; resolves with the port it listens on. */
    const replica = (id: string, config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>) =>
      Effect.gen(function* () {
        const { lease } = yield* leaseDouble(id, Ref.get(leaderInfo))
        const handle = yield* buildReplica({ id, config, lease, store: harness.store, leader: false })
        const listening = yield* Deferred.make<number>()
        yield* serveAgentEndpoint(handle, pki, {
          onListening: (endpoint, p) => {
            if (endpoint === "registration") Deferred.unsafeDone(listening, Effect.succeed(p))
          }
        }).pipe(
          Effect.provide(capture),
          Effect.forkScoped
        )
        return { handle, listening: Deferred.await(listening) }
      })
    const leaderReplica: { readonly handle: ShardReplicaShape } = yield* replica("replica-1", harness.config)
    return { ...harness, agents, pki, leaderInfo, endpointLogs, replica, handle: leaderReplica.handle, port, agentPort }
  })

export type RegistrationHarness = Effect.Effect.Success<ReturnType<typeof registrationHarness>>

/** What keeps the shard from `size` instances, all registered. */
export const registeredProblems = (h: RegistrationHarness, size: number) =>
  Effect.map(h.state, (state) => {
    const problems: Array<string> = []
    const instances = allInstances(state)
    if (instances.length !== size) problems.push(`${instances.length} instances, want ${size}`)
    for (const i of instances) if (i.phase !== "registered") problems.push(`${i.id} is ${i.phase}`)
    return problems
  })
