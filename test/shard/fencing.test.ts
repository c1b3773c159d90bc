/**
 * Two replicas on one store: leader A (term 1) is creating VMs when B opens term 2. A's next append meets
 * B's segment and fails `Fenced`; A's scope ends, and from the moment it was fenced A makes no PVE
 * mutation. B finishes A's creates: no duplicate VM, nothing leaked.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, SubscriptionRef } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import type { ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { configText, makeHarness, parseConfig } from "./leaderHarness.js"

const MUTATING = ["clone", "updateConfig", "resize", "start", "stop", "shutdown", "deleteVm", "upload", "deleteVolume"] as const

interface Call {
  readonly at: number
  readonly name: string
}

/** Records the start time of every mutating call made through `pve`. */
const recording = (calls: Array<Call>) => (pve: ProxmoxApiShape): ProxmoxApiShape => {
  const wrapped: Record<string, unknown> = { ...pve }
  for (const name of MUTATING) {
    const original = pve[name] as (...args: Array<unknown>) => Effect.Effect<unknown, unknown>
    wrapped[name] = (...args: Array<unknown>) => Effect.suspend(() => {
      calls.push({ at: Date.now(), name })
      return original(...args)
    })
  }
  return wrapped as unknown as ProxmoxApiShape
}

describe("two replicas on one store (HTTP simulator)", () => {
  it.scopedLive("the deposed leader's next append is Fenced, and it makes no PVE mutation after that", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 3 })
      const calls: Array<Call> = []
      let fencedAt: number | undefined
      // A's writes: the first segment PUT that finds its key taken is the moment A is fenced.
      const storeOfA: ObjectStoreShape = {
        ...h.store,
        put: (key, body, pre) =>
          h.store.put(key, body, pre).pipe(
            Effect.tapError((error) => Effect.sync(() => {
              if (key.startsWith("log/") && error._tag === "PreconditionFailed") fencedAt ??= Date.now()
            }))
          )
      }
      const a = yield* h.leader(1, { replica: "A", store: storeOfA, wrapPve: recording(calls) })
      yield* h.waitUntil("A in the middle of its creates", Effect.map(h.events, (events) =>
        events.some((e) => e._tag === "CloneRequested") ? [] : ["no clone requested yet"]))
      const electedAt = Date.now()
      yield* h.leader(2, { replica: "B" })

      const exit = yield* Fiber.await(a).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("A is still leading") }))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
        expect(failure).toMatchObject({ _tag: "Fenced", term: 1 })
      }
      expect(fencedAt).toBeDefined()
      expect(calls.filter((call) => call.at > fencedAt!)).toEqual([])
      // Between B's election and A noticing, at most the calls already under way in A's sagas (one each).
      const between = calls.filter((call) => call.at >= electedAt && call.at <= fencedAt!)
      expect(between.length).toBeLessThanOrEqual(3)
      globalThis.console.log(`[figures] A made ${calls.length} mutating calls; ${between.length} between B's election and A's fence (${fencedAt! - electedAt} ms), 0 after`)

      yield* h.waitUntil("B converges", h.convergence(3))
      const events = yield* h.events
      const elected = events.filter((e) => e._tag === "LeaderElected")
      expect(elected.map((e) => ("term" in e ? e.term : 0))).toEqual([1, 2])
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
    }), 20_000)

  it.scopedLive("an idle deposed leader does not collect the new leader's fresh ISOs as orphans", () =>
    Effect.gen(function* () {
      // Default orphan grace (2 min): an idle A would not append anything for a long time.
      const h = yield* makeHarness({ size: 1 })
      const calls: Array<Call> = []
      const a = yield* h.leader(1, { replica: "A", wrapPve: recording(calls) })
      yield* h.waitUntil("A converged", h.convergence(1))
      const before = calls.length
      // B leads with a bigger group (its own config: A's does not change, so A has nothing to append).
      const configOfB = yield* SubscriptionRef.make(parseConfig(configText({ size: 2, gcInterval: "1s" })))
      yield* h.leader(2, { replica: "B", config: configOfB })
      yield* h.waitUntil("B made its second VM", Effect.map(h.state, (state) =>
        allInstances(state).filter((i) => i.phase === "running").length === 2 ? [] : ["not yet"]))
      // A few of A's GC passes (1 s apart) have seen B's new ISO by now.
      yield* Effect.sleep("2500 millis")
      expect(calls.slice(before)).toEqual([])
      const exit = yield* Fiber.poll(a)
      // A found out it was deposed at its first GC pass that wanted to act.
      if (Option.isSome(exit)) expect(Exit.isFailure(exit.value)).toBe(true)
      yield* Fiber.interrupt(a)
      yield* h.waitUntil("B's two VMs intact", h.convergence(2))
      expect((yield* h.events).filter((e) => e._tag === "StepFailed")).toEqual([])
    }), 20_000)
})
