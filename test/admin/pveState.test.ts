/**
 * A paused VM shown as paused: PVE lists a paused guest as running (`status/current`) or as paused
 * (`/cluster/resources`, pvestatd's `qmpstatus || status`); the leader's GC pass records each VM's state,
 * and `instances`, `status` and `/metrics` show it — while the instance's phase stays what the log says.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { pvePowerState } from "../../src/domain/pve/status.js"
import { observeReplica } from "../../src/http/HealthServer.js"
import { setReplicaGauges } from "../../src/metrics/metrics.js"
import { makePrometheusScrape } from "../../src/metrics/prometheus.js"
import { makeAdminWorld, nonTemplateVms } from "./harness.js"

describe("pvePowerState", () => {
  it.each([
    ["running", undefined, "running"],
    ["running", "running", "running"],
    ["running", "paused", "paused"],
    ["running", "suspended", "suspended"],
    ["paused", undefined, "paused"],
    ["stopped", "stopped", "stopped"],
    ["running", "prelaunch", "unknown"],
    [undefined, undefined, "unknown"]
  ] as const)("status %s, qmpstatus %s → %s", (status, qmpstatus, expected) => {
    expect(pvePowerState(status, qmpstatus)).toBe(expected)
  })
})

describe("a paused VM over the admin endpoint and /metrics", () => {
  it.scopedLive("instances, status and the pve-state gauge say paused; the phase stays running", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 1 })
      const rpc = yield* world.client()
      yield* world.waitUntil("the VM runs and a GC pass saw it", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.phase === "running" && i.pveState === "running")))
      const [vm] = nonTemplateVms(world.sim)
      world.sim.model.setPaused(vm!.vmid, true)
      world.sim.model.refreshResources()
      yield* world.waitUntil("a GC pass saw it paused", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.pveState === "paused")))

      const [instance] = yield* rpc.ListInstances({})
      expect([instance?.vmid, instance?.phase, instance?.pveState]).toEqual([vm!.vmid, "running", "paused"])
      expect((yield* rpc.GetInstance({ instanceId: instance!.id })).pveState).toBe("paused")
      const status = yield* rpc.Status()
      expect([status.byPhase, status.byPveState]).toEqual([{ running: 1 }, { paused: 1 }])

      const admin = (args: ReadonlyArray<string>) => world.admin([...args, "--server", world.leader.address])
      const row = (yield* admin(["instances"])).stdout.split("\n").find((line) => line.startsWith(instance!.id))
      expect(row).toContain("running (paused)")
      expect((yield* admin(["status"])).stdout).toContain("VMs in PVE at the last GC pass: paused 1")

      const scrape = yield* makePrometheusScrape
      const { readiness, leaseTerm, log, pveStates } = yield* observeReplica(world.replica)
      yield* setReplicaGauges({ shard: world.replica.shard, replica: world.replica.replica, role: readiness.role, term: leaseTerm, log, pveStates })
      const text = yield* scrape.text
      const gauge = (state: string) =>
        text.split("\n").find((line) => line.startsWith("nstance_instances_pve_state{") && line.includes(`state="${state}"`) && line.includes(`replica="${world.replica.replica}"`))
      expect(gauge("paused")).toMatch(/ 1$/)
      expect(gauge("running")).toMatch(/ 0$/)

      // Resumed: running again at the next pass.
      world.sim.model.setPaused(vm!.vmid, false)
      world.sim.model.refreshResources()
      yield* world.waitUntil("a GC pass saw it running", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.pveState === "running")))
      expect((yield* rpc.Status()).byPveState).toEqual({ running: 1 })
    }), 20_000)
})
