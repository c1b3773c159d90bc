/**
 * Two replicas on one store: leader A (term 1) is creating VMs when B opens term 2. A's next append meets
 * B's segment and fails `Fenced`; A's scope ends, and from the moment it was fenced A makes no PVE
 * mutation. B finishes A's creates: no duplicate VM, nothing leaked. Calls and the fence are ordered on one
 * counter (simulated time does not move while fibers run, so timestamps would tie).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, SubscriptionRef } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import type { ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { configText, makeWorld, parseConfig, type World } from "../support/simWorld.js"

const MUTATING = ["clone", "updateConfig", "resize", "start", "stop", "shutdown", "deleteVm", "upload", "deleteVolume"] as const

interface Call {
  readonly order: number
  readonly name: string
}

/** One order for everything the test records. */
const makeOrder = () => {
  let n = 0
  return () => ++n
}

/** Records every mutating call made through `pve`, and runs `before` ahead of each. */
const recording = (calls: Array<Call>, next: () => number, before: (name: string) => Effect.Effect<void> = () => Effect.void) =>
  (pve: ProxmoxApiShape): ProxmoxApiShape => {
    const wrapped: Record<string, unknown> = { ...pve }
    for (const name of MUTATING) {
      const original = pve[name] as (...args: Array<unknown>) => Effect.Effect<unknown, unknown>
      wrapped[name] = (...args: Array<unknown>) => Effect.suspend(() => {
        calls.push({ order: next(), name })
        return before(name).pipe(Effect.zipRight(original(...args)))
      })
    }
    return wrapped as unknown as ProxmoxApiShape
  }

/** `base`, noting (once) the order at which a segment PUT first finds its key taken: the moment of the fence. */
const fenceNoting = (base: ObjectStoreShape, onFenced: () => void): ObjectStoreShape => ({
  ...base,
  put: (key, body, pre) =>
    base.put(key, body, pre).pipe(
      Effect.tapError((error) => Effect.sync(() => {
        if (key.startsWith("log/") && error._tag === "PreconditionFailed") onFenced()
      }))
    )
})

const endsFenced = (w: World, a: Fiber.RuntimeFiber<never, unknown>) =>
  Effect.gen(function* () {
    yield* w.advanceUntil("A's term ends", Effect.map(Fiber.poll(a), (exit) => (Option.isSome(exit) ? [] : ["A is still leading"])), "1 minute")
    const exit = yield* Fiber.await(a)
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(Option.getOrUndefined(Cause.failureOption(exit.cause))).toMatchObject({ _tag: "Fenced", term: 1 })
  })

describe("two replicas on one store (simulated world)", () => {
  it.scoped("the deposed leader's next append is Fenced, and it makes no PVE mutation after that", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 3 })
      const next = makeOrder()
      const calls: Array<Call> = []
      let fencedAt: number | undefined
      let electedAt: number | undefined
      // B is elected the moment A makes its first clone call: A is in the middle of its three creates.
      const electB = (name: string) =>
        name !== "clone" || electedAt !== undefined
          ? Effect.void
          : Effect.suspend(() => {
            electedAt = next()
            return Effect.asVoid(w.leader(2, { replica: "B" }))
          })
      const a = yield* w.leader(1, {
        replica: "A",
        store: fenceNoting(w.store, () => { fencedAt ??= next() }),
        wrapPve: recording(calls, next, electB)
      })
      yield* endsFenced(w, a)
      expect(electedAt).toBeDefined()
      expect(fencedAt).toBeDefined()
      expect(calls.filter((call) => call.order > fencedAt!)).toEqual([])
      // Between B's election and A noticing, at most the calls already under way in A's sagas (one each).
      const between = calls.filter((call) => call.order > electedAt! && call.order < fencedAt!)
      expect(between.length).toBeLessThanOrEqual(3)
      globalThis.console.log(`[figures] A made ${calls.length} mutating calls; ${between.length} between B's election and A's fence, 0 after`)

      yield* w.advanceUntil("B converges", w.convergence(3))
      const events = yield* w.events
      const elected = events.filter((e) => e._tag === "LeaderElected")
      expect(elected.map((e) => ("term" in e ? e.term : 0))).toEqual([1, 2])
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
      // One clone per instance, whoever made it.
      expect(w.model.requests.filter((r) => r.endpoint === "POST /nodes/{node}/qemu/{vmid}/clone" && r.status === 200)).toHaveLength(3)
    }))

  it.scoped("an idle deposed leader does not collect the new leader's fresh ISOs or VMs as orphans", () =>
    Effect.gen(function* () {
      // Default orphan grace (2 min): an idle A appends nothing for a long time, and must still not act.
      const w = yield* makeWorld({ size: 1 })
      const next = makeOrder()
      const calls: Array<Call> = []
      const a = yield* w.leader(1, { replica: "A", wrapPve: recording(calls, next) })
      yield* w.advanceUntil("A converged", w.convergence(1))
      const before = calls.length
      // B leads with a bigger group (its own config: A's does not change, so A has nothing to append).
      const configOfB = yield* SubscriptionRef.make(parseConfig(configText({ size: 2, gcInterval: "10s" })))
      yield* w.leader(2, { replica: "B", config: configOfB })
      yield* w.advanceUntil("B made its second VM", Effect.map(w.state, (state) =>
        allInstances(state).filter((i) => i.phase === "running").length === 2 ? [] : ["not yet"]))
      // A few of A's GC passes (1 s apart) see B's new ISO.
      yield* w.advance("3 seconds")
      expect(calls.slice(before)).toEqual([])
      // A may have found out already (its first GC pass that wanted to act appended first); if not, past the
      // orphan grace its GC wants B's VM as an orphan, and that append is fenced before any call.
      yield* w.setConfig({ gcInterval: "30s" })
      yield* w.advance("3 minutes")
      expect(calls.slice(before)).toEqual([])
      yield* endsFenced(w, a)
      yield* w.advanceUntil("B's two VMs intact", w.convergence(2))
      expect((yield* w.events).filter((e) => e._tag === "StepFailed" || e._tag === "DeleteRequested")).toEqual([])
    }))
})
