/**
 * A leader that dies in the middle of a delete, after or instead of any of its segment writes: a new term
 * finishes the delete, and the simulated cluster shows nothing left — no VM, disk or ISO.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import type { ShardEvent } from "../../src/domain/shard/events.js"
import { makeWorld } from "../support/simWorld.js"

/** Segment writes of a term that opens on a converged log of one VM and scales it to 0, one event each. */
const DELETE_EVENTS: ReadonlyArray<ShardEvent["_tag"]> = ["LeaderElected", "DeleteRequested", "VmStopped", "IsoDeleted", "VmDeleted", "InstanceGone"]

describe("crash in the middle of a delete, then a new term (simulated world)", () => {
  it.scoped("reference: one delete writes these segments, in this order", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      const creator = yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      yield* Fiber.interrupt(creator)
      const before = (yield* w.events).length
      yield* w.setConfig({ size: 0 })
      yield* w.leader(2)
      yield* w.advanceUntil("nothing left", w.convergence(0))
      const events = (yield* w.events).slice(before)
      expect(events.map((e) => e._tag)).toEqual(DELETE_EVENTS)
      expect(new Set(events.map((e) => e.seq)).size).toBe(DELETE_EVENTS.length)
    }))

  for (const mode of ["after", "before"] as const) {
    for (const event of DELETE_EVENTS.slice(1)) {
      it.scoped(`delete: crash ${mode} the write of ${event} → nothing left`, () =>
        Effect.gen(function* () {
          const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
          const creator = yield* w.leader(1)
          yield* w.advanceUntil("1 running", w.convergence(1))
          yield* Fiber.interrupt(creator)
          yield* w.setConfig({ size: 0 })
          yield* w.crashLeader(2, { event, mode })
          const died = yield* w.events
          expect(died[died.length - 1]!._tag === event).toBe(mode === "after")
          yield* w.leader(3)
          yield* w.advanceUntil("nothing left after the restart", w.convergence(0))
          const events = yield* w.events
          expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
          expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
          expect(w.vms()).toEqual([])
        }))
    }
  }
})
