/**
 * A leader that dies while one of its PVE tasks is still running (the crash lands inside the task, made
 * slow for the purpose): a new term finds the task's effect half-made or still under way and finishes the
 * create or delete without a second VM, and without leaking a VM, disk or ISO.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import { makeWorld, type World } from "../support/simWorld.js"

/**
 * Slow-down factors that make each task last about 5 simulated seconds on the fast latency model, so the
 * new term meets it still running (or its effect half-made) and has to wait on it or on its locks.
 */
const SLOW: Readonly<Record<string, number>> = { imgcopy: 1500, qmclone: 60, qmconfig: 1500, resize: 1000, qmstart: 300, qmshutdown: 120, imgdel: 2500, qmdestroy: 500 }

/** The leader dies right after PVE accepted a task of `type`; the task is still running when the next term starts. */
const crashInside = (w: World, term: number, type: string) =>
  Effect.gen(function* () {
    yield* w.crashLeader(term, { task: type })
    expect([...w.model.tasks.values()].filter((t) => t.type === type).map((t) => t.status)).toEqual(["running"])
  })

describe("crash while a PVE task runs, then a new term (simulated world)", () => {
  for (const task of ["imgcopy", "qmclone", "qmconfig", "resize", "qmstart"] as const) {
    it.scoped(`create: crash while the ${task} task runs → one VM, nothing leaked`, () =>
      Effect.gen(function* () {
        const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
        w.faults.slowTasks({ type: task, factor: SLOW[task]!, times: 1 })
        yield* crashInside(w, 1, task)
        yield* w.leader(2)
        yield* w.advanceUntil("1 running after the restart", w.convergence(1))
        const events = yield* w.events
        expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
        expect(allInstances(yield* w.state)).toHaveLength(1)
        expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
        expect(w.model.requests.filter((r) => r.endpoint === "POST /nodes/{node}/qemu/{vmid}/clone" && r.status === 200)).toHaveLength(1)
      }))
  }

  for (const task of ["qmshutdown", "imgdel", "qmdestroy"] as const) {
    it.scoped(`delete: crash while the ${task} task runs → nothing left`, () =>
      Effect.gen(function* () {
        const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
        const creator = yield* w.leader(1)
        yield* w.advanceUntil("1 running", w.convergence(1))
        yield* Fiber.interrupt(creator)
        yield* w.setConfig({ size: 0 })
        w.faults.slowTasks({ type: task, factor: SLOW[task]!, times: 1 })
        yield* crashInside(w, 2, task)
        yield* w.leader(3)
        yield* w.advanceUntil("nothing left after the restart", w.convergence(0))
        const events = yield* w.events
        expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
        expect(w.vms()).toEqual([])
      }))
  }
})
