/**
 * The bounds that keep concurrent sagas from overrunning PVE: a per-node limit on API requests (PVE serves
 * with 3 pveproxy/pvedaemon workers per node; a task runs in a worker of its own once forked, so waiting
 * for a task holds no request slot), a lane per storage lock for full clones and disk resizes, the spacing of
 * creations (`create_rate_limit`), and the VMID allocator, which hands out VMIDs of the shard's `vmid_range`
 * above every VMID the log or the cluster has shown, skipping every VMID it knows to be taken — never giving
 * one out twice in a term (see `src/domain/vmids.ts`).
 *
 * The storage lane. PVE holds a local storage's allocation lock (cluster-wide for a shared storage) for the
 * whole disk copy of a full clone and for a resize, and a task that waits for it longer than 10 s fails. So
 * the lock is the critical path of a batch of creates, and it should never idle while clones are queued —
 * yet nothing may wait at it long. A clone's task first does its setup (a second or so) and only then asks
 * for the lock, so the next clone is handed its turn a little *before* the running one is expected to end
 * (by the `lead` below): its setup overlaps the copy, it reaches the lock about when the copy lets go, and
 * waits there only about `lead` minus its setup. Expected durations are learned per lane from the turns
 * themselves; until the first turn has ended a turn lasts until its task does. A resize, which a started VM
 * waits for, goes before queued clones; at most two clones are in flight per lane (one copying, one in its
 * setup), so a resize never waits behind a batch.
 */
import { Clock, Context, Data, Deferred, Duration, Effect, Exit, Fiber, HashMap, Layer, Ref } from "effect"
import { formatVmidRange, pickVmid, type VmidRange } from "../domain/vmids.js"
import { EventLog } from "../services/EventLog.js"

export const NODE_API_CONCURRENCY = 3
/** Clones in flight per storage lane: one holding the lock, one in its setup behind it. */
export const CLONES_IN_FLIGHT_PER_STORAGE = 2
/** The next turn starts this fraction of the running clone's expected duration before its expected end … */
const LEAD_FRACTION = 0.2
/** … but never earlier than this before it: what the next task may wait at PVE's lock stays well under 10 s. */
const LEAD_MAX_MS = 2_500
/** Weight of the newest observed turn in the lane's expected durations. */
const DURATION_WEIGHT = 0.5

/** Every VMID of the shard's range is in use (by its VMs, by others, or handed out this term). */
export class VmidRangeExhausted extends Data.TaggedError("VmidRangeExhausted")<{ readonly range: VmidRange }> {
  override get message() {
    return `no free VMID left in shard.infra.options.vmid_range ${formatVmidRange(this.range)}`
  }
}

export type LaneOp = "clone" | "resize"

