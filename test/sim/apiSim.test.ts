/**
 * The in-process `ProxmoxApi` over the simulator's model, under `TestClock`: PVE tasks, lock timeouts and
 * the resources lag move only when the test clock does, so a whole VM lifecycle — and the real leader's
 * create sagas — run in milliseconds of wall time.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect, Either, Fiber, Logger, LogLevel, Option, SubscriptionRef, TestClock } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { ProxmoxApi, type Upid } from "../../src/services/ProxmoxApi.js"
import { leaderScope } from "../../src/shard/LeaderScope.js"
import type { LatencyModel } from "../../src/sim/latency.js"
import { ProxmoxApiSim, SimHandle } from "../../src/sim/ProxmoxApiSim.js"
import { CLUSTER, configText, OUR_TAGS, parseConfig, SHARD } from "../shard/leaderHarness.js"

/** Real PVE durations, no jitter: task times are exact. */
const Exact: LatencyModel = { name: "exact", timeScale: 1, requestMs: [0, 0], jitter: 0 }

/** Runs `effect` in a fiber, advancing the TestClock by `step` until it ends; returns its result. */
const advancing = <A, E, R>(effect: Effect.Effect<A, E, R>, step: Duration.DurationInput = "1 second", maxSteps = 600) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    for (let i = 0; i < maxSteps; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) break
      yield* TestClock.adjust(step)
    }
    return yield* Fiber.join(fiber)
  })

const waitFor = (node: string, upid: Upid) => Effect.flatMap(ProxmoxApi, (pve) => advancing(pve.waitTask(node, upid)))

