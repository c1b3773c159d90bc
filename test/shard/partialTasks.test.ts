/**
 * PVE tasks that end with warnings and part of their effect missing: a destroy that removes the VM's config
 * but not one of its disks. The delete saga removes what was left, and only what carries the VMID it destroyed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { makeWorld } from "../support/simWorld.js"

describe("a destroy that ends with warnings (simulated world)", () => {
  it.scoped("leaves a disk, which the delete removes before it records the VM deleted", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      const creator = yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      const vmid = w.vms()[0]!.vmid
      const disks = [...w.model.volumes.values()].filter((v) => v.vmid === vmid && v.content === "images").map((v) => v.volid)
      expect(disks.length).toBeGreaterThan(0)
      yield* Fiber.interrupt(creator)
      w.faults.partialTasks({ type: "qmdestroy", times: 1 })
      yield* w.leader(2)
      yield* w.setConfig({ size: 0 })
      // `convergence(0)` counts a disk of a VM that no longer exists as leaked.
      yield* w.advanceUntil("nothing left", w.convergence(0))
      const destroy = [...w.model.tasks.values()].find((t) => t.type === "qmdestroy")
      expect(destroy?.exitstatus).toBe("WARNINGS: 1")
      const removed = w.model.requests.filter((r) => r.method === "DELETE" && r.path.includes("/content/") && disks.some((d) => decodeURIComponent(r.path).endsWith(d)))
      expect(removed).toHaveLength(1)
      expect([...w.model.volumes.values()].filter((v) => v.vmid === vmid)).toEqual([])
      expect((yield* w.events).filter((e) => e._tag === "VmDeleted")).toHaveLength(1)
    }))

  it.scoped("whose end nobody read (the leader died in it): the next term finds the VM gone and removes the disk", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      const creator = yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      yield* Fiber.interrupt(creator)
      yield* w.setConfig({ size: 0 })
      w.faults.partialTasks({ type: "qmdestroy", times: 1 })
      w.faults.slowTasks({ type: "qmdestroy", factor: 500, times: 1 })
      yield* w.crashLeader(2, { task: "qmdestroy" })
      yield* w.leader(3)
      yield* w.advanceUntil("nothing left after the restart", w.convergence(0))
      expect([...w.model.tasks.values()].find((t) => t.type === "qmdestroy")?.exitstatus).toBe("WARNINGS: 1")
      expect((yield* w.events).filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
    }))
})
