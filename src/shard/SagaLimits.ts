/**
 * The bounds that keep concurrent sagas from overrunning PVE: a per-node limit on mutating API calls (PVE
 * serves with 3 pveproxy/pvedaemon workers per node), a per (node, storage) limit on full clones (PVE holds
 * the storage lock for a whole copy, so a third parallel clone on one storage can already time out), the
 * spacing of creations (`create_rate_limit`), and the VMID allocator, which hands out VMIDs above every
 * VMID the log or the cluster has shown — never reusing a recent one, never giving one out twice.
 */
import { Clock, Context, Duration, Effect, Layer, Ref } from "effect"
import { EventLog } from "../services/EventLog.js"

export const NODE_API_CONCURRENCY = 3
export const CLONES_PER_STORAGE = 1
/** VMIDs below 100 are reserved by PVE. */
export const MIN_VMID = 100
export const MAX_VMID = 999_999_999

export interface SagaLimitsShape {
  readonly onNode: (node: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * A turn at a storage's allocation lock, for a full clone: per node for local storage, cluster-wide for
   * shared storage (PVE's lock on a shared storage is one for all nodes). Clones also pass a gate of their
   * own first, so at most one clone waits on the lock at a time and a resize (`resizeSlot`) never queues
   * behind a whole batch of clones — a VM can start while the rest of its batch is still being copied.
   */
  readonly cloneSlot: (node: string, storage: string, shared: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** A turn at the same storage lock for a disk resize, without the clones' gate. */
  readonly resizeSlot: (node: string, storage: string, shared: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Waits until a creation may start under `create_rate_limit` (zero: at once). */
  readonly creationTurn: (spacing: Duration.Duration) => Effect.Effect<void>
  /** A VMID above the log's high-water mark and every VMID handed out before. */
  readonly nextVmid: Effect.Effect<number>
}

export class SagaLimits extends Context.Tag("nstance/SagaLimits")<SagaLimits, SagaLimitsShape>() {}

export const SagaLimitsLive = Layer.effect(
  SagaLimits,
  Effect.gen(function* () {
    const log = yield* EventLog
    const semaphores = new Map<string, Effect.Semaphore>()
    const semaphore = (key: string, permits: number) => {
      let found = semaphores.get(key)
      if (found === undefined) {
        found = Effect.unsafeMakeSemaphore(permits)
        semaphores.set(key, found)
      }
      return found
    }
    const lastVmid = yield* Ref.make(0)
    const nextCreation = yield* Ref.make(0)
    const rateGate = Effect.unsafeMakeSemaphore(1)
    return SagaLimits.of({
      onNode: (node) => semaphore(`node/${node}`, NODE_API_CONCURRENCY).withPermits(1),
      cloneSlot: (node, storage, shared) => {
        const key = shared ? `*/${storage}` : `${node}/${storage}`
        return (effect) => semaphore(`clone-gate/${key}`, 1).withPermits(1)(semaphore(`storage/${key}`, CLONES_PER_STORAGE).withPermits(1)(effect))
      },
      resizeSlot: (node, storage, shared) => semaphore(`storage/${shared ? `*/${storage}` : `${node}/${storage}`}`, CLONES_PER_STORAGE).withPermits(1),
      creationTurn: (spacing) =>
        Duration.toMillis(spacing) <= 0
          ? Effect.void
          : rateGate.withPermits(1)(Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const at = yield* Ref.get(nextCreation)
            if (at > now) yield* Effect.sleep(Duration.millis(at - now))
            yield* Ref.set(nextCreation, Math.max(now, at) + Duration.toMillis(spacing))
          })),
      nextVmid: Effect.gen(function* () {
        const highWater = (yield* log.state).vmidHighWater
        return yield* Ref.modify(lastVmid, (last) => {
          const next = Math.max(last, highWater, MIN_VMID - 1) + 1
          return [next, next] as const
        })
      })
    })
  })
)
