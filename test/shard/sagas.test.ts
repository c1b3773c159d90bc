/**
 * The leader against the HTTP Proxmox simulator: group sizes followed through config changes, with the
 * simulator's model as the judge — exactly the desired VMs, named by instance ID, tagged and configured as
 * the create saga does it, running; nothing left behind by a scale-down.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import { BRIDGE, ISO_STORAGE, makeHarness, nonTemplateVms, OUR_TAGS } from "./leaderHarness.js"

describe("create and delete sagas driven by reconcile (HTTP simulator)", () => {
  it.scopedLive("scale 0 → 3 → 1 → 0: exactly the desired VMs, configured and running; nothing of ours left at 0", () =>
    Effect.gen(function* () {
      // GC passes are left out of the figures below (a long interval); gc.test.ts covers the collector.
      const h = yield* makeHarness({ size: 0, gcInterval: "30s" })
      yield* h.leader(1)
      // The leader is up once LeaderElected and the adoption pass are in the log.
      yield* h.waitUntil("leader elected", Effect.map(h.events, (events) => (events.some((e) => e._tag === "LeaderElected") ? [] : ["no LeaderElected"])))
      expect(nonTemplateVms(h.sim)).toEqual([])

      const startedAt = Date.now()
      const requestsBefore = h.sim.model.requests.length
      yield* h.setConfig({ size: 3 })
      yield* h.waitUntil("3 running", h.convergence(3))
      const createSeconds = (Date.now() - startedAt) / 1000
      const createRequests = h.sim.model.requests.slice(requestsBefore)

      const state = yield* h.state
      const instances = allInstances(state)
      expect(instances.map((i) => i.phase)).toEqual(["running", "running", "running"])
      const vms = nonTemplateVms(h.sim)
      expect(vms.map((vm) => vm.config.get("name")).sort()).toEqual(instances.map((i) => i.id).sort())
      for (const vm of vms) {
        expect(vm.config.get("tags")).toBe(OUR_TAGS)
        expect(vm.config.get("net0")).toMatch(new RegExp(`bridge=${BRIDGE}`))
        expect(vm.config.get("ide2")).toBe(`${ISO_STORAGE}:iso/nstance-${vm.config.get("name")}.iso,media=cdrom`)
        expect(decodeURIComponent(vm.config.get("description") ?? "")).toContain("# DO NOT EDIT BELOW - managed by nstance #")
        expect(vm.config.get("scsi0")).toMatch(/size=4G/)
        expect(vm.status).toBe("running")
      }
      // Each VM booted from our ISO: the guest found its instance ID in the seed.
      expect(h.sim.model.boots.filter((b) => b.outcome === "booted").map((b) => b.instanceId).sort()).toEqual(instances.map((i) => i.id).sort())

      // Figures: non-polling calls per create (task status polls and reads of shared views excluded).
      const mutating = createRequests.filter((r) => r.method !== "GET").length
      const nonTaskGets = createRequests.filter((r) => r.method === "GET" && !/\/tasks\//.test(r.path)).length
      globalThis.console.log(
        `[figures] 3 creates in ${createSeconds.toFixed(2)} s (${(3 / createSeconds).toFixed(2)} VMs/s); ` +
          `per create: ${(mutating / 3).toFixed(1)} mutating calls, ${(nonTaskGets / 3).toFixed(1)} non-task GETs, ` +
          `${((createRequests.length - mutating - nonTaskGets) / 3).toFixed(1)} task polls; ` +
          `mutating by endpoint: ${JSON.stringify(countBy(createRequests.filter((r) => r.method !== "GET").map((r) => r.endpoint ?? r.path)))}; ` +
          `GETs by endpoint: ${JSON.stringify(countBy(createRequests.filter((r) => r.method === "GET" && !/\/tasks\//.test(r.path)).map((r) => r.endpoint ?? r.path)))}`
      )

      // Scale down to 1: two go, with their ISOs; the survivor is untouched.
      const deleteStart = h.sim.model.requests.length
      yield* h.setConfig({ size: 1 })
      yield* h.waitUntil("1 running", h.convergence(1))
      const survivor = allInstances(yield* h.state)[0]!
      expect(instances.map((i) => i.id)).toContain(survivor.id)
      expect(survivor.vmid).toBe(instances.find((i) => i.id === survivor.id)!.vmid)
      const deleteRequests = h.sim.model.requests.slice(deleteStart)
      globalThis.console.log(
        `[figures] per delete: ${(deleteRequests.filter((r) => r.method !== "GET").length / 2).toFixed(1)} mutating calls, ` +
          `${(deleteRequests.filter((r) => r.method === "GET" && !/\/tasks\//.test(r.path)).length / 2).toFixed(1)} non-task GETs (GC passes included)`
      )

      yield* h.setConfig({ size: 0 })
      yield* h.waitUntil("nothing left", h.convergence(0))
      expect(nonTemplateVms(h.sim)).toEqual([])
      expect([...h.sim.model.volumes.values()].filter((v) => v.content === "iso")).toEqual([])
      const events = yield* h.events
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
      expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(3)
      expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
    }), 20_000)
})

const countBy = (keys: ReadonlyArray<string>) => {
  const out: Record<string, number> = {}
  for (const key of keys) out[key] = (out[key] ?? 0) + 1
  return out
}
