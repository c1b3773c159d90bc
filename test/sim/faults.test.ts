import { describe, expect, it } from "@effect/vitest"
import { startSimulator, type RunningSimulator, type SimulatorOptions } from "../../src/sim/server.js"
import { asArray, asString, client, field, type Client } from "./client.js"

const withSim = async (options: SimulatorOptions, body: (sim: RunningSimulator, api: Client) => Promise<void>) => {
  const sim = await startSimulator({ http: true, ...options })
  try {
    await body(sim, client(sim))
  } finally {
    await sim.close()
  }
}

const until = async (condition: () => boolean) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 1))
}

describe("config locks", () => {
  it("make a second config change wait for the running task, then proceed", () =>
    withSim({}, async (sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      sim.faults.slowTasks({ type: "qmconfig", factor: 10, times: 1 })
      const first = asString((await api.call("POST", "/nodes/pve1/qemu/100/config", { cores: 2 })).data)
      const second = asString((await api.call("POST", "/nodes/pve1/qemu/100/config", { cores: 3 })).data)
      expect(await api.waitTask(second)).toBe("OK")
      // The second worker only got the lock after the first had released it.
      const t1 = sim.model.tasks.get(first)
      expect(t1?.status).toBe("stopped")
      expect(sim.model.vms.get(100)?.config.get("cores")).toBe("3")
    }))

  it("time out with PVE's message: a task error for worker locks, a 500 for the synchronous PUT", () =>
    withSim({}, async (sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      sim.faults.slowTasks({ type: "qmconfig", factor: 200, times: 1 })
      const first = asString((await api.call("POST", "/nodes/pve1/qemu/100/config", { cores: 2 })).data)
      const message = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
      expect(await api.task("POST", "/nodes/pve1/qemu/100/config", { cores: 3 })).toBe(message)
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe(message)
      const put = await api.call("PUT", "/nodes/pve1/qemu/100/config", { cores: 4 })
      expect([put.status, put.statusText, put.body]).toEqual([500, message, { data: null, message: `${message}\n` }])
      expect(await api.waitTask(first)).toBe("OK")
      expect(sim.model.vms.get(100)?.config.get("cores")).toBe("2")
    }))

  it("refuse operations on a VM that is still being cloned (lock: clone)", () =>
    withSim({}, async (sim, api) => {
      sim.faults.slowTasks({ type: "qmclone", factor: 20, times: 1 })
      const upid = asString((await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })).data)
      while (!sim.model.vms.has(100)) await new Promise((resolve) => setTimeout(resolve, 1))
      const st = (await api.call("GET", "/nodes/pve1/qemu/100/status/current")).data
      expect([field(st, "lock"), field(st, "name")]).toEqual(["clone", "VM 100"])
      const config = await api.call("POST", "/nodes/pve1/qemu/100/config", { cores: 2 })
      expect([config.status, config.statusText]).toEqual([500, "VM is locked (clone)"])
      expect(await api.waitTask(upid)).toBe("OK")
    }))

  it("hold the storage lock through a full clone's copy, so a third parallel clone times out", () =>
    withSim({ latency: { name: "lock-test", timeScale: 0.05, requestMs: [0, 0], jitter: 0 } }, async (_sim, api) => {
      const results = await Promise.all([100, 101, 102].map((newid) =>
        api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid, full: 1, storage: "local-lvm" })))
      expect(results.filter((r) => r === "OK").length).toBe(2)
      expect(results.filter((r) => r !== "OK")).toEqual(["clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout"])
    }))
})

describe("pveproxy workers", () => {
  it("queue a fourth call behind three slow ones", () =>
    withSim({}, async (sim, api) => {
      sim.faults.lockTimeout({ method: "POST", path: "/nodes/*/qemu/*/config", times: 3 })
      const done: Array<string> = []
      const slow = [0, 1, 2].map((i) => api.call("POST", "/nodes/pve1/qemu/9000/config", { cores: 2 }).then((a) => { done.push(`slow${i}`); return a }))
      await until(() => sim.model.workers.inUse === 3)
      const quick = api.call("GET", "/version").then((a) => { done.push("version"); return a })
      const answers = await Promise.all([...slow, quick])
      for (const a of answers.slice(0, 3)) expect(a.statusText).toBe("can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout")
      expect(answers[3]?.status).toBe(200)
      expect(done.indexOf("version")).toBeGreaterThan(0)
      const logged = sim.model.requests.find((r) => r.path === "/version")
      expect(logged?.queuedMs).toBeGreaterThan(0)
    }))
})

