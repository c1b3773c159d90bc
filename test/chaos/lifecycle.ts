/**
 * The replica slots of a chaos world: an incarnation starts in a slot (a new `who`, its clock skew, its
 * process) and ends in a crash, which closes its scope. A restart is a new incarnation in the same slot,
 * with the same id or a fresh one.
 */
import { Effect, Exit, Scope } from "effect"
import type { Who } from "./history.js"
import { startReplicaProcess } from "./replica.js"
import { type ChaosWorld, elapsed, type Replica, shardOfSlot } from "./state.js"
import { makeWrappers } from "./wrappers.js"

export interface ReplicaLifecycle {
  /** Ends the incarnation in `slot`, if any. */
  readonly crash: (slot: number, reason: string) => Effect.Effect<void>
  /** Starts an incarnation of replica `id` in `slot`; `graceful`: it resigns its lease when stopped. */
  readonly startReplica: (slot: number, id: string, graceful: boolean) => Effect.Effect<Replica>
  /** An id no replica of the world had yet. */
  readonly freshId: (slot: number) => string
}

export const makeReplicaLifecycle = (w: ChaosWorld): ReplicaLifecycle => {
  const { history, replicas } = w

  const crash = (slot: number, reason: string) =>
    Effect.gen(function* () {
      const r = replicas[slot]
      if (r === undefined) return
      replicas[slot] = undefined
      w.dead.add(r.who)
      history.mark(r.who, "crash", r.leaderTerm, reason)
      if (w.verbose) globalThis.console.log(`${elapsed(w.clock)}s crash ${r.who}: ${reason}`)
      // Closed on a fiber of its own: a finalizer waiting for (virtual) time must not hold up the caller,
      // which may be the very fiber that moves time on.
      w.closing++
      yield* Effect.forkIn(Scope.close(r.scope, Exit.void).pipe(Effect.ensuring(Effect.sync(() => w.closing--))), w.worldScope)
    })

  /** Crashes from inside the dying replica's own fiber: the close runs on a fiber of the world. */
  const crashFromWithin = (who: Who, reason: string) =>
    Effect.suspend(() => {
      const slot = replicas.findIndex((r) => r?.who === who)
      return slot < 0 ? Effect.void : Effect.asVoid(Effect.forkIn(crash(slot, reason), w.worldScope))
    })

  const wrappers = makeWrappers(w, crashFromWithin)

  const startReplica = (slot: number, id: string, graceful: boolean) =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const shard = shardOfSlot(w, slot)
      const twoShards = w.shape.twoShards
      const who = `${twoShards ? `${shard.id}/` : ""}${id}#${++w.incarnations}`
      if (twoShards) history.shardOf.set(who, shard.id)
      const replica: Replica = { slot, id, who, scope, skew: { wall: 0, mono: 0 }, leaderTerm: undefined }
      replicas[slot] = replica
      history.mark(who, "start", undefined, graceful ? "resigns on stop" : "dies without resigning")
      yield* startReplicaProcess(
        { ...wrappers, clock: w.clock, history, snapshotEvery: w.shape.snapshotEvery, pki: w.registration.pki(), leaseGate: w.pauses.leaseGate },
        shard,
        replica,
        graceful
      )
      return replica
    })

  const freshId = (slot: number) => `r${slot}g${++w.generation}`

  return { crash, startReplica, freshId }
}
