/**
 * Shared pieces of the lease suites: replicas in their own scopes, a store wrapper that fails or hangs on
 * demand (a replica cut off from the bucket), a log collector, and a timeline of leadership intervals to
 * check "never two leaders". A replica whose clock is skewed runs on `skewedClock` (test/support/virtualClock.ts).
 */
import { Clock, Duration, Effect, Exit, Logger, Scope, Stream, SubscriptionRef, TestServices } from "effect"
import { type LeaderLeaseOptions, makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import type { LeaderLeaseShape } from "../../src/services/LeaderLease.js"
import { type ObjectStoreShape, StoreUnavailable } from "../../src/services/ObjectStore.js"

export type FaultMode = "ok" | "fail" | "hang"

export interface FaultyStore {
  readonly store: ObjectStoreShape
  mode: FaultMode
  calls: number
}

/** Every call fails (StoreUnavailable) or never answers while `mode` says so. */
export const faulty = (base: ObjectStoreShape): FaultyStore => {
  const self: FaultyStore = { store: base, mode: "ok", calls: 0 }
  const gate = <A, E>(operation: string, key: string, call: Effect.Effect<A, E>): Effect.Effect<A, E | StoreUnavailable> =>
    Effect.suspend((): Effect.Effect<A, E | StoreUnavailable> => {
      self.calls++
      if (self.mode === "fail") return Effect.fail(new StoreUnavailable({ operation, key, reason: "injected: store unreachable" }))
      if (self.mode === "hang") return Effect.never
      return call
    })
  ;(self as { store: ObjectStoreShape }).store = {
    get: (key) => gate("get", key, base.get(key)),
    head: (key) => gate("head", key, base.head(key)),
    put: (key, body, pre) => gate("put", key, base.put(key, body, pre)),
    delete: (key) => gate("delete", key, base.delete(key)),
    list: (prefix, startAfter) => base.list(prefix, startAfter)
  }
  return self
}

export interface Interval {
  readonly id: string
  readonly from: number
  to: number | undefined
  readonly term: number
}

/** Leadership intervals [from, to) per replica, stamped with the (test) clock when isLeader changed. */
export class Timeline {
  readonly intervals: Array<Interval> = []

  watch(id: string, lease: LeaderLeaseShape) {
    return lease.isLeader.changes.pipe(
      Stream.runForEach((leader) =>
        Effect.gen(this, function* () {
          const now = yield* Clock.currentTimeMillis
          const open = this.intervals.find((i) => i.id === id && i.to === undefined)
          if (leader && open === undefined) this.intervals.push({ id, from: now, to: undefined, term: yield* lease.term })
          if (!leader && open !== undefined) open.to = now
        })
      ),
      Effect.forkScoped
    )
  }

  /** Pairs of intervals of different replicas that overlap in time (must be empty). */
  overlaps() {
    const found: Array<[Interval, Interval]> = []
    for (const a of this.intervals) {
      for (const b of this.intervals) {
        if (a === b || a.id >= b.id) continue
        const aEnd = a.to ?? Infinity
        const bEnd = b.to ?? Infinity
        if (a.from < bEnd && b.from < aEnd) found.push([a, b])
      }
    }
    return found
  }

  acquisitions(id: string) {
    return this.intervals.filter((i) => i.id === id)
  }
}

export interface Replica {
  readonly id: string
  readonly lease: LeaderLeaseShape
  readonly scope: Scope.CloseableScope
  /** Closes the replica's scope: resigns unless started with `resignOnClose: false` (a crash). */
  readonly stop: Effect.Effect<void>
}

export const startReplica = (
  store: ObjectStoreShape,
  id: string,
  overrides: Partial<LeaderLeaseOptions> = {},
  clock?: Clock.Clock
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const make = makeLeaderLeaseOn(store, { id, address: `${id}.example:8991`, ...overrides }).pipe(Scope.extend(scope))
    const lease = yield* (clock === undefined ? make : Effect.withClock(make, clock))
    return { id, lease, scope, stop: Scope.close(scope, Exit.void) } satisfies Replica
  })

export const leaders = (replicas: ReadonlyArray<Replica>) =>
  Effect.filter(replicas, (r) => SubscriptionRef.get(r.lease.isLeader)).pipe(Effect.map((rs) => rs.map((r) => r.id)))

/** Lets forked fibers run at the current virtual instant. */
export const settle = Effect.repeatN(Effect.yieldNow(), 30)

/** A logger that keeps lines instead of printing them: quiet suites, and assertions on what was logged. */
export const collectLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    const parts = Array.isArray(message) ? message : [message]
    lines.push(`${logLevel.label} ${parts.map((p) => (typeof p === "string" ? p : String(p))).join(" ")}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

export const ms = (n: number) => Duration.millis(n)

/**
 * A store whose calls in flight are counted, and a `settle` that waits (on the real clock) until none is:
 * virtual time must not jump past call timeouts while real I/O (the file store) is still under way.
 */
export interface Backend {
  readonly name: string
  readonly make: () => ObjectStoreShape
  readonly settle: Effect.Effect<void>
}

export const backend = (name: string, makeRaw: () => ObjectStoreShape): Backend => {
  let pending = 0
  const track = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      pending++
      return effect.pipe(Effect.ensuring(Effect.sync(() => void pending--)))
    })
  const make = (): ObjectStoreShape => {
    const raw = makeRaw()
    return {
      get: (key) => track(raw.get(key)),
      head: (key) => track(raw.head(key)),
      put: (key, body, pre) => track(raw.put(key, body, pre)),
      delete: (key) => track(raw.delete(key)),
      list: (prefix, startAfter) => raw.list(prefix, startAfter)
    }
  }
  const quiet = Effect.gen(function* () {
    for (let i = 0; i < 10_000; i++) {
      yield* settle
      if (pending === 0) {
        yield* settle
        if (pending === 0) return
      }
      yield* TestServices.provideLive(Effect.sleep(Duration.millis(1)))
    }
    return yield* Effect.die(`store calls still in flight after 10,000 waits`)
  })
  return { name, make, settle: quiet }
}