describe("fault injection", () => {
  it("answers chosen calls with HTTP errors for the next N calls, then recovers", () =>
    withSim({}, async (sim, api) => {
      sim.faults.http({ method: "GET", path: "/cluster/resources", status: 503, message: "Service Unavailable", times: 2 })
      const statuses = []
      for (let i = 0; i < 3; i++) statuses.push((await api.call("GET", "/cluster/resources", { type: "vm" })).status)
      expect(statuses).toEqual([503, 503, 200])
      expect((await api.call("GET", "/cluster/status")).status).toBe(200)
      expect(sim.faults.injected.filter((f) => f.kind === "http:status").length).toBe(2)
    }))

  it("is seeded: the same seed fails the same calls", async () => {
    const run = async () => {
      const sim = await startSimulator({ http: true, seed: 42 })
      try {
        sim.faults.http({ path: "/nodes/*/qemu", probability: 0.5 })
        const api = client(sim)
        const out: Array<number> = []
        for (let i = 0; i < 30; i++) out.push((await api.call("GET", "/nodes/pve1/qemu")).status)
        return out
      } finally {
        await sim.close()
      }
    }
    const a = await run()
    const b = await run()
    expect(a).toEqual(b)
    expect(a).toContain(500)
    expect(a).toContain(200)
  })

  it("drops connections (reset) and takes the whole API away for a while", () =>
    withSim({}, async (sim, api) => {
      sim.faults.http({ path: "/version", kind: "reset", times: 1 })
      await expect(api.call("GET", "/version")).rejects.toThrow()
      expect((await api.call("GET", "/version")).status).toBe(200)
      sim.faults.apiUnavailable({ forMs: 1000, mode: 596 })
      const during = await api.call("GET", "/cluster/status", {}, { auth: null })
      expect([during.status, during.statusText]).toEqual([596, "Connection timed out"])
      await new Promise((resolve) => setTimeout(resolve, 1100))
      expect((await api.call("GET", "/cluster/status")).status).toBe(200)
    }))

  it("makes nextid hand out an ID a concurrent clone takes", () =>
    withSim({}, async (sim, api) => {
      sim.faults.nextidRace({ times: 1 })
      const id = Number((await api.call("GET", "/cluster/nextid")).data)
      await new Promise((resolve) => setImmediate(resolve))
      const clone = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: id })
      const outcome = clone.status === 200 ? await api.waitTask(asString(clone.data)) : clone.statusText
      expect(outcome).toMatch(new RegExp(`^(unable to create VM ${id}: config file already exists|close \\(rename\\) atomic file .* failed: File exists)$`))
      expect(Number((await api.call("GET", "/cluster/nextid")).data)).toBe(id + 1)
    }))

  it("takes a node offline: 595 on its endpoints, offline in resources, unknown VMs; online again on reset", () =>
    withSim({}, async (sim, api) => {
      sim.faults.nodeOffline("pve2")
      const a = await api.call("GET", "/nodes/pve2/status")
      expect([a.status, a.statusText]).toEqual([595, "No route to host"])
      const nodes = asArray((await api.call("GET", "/cluster/resources", { type: "node" })).data)
      expect(nodes.map((n) => [field(n, "node"), field(n, "status")])).toEqual([["pve1", "online"], ["pve2", "offline"], ["pve3", "online"]])
      const vm = asArray((await api.call("GET", "/cluster/resources", { type: "vm" })).data).find((v) => field(v, "vmid") === 9001)
      expect(field(vm, "status")).toBe("unknown")
      const cs = asArray((await api.call("GET", "/cluster/status")).data).find((n) => field(n, "name") === "pve2")
      expect(field(cs, "online")).toBe(0)
      sim.faults.reset()
      expect((await api.call("GET", "/nodes/pve2/status")).status).toBe(200)
    }))

  it("fails chosen tasks and slows others without touching the rest", () =>
    withSim({}, async (sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      sim.faults.failTasks({ type: "qmstart", vmid: 100, message: "start failed: QEMU exited with code 1", times: 1 })
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe("start failed: QEMU exited with code 1")
      expect(sim.model.vms.get(100)?.status).toBe("stopped")
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe("OK")
      expect(sim.model.vms.get(100)?.status).toBe("running")
    }))
})
