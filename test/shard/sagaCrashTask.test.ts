/**
 * A leader that dies while one of its PVE tasks is still running (the crash lands inside the task, made
 * slow for the purpose): a new term finds the task's effect half-made or still under way and finishes the
 * create or delete without a second VM, and without leaking a VM, disk or ISO.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import { makeHarness } from "./leaderHarness.js"

/** Slow-down factors that make each task last about half a second on the fast latency model, so the crash lands inside it. */
const SLOW: Readonly<Record<string, number>> = { imgcopy: 150, qmclone: 6, qmconfig: 150, resize: 100, qmstart: 30, qmshutdown: 12, imgdel: 250, qmdestroy: 50 }

describe("crash while a PVE task runs, then a new term (HTTP simulator)", () => {
  for (const task of ["imgcopy", "qmclone", "qmconfig", "resize", "qmstart"] as const) {
    it.scopedLive(`create: crash while the ${task} task runs → one VM, nothing leaked`, () =>
      Effect.gen(function* () {
        const h = yield* makeHarness({ size: 1, gcInterval: "30s" })
        // Long enough for the crash to land inside the task.
        h.sim.faults.slowTasks({ type: task, factor: SLOW[task]!, times: 1 })
        const first = yield* h.leader(1)
        yield* h.waitUntil(`a ${task} task running`, Effect.sync(() =>
          [...h.sim.model.tasks.values()].some((t) => t.type === task && t.status === "running") ? [] : ["not yet"]))
        yield* Fiber.interrupt(first)
        yield* h.leader(2)
        yield* h.waitUntil("1 running after the restart", h.convergence(1))
        const events = yield* h.events
        expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
        expect(allInstances(yield* h.state)).toHaveLength(1)
        expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
      }), 20_000)
  }

  for (const task of ["qmshutdown", "imgdel", "qmdestroy"] as const) {
    it.scopedLive(`delete: crash while the ${task} task runs → nothing left`, () =>
      Effect.gen(function* () {
        const h = yield* makeHarness({ size: 1, gcInterval: "30s" })
        const creator = yield* h.leader(1)
        yield* h.waitUntil("1 running", h.convergence(1))
        yield* Fiber.interrupt(creator)
        yield* h.setConfig({ size: 0 })
        h.sim.faults.slowTasks({ type: task, factor: SLOW[task]!, times: 1 })
        const deleter = yield* h.leader(2)
        yield* h.waitUntil(`a ${task} task running`, Effect.sync(() =>
          [...h.sim.model.tasks.values()].some((t) => t.type === task && t.status === "running") ? [] : ["not yet"]))
        yield* Fiber.interrupt(deleter)
        yield* h.leader(3)
        yield* h.waitUntil("nothing left after the restart", h.convergence(0))
        const events = yield* h.events
        expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
      }), 20_000)
  }
})
