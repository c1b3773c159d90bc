/**
 * LeaderLease under virtual time: the suites the store-specific test files run.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Context, Effect, Either, Exit, Fiber, Layer, Option, Ref, Scope, SubscriptionRef, TestClock } from "effect"
import { LEADER_KEY } from "../../src/domain/bucketKeys.js"
import { decodeLeaseRecord, encodeLeaseRecord, GO_ZERO_TIME } from "../../src/domain/lease.js"
import { LeaderLeaseStore, makeLeaderLeaseOn, resolveLeaseOptions } from "../../src/layers/LeaderLeaseStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { LeaderLease } from "../../src/services/LeaderLease.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { skewedClock } from "../support/virtualClock.js"
import { type Backend, collectLogs, faulty, leaders, ms, type Replica, startReplica, Timeline } from "./harness.js"

const I = 5_000 // frequent interval (defaults)
const T = 15_000 // leader timeout
const M = 3_000 // margin (timeout / 5)
const enc = new TextEncoder()

const readRecord = (store: ObjectStoreShape) =>
  store.get(LEADER_KEY).pipe(
    Effect.map((o) => decodeLeaseRecord(o.body)),
    Effect.flatMap(Either.match({ onLeft: (e) => Effect.die(e.reason), onRight: Effect.succeed }))
  )

const isLeader = (r: Replica) => SubscriptionRef.get(r.lease.isLeader)

const quiet = collectLogs()

/** The lease's behaviour on one store under virtual time (one test file per store, so the two run in parallel). */
export const suite = ({ name, make, settle }: Backend, long: number) =>
  describe(`LeaderLease on the ${name} store (virtual time)`, () => {
    /** Advances virtual time in `step` increments up to `until` (absolute), calling `check` after each step. */
    const stepTo = (until: number, step: number, check: (now: number) => Effect.Effect<void> = () => Effect.void) =>
      Effect.gen(function* () {
        for (;;) {
          const now = yield* Clock.currentTimeMillis
          if (now >= until) return
          yield* TestClock.adjust(ms(Math.min(step, until - now)))
          yield* settle
          yield* check(yield* Clock.currentTimeMillis)
        }
      })

    /** The first virtual time (stepping by `step`) at which `cond` holds; fails the test after `limit`. */
    const timeWhen = (cond: Effect.Effect<boolean>, limit: number, step = 100) =>
      Effect.gen(function* () {
        const start = yield* Clock.currentTimeMillis
        for (;;) {
          if (yield* cond) return yield* Clock.currentTimeMillis
          const now = yield* Clock.currentTimeMillis
          if (now - start > limit) return yield* Effect.die(`condition not reached within ${limit} ms`)
          yield* TestClock.adjust(ms(step))
          yield* settle
        }
      })

    it.scoped("a single server acquires term 1 at its first tick, renews, and names itself leader", () =>
      Effect.gen(function* () {
        const store = make()
        const a = yield* startReplica(store, "a")
        yield* settle
        expect(yield* isLeader(a)).toBe(true)
        expect(yield* a.lease.term).toBe(1)
        expect(yield* a.lease.currentLeader).toEqual(Option.some({ id: "a", address: "a.example:8991", term: 1 }))
        const first = yield* store.get(LEADER_KEY)
        yield* stepTo(I, I)
        const second = yield* store.get(LEADER_KEY)
        expect(second.etag).not.toBe(first.etag)
        expect(yield* readRecord(store)).toEqual({ leaderID: "a", leaderAddr: "a.example:8991", term: 1, lastUpdated: I, incarnation: expect.stringMatching(/^[0-9a-f]{16}$/) })
        yield* stepTo(10 * I, 1_000, () => Effect.flatMap(isLeader(a), (l) => Effect.sync(() => expect(l).toBe(true))))
        expect(yield* a.lease.term).toBe(1)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("five contenders: exactly one leader at every step, for a long run, and followers know who", () =>
      Effect.gen(function* () {
        const store = make()
        const timeline = new Timeline()
        const replicas: Array<Replica> = []
        for (const id of ["r1", "r2", "r3", "r4", "r5"]) {
          const r = yield* startReplica(store, id)
          replicas.push(r)
          yield* timeline.watch(id, r.lease)
        }
        yield* settle
        expect(yield* leaders(replicas)).toHaveLength(1)
        const [first] = yield* leaders(replicas)
        yield* stepTo(long, 250, () =>
          Effect.gen(function* () {
            expect(yield* leaders(replicas)).toEqual([first])
          })
        )
        for (const r of replicas) expect(Option.map(yield* r.lease.currentLeader, (l) => l.id)).toEqual(Option.some(first))
        expect(timeline.intervals).toHaveLength(1)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("after the leader crashes (no resign), another leads within timeout + one interval, with term + 1", () =>
      Effect.gen(function* () {
        const store = make()
        const timeline = new Timeline()
        const a = yield* startReplica(store, "a", { resignOnClose: false })
        yield* settle
        const others = [yield* startReplica(store, "b"), yield* startReplica(store, "c")]
        for (const r of [a, ...others]) yield* timeline.watch(r.id, r.lease)
        yield* stepTo(12_345, 250)
        const lastRenewal = (yield* readRecord(store)).lastUpdated
        const crashedAt = yield* Clock.currentTimeMillis
        yield* a.stop
        const tookOver = yield* timeWhen(Effect.map(leaders(others), (l) => l.length === 1), 60_000)
        expect(tookOver - crashedAt).toBeLessThanOrEqual(T + I)
        // Never before the old leader would have fenced itself.
        expect(tookOver).toBeGreaterThanOrEqual(lastRenewal + T - M)
        const winner = others.find((r) => timeline.acquisitions(r.id).length > 0)!
        expect(yield* winner.lease.term).toBe(2)
        yield* stepTo(tookOver + 120_000, 500, () => Effect.map(leaders(others), (l) => expect(l).toHaveLength(1)))
        expect(timeline.overlaps()).toEqual([])
      }).pipe(Effect.provide(quiet.layer)))

    for (const mode of ["fail", "hang"] as const) {
      it.scoped(`a leader cut off from the store (${mode}) fences itself before anyone else can acquire`, () =>
        Effect.gen(function* () {
          const shared = make()
          const cut = faulty(shared)
          const timeline = new Timeline()
          const a = yield* startReplica(cut.store, "a")
          yield* settle
          const b = yield* startReplica(shared, "b")
          yield* timeline.watch("a", a.lease)
          yield* timeline.watch("b", b.lease)
          const work = yield* Ref.make<Array<string>>([])
          yield* a.lease.whileLeader((term) =>
            Effect.acquireRelease(Ref.update(work, (w) => [...w, `start ${term}`]), () => Clock.currentTimeMillis.pipe(
              Effect.flatMap((t) => Ref.update(work, (w) => [...w, `stop ${term} at ${t}`]))
            )).pipe(Effect.zipRight(Effect.never), Effect.scoped)
          )
          yield* stepTo(7_000, 250)
          cut.mode = mode
          yield* stepTo(60_000, 100)
          const [aInterval] = timeline.acquisitions("a")
          const [bInterval] = timeline.acquisitions("b")
          expect(aInterval?.to).toBeDefined()
          expect(bInterval).toBeDefined()
          // The timeline: a steps down strictly before b acquires.
          expect(aInterval!.to!).toBeLessThan(bInterval!.from)
          expect(timeline.overlaps()).toEqual([])
          // a's leader work was interrupted when it fenced itself, not later.
          expect(yield* Ref.get(work)).toEqual(["start 1", `stop 1 at ${aInterval!.to}`])
          expect(yield* b.lease.term).toBe(2)
          // Once the store is back, a sees b and follows.
          cut.mode = "ok"
          yield* stepTo(90_000, 500)
          expect(yield* isLeader(a)).toBe(false)
          expect(Option.map(yield* a.lease.currentLeader, (l) => l.id)).toEqual(Option.some("b"))
        }).pipe(Effect.provide(quiet.layer)))
    }

    it.scoped("resign releases the record (Go zero time) and a standby takes over at its next tick", () =>
      Effect.gen(function* () {
        const store = make()
        const timeline = new Timeline()
        const a = yield* startReplica(store, "a")
        yield* settle
        yield* TestClock.adjust(ms(1_000))
        const b = yield* startReplica(store, "b")
        yield* timeline.watch("a", a.lease)
        yield* timeline.watch("b", b.lease)
        yield* stepTo(20_500, 250)
        yield* a.lease.resign
        const resignedAt = yield* Clock.currentTimeMillis
        expect(yield* isLeader(a)).toBe(false)
        const raw = JSON.parse(new TextDecoder().decode((yield* store.get(LEADER_KEY)).body))
        expect(raw).toMatchObject({ leaderID: "a", term: 1, lastUpdated: GO_ZERO_TIME })
        const tookOver = yield* timeWhen(isLeader(b), 2 * I)
        expect(tookOver - resignedAt).toBeLessThanOrEqual(I)
        expect(yield* b.lease.term).toBe(2)
        yield* stepTo(tookOver + 60_000, 500)
        expect(timeline.acquisitions("a")).toHaveLength(1)
        expect(timeline.overlaps()).toEqual([])
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("closing the lease's scope resigns too", () =>
      Effect.gen(function* () {
        const store = make()
        const a = yield* startReplica(store, "a")
        yield* settle
        yield* a.stop
        expect((yield* readRecord(store)).lastUpdated).toBe(Date.parse(GO_ZERO_TIME))
        expect(yield* isLeader(a)).toBe(false)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a restart with the same id bumps the term and runs the leader scope again, once the crashed run's record expires", () =>
      Effect.gen(function* () {
        const store = make()
        const runs = yield* Ref.make<Array<string>>([])
        const first = yield* startReplica(store, "a", { resignOnClose: false })
        yield* first.lease.whileLeader((term) => Ref.update(runs, (r) => [...r, `first:${term}`]))
        yield* settle
        yield* stepTo(6_000, 500)
        yield* first.stop // crash: the record stays ours and fresh
        const crashedAt = yield* Clock.currentTimeMillis
        const second = yield* startReplica(store, "a")
        yield* second.lease.whileLeader((term) => Ref.update(runs, (r) => [...r, `second:${term}`]))
        yield* settle
        // Another incarnation wrote it: that could be a live second process with our id, so it is watched
        // like any holder's record, and taken over when it stops changing for the timeout.
        expect(yield* isLeader(second)).toBe(false)
        const tookOver = yield* timeWhen(isLeader(second), T + 2 * I)
        expect(tookOver - crashedAt).toBeGreaterThanOrEqual(T)
        expect(tookOver - crashedAt).toBeLessThanOrEqual(T + I)
        expect(yield* second.lease.term).toBe(2)
        expect((yield* readRecord(store)).term).toBe(2)
        expect(yield* Ref.get(runs)).toEqual(["first:1", "second:2"])
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a record of our id from a build without incarnations is taken over at once, as before", () =>
      Effect.gen(function* () {
        const store = make()
        yield* store.put(LEADER_KEY, encodeLeaseRecord({ leaderID: "a", leaderAddr: "a.example:8991", term: 3, lastUpdated: 0 }))
        const a = yield* startReplica(store, "a")
        yield* settle
        expect(yield* isLeader(a)).toBe(true)
        expect(yield* a.lease.term).toBe(4)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a second live process with the same id refuses to run; the first keeps its lease and term", () =>
      Effect.gen(function* () {
        const store = make()
        const timeline = new Timeline()
        const first = yield* startReplica(store, "a")
        yield* timeline.watch("first", first.lease)
        yield* settle
        yield* stepTo(2_000, 500)
        const second = yield* startReplica(store, "a")
        yield* timeline.watch("second", second.lease)
        const refused = yield* Effect.fork(second.lease.duplicate ?? Effect.never)
        const refusedAt = yield* timeWhen(Effect.map(refused.poll, Option.isSome), 3 * I)
        // It needs to see one renewal: at most two of its polls.
        expect(refusedAt - 2_000).toBeLessThanOrEqual(2 * I)
        const error = yield* Effect.flip(Fiber.join(refused))
        expect(error._tag).toBe("DuplicateReplica")
        expect(error.message).toBe(
          "another process is running with --id a: it holds leader.json (term 1, advertising a.example:8991) and renews it; this one stops — give every replica of a shard its own --id"
        )
        yield* second.stop
        yield* stepTo(refusedAt + 60_000, 1_000, () => Effect.map(isLeader(first), (l) => expect(l).toBe(true)))
        expect(yield* first.lease.term).toBe(1)
        expect(timeline.acquisitions("second")).toEqual([])
        // Stopping the refused one never released the first's record.
        expect((yield* readRecord(store)).lastUpdated).toBeGreaterThan(0)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a dead writer whose clock was a year ahead does not block takeover forever", () =>
      Effect.gen(function* () {
        const store = make()
        const future = 365 * 86_400_000
        yield* store.put(LEADER_KEY, encodeLeaseRecord({ leaderID: "ghost", leaderAddr: "g:1", term: 7, lastUpdated: future }))
        const b = yield* startReplica(store, "b")
        yield* settle
        expect(yield* isLeader(b)).toBe(false)
        expect(Option.map(yield* b.lease.currentLeader, (l) => l.id)).toEqual(Option.some("ghost"))
        const tookOver = yield* timeWhen(isLeader(b), T + 2 * I)
        expect(tookOver).toBeGreaterThanOrEqual(T)
        expect(tookOver).toBeLessThanOrEqual(T + I)
        expect(yield* b.lease.term).toBe(8)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a live leader whose clock is an hour ahead keeps the lease; a reader an hour ahead never steals it", () =>
      Effect.gen(function* () {
        const store = make()
        const clock = yield* Effect.clock
        const timeline = new Timeline()
        const ahead = yield* startReplica(store, "ahead", {}, skewedClock(clock, { wall: 3_600_000 }))
        yield* settle
        yield* TestClock.adjust(ms(1_000))
        const normal = yield* startReplica(store, "normal")
        const readerAhead = yield* startReplica(store, "reader-ahead", {}, skewedClock(clock, { wall: 3_600_000 }))
        for (const r of [ahead, normal, readerAhead]) yield* timeline.watch(r.id, r.lease)
        yield* stepTo(150_000, 500, () => Effect.map(leaders([ahead, normal, readerAhead]), (l) => expect(l).toEqual(["ahead"])))
        // The leader that runs ahead steps aside; the reader whose clock runs ahead must still wait for
        // the released record, and the normal one must not wait for the future timestamp.
        yield* ahead.stop
        yield* stepTo(160_000, 500)
        expect(yield* leaders([normal, readerAhead])).toHaveLength(1)
        expect(timeline.overlaps()).toEqual([])
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a reader whose clock runs an hour ahead does not steal a normal leader's lease", () =>
      Effect.gen(function* () {
        const store = make()
        const clock = yield* Effect.clock
        const a = yield* startReplica(store, "a")
        yield* settle
        yield* TestClock.adjust(ms(1_000))
        const logs = collectLogs()
        const skewed = yield* startReplica(store, "skewed", {}, skewedClock(clock, { wall: 3_600_000 })).pipe(Effect.provide(logs.layer))
        yield* stepTo(240_000, 500, () => Effect.map(leaders([a, skewed]), (l) => expect(l).toEqual(["a"])))
        expect(Option.map(yield* skewed.lease.currentLeader, (l) => l.id)).toEqual(Option.some("a"))
        const warnings = logs.lines.filter((l) => l.includes("disagree"))
        // One warning; the measured skew is the hour plus the record's age when read (under one 5 s renewal
        // interval, and the file store's real I/O time moves it by a second either way).
        expect(warnings).toHaveLength(1)
        expect(warnings[0]).toMatch(/^WARN lease: our clock and a's disagree by about (\d+) s \(its renewals look old\); the lease stays safe, but Go replicas in this shard rely on synchronised clocks$/)
        const seconds = Number(/about (\d+) s/.exec(warnings[0] ?? "")?.[1])
        expect(seconds).toBeGreaterThanOrEqual(3600)
        expect(seconds).toBeLessThanOrEqual(3606)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("an original Go record (no term) is taken over with term 1; a Go-released one at once", () =>
      Effect.gen(function* () {
        const store = make()
        yield* TestClock.adjust(ms(3_600_000))
        // A Go leader that stopped an hour ago without resigning.
        yield* store.put(LEADER_KEY, enc.encode(`{"leaderID":"server-b","leaderAddr":"10.0.1.7:8991","lastUpdated":"1970-01-01T00:00:00.000000001Z"}`))
        const a = yield* startReplica(store, "a")
        yield* settle
        const start = yield* Clock.currentTimeMillis
        const tookOver = yield* timeWhen(isLeader(a), T + I)
        // Stale by the wall clock, but only watching proves it dead: one leader timeout.
        expect(tookOver - start).toBe(T)
        expect(yield* readRecord(store)).toMatchObject({ leaderID: "a", term: 1 })

        const store2 = make()
        yield* store2.put(LEADER_KEY, enc.encode(`{"leaderID":"server-b","leaderAddr":"10.0.1.7:8991","lastUpdated":"${GO_ZERO_TIME}"}`))
        const c = yield* startReplica(store2, "c")
        yield* settle
        expect(yield* isLeader(c)).toBe(true)
        expect(yield* c.lease.term).toBe(1)
      }).pipe(Effect.provide(quiet.layer)))

    it.scoped("a corrupt leader.json is logged clearly and taken over with If-Match, not a crash", () =>
      Effect.gen(function* () {
        const logs = collectLogs()
        const store = make()
        yield* store.put(LEADER_KEY, enc.encode("<html>502 Bad Gateway</html>"))
        const a = yield* startReplica(store, "a").pipe(Effect.provide(logs.layer))
        yield* settle
        expect(yield* isLeader(a)).toBe(true)
        expect(yield* readRecord(store)).toMatchObject({ leaderID: "a", term: 1 })
        expect(logs.lines.some((l) => /^ERROR lease: leader\.json is not a lease record \(.*JSON.*\); treating it as no lease$/.test(l))).toBe(true)
        expect(logs.lines).toContain("INFO lease: acquired term 1")
      }))

    it.scoped("every transition is logged: acquired, lost with a reason, resigned", () =>
      Effect.gen(function* () {
        const logs = collectLogs()
        const shared = make()
        const cut = faulty(shared)
        const a = yield* startReplica(cut.store, "a").pipe(Effect.provide(logs.layer))
        yield* settle
        cut.mode = "fail"
        yield* stepTo(20_000, 500)
        cut.mode = "ok"
        yield* stepTo(26_000, 500)
        yield* a.lease.resign.pipe(Effect.provide(logs.layer))
        const transitions = logs.lines.filter((l) => /acquired|lost|resigned/.test(l))
        expect(transitions[0]).toBe("INFO lease: acquired term 1")
        expect(transitions[1]).toMatch(/^WARN lease: lost leadership of term 1: no successful renewal for 12000 ms/)
        expect(transitions[2]).toBe("INFO lease: acquired term 2")
        expect(transitions[3]).toBe("WARN lease: lost leadership of term 2: resigned")
        expect(transitions[4]).toBe("INFO lease: resigned term 2")
      }))

    it.scoped("whileLeader work that fails resigns, so a standby leads", () =>
      Effect.gen(function* () {
        const store = make()
        const a = yield* startReplica(store, "a")
        yield* settle
        const b = yield* startReplica(store, "b")
        yield* a.lease.whileLeader(() => Effect.sleep(ms(2_000)).pipe(Effect.zipRight(Effect.fail("reconcile exploded"))))
        yield* stepTo(3_000, 250)
        expect(yield* isLeader(a)).toBe(false)
        const tookOver = yield* timeWhen(isLeader(b), 2 * I)
        expect(tookOver).toBeLessThanOrEqual(2_000 + I)
      }).pipe(Effect.provide(quiet.layer)))

    it.effect("nonsensical timings are refused naming the setting", () =>
      Effect.gen(function* () {
        const cases = [
          [{ frequentInterval: "10 seconds", leaderTimeout: "10 seconds" }, "leaderTimeout"],
          [{ margin: "20 seconds" }, "margin"],
          [{ infrequentInterval: "1 second" }, "infrequentInterval"],
          [{ frequentInterval: 0 }, "frequentInterval"],
          [{ id: " " }, "id"]
        ] as const
        for (const [overrides, field] of cases) {
          const error = yield* Effect.flip(resolveLeaseOptions({ id: "a", address: "h:1", ...overrides }))
          expect(error).toMatchObject({ _tag: "InvalidLeaseOptions", field })
          expect(error.message).toContain(field)
        }
        const error = yield* Effect.flip(Effect.scoped(makeLeaderLeaseOn(make(), { id: "a", address: "", margin: "15 seconds" })))
        expect(error.message).toBe("invalid leader election setting margin: 15000 ms must be shorter than leaderTimeout 15000 ms")
      }))

    it.scoped("followers may poll at the infrequent interval while the leader is healthy", () =>
      Effect.gen(function* () {
        const shared = make()
        const counted = faulty(shared)
        const a = yield* startReplica(shared, "a", { resignOnClose: false })
        yield* settle
        yield* TestClock.adjust(ms(1_000))
        const b = yield* startReplica(counted.store, "b", { relaxFollowerPolling: true })
        yield* stepTo(301_000, 1_000)
        // 300 s: frequent polling would be 60 reads; relaxed polling about 10 after the first two.
        expect(counted.calls).toBeLessThanOrEqual(14)
        expect(yield* isLeader(a)).toBe(true)
        // ...and still takes over after a crash, within infrequent + timeout + frequent.
        const crashedAt = yield* Clock.currentTimeMillis
        yield* a.stop
        const tookOver = yield* timeWhen(isLeader(b), 30_000 + T + 2 * I, 500)
        expect(tookOver - crashedAt).toBeLessThanOrEqual(30_000 + T + I)
      }).pipe(Effect.provide(quiet.layer)))
  })

/** The layer form, on the memory store. */
export const layerSuite = () =>
  describe("LeaderLeaseStore layer", () => {
    it.scoped("provides LeaderLease over the ObjectStore in context and resigns when the layer closes", () =>
      Effect.gen(function* () {
        const store = makeMemoryStore()
        const scope = yield* Scope.make()
        const lease = yield* Layer.buildWithScope(LeaderLeaseStore({ id: "a", address: "a:1" }), scope).pipe(
          Effect.map(Context.get(LeaderLease)),
          Effect.provideService(ObjectStore, store)
        )
        yield* Effect.repeatN(Effect.yieldNow(), 30)
        expect(yield* SubscriptionRef.get(lease.isLeader)).toBe(true)
        yield* Scope.close(scope, Exit.void)
        expect(yield* readRecord(store)).toMatchObject({ leaderID: "a", term: 1, lastUpdated: Date.parse(GO_ZERO_TIME) })
      }).pipe(Effect.provide(quiet.layer)))
  })
