/**
 * Three creates at once, and the leader dies around one of its segment writes: with group commit a segment
 * carries events of several sagas, so one crash point lands at different steps of different instances. A
 * new term converges to three VMs, one per instance, nothing leaked.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { crashingStore, crashLeader, makeHarness } from "./leaderHarness.js"

describe("crash during concurrent creates, then a new term (HTTP simulator)", () => {
  // Three creates at once: segments carry events of several sagas (group commit), so a crash point lands
  // at different steps of different instances.
  for (const k of [4, 6, 8, 10, 12]) {
    for (const mode of ["after", "before"] as const) {
      it.scopedLive(`three creates at once: crash ${mode} segment ${k} → three VMs, nothing leaked`, () =>
        Effect.gen(function* () {
          const h = yield* makeHarness({ size: 3, gcInterval: "30s" })
          const crashing = yield* crashingStore(h.store, k, mode)
          const first = yield* h.leader(1, { store: crashing.store })
          yield* crashLeader(first, crashing.crashed)
          yield* h.leader(2)
          yield* h.waitUntil("3 running after the restart", h.convergence(3))
          const events = yield* h.events
          expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
          expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
        }))
    }
  }
})
