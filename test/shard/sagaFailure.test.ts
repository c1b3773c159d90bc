/**
 * A permanent failure at each step of a create: the saga records it, compensates in full (no VM, no ISO of
 * the failed instance left on the cluster) and the reconcile loop requests a replacement, which succeeds
 * once the cause is gone. Faults are injected in the HTTP simulator (or the config names a template that
 * does not exist); the judge is the simulator's model and the folded log.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import type { FaultHandle } from "../../src/sim/faults.js"
import type { RunningSimulator } from "../../src/sim/server.js"
import { type EventView, type Harness, makeHarness, nonTemplateVms } from "./leaderHarness.js"

interface FailureCase {
  readonly name: string
  /** The `step` the saga records in `StepFailed`. */
  readonly step: string
  readonly inject: (sim: RunningSimulator, h: Harness) => Effect.Effect<{ readonly remove: Effect.Effect<void> }>
}

const fault = (make: (sim: RunningSimulator) => FaultHandle) => (sim: RunningSimulator) =>
  Effect.sync(() => {
    const handle = make(sim)
    return { remove: Effect.sync(() => handle.remove()) }
  })

const cases: ReadonlyArray<FailureCase> = [
  {
    name: "no template of that name",
    step: "template",
    inject: (_sim, h) => h.setConfig({ templateName: "no-such-template" }).pipe(Effect.as({ remove: h.setConfig({ templateName: "debian-13-template" }) }))
  },
  {
    name: "ISO upload refused (400)",
    step: "iso",
    inject: fault((sim) => sim.faults.http({ method: "POST", path: "/nodes/*/storage/*/upload", status: 400, message: "Parameter verification failed." }))
  },
  {
    name: "ISO upload task fails",
    step: "iso",
    inject: fault((sim) => sim.faults.failTasks({ type: "imgcopy", message: "copy failed: No space left on device" }))
  },
  {
    name: "clone task fails",
    step: "clone",
    inject: fault((sim) => sim.faults.failTasks({ type: "qmclone" }))
  },
  {
    name: "configure call refused (400)",
    step: "configure",
    inject: fault((sim) => sim.faults.http({ method: "POST", path: "/nodes/*/qemu/*/config", status: 400, message: "Parameter verification failed." }))
  },
  {
    name: "resize refused (400)",
    step: "resize",
    inject: fault((sim) => sim.faults.http({ method: "PUT", path: "/nodes/*/qemu/*/resize", status: 400, message: "Parameter verification failed." }))
  },
  {
    name: "start task fails",
    step: "start",
    inject: fault((sim) => sim.faults.failTasks({ type: "qmstart", message: "start failed: QEMU exited with code 1" }))
  }
]

const idOf = (event: EventView) => ("instanceId" in event ? event.instanceId : "")

describe("a permanent failure at every create step → full compensation and a replacement (HTTP simulator)", () => {
  for (const c of cases) {
    it.scopedLive(`${c.name}: compensated, nothing of it left, replaced once the fault is gone`, () =>
      Effect.gen(function* () {
        const h = yield* makeHarness({ size: 1, gcInterval: "30s" })
        const injected = yield* c.inject(h.sim, h)
        yield* h.leader(1)
        // The first instance fails at the step and is compensated to the end.
        yield* h.waitUntil("first failure compensated", Effect.map(h.events, (events) => {
          const failed = events.find((e) => e._tag === "StepFailed")
          return failed !== undefined && events.some((e) => e._tag === "InstanceGone" && idOf(e) === idOf(failed)) ? [] : ["not yet"]
        }))
        const events = yield* h.events
        const failed = events.find((e) => e._tag === "StepFailed")!
        const failedId = idOf(failed)
        expect(failed).toMatchObject({ step: c.step, errorClass: "permanent" })
        expect(events.find((e) => e._tag === "DeleteRequested" && idOf(e) === failedId)).toMatchObject({ reason: "compensation" })
        expect(nonTemplateVms(h.sim).filter((vm) => vm.config.get("name") === failedId)).toEqual([])
        expect([...h.sim.model.volumes.values()].filter((v) => v.volid.includes(failedId))).toEqual([])

        yield* injected.remove
        yield* h.waitUntil("the replacement runs", h.convergence(1))
        const [replacement] = allInstances(yield* h.state)
        // Requested after the failed one (instance IDs sort by creation time). Its `reason` says "scale-up", not
        // "replacement", when the compensation had finished before the group's backoff ended (plan.ts decides).
        expect(replacement!.id > failedId).toBe(true)
        // Every failed attempt (more than one if the backoff let one start before the fault was removed) was compensated.
        const after = yield* h.events
        const failedIds = new Set(after.filter((e) => e._tag === "StepFailed").map(idOf))
        for (const id of failedIds) expect(after.some((e) => e._tag === "InstanceGone" && idOf(e) === id)).toBe(true)
      }), 20_000)
  }

  it.scopedLive("a fault that does not go away: the group backs off (2 s, 4 s, …) instead of looping", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 1, gcInterval: "30s", templateName: "no-such-template" })
      yield* h.leader(1)
      yield* Effect.sleep("5 seconds")
      const events = yield* h.events
      const requested = events.filter((e) => e._tag === "InstanceRequested").length
      // Attempts at about 0 s and 2 s (the next one is due at about 6 s); without the backoff, one per reconcile pass.
      expect(requested).toBeGreaterThanOrEqual(2)
      expect(requested).toBeLessThanOrEqual(3)
      // Every attempt is compensated to the end: none is left half-made.
      expect(events.filter((e) => e._tag === "InstanceGone").length).toBeGreaterThanOrEqual(requested - 1)
      expect(nonTemplateVms(h.sim)).toEqual([])
    }), 20_000)
})
