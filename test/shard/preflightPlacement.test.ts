/**
 * The leader's preflight feeds placement (simulated world, virtual clock): a node without the group's
 * template is never chosen for that group, its VMs go to the nodes that have one, and no create fails on
 * the way; the same cluster with every template spreads over all nodes. A template added later is seen at
 * the next periodic run and the node is used again. A template no node has keeps the create waiting at
 * placement (no create-and-compensate churn) until the config names one that exists.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { PREFLIGHT_INTERVAL } from "../../src/shard/policies.js"
import { idOf, makeWorld } from "../support/simWorld.js"

const nodesOf = (vms: ReadonlyArray<{ readonly node: string }>) => [...new Set(vms.map((vm) => vm.node))].sort()

describe("placement follows the preflight", () => {
  it.scoped("pve2 lacks the template: 6 VMs go to pve1 and pve3 only, with no failed step; with the template back, pve2 is used again", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 0, gcInterval: "30s" })
      // The seed gives each node its own debian-13-template: 9000 on pve1, 9001 on pve2, 9002 on pve3.
      w.model.destroyTemplate(9001)
      yield* w.leader(1)
      yield* w.advanceUntil("leader elected", Effect.map(w.events, (events) => (events.some((e) => e._tag === "LeaderElected") ? [] : ["no LeaderElected"])))
      yield* w.setConfig({ size: 6 })
      yield* w.advanceUntil("6 running", w.convergence(6))
      expect(nodesOf(w.vms())).toEqual(["pve1", "pve3"])
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "NodeChosen").map((e) => ("node" in e ? e.node : ""))).not.toContain("pve2")
      expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])

      // An operator creates the template on pve2; the next periodic preflight sees it, and pve2 takes VMs again.
      w.model.addTemplate(9001, "pve2", "debian-13-template")
      yield* w.advance(PREFLIGHT_INTERVAL)
      yield* w.setConfig({ size: 12 })
      yield* w.advanceUntil("12 running", w.convergence(12))
      expect(nodesOf(w.vms())).toEqual(["pve1", "pve2", "pve3"])
    }))

  it.scoped("a template no node has: the create waits at placement naming each node's lack (no VM, no churn); a config naming one that exists lets it go on", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s", templateName: "no-such-template" })
      yield* w.leader(1)
      yield* w.advance("20 seconds")
      const events = yield* w.events
      // One instance, never placed, never compensated: its placement is retried with the saga's backoff.
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
      expect(events.filter((e) => e._tag === "NodeChosen" || e._tag === "DeleteRequested")).toEqual([])
      const failures = events.filter((e) => e._tag === "StepFailed")
      expect(failures.length).toBeGreaterThanOrEqual(1)
      expect(failures[0]).toMatchObject({
        step: "place",
        message: "no node can take the VM: no online node has what the group needs " +
          "(pve1: no template named no-such-template; pve2: no template named no-such-template; pve3: no template named no-such-template)"
      })
      expect(failures.every((e) => "errorClass" in e && e.errorClass !== "permanent")).toBe(true)
      expect(w.vms()).toEqual([])
      // The fix is a config change of what the group needs: the preflight runs again at once, and the same instance goes on.
      yield* w.setConfig({ templateName: "debian-13-template" })
      yield* w.advanceUntil("1 running", w.convergence(1))
      const requested = (yield* w.events).filter((e) => e._tag === "InstanceRequested").map(idOf)
      expect(requested).toHaveLength(1)
      expect(w.vms().map((vm) => vm.config.get("name"))).toEqual(requested)
    }))

  it.scoped("the same cluster with every template: the VMs spread over all three nodes", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 6 })
      yield* w.leader(1)
      yield* w.advanceUntil("6 running", w.convergence(6))
      expect(nodesOf(w.vms())).toEqual(["pve1", "pve2", "pve3"])
    }))
})
