/**
 * A permanent failure at each step of a create: the saga records it, compensates in full (no VM, no ISO of
 * the failed instance left on the cluster) and the reconcile loop requests a replacement, which succeeds
 * once the cause is gone. Faults are injected in the simulated cluster (or the config names a template
 * that does not exist); the judge is the simulator's model and the folded log.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import type { FaultHandle } from "../../src/sim/faults.js"
import { idOf, makeWorld, volumeProblems, type World } from "../support/simWorld.js"

interface FailureCase {
  readonly name: string
  /** The `step` the saga records in `StepFailed`. */
  readonly step: string
  readonly inject: (w: World) => Effect.Effect<{ readonly remove: Effect.Effect<void> }>
}

const fault = (make: (w: World) => FaultHandle) => (w: World) =>
  Effect.sync(() => {
    const handle = make(w)
    return { remove: Effect.sync(() => handle.remove()) }
  })

// A template missing where the preflight saw none is kept from placement (preflightPlacement.test.ts); one that
// goes after the preflight looked is met by the template step, below.
const cases: ReadonlyArray<FailureCase> = [
  {
    name: "ISO upload refused (400)",
    step: "iso",
    inject: fault((w) => w.faults.http({ method: "POST", path: "/nodes/*/storage/*/upload", status: 400, message: "Parameter verification failed." }))
  },
  {
    name: "ISO upload task fails",
    step: "iso",
    inject: fault((w) => w.faults.failTasks({ type: "imgcopy", message: "copy failed: No space left on device" }))
  },
  {
    name: "clone task fails",
    step: "clone",
    inject: fault((w) => w.faults.failTasks({ type: "qmclone" }))
  },
  {
    name: "configure call refused (400)",
    step: "configure",
    inject: fault((w) => w.faults.http({ method: "POST", path: "/nodes/*/qemu/*/config", status: 400, message: "Parameter verification failed." }))
  },
  {
    name: "resize refused (400)",
    step: "resize",
    inject: fault((w) => w.faults.http({ method: "PUT", path: "/nodes/*/qemu/*/resize", status: 400, message: "Parameter verification failed." }))
  },
  {
    name: "start task fails",
    step: "start",
    inject: fault((w) => w.faults.failTasks({ type: "qmstart", message: "start failed: QEMU exited with code 1" }))
  }
]

describe("a permanent failure at every create step → full compensation and a replacement (simulated world)", () => {
  for (const c of cases) {
    it.scoped(`${c.name}: compensated, nothing of it left, replaced once the fault is gone`, () =>
      Effect.gen(function* () {
        const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
        const injected = yield* c.inject(w)
        yield* w.leader(1)
        // The first instance fails at the step and is compensated to the end.
        yield* w.advanceUntil("first failure compensated", Effect.map(w.events, (events) => {
          const failed = events.find((e) => e._tag === "StepFailed")
          return failed !== undefined && events.some((e) => e._tag === "InstanceGone" && idOf(e) === idOf(failed)) ? [] : ["not yet"]
        }))
        const events = yield* w.events
        const failed = events.find((e) => e._tag === "StepFailed")!
        const failedId = idOf(failed)
        expect(failed).toMatchObject({ step: c.step, errorClass: "permanent" })
        expect(events.find((e) => e._tag === "DeleteRequested" && idOf(e) === failedId)).toMatchObject({ reason: "compensation" })
        expect(w.vms().filter((vm) => vm.config.get("name") === failedId)).toEqual([])
        expect([...w.model.volumes.values()].filter((v) => v.volid.includes(failedId))).toEqual([])
        // Nor a disk of its VM (disks are named by VMID, not by instance).
        expect(volumeProblems(w.model, new Set(allInstances(yield* w.state).map((i) => i.id))).filter((p) => p.includes("leaked disk"))).toEqual([])

        yield* injected.remove
        yield* w.advanceUntil("the replacement runs", w.convergence(1))
        const [replacement] = allInstances(yield* w.state)
        // Requested after the failed one (instance IDs sort by creation time). Its `reason` says "scale-up", not
        // "replacement", when the compensation had finished before the group's backoff ended (plan.ts decides).
        expect(replacement!.id > failedId).toBe(true)
        // Every failed attempt (more than one if the backoff let one start before the fault was removed) was compensated.
        const after = yield* w.events
        const failedIds = new Set(after.filter((e) => e._tag === "StepFailed").map(idOf))
        for (const id of failedIds) expect(after.some((e) => e._tag === "InstanceGone" && idOf(e) === id)).toBe(true)
      }))
  }

  it.scoped("no template on the chosen node (gone after the preflight saw it): compensated at the template step, replaced once it is back", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 0, gcInterval: "30s" })
      yield* w.leader(1)
      yield* w.advanceUntil("leader elected", Effect.map(w.events, (events) => (events.some((e) => e._tag === "LeaderElected") ? [] : ["not yet"])))
      // The term's preflight has seen every node's template; the next periodic run is minutes away.
      for (const vmid of [9000, 9001, 9002]) w.model.destroyTemplate(vmid)
      // Gone for longer than PVE's /cluster/resources lags (~10 s) and the leader's view keeps a read (5 s).
      yield* w.advance("20 seconds")
      yield* w.setConfig({ size: 1 })
      yield* w.advanceUntil("first failure compensated", Effect.map(w.events, (events) => {
        const failed = events.find((e) => e._tag === "StepFailed")
        return failed !== undefined && events.some((e) => e._tag === "InstanceGone" && idOf(e) === idOf(failed)) ? [] : ["not yet"]
      }))
      const failed = (yield* w.events).find((e) => e._tag === "StepFailed")!
      expect(failed).toMatchObject({ step: "template", errorClass: "permanent" })
      expect(w.vms()).toEqual([])
      for (const [i, vmid] of [9000, 9001, 9002].entries()) w.model.addTemplate(vmid, `pve${i + 1}`, "debian-13-template")
      yield* w.advanceUntil("the replacement runs", w.convergence(1))
      expect(allInstances(yield* w.state)[0]!.id > idOf(failed)).toBe(true)
    }))

  it.scoped("a fault that does not go away: the group backs off (2 s, 4 s, …) instead of looping", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      w.faults.http({ method: "POST", path: "/nodes/*/storage/*/upload", status: 400, message: "Parameter verification failed." })
      yield* w.leader(1)
      yield* w.advance("5 seconds")
      const events = yield* w.events
      const requested = events.filter((e) => e._tag === "InstanceRequested")
      // Attempts at about 0 s and 2 s (the next one is due at about 6 s); without the backoff, one per reconcile pass.
      expect(requested.length).toBeGreaterThanOrEqual(2)
      expect(requested.length).toBeLessThanOrEqual(3)
      // Every attempt is compensated to the end: none is left half-made.
      expect(events.filter((e) => e._tag === "InstanceGone").length).toBeGreaterThanOrEqual(requested.length - 1)
      expect(w.vms()).toEqual([])
      // Spaced by the backoff, not by reconcile passes: the gaps grow.
      const at = requested.map((e) => ("at" in e ? e.at : 0))
      for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(1_500)
      if (at.length === 3) expect(at[2]! - at[1]!).toBeGreaterThan(at[1]! - at[0]!)
      // A minute later, still backing off: a handful of attempts, not hundreds.
      yield* w.advance("1 minute")
      const later = (yield* w.events).filter((e) => e._tag === "InstanceRequested").length
      expect(later).toBeGreaterThan(requested.length)
      expect(later).toBeLessThanOrEqual(8)
      expect(w.vms()).toEqual([])
    }))
})
