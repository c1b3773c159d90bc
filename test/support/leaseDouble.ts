/**
 * A lease that never campaigns: who leads is whatever `currentLeader` says. When this replica is the
 * leader, `whileLeader` runs term 1 in its own fiber once `lead` is called (`depose` ends it, as losing the
 * lease would); until then, or as a standby, the leader loop waits.
 */
import { Deferred, Effect, Fiber, Option, Ref, SubscriptionRef } from "effect"
import type { LeaderInfo, LeaderLeaseShape } from "../../src/services/LeaderLease.js"

export interface LeaseDouble {
  readonly lease: LeaderLeaseShape
  /** Starts term 1 when this replica is the leader. */
  readonly lead: Effect.Effect<void>
  /** Ends term 1. */
  readonly depose: Effect.Effect<void>
}

export const leaseDouble = (id: string, currentLeader: Effect.Effect<Option.Option<LeaderInfo>>): Effect.Effect<LeaseDouble> =>
  Effect.gen(function* () {
    const leadsNow = Effect.map(currentLeader, Option.exists((leader) => leader.id === id))
    const isLeader = yield* SubscriptionRef.make(yield* leadsNow)
    const gate = yield* Deferred.make<void>()
    const termFiber = yield* Ref.make<Option.Option<Fiber.RuntimeFiber<unknown, unknown>>>(Option.none())
    const lease: LeaderLeaseShape = {
      id,
      isLeader,
      term: Effect.map(currentLeader, Option.match({ onNone: () => 0, onSome: (leader) => leader.term })),
      currentLeader,
      whileLeader: (work) =>
        Effect.flatMap(leadsNow, (leads) =>
          leads
            ? Effect.flatMap(Effect.forkScoped(Effect.zipRight(Deferred.await(gate), work(1))), (fiber) => Ref.set(termFiber, Option.some(fiber)))
            : Effect.void),
      resign: Effect.void
    }
    return {
      lease,
      lead: Deferred.succeed(gate, undefined).pipe(Effect.asVoid),
      depose: Effect.flatMap(Ref.get(termFiber), Option.match({ onNone: () => Effect.void, onSome: Fiber.interrupt }))
    }
  })
