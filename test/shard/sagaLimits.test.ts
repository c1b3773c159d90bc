/**
 * The storage lane under TestClock: a clone's turn is handed to the next clone a lead before the running
 * one is expected to end (so its setup overlaps the copy), at most two clones are in flight, a resize goes
 * before queued clones, and an interrupted holder or waiter never leaves the lane stuck.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, TestClock } from "effect"
import { earlyHandOverMs, makeStorageLane, type StorageLane, storageSlot, type LaneOp } from "../../src/shard/SagaLimits.js"

/** An operation of `ms` in the lane that records when it got its turn (in simulated ms). */
const op = (lane: StorageLane, kind: LaneOp, ms: number, starts: Map<string, number>, name: string) =>
  storageSlot(lane, kind)(Effect.flatMap(Clock.currentTimeMillis, (now) => {
    starts.set(name, now)
    return Effect.sleep(`${ms} millis`)
  }))

describe("storage lane", () => {
  it("hands over a lead before the expected end; a resize waits for no copy; nothing before a first estimate", () => {
    expect(earlyHandOverMs(new Map(), "clone")).toBeUndefined()
    expect(earlyHandOverMs(new Map(), "resize")).toBe(0)
    // 10 s clones: a fifth of that, at most 2.5 s, before the end.
    expect(earlyHandOverMs(new Map([["clone", 10_000]]), "clone")).toBe(8_000)
    expect(earlyHandOverMs(new Map([["clone", 40_000]]), "clone")).toBe(37_500)
    expect(earlyHandOverMs(new Map<LaneOp, number>([["clone", 10_000], ["resize", 1_000]]), "resize")).toBe(0)
  })

  it.effect("the next clone starts before the running one ends, once a clone has been timed; at most two in flight", () =>
    Effect.gen(function* () {
      const lane = makeStorageLane()
      const starts = new Map<string, number>()
      // The first clone in the lane: nothing known, so the second waits for its end.
      const first = yield* Effect.fork(op(lane, "clone", 10_000, starts, "first"))
      const second = yield* Effect.fork(op(lane, "clone", 10_000, starts, "second"))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(first)
      expect(starts.get("second")).toBe(10_000)
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(second)
      // Now clones are known to take 10 s: B gets its turn 2 s before A is expected to end; C must wait for
      // a clone to finish (two in flight) and then for B's hand-over.
      const a = yield* Effect.fork(op(lane, "clone", 10_000, starts, "a"))
      const b = yield* Effect.fork(op(lane, "clone", 10_000, starts, "b"))
      const c = yield* Effect.fork(op(lane, "clone", 10_000, starts, "c"))
      for (let i = 0; i < 40; i++) yield* TestClock.adjust("1 second")
      yield* Fiber.join(Fiber.zip(Fiber.zip(a, b), c))
      expect(starts.get("a")).toBe(20_000)
      expect(starts.get("b")).toBe(28_000)
      // A ends at 30 s (C takes its permit); B, started at 28 s, hands over at 36 s.
      expect(starts.get("c")).toBe(36_000)
    }))

  it.effect("a resize goes before a queued clone", () =>
    Effect.gen(function* () {
      const lane = makeStorageLane()
      const starts = new Map<string, number>()
      const order: Array<string> = []
      const record = (name: string) => Effect.sync(() => order.push(name))
      const first = yield* Effect.fork(op(lane, "clone", 10_000, starts, "first"))
      const clone = yield* Effect.fork(Effect.zipRight(Effect.sleep("1 second"), op(lane, "clone", 10_000, starts, "clone").pipe(Effect.tap(() => record("clone")))))
      const resize = yield* Effect.fork(Effect.zipRight(Effect.sleep("2 seconds"), op(lane, "resize", 500, starts, "resize").pipe(Effect.tap(() => record("resize")))))
      for (let i = 0; i < 30; i++) yield* TestClock.adjust("1 second")
      yield* Fiber.join(Fiber.zip(Fiber.zip(first, clone), resize))
      // Both waited for the first clone's end (no estimate yet); the resize, queued later, went first.
      expect(starts.get("resize")).toBe(10_000)
      expect(starts.get("clone")).toBe(10_000)
      expect(order).toEqual(["resize", "clone"])
    }))

  it.effect("an interrupted holder passes its turn on, an interrupted waiter leaves the queue", () =>
    Effect.gen(function* () {
      const lane = makeStorageLane()
      const starts = new Map<string, number>()
      const holder = yield* Effect.fork(op(lane, "clone", 60_000, starts, "holder"))
      const quitter = yield* Effect.fork(op(lane, "resize", 500, starts, "quitter"))
      const next = yield* Effect.fork(op(lane, "clone", 1_000, starts, "next"))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(quitter)
      yield* Fiber.interrupt(holder)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(next)
      expect(starts.has("quitter")).toBe(false)
      expect(starts.get("next")).toBe(1_000)
      expect(lane.held).toBe(false)
      expect(lane.queue).toHaveLength(0)
    }))
})
