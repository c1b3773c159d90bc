/**
 * A clone killed by its node's reboot: PVE leaves a nameless `lock: clone` placeholder at the VMID for good,
 * which an API token cannot unlock. The instance lets go of that VMID (`CloneAbandoned`, said in the log with
 * the operator's command) and is cloned anew; its delete does the same; the placeholder is never touched.
 * A placeholder whose clone still runs is waited for, however long.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option } from "effect"
import { CloneAbandoned, CloneRequested, InstanceRequested } from "../../src/domain/shard/events.js"
import { allInstances, fold, getInstance } from "../../src/domain/shard/state.js"
import { makeWorld, type World } from "../support/simWorld.js"

const CLONE = "POST /nodes/{node}/qemu/{vmid}/clone"

/** The leader's first clone is slowed; once its placeholder exists, that node reboots for `downMs`. */
const rebootDuringFirstClone = (w: World, downMs: number) =>
  Effect.gen(function* () {
    w.faults.slowTasks({ type: "qmclone", factor: 400, times: 1 })
    yield* w.advanceUntil("the first clone's placeholder", Effect.sync(() => (placeholders(w).length === 1 ? [] : ["no placeholder yet"])))
    const [placeholder] = placeholders(w)
    w.model.rebootNode(placeholder!.node, downMs)
    return placeholder!
  })

const placeholders = (w: World) => w.vms().filter((vm) => vm.config.get("lock") === "clone" && !vm.config.has("name"))

/** Calls that touched `vmid` (other than reading it). */
const mutationsOf = (w: World, vmid: number) =>
  w.model.requests.filter((r) => r.method !== "GET" && r.path.includes(`/qemu/${vmid}`) && !r.path.endsWith("/clone"))

describe("CloneAbandoned in the fold", () => {
  const id = "web06eadcewvhsxk4q5c90qqwxcjm"
  const at = 1_700_000_000_000
  const cloning = [
    InstanceRequested.make({ instanceId: id, at, tenant: "t", group: "web", kind: "web", specHash: "h", reason: "scale-up" }),
    CloneRequested.make({ instanceId: id, at: at + 1, vmid: 10_000, node: "pve1", templateVmid: 9000, templateNode: "pve1" })
  ]

  it("takes the VMID of the clone the instance waits for: back to iso-ready, the VMID free, the placeholder remembered", () => {
    const state = fold([...cloning, CloneAbandoned.make({ instanceId: id, at: at + 2, vmid: 10_000, node: "pve1", bootedAt: at + 1 })])
    const instance = Option.getOrThrow(getInstance(state, id))
    expect([instance.phase, instance.vmid, instance.cloneRequestedAt, instance.abandonedVmids]).toEqual(["iso-ready", undefined, undefined, [10_000]])
    expect(HashMap.has(state.vmidOwners, 10_000)).toBe(false)
    // The allocator still goes above it: the VMID is held on PVE by the placeholder.
    expect(state.vmidHighWater).toBe(10_000)
  })

  it("leaves another VMID's reservation alone", () => {
    const state = fold([...cloning, CloneAbandoned.make({ instanceId: id, at: at + 2, vmid: 9_999, node: "pve1", bootedAt: at + 1 })])
    const instance = Option.getOrThrow(getInstance(state, id))
    expect([instance.phase, instance.vmid, instance.cloneRequestedAt]).toEqual(["cloning", 10_000, at + 1])
    expect(HashMap.get(state.vmidOwners, 10_000)).toEqual(Option.some(id))
  })
})

describe("a clone that died with its node (simulated world)", () => {
  it.scoped("the killed clone fails its instance, which goes (reporting the placeholder) and is replaced; the placeholder is left alone", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      yield* w.leader(1)
      const dead = yield* rebootDuringFirstClone(w, 30_000)
      yield* w.advanceUntil("1 running beside the dead clone", Effect.map(w.convergence(1), (problems) =>
        problems.filter((p) => !p.includes(`(unnamed ${dead.vmid})`))))
      const events = yield* w.events
      const abandoned = events.filter((e) => e._tag === "CloneAbandoned")
      expect(abandoned).toEqual([expect.objectContaining({ vmid: dead.vmid, node: dead.node })])
      const [instance] = allInstances(yield* w.state)
      expect(instance!.vmid).not.toBe(dead.vmid)
      // Two clones in all: the dead one and its replacement's; the placeholder stays as the reboot left it.
      expect(w.model.requests.filter((r) => r.endpoint === CLONE && r.status === 200)).toHaveLength(2)
      expect(w.model.vms.get(dead.vmid)?.config.get("lock")).toBe("clone")
      expect(mutationsOf(w, dead.vmid)).toEqual([])
      expect(w.logs.some((line) => line.includes(`qm unlock ${dead.vmid} && qm destroy ${dead.vmid}`))).toBe(true)
    }))

  it.scoped("a new term that finds its instance's clone dead lets go of the VMID and clones the same instance anew", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      w.faults.slowTasks({ type: "qmclone", factor: 400, times: 1 })
      // Term 1 dies while its clone runs; then the clone's node reboots; term 2 resumes the instance.
      yield* w.crashLeader(1, { task: "qmclone" })
      const [dead] = placeholders(w)
      w.model.rebootNode(dead!.node, 30_000)
      yield* w.leader(2)
      yield* w.advanceUntil("1 running beside the dead clone", Effect.map(w.convergence(1), (problems) =>
        problems.filter((p) => !p.includes(`(unnamed ${dead!.vmid})`))))
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "CloneAbandoned")).toEqual([expect.objectContaining({ vmid: dead!.vmid })])
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
      expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
      const [instance] = allInstances(yield* w.state)
      expect(instance!.vmid).not.toBe(dead!.vmid)
      expect(instance!.abandonedVmids).toEqual([dead!.vmid])
      expect(mutationsOf(w, dead!.vmid)).toEqual([])
    }))

  it.scoped("an instance deleted while its clone is dead goes without its VM; the placeholder is left alone", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      yield* w.leader(1)
      const dead = yield* rebootDuringFirstClone(w, 30_000)
      yield* w.setConfig({ size: 0 })
      yield* w.advanceUntil("nothing but the dead clone", Effect.map(w.convergence(0), (problems) =>
        problems.filter((p) => !p.includes(`(unnamed ${dead.vmid})`))))
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "CloneAbandoned")).toEqual([expect.objectContaining({ vmid: dead.vmid })])
      expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
      expect(w.model.vms.get(dead.vmid)?.config.get("lock")).toBe("clone")
      expect(mutationsOf(w, dead.vmid)).toEqual([])
    }))

  it.scoped("a placeholder whose clone still runs is waited for, never abandoned, when another node rebooted", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      w.faults.slowTasks({ type: "qmclone", factor: 400, times: 1 })
      yield* w.crashLeader(1, { task: "qmclone" })
      const [placeholder] = placeholders(w)
      const other = [...w.model.nodes.keys()].find((node) => node !== placeholder!.node)!
      w.model.rebootNode(other, 10_000)
      // Term 2 finds the placeholder `Busy` and waits for the clone it cannot tell from a dead one by the boot.
      yield* w.leader(2)
      yield* w.advanceUntil("1 running", w.convergence(1))
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "CloneAbandoned")).toEqual([])
      expect(w.model.requests.filter((r) => r.endpoint === CLONE && r.status === 200)).toHaveLength(1)
      expect(allInstances(yield* w.state)[0]!.vmid).toBe(placeholder!.vmid)
    }))
})