export interface SagaLimitsShape {
  /** One API request (not the task it starts) against `node`, within the node's request slots. */
  readonly onNode: (node: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * A turn in the lane of a storage's allocation lock, for a full clone (its call and the wait for its
   * task): per node for local storage, cluster-wide for shared storage.
   */
  readonly cloneSlot: (node: string, storage: string, shared: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** A turn in the same lane for a disk resize, ahead of queued clones. */
  readonly resizeSlot: (node: string, storage: string, shared: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Waits until a creation may start under `create_rate_limit` (zero: at once). */
  readonly creationTurn: (spacing: Duration.Duration) => Effect.Effect<void>
  /**
   * A VMID of `range` above the log's high-water mark and every VMID handed out before, that neither the
   * log nor the latest cluster listing shows in use; from the range's bottom again once its top is reached.
   */
  readonly nextVmid: (range: VmidRange) => Effect.Effect<number, VmidRangeExhausted>
  /** The VMIDs of a fresh cluster listing (`/cluster/resources`): what others use, beside the log's. */
  readonly noteClusterVmids: (vmids: Iterable<number>) => Effect.Effect<void>
}

export class SagaLimits extends Context.Tag("nstance/SagaLimits")<SagaLimits, SagaLimitsShape>() {}

interface Waiter {
  /** Lower goes first: resizes (0) before clones (1). */
  readonly priority: number
  readonly grant: Deferred.Deferred<void>
}

export interface StorageLane {
  readonly clones: Effect.Semaphore
  /** Someone holds the turn (until it is passed on, early or at its end). */
  held: boolean
  readonly queue: Array<Waiter>
  /** Expected turn length per kind of operation, in ms. */
  readonly expectedMs: Map<LaneOp, number>
}

/**
 * When, after the start of a turn, the next may start; undefined: at the end of this one. A resize no turn
 * has timed yet hands over at once: it holds the lock for a moment, less than a clone's setup lasts.
 */
export const earlyHandOverMs = (expectedMs: ReadonlyMap<LaneOp, number>, op: LaneOp): number | undefined => {
  const own = expectedMs.get(op)
  const clone = expectedMs.get("clone")
  if (own === undefined || clone === undefined) return op === "resize" ? 0 : undefined
  return Math.max(0, own - Math.min(LEAD_MAX_MS, LEAD_FRACTION * clone))
}

export const makeStorageLane = (): StorageLane => ({ clones: Effect.unsafeMakeSemaphore(CLONES_IN_FLIGHT_PER_STORAGE), held: false, queue: [], expectedMs: new Map() })

/** Gives the turn to the first waiter, or frees it. */
const passTurn = (lane: StorageLane) =>
  Effect.suspend(() => {
    const next = lane.queue.shift()
    if (next === undefined) {
      lane.held = false
      return Effect.void
    }
    return Deferred.succeed(next.grant, undefined)
  })

/** Runs `effect` holding the lane's turn, handing the turn on early once its expected end is near. */
const storageTurn = (lane: StorageLane, op: LaneOp) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const waiter: Waiter = { priority: op === "resize" ? 0 : 1, grant: yield* Deferred.make<void>() }
      if (!lane.held && lane.queue.length === 0) {
        lane.held = true
        yield* Deferred.succeed(waiter.grant, undefined)
      } else {
        const behind = lane.queue.findIndex((w) => w.priority > waiter.priority)
        lane.queue.splice(behind < 0 ? lane.queue.length : behind, 0, waiter)
      }
      yield* restore(Deferred.await(waiter.grant)).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(Deferred.isDone(waiter.grant), (granted) =>
            granted
              ? passTurn(lane)
              : Effect.sync(() => {
                const at = lane.queue.indexOf(waiter)
                if (at >= 0) lane.queue.splice(at, 1)
              })
          )
        )
      )
      let passed = false
      const passOnce = Effect.suspend(() => {
        if (passed) return Effect.void
        passed = true
        return passTurn(lane)
      })
      const started = yield* Clock.currentTimeMillis
      const handOver = earlyHandOverMs(lane.expectedMs, op)
      const timer = handOver === undefined
        ? undefined
        : yield* Effect.fork(Effect.interruptible(Effect.zipRight(Effect.sleep(Duration.millis(handOver)), passOnce)))
      const exit = yield* Effect.exit(restore(effect))
      if (timer !== undefined) yield* Fiber.interrupt(timer)
      yield* passOnce
      if (Exit.isSuccess(exit)) {
        const took = (yield* Clock.currentTimeMillis) - started
        const before = lane.expectedMs.get(op)
        lane.expectedMs.set(op, before === undefined ? took : before + DURATION_WEIGHT * (took - before))
      }
      return yield* exit
    })
  )

/** A clone's or a resize's turn in `lane`; a clone also takes one of the lane's clones-in-flight permits first. */
export const storageSlot = (lane: StorageLane, op: LaneOp) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  op === "clone" ? lane.clones.withPermits(1)(storageTurn(lane, op)(effect)) : storageTurn(lane, op)(effect)

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
    const lanes = new Map<string, StorageLane>()
    const lane = (node: string, storage: string, shared: boolean) => {
      const key = shared ? `*/${storage}` : `${node}/${storage}`
      let found = lanes.get(key)
      if (found === undefined) {
        found = makeStorageLane()
        lanes.set(key, found)
      }
      return found
    }
    const lastVmid = yield* Ref.make(0)
    /** Every VMID handed out this term (a clone onto one of them may still be on its way). */
    const handedOut = new Set<number>()
    let clusterVmids: ReadonlySet<number> = new Set()
    const nextCreation = yield* Ref.make(0)
    const rateGate = Effect.unsafeMakeSemaphore(1)
    return SagaLimits.of({
      onNode: (node) => semaphore(`node/${node}`, NODE_API_CONCURRENCY).withPermits(1),
      cloneSlot: (node, storage, shared) => storageSlot(lane(node, storage, shared), "clone"),
      resizeSlot: (node, storage, shared) => storageSlot(lane(node, storage, shared), "resize"),
      creationTurn: (spacing) =>
        Duration.toMillis(spacing) <= 0
          ? Effect.void
          : rateGate.withPermits(1)(Effect.gen(function* () {
            const now = yield* Clock.currentTimeMillis
            const at = yield* Ref.get(nextCreation)
            if (at > now) yield* Effect.sleep(Duration.millis(at - now))
            yield* Ref.set(nextCreation, Math.max(now, at) + Duration.toMillis(spacing))
          })),
      nextVmid: (range) =>
        Effect.gen(function* () {
          const state = yield* log.state
          const taken = (vmid: number) => handedOut.has(vmid) || clusterVmids.has(vmid) || HashMap.has(state.vmidOwners, vmid)
          const next = yield* Ref.modify(lastVmid, (last) => {
            const picked = pickVmid(range, Math.max(last, state.vmidHighWater), taken)
            // Marked in the same step: a concurrent pick (from the range's bottom) never gets it too.
            if (picked !== undefined) handedOut.add(picked)
            return [picked, picked ?? last] as const
          })
          if (next === undefined) return yield* new VmidRangeExhausted({ range })
          return next
        }),
      noteClusterVmids: (vmids) => Effect.sync(() => { clusterVmids = new Set(vmids) })
    })
  })
)