describe("ProxmoxApiSim (in-process simulator on Effect's Clock)", () => {
  it.effect("a whole VM lifecycle: clone with target, configure, resize, ISO upload, start, stop, delete", () =>
    Effect.gen(function* () {
      const pve = yield* ProxmoxApi
      const { model } = yield* SimHandle
      const wallStart = Date.now()
      const simStart = model.time.now()
      const vmid = yield* pve.nextId()
      // The shared template (9100 on ceph-vm, pve1) cloned to pve2.
      yield* waitFor("pve1", yield* pve.clone("pve1", 9100, { newid: vmid, name: "lifecycle", target: "pve2", full: true, storage: "ceph-vm" }))
      expect(model.vms.get(vmid)?.node).toBe("pve2")
      const upload = yield* pve.upload("pve2", "local", { filename: "seed.iso", content: "iso", data: new Uint8Array(4096) })
      yield* waitFor("pve2", upload)
      const volumes = yield* pve.listStorageContent("pve2", "local", { content: "iso" })
      expect(volumes.map((v) => v.volid)).toContain("local:iso/seed.iso")
      const configured = yield* pve.updateConfig("pve2", vmid, {
        cores: 2, memory: 1024, net0: "virtio,bridge=vmbr0,tag=42", onboot: true, tags: "nstance;a;b", ide2: "local:iso/seed.iso,media=cdrom"
      })
      if (Option.isSome(configured)) yield* waitFor("pve2", configured.value)
      const resized = yield* pve.resize("pve2", vmid, "scsi0", "+2G")
      if (Option.isSome(resized)) yield* waitFor("pve2", resized.value)
      const config = yield* pve.vmConfig("pve2", vmid)
      expect(config.tags).toBe("nstance;a;b")
      expect(String(config["scsi0"])).toMatch(/size=4G/)
      yield* waitFor("pve2", yield* pve.start("pve2", vmid))
      expect((yield* pve.vmStatus("pve2", vmid)).instanceStatus).toBe("Running")
      // A running VM cannot be deleted: the same PveApiError, classified, as over HTTP.
      const refused = yield* pve.deleteVm("pve2", vmid).pipe(Effect.either)
      expect(Either.isLeft(refused) && refused.left._tag === "PveApiError" && refused.left.classification).toBe("permanent")
      yield* waitFor("pve2", yield* pve.stop("pve2", vmid))
      yield* waitFor("pve2", yield* pve.deleteVm("pve2", vmid, { purge: true, destroyUnreferencedDisks: true }))
      expect(model.vms.has(vmid)).toBe(false)
      // A parameter real PVE would reject gets the same 400, checked against the official schema.
      const bad = yield* pve.updateConfig("pve1", 9000, { cores: -1 }).pipe(Effect.either)
      expect(Either.isLeft(bad) && bad.left._tag === "PveApiError" && bad.left.status).toBe(400)
      // Simulated seconds passed; wall time barely did.
      expect(model.time.now() - simStart).toBeGreaterThan(10_000)
      expect(Date.now() - wallStart).toBeLessThan(3_000)
    }).pipe(Effect.provide(ProxmoxApiSim({ sharedStorage: true }))))

  it.effect("a task of 10 simulated seconds completes only when the TestClock passes 10 s", () =>
    Effect.gen(function* () {
      const pve = yield* ProxmoxApi
      const { model, faults } = yield* SimHandle
      const vmid = yield* pve.nextId()
      yield* waitFor("pve1", yield* pve.clone("pve1", 9000, { newid: vmid, name: "ten-seconds" }))
      // qmdestroy takes 1 s; ten times slower is 10 s.
      faults.slowTasks({ type: "qmdestroy", factor: 10, times: 1 })
      const upid = yield* pve.deleteVm("pve1", vmid)
      const wait = yield* Effect.fork(pve.waitTask("pve1", upid))
      yield* TestClock.adjust("9999 millis")
      expect(model.tasks.get(upid)?.status).toBe("running")
      expect(Option.isNone(yield* Fiber.poll(wait))).toBe(true)
      expect(model.vms.has(vmid)).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(model.tasks.get(upid)?.status).toBe("stopped")
      expect(model.tasks.get(upid)?.exitstatus).toBe("OK")
      expect(model.vms.has(vmid)).toBe(false)
      // waitTask sees it at its next poll (at most 2.5 s later).
      yield* TestClock.adjust("2500 millis")
      const status = yield* Fiber.join(wait)
      expect(status.exitstatus).toBe("OK")
    }).pipe(Effect.provide(ProxmoxApiSim({ latency: Exact }))))

  it.effect("a config lock held elsewhere times out at 10 simulated seconds", () =>
    Effect.gen(function* () {
      const pve = yield* ProxmoxApi
      const { model } = yield* SimHandle
      const vmid = yield* pve.nextId()
      yield* waitFor("pve1", yield* pve.clone("pve1", 9000, { newid: vmid, name: "locked" }))
      // Someone else (a backup, an operator's qm) holds the VM's config lock and never lets go.
      const held = model.vmLock("pve1", vmid).tryAcquire()
      expect(held).toBeDefined()
      const upid = Option.getOrThrow(yield* pve.updateConfig("pve1", vmid, { cores: 4 }))
      const wait = yield* Effect.fork(pve.waitTask("pve1", upid).pipe(Effect.either))
      yield* TestClock.adjust("9999 millis")
      expect(model.tasks.get(upid)?.status).toBe("running")
      yield* TestClock.adjust("1 millis")
      expect(model.tasks.get(upid)?.status).toBe("stopped")
      expect(model.tasks.get(upid)?.exitstatus).toBe(`can't lock file '/var/lock/qemu-server/lock-${vmid}.conf' - got timeout`)
      yield* TestClock.adjust("2500 millis")
      const result = yield* Fiber.join(wait)
      expect(Either.isLeft(result) && result.left._tag === "TaskFailed" && result.left.classification).toBe("transient")
      expect(model.vms.get(vmid)?.config.get("cores")).toBe("2")
    }).pipe(Effect.provide(ProxmoxApiSim({ latency: Exact }))))

  it.effect("the real leader creates 2 VMs under TestClock, in milliseconds of wall time", () =>
    Effect.gen(function* () {
      const { model } = yield* SimHandle
      const store = makeMemoryStore()
      const config = yield* SubscriptionRef.make(parseConfig(configText({ size: 2, gcInterval: "30s" })))
      const wallStart = Date.now()
      const leader = yield* leaderScope({ clusterId: CLUSTER, shard: SHARD, replica: "replica-1", config, eventLog: { batchWindow: "5 millis" } })(1).pipe(
        Effect.provideService(ObjectStore, store),
        Logger.withMinimumLogLevel(LogLevel.None),
        Effect.fork
      )
      const ours = () =>
        [...model.vms.values()].filter((vm) => vm.config.get("template") !== "1" && vm.status === "running" &&
          vm.config.get("tags") === OUR_TAGS && /^web[0-9a-z]+$/.test(vm.config.get("name") ?? ""))
      let steps = 0
      while (ours().length < 2 && steps < 600) {
        yield* TestClock.adjust("500 millis")
        steps++
      }
      const wallMs = Date.now() - wallStart
      const simMs = steps * 500
      yield* Fiber.interrupt(leader)
      globalThis.console.log(`leader under TestClock: 2 running VMs after ${simMs / 1000} simulated s, ${wallMs} ms wall`)
      expect(ours().length).toBe(2)
      expect([...model.vms.values()].filter((vm) => vm.config.get("template") !== "1")).toHaveLength(2)
      // Named by the instance IDs the leader's event log holds, running there too.
      const instances = allInstances((yield* replayStore(store).pipe(Effect.orDie)).state)
      expect(ours().map((vm) => vm.config.get("name")).sort()).toEqual(instances.map((i) => i.id).sort())
      expect(wallMs).toBeLessThan(5_000)
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3 }))))
})
