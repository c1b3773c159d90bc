/**
 * A drain is in the log, so a failover neither forgets it nor restarts its clock: the new leader deletes
 * the instance at the `delete_at` the old one announced, and the rotation goes on from there (virtual time).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { allInstances, getInstance } from "../../src/domain/shard/state.js"
import { makeWorld } from "../support/simWorld.js"

describe("drains across a failover (simulated world)", () => {
  it.scoped("the new leader keeps the announced delete_at, deletes then, and rolls the rest of the group", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, defaultDrainTimeout: "3m" })
      const first = yield* w.leader(1)
      yield* w.advanceUntil("2 running", w.convergence(2))
      const before = allInstances(yield* w.state).map((i) => i.id)
      yield* w.setConfig({ greeting: "hello again" })
      yield* w.advanceUntil("a drain announced", Effect.map(w.state, (s) => (allInstances(s).some((i) => i.drain !== undefined) ? [] : ["no drain yet"])))
      const draining = allInstances(yield* w.state).find((i) => i.drain !== undefined)!
      const drain = draining.drain!

      yield* Fiber.interrupt(first)
      yield* w.leader(2)
      // Short of the deadline: still there, same deadline, nothing else retiring, 3 VMs (size + 1).
      const untilDeadline = drain.deleteAt - (yield* w.now)
      yield* w.advance(`${Math.max(0, untilDeadline - 20_000)} millis`)
      const mid = yield* w.state
      const still = Option.getOrThrow(getInstance(mid, draining.id))
      expect(still.phase).not.toBe("deleting")
      expect(still.drain).toEqual(drain)
      expect(allInstances(mid).filter((i) => i.retirement !== undefined).map((i) => i.id)).toEqual([draining.id])
      expect(w.vms()).toHaveLength(3)

      yield* w.advanceUntil("both old instances replaced", Effect.map(w.state, (s) => {
        const all = allInstances(s)
        return all.length === 2 && all.every((i) => !before.includes(i.id) && i.phase === "running") ? [] : [all.map((i) => `${i.id}:${i.phase}`).join(", ")]
      }), "10 minutes")
      const events = yield* w.events
      // Announced once (the new leader did not announce it again), and deleted no sooner than announced.
      expect(events.filter((e) => e._tag === "DrainStarted" && e.instanceId === draining.id)).toHaveLength(1)
      const deleted = events.find((e) => e._tag === "DeleteRequested" && e.instanceId === draining.id)
      if (deleted?._tag !== "DeleteRequested") return expect.fail(`${draining.id} was never deleted`)
      expect(deleted.reason).toBe("retired")
      expect(deleted.at).toBeGreaterThanOrEqual(drain.deleteAt)
      // The second old instance drained under term 2, for the full timeout.
      const second = events.filter((e) => e._tag === "DrainStarted" && e.instanceId !== draining.id)
      expect(second).toHaveLength(1)
      expect(second[0]!._tag === "DrainStarted" && second[0]!.deleteAt - second[0]!.at).toBe(180_000)
      expect(w.vms()).toHaveLength(2)
    }), { timeout: 30_000 })
})
