import { describe, expect, it } from "@effect/vitest"
import { startSimulator } from "../../src/sim/server.js"
import { asArray, asString, client, field } from "./client.js"

const until = async (condition: () => boolean) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2))
}

describe("a node reboot (simulator)", () => {
  it("kills a running clone where it is, stops the node's guests, and brings back those marked onboot", async () => {
    const sim = await startSimulator({ http: true, nodes: 3 })
    try {
      const api = client(sim)
      expect(await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, name: "keeps-running" })).toBe("OK")
      expect(await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 101, name: "stays-down" })).toBe("OK")
      expect(await api.task("POST", "/nodes/pve1/qemu/100/config", { onboot: 1 })).toBe("OK")
      for (const vmid of [100, 101]) await api.task("POST", `/nodes/pve1/qemu/${vmid}/status/start`)
      expect([sim.model.vms.get(100)?.status, sim.model.vms.get(101)?.status]).toEqual(["running", "running"])

      sim.faults.slowTasks({ type: "qmclone", factor: 200, times: 1 })
      const upid = asString((await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 102, name: "dies-midway" })).data)
      await until(() => sim.model.vms.has(102))
      const active = asArray((await api.call("GET", "/nodes/pve1/tasks", { source: "active", typefilter: "qmclone", vmid: 9000 })).data)
      expect(active.map((task) => field(task, "upid"))).toEqual([upid])
      const bootedBefore = sim.model.nodes.get("pve1")!.bootedAt

      sim.model.rebootNode("pve1", 300)
      expect((await api.call("GET", "/nodes/pve1/status")).status).toBe(595)
      await until(() => sim.model.nodes.get("pve1")!.online)

      expect(await api.waitTask(upid)).toBe("unexpected status")
      // The worker's placeholder stays as it was when it died: nameless, locked by the clone, for good.
      const placeholder = sim.model.vms.get(102)
      expect([placeholder?.config.get("lock"), placeholder?.config.has("name")]).toEqual(["clone", false])
      expect(asArray((await api.call("GET", "/nodes/pve1/tasks", { source: "active", typefilter: "qmclone" })).data)).toEqual([])
      const ended = asArray((await api.call("GET", "/nodes/pve1/tasks", { source: "archive", typefilter: "qmclone", vmid: 9000 })).data)
      expect(ended.map((task) => [field(task, "upid"), field(task, "status")])).toContainEqual([upid, "unexpected status"])
      expect(await api.task("DELETE", "/nodes/pve1/qemu/102")).toBe("VM is locked (clone)")

      expect([sim.model.vms.get(100)?.status, sim.model.vms.get(101)?.status]).toEqual(["running", "stopped"])
      expect(sim.model.nodes.get("pve1")!.bootedAt).toBeGreaterThan(bootedBefore)
      expect(sim.model.vms.get(100)!.startedAt).toBeGreaterThanOrEqual(sim.model.nodes.get("pve1")!.bootedAt)
    } finally {
      await sim.close()
    }
  })
})
