/**
 * The faults of a world that rolls out (`RolloutPlan`, drawn in shape.ts): the user-data of both groups changes —
 * every instance of both groups drifts, and the leader replaces them one at a time, replacement first, each
 * drained for its group's drain timeout — and an operator acknowledges drains through the leader's own admin
 * handlers (`AcknowledgeDrain`, reached in memory as `nstance-admin instance ack-drain` would reach it over
 * TLS). They come at their times among the other faults and combine with all of them.
 */
import { RpcTest } from "@effect/rpc"
import { Effect, Either, Layer, Option, Redacted, type Scope } from "effect"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { AdminRpcs } from "../../src/rpc/AdminRpc.js"
import { AdminHandlersLive } from "../../src/rpc/AdminServer.js"
import { ShardReplica, type ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import type { PlannedFault } from "./faults.js"
import { type ChaosWorld, pushConfig, type ShardWorld } from "./state.js"

/** How long an operator keeps looking for a drain to acknowledge. */
const ACK_PATIENCE_S = 90

const adminClient = RpcTest.makeClient(AdminRpcs)

/** The admin endpoint of a replica, in memory: the real handlers on its handle. */
const adminHandlers = (handle: ShardReplicaShape, shard: ShardWorld) =>
  AdminHandlersLive({ token: Redacted.make("t".repeat(32)), source: { _tag: "Store", key: CONFIG_KEY, shard: shard.id }, store: shard.store }).pipe(
    Layer.provide(Layer.succeed(ShardReplica, handle))
  )

/**
 * An operator watching for `pending_deletion`: they ask the shard's replicas in turn (a standby answers
 * `NotLeader`, as `nstance-admin` is redirected) for the instances, and the first drain they see (the oldest)
 * they acknowledge, once. Whatever the answer (a drain that ended meanwhile, a leader that just lost its lease),
 * it goes into the history.
 */
const acknowledgeADrain = (w: ChaosWorld, shard: ShardWorld) =>
  Effect.gen(function* () {
    for (let s = 0; s < ACK_PATIENCE_S; s++) {
      for (const slot of shard.slots) {
        const handle = w.replicas[slot]?.handle
        if (handle === undefined) continue
        const outcome = yield* Effect.scoped(Effect.gen(function* () {
          const rpc = yield* adminClient
          const draining = (yield* rpc.ListInstances({})).filter((i) => i.phase !== "deleting" && i.drain !== undefined && i.drain !== null)
          const target = draining.sort((a, b) => (a.drain?.startedAt ?? 0) - (b.drain?.startedAt ?? 0))[0]
          if (target === undefined) return Option.none()
          const answer = yield* Effect.either(rpc.AcknowledgeDrain({ instanceId: target.id }))
          return Option.some(`${target.id} → ${Either.isRight(answer) ? (answer.right.alreadyDeleting ? "already deleting" : "deleting now") : answer.left._tag}`)
        })).pipe(Effect.provide(adminHandlers(handle, shard)), Effect.option, Effect.map(Option.flatten))
        if (Option.isSome(outcome)) {
          w.say(`operator: ack-drain ${outcome.value}`)
          return
        }
      }
      yield* Effect.sleep("1 second")
    }
    w.say(`operator: no drain to acknowledge within ${ACK_PATIENCE_S}s`)
  })

/** The rollout's user-data changes and drain acknowledgements, as faults of the plan; lasting ones end with `faultScope`. */
export const rolloutFaults = (w: ChaosWorld, faultScope: Scope.Scope): Array<PlannedFault> => {
  const plan = w.shape.rollout
  if (plan === undefined) return []
  const shard = w.shards[plan.shard]!
  const on = w.shape.twoShards ? ` of ${shard.id}` : ""
  return [
    ...plan.changes.map((at, k) => ({
      at,
      fault: {
        name: `rollout${on}: the user-data changes (greeting chaos-r${k + 1}): every instance drifts`,
        run: Effect.suspend(() => {
          shard.world = { ...shard.world, greeting: `chaos-r${k + 1}` }
          return pushConfig(w, shard)
        })
      }
    })),
    ...plan.acks.map((at) => ({
      at,
      fault: {
        name: `an operator${on} acknowledges the next drain they see (within ${ACK_PATIENCE_S}s)`,
        run: Effect.asVoid(Effect.forkIn(acknowledgeADrain(w, shard), faultScope))
      }
    }))
  ]
}

/** Expiry is in force while the faults last: the heal takes it out, so that the world can come to rest. */
export const endExpiry = (shard: ShardWorld): void => {
  const lifecycle = shard.world.lifecycle
  if (lifecycle?.eligibleAge === undefined) return
  shard.world = { ...shard.world, lifecycle: { ...lifecycle, eligibleAge: undefined, forcedAge: undefined } }
}
