/**
 * The leader on the in-process simulator on a virtual clock: group sizes followed through config changes, with
 * the simulator's model as the judge — exactly the desired VMs, named by instance ID, tagged and configured
 * as the create saga does it, running; nothing left behind by a scale-down.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { BEGIN_MARKER } from "../../src/domain/managedNotes.js"
import { cdromDrive, isoVolid } from "../../src/domain/pveNames.js"
import { allInstances } from "../../src/domain/shard/state.js"
import { BRIDGE, ISO_STORAGE, makeWorld, OUR_TAGS } from "../support/simWorld.js"
import { LatencyRealistic } from "../../src/sim/latency.js"

describe("create and delete sagas driven by reconcile (simulated world)", () => {
  it.scoped("scale 0 → 3 → 1 → 0: exactly the desired VMs, configured and running; nothing of ours left at 0", () =>
    Effect.gen(function* () {
      // GC passes are left out of the figures below (a long interval); gc.test.ts covers the collector.
      // Realistic PVE durations (seconds-long clones, 10 s resource refresh): simulated time costs nothing here.
      const w = yield* makeWorld({ size: 0, gcInterval: "30s", latency: LatencyRealistic })
      yield* w.leader(1)
      // The leader is up once LeaderElected and the adoption pass are in the log.
      yield* w.advanceUntil("leader elected", Effect.map(w.events, (events) => (events.some((e) => e._tag === "LeaderElected") ? [] : ["no LeaderElected"])))
      expect(w.vms()).toEqual([])

      const startedAt = yield* w.now
      const requestsBefore = w.model.requests.length
      yield* w.setConfig({ size: 3 })
      yield* w.advanceUntil("3 running", w.convergence(3))
      const createSeconds = ((yield* w.now) - startedAt) / 1000
      const createRequests = w.model.requests.slice(requestsBefore)

      const state = yield* w.state
      const instances = allInstances(state)
      expect(instances.map((i) => i.phase)).toEqual(["running", "running", "running"])
      const vms = w.vms()
      expect(vms.map((vm) => vm.config.get("name")).sort()).toEqual(instances.map((i) => i.id).sort())
      for (const vm of vms) {
        expect(vm.config.get("tags")).toBe(OUR_TAGS)
        expect(vm.config.get("net0")).toMatch(new RegExp(`bridge=${BRIDGE}`))
        expect(vm.config.get("ide2")).toBe(cdromDrive(isoVolid(ISO_STORAGE, vm.config.get("name") ?? "")))
        expect(decodeURIComponent(vm.config.get("description") ?? "")).toContain(BEGIN_MARKER)
        expect(vm.config.get("scsi0")).toMatch(/size=4G/)
        expect(vm.status).toBe("running")
      }
      // Each VM booted from our ISO: the guest found its instance ID in the seed.
      expect(w.model.boots.filter((b) => b.outcome === "booted").map((b) => b.instanceId).sort()).toEqual(instances.map((i) => i.id).sort())

      // Non-polling calls per create (task status polls excluded): the happy path's budget is ≤ 6.
      const mutating = createRequests.filter((r) => r.method !== "GET").length
      const nonTaskGets = createRequests.filter((r) => r.method === "GET" && !/\/tasks\//.test(r.path)).length
      expect(mutating / 3).toBeLessThanOrEqual(6)
      expect(countBy(createRequests.filter((r) => r.method !== "GET").map((r) => r.endpoint ?? r.path))).toEqual({
        "POST /nodes/{node}/storage/{storage}/upload": 3,
        "POST /nodes/{node}/qemu/{vmid}/clone": 3,
        "POST /nodes/{node}/qemu/{vmid}/config": 3,
        "PUT /nodes/{node}/qemu/{vmid}/resize": 3,
        "POST /nodes/{node}/qemu/{vmid}/status/start": 3
      })
      globalThis.console.log(
        `[figures] 3 creates in ${createSeconds.toFixed(1)} simulated s (realistic latency); ` +
          `per create: ${(mutating / 3).toFixed(1)} mutating calls, ${(nonTaskGets / 3).toFixed(1)} non-task GETs, ` +
          `${((createRequests.length - mutating - nonTaskGets) / 3).toFixed(1)} task polls; ` +
          `GETs by endpoint: ${JSON.stringify(countBy(createRequests.filter((r) => r.method === "GET" && !/\/tasks\//.test(r.path)).map((r) => r.endpoint ?? r.path)))}`
      )

      // Scale down to 1: two go, with their ISOs; the survivor is untouched.
      const deleteStart = w.model.requests.length
      yield* w.setConfig({ size: 1 })
      yield* w.advanceUntil("1 running", w.convergence(1))
      const survivor = allInstances(yield* w.state)[0]!
      expect(instances.map((i) => i.id)).toContain(survivor.id)
      expect(survivor.vmid).toBe(instances.find((i) => i.id === survivor.id)!.vmid)
      const deleteRequests = w.model.requests.slice(deleteStart)
      globalThis.console.log(
        `[figures] per delete: ${(deleteRequests.filter((r) => r.method !== "GET").length / 2).toFixed(1)} mutating calls, ` +
          `${(deleteRequests.filter((r) => r.method === "GET" && !/\/tasks\//.test(r.path)).length / 2).toFixed(1)} non-task GETs (GC passes included)`
      )

      yield* w.setConfig({ size: 0 })
      yield* w.advanceUntil("nothing left", w.convergence(0))
      expect(w.vms()).toEqual([])
      expect([...w.model.volumes.values()].filter((v) => v.content === "iso")).toEqual([])
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
      expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(3)
      expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
    }))
})

const countBy = (keys: ReadonlyArray<string>) => {
  const out: Record<string, number> = {}
  for (const key of keys) out[key] = (out[key] ?? 0) + 1
  return out
}
