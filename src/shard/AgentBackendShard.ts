/**
 * The agent endpoint's backend on the shard leader: what an instance awaits comes from the folded event log
 * (the hash of its newest nonce, `NonceIssued`), a registration becomes `Registered{ips, hostname}` in the
 * log, and health reports are kept in memory as last-seen times for the liveness check. Only the leader
 * serves it (the endpoint lives in the leader's scope), so `leaderRedirect` is always None here; a deposed
 * leader finds out at its next append (`Fenced`) and answers `NotLeader`.
 */
import { Clock, Effect, Option } from "effect"
import { Registered } from "../domain/shard/events.js"
import { getInstance, type Instance } from "../domain/shard/state.js"
import { NonceReused, NotLeader, UnknownInstance } from "../rpc/AgentRpc.js"
import type { AgentBackendShape, RegistrationState } from "../services/AgentBackend.js"
import { EventLog } from "../services/EventLog.js"

/** Last health report per instance (epoch millis, Effect `Clock`), shared with the liveness check. */
export type HealthSeen = Map<string, number>

/** Where `instance` stands with respect to registration. */
export const registrationStateOf = (instance: Instance | undefined): RegistrationState => {
  if (instance === undefined || instance.nonceHash === undefined) return { _tag: "Unknown" }
  switch (instance.phase) {
    case "starting":
    case "running":
      return { _tag: "Awaiting", tenant: instance.tenant ?? "", group: instance.group ?? "", nonceHash: instance.nonceHash }
    case "registered":
      return { _tag: "Registered", nonceHash: instance.nonceHash }
    default:
      return { _tag: "Unknown" }
  }
}

export const makeAgentBackendShard = (healthSeen: HealthSeen) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    // Check and append under one permit: two registrations of one instance never both succeed.
    const lock = yield* Effect.makeSemaphore(1)
    const instance = (instanceId: string) => Effect.map(log.state, (state) => Option.getOrUndefined(getInstance(state, instanceId)))

    const backend: AgentBackendShape = {
      leaderRedirect: Effect.succeed(Option.none()),
      registrationState: (instanceId) => Effect.map(instance(instanceId), registrationStateOf),
      recordRegistered: (registration) =>
        lock.withPermits(1)(Effect.gen(function* () {
          const { instanceId } = registration
          const state = registrationStateOf(yield* instance(instanceId))
          if (state._tag === "Unknown") return yield* new UnknownInstance({ instanceId })
          if (state._tag === "Registered" || state.nonceHash !== registration.nonceHash) return yield* new NonceReused({ instanceId })
          const ips = [registration.ips.ipv4, registration.ips.ipv6].filter((ip): ip is string => ip !== undefined && ip !== "")
          const at = yield* Clock.currentTimeMillis
          yield* log.append([Registered.make({ instanceId, at, ips, ...(registration.hostname === undefined ? {} : { hostname: registration.hostname }) })]).pipe(
            Effect.catchAll((error) => Effect.fail(new NotLeader({ leaderAddr: "" })).pipe(
              Effect.tap(() => Effect.logWarning(`${instanceId}: registration not recorded (${error._tag}); the agent will retry`))
            ))
          )
          healthSeen.set(instanceId, at)
          yield* Effect.logInfo(`${instanceId}: registered (${ips.join(", ") || "no IPs"})${registration.hostname === undefined ? "" : ` as ${registration.hostname}`}`)
        })),
      recordHealth: (instanceId) =>
        Effect.gen(function* () {
          const current = yield* instance(instanceId)
          if (current === undefined || current.phase !== "registered") return yield* new UnknownInstance({ instanceId })
          healthSeen.set(instanceId, yield* Clock.currentTimeMillis)
        }),
      recordRenewed: (renewal) =>
        Effect.gen(function* () {
          const current = yield* instance(renewal.instanceId)
          if (current === undefined || current.phase !== "registered") return yield* new UnknownInstance({ instanceId: renewal.instanceId })
        })
    }
    return backend
  })
