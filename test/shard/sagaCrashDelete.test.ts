/**
 * A leader that dies in the middle of a delete, after or instead of any of its segment writes: a new term
 * finishes the delete, and the simulator shows nothing left — no VM, disk or ISO.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { crashingStore, crashLeader, makeHarness } from "./leaderHarness.js"

/** Segment writes of a term that opens on a converged log of one VM and scales it to 0. */
const DELETE_EVENTS = ["LeaderElected", "DeleteRequested", "VmStopped", "IsoDeleted", "VmDeleted", "InstanceGone"]

describe("crash in the middle of a delete, then a new term (HTTP simulator)", () => {
  for (const mode of ["after", "before"] as const) {
    for (let k = 2; k <= DELETE_EVENTS.length; k++) {
      it.scopedLive(`delete: crash ${mode} segment ${k} (${DELETE_EVENTS[k - 1]}) → nothing left`, () =>
        Effect.gen(function* () {
          const h = yield* makeHarness({ size: 1, gcInterval: "30s" })
          const creator = yield* h.leader(1)
          yield* h.waitUntil("1 running", h.convergence(1))
          yield* Fiber.interrupt(creator)
          yield* h.setConfig({ size: 0 })
          const crashing = yield* crashingStore(h.store, k, mode)
          const deleter = yield* h.leader(2, { store: crashing.store })
          yield* crashLeader(deleter, crashing.crashed)
          yield* h.leader(3)
          yield* h.waitUntil("nothing left after the restart", h.convergence(0))
          const events = yield* h.events
          expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
          expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
        }))
    }
  }
})
