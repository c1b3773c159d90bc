/**
 * The liveness TTL (with agent registration on), every `garbage_collection.interval`. An instance whose VM
 * started but whose agent has not registered within `registration_timeout` never served: it is deleted
 * (`DeleteRequested{reason: "not-ready"}`) and reconcile replaces it. A registered instance whose health
 * reports stopped for longer than the grace (3 × `health_check_interval`) may still serve: it is retired as
 * `unhealthy` (`RetirementRequested`), so its replacement is created first and it drains before it goes.
 * Instances without a nonce (adopted VMs, or made while registration was off) are exempt. A paused or
 * suspended guest stops reporting too: it is replaced like a silent one, and the log line says it was paused.
 */
import { Clock, Duration, Effect, HashMap, SubscriptionRef } from "effect"
import { DeleteRequested, RetirementRequested, type ShardEvent } from "../domain/shard/events.js"
import { EventLog } from "../services/EventLog.js"
import { AgentTerm } from "./AgentBackendShard.js"
import { ClusterView } from "./ClusterView.js"
import { everyInterval } from "./loop.js"
import { ShardContext } from "./ShardContext.js"

/** The term's health last-seen times come from its `AgentTerm`, which the agent endpoint writes. */
export const makeLiveness = Effect.gen(function* () {
  const { healthSeen } = yield* AgentTerm
  const log = yield* EventLog
  const shard = yield* ShardContext
  const clusterView = yield* ClusterView
  // Reports sent to an earlier leader are not known here: silence counts from this term's start at the earliest.
  const termStart = yield* Clock.currentTimeMillis

  const pass = Effect.fn("liveness.pass")(function* () {
    const now = yield* Clock.currentTimeMillis
    const config = (yield* SubscriptionRef.get(shard.config)).config.shard
    const timeout = Duration.toMillis(config.garbageCollection.registrationTimeout)
    const grace = Duration.toMillis(Duration.decode(shard.graces?.health ?? Duration.times(config.healthCheckInterval, 3)))
    const state = yield* log.state
    const events: Array<ShardEvent> = []
    for (const [id, instance] of state.instances) {
      if (instance.phase !== "registered") healthSeen.delete(id)
      // A held instance is left to an operator, whatever its agent does.
      if (instance.adopted || instance.nonceHash === undefined || instance.held !== undefined) continue
      if (instance.phase === "running" && instance.startedAt !== undefined && now - instance.startedAt > timeout) {
        events.push(DeleteRequested.make({ instanceId: id, at: now, reason: "not-ready" }))
        yield* Effect.logWarning(`${id}: VM ${instance.vmid ?? "?"} has not registered within ${Duration.format(config.garbageCollection.registrationTimeout)} of its start; replacing it`)
      } else if (instance.phase === "registered" && instance.retirement === undefined) {
        const last = Math.max(healthSeen.get(id) ?? 0, instance.registeredAt ?? 0, termStart)
        if (now - last > grace) {
          // What PVE said of the VM at the last GC pass: a paused guest is silent because it is paused, and a
          // stopped one serves nothing, so it is not drained (it goes once its replacement is ready).
          const pveState = (yield* clusterView.vmStates).get(id)
          const stopped = pveState === "stopped"
          events.push(RetirementRequested.make({ instanceId: id, at: now, reason: "unhealthy", ...(stopped ? { skipDrain: true } : {}) }))
          const why = pveState === "paused" || pveState === "suspended" || stopped ? ` (the VM is ${pveState} in PVE)` : ""
          yield* Effect.logWarning(
            `${id}: VM ${instance.vmid ?? "?"} stopped reporting health ${Math.round((now - last) / 1000)} s ago${why}; ` +
              `retiring it (unhealthy): its replacement comes first${stopped ? ", then it is deleted without a drain" : ""}`
          )
        }
      }
    }
    for (const id of healthSeen.keys()) if (!HashMap.has(state.instances, id)) healthSeen.delete(id)
    if (events.length > 0) yield* log.append(events)
    return events.length
  })
  // One effect for every pass the loop (or a bench) runs: each run is a fresh pass in a span of its own.
  return { pass: pass() }
})

/** Runs a liveness pass every `garbage_collection.interval`; a failed pass is logged, a fenced one ends the leadership. */
export const livenessLoop = Effect.gen(function* () {
  const { pass } = yield* makeLiveness
  const shard = yield* ShardContext
  const interval = Effect.map(SubscriptionRef.get(shard.config), (config) => config.config.shard.garbageCollection.interval)
  return yield* everyInterval("liveness", interval, pass)
})
