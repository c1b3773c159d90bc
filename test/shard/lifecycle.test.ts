import { describe, expect, it } from "@effect/vitest"
import {
  Cloned,
  DeleteRequested,
  DrainStarted,
  InstanceRequested,
  NodeChosen,
  NonceIssued,
  Registered,
  RetirementRequested,
  type ShardEvent,
  Started,
  TemplateResolved,
  VmDeleted
} from "../../src/domain/shard/events.js"
import { type LifecycleGroup, type LifecyclePolicy, planLifecycle } from "../../src/domain/shard/lifecycle.js"
import { planReconcile } from "../../src/domain/shard/plan.js"
import { fold, getInstance, type State } from "../../src/domain/shard/state.js"
import { Option } from "effect"

const OLD = "sha256:old"
const NEW = "sha256:new"
const MINUTE = 60_000

let vmid = 100
/** An instance requested at `at` with `hash`, started and (with `registered`) registered. */
const member = (id: string, at: number, hash = OLD, options: { readonly registered?: boolean; readonly reason?: "scale-up" | "operator" } = {}): Array<ShardEvent> => {
  const events: Array<ShardEvent> = [
    InstanceRequested.make({ instanceId: id, at, tenant: "acme", group: "web", kind: "web", specHash: "s", infraHash: hash, reason: options.reason ?? "scale-up" }),
    NodeChosen.make({ instanceId: id, at, node: "pve1" }),
    NonceIssued.make({ instanceId: id, at, nonceHash: "n" }),
    Cloned.make({ instanceId: id, at, vmid: vmid++, node: "pve1" }),
    Started.make({ instanceId: id, at })
  ]
  if (options.registered !== false) events.push(Registered.make({ instanceId: id, at, ips: ["10.0.0.1"] }))
  return events
}

const group = (size: number, overrides: Partial<LifecycleGroup> = {}): LifecycleGroup => ({
  tenant: "acme",
  group: "web",
  size,
  infraHash: NEW,
  drainTimeoutMs: 5 * MINUTE,
  ...overrides
})

const policy = (now: number, overrides: Partial<LifecyclePolicy> = {}): LifecyclePolicy => ({
  now,
  defaultDrainTimeoutMs: 5 * MINUTE,
  blocked: new Set(),
  ...overrides
})

const target = (size: number) => ({ tenant: "acme", group: "web", kind: "web", size, specHash: "s", infraHash: NEW, drainTimeoutMs: 5 * MINUTE })

const instance = (state: State, id: string) => Option.getOrThrow(getInstance(state, id))

describe("planLifecycle: rotation", () => {
  it("retires the oldest instance of another infra hash, one at a time, only from a settled group", () => {
    const state = fold([...member("web01", 1), ...member("web02", 2), ...member("web03", 3, NEW)])
    expect(planLifecycle(state, [group(3)], policy(10)).actions).toEqual([{ _tag: "Retire", instanceId: "web01", reason: "config-drift" }])
    // Below size, or with an instance not yet ready: no rotation starts.
    expect(planLifecycle(state, [group(4)], policy(10)).actions).toEqual([])
    const booting = fold([...member("web01", 1), ...member("web02", 2, OLD, { registered: false })])
    expect(planLifecycle(booting, [group(2)], policy(10)).actions).toEqual([])
    // Nothing drifted: nothing to do. An instance of unknown hash (older logs, adopted VMs) is never rotated.
    const unknown = fold([
      InstanceRequested.make({ instanceId: "web09", at: 1, tenant: "acme", group: "web", kind: "web", specHash: "s", reason: "scale-up" }),
      Started.make({ instanceId: "web09", at: 1 })
    ])
    expect(planLifecycle(unknown, [group(1)], policy(10)).actions).toEqual([])
  })

  it("compares the hash of the config a VM was placed and built from, not the one it was requested under", () => {
    // Requested under the old config, waited at placement until the config was fixed, then built from the new one.
    const state = fold([...member("web01", 1), TemplateResolved.make({ instanceId: "web01", at: 2, templateVmid: 9000, templateNode: "pve1", infraHash: NEW })])
    expect(instance(state, "web01").infraHash).toBe(NEW)
    expect(planLifecycle(state, [group(1)], policy(10)).actions).toEqual([])
  })

  it("starts no second retirement while one is under way or the last one's VM is still being deleted", () => {
    const retiring = fold([...member("web01", 1), ...member("web02", 2), RetirementRequested.make({ instanceId: "web01", at: 5, reason: "config-drift" })])
    expect(planLifecycle(retiring, [group(1)], policy(10)).actions.filter((a) => a._tag === "Retire")).toEqual([])
    const deleting = fold([...member("web01", 1), ...member("web02", 2), ...member("web03", 3, NEW), DeleteRequested.make({ instanceId: "web01", at: 5, reason: "retired" })])
    expect(planLifecycle(deleting, [group(2)], policy(10)).actions).toEqual([])
    // Once the VM is deleted, the next one goes.
    const deleted = fold([VmDeleted.make({ instanceId: "web01", at: 6, vmid: 100 })], deleting)
    expect(planLifecycle(deleted, [group(2)], policy(10)).actions).toEqual([{ _tag: "Retire", instanceId: "web02", reason: "config-drift" }])
  })

  it("a group whose creations back off starts no retirement (a broken new config never takes the old instances down)", () => {
    const state = fold([...member("web01", 1), ...member("web02", 2)])
    expect(planLifecycle(state, [group(2)], policy(10, { blocked: new Set(["acme/web"]) })).actions).toEqual([])
  })
})

describe("planLifecycle: replacement first, then the drain", () => {
  const retired = fold([...member("web01", 1), ...member("web02", 2), RetirementRequested.make({ instanceId: "web01", at: 5, reason: "config-drift" })])

  it("a retiring instance stops counting: reconcile creates its replacement, at most size + 1 in the group", () => {
    expect(planReconcile(retired, [target(2)]).map((a) => a._tag === "Create" && a.reason)).toEqual(["replacement"])
    // Two retiring in a group of 2: one replacement at a time.
    const both = fold([RetirementRequested.make({ instanceId: "web02", at: 6, reason: "forced-expiry" })], retired)
    expect(planReconcile(both, [target(2)])).toHaveLength(1)
    // Scaling down picks among the counted instances (newest first), never the retiring one.
    const withReplacement = fold([...member("web03", 7, NEW)], retired)
    expect(planReconcile(withReplacement, [target(1)])).toEqual([{ _tag: "Delete", instanceId: "web03" }])
  })

  it("waits while the replacement is not ready, then announces the drain with its deadline", () => {
    expect(planLifecycle(retired, [group(2)], policy(10)).actions).toEqual([])
    const booting = fold(member("web03", 7, NEW, { registered: false }), retired)
    expect(planLifecycle(booting, [group(2)], policy(10)).actions).toEqual([])
    const ready = fold([Registered.make({ instanceId: "web03", at: 8, ips: [] })], booting)
    const plan = planLifecycle(ready, [group(2)], policy(10))
    expect(plan.actions).toEqual([{ _tag: "StartDrain", instanceId: "web01", deleteAt: 10 + 5 * MINUTE }])
    expect(plan.nextAt).toBe(10 + 5 * MINUTE)
    // A zero drain timeout deletes at once.
    expect(planLifecycle(ready, [group(2, { drainTimeoutMs: 0 })], policy(10)).actions).toEqual([{ _tag: "Delete", instanceId: "web01" }])
    // So does a VM PVE lists as stopped (nothing to drain), and a retirement that said so.
    expect(planLifecycle(ready, [group(2)], policy(10, { stopped: new Set(["web01"]) })).actions).toEqual([{ _tag: "Delete", instanceId: "web01" }])
  })

  it("deletes a draining instance at its deadline, not before; the deadline survives in the fold", () => {
    const draining = fold([...member("web03", 7, NEW), DrainStarted.make({ instanceId: "web01", at: 10, deleteAt: 1000 })], retired)
    expect(instance(draining, "web01").drain).toEqual({ startedAt: 10, deleteAt: 1000 })
    expect(planLifecycle(draining, [group(2)], policy(999)).actions).toEqual([])
    expect(planLifecycle(draining, [group(2)], policy(999)).nextAt).toBe(1000)
    expect(planLifecycle(draining, [group(2)], policy(1000)).actions).toEqual([{ _tag: "Delete", instanceId: "web01" }])
  })

  it("two retirements are served oldest first: the later one stands in until its own replacement is ready", () => {
    // web01 drifts, then web02 is forced out before web01's replacement exists.
    const state = fold([
      ...member("web01", 1),
      ...member("web02", 2),
      ...member("web03", 3),
      RetirementRequested.make({ instanceId: "web01", at: 5, reason: "config-drift" }),
      RetirementRequested.make({ instanceId: "web02", at: 6, reason: "forced-expiry" })
    ])
    // One replacement at a time (4 live at most).
    expect(planReconcile(state, [target(3)])).toHaveLength(1)
    const replaced = fold(member("web04", 7, NEW), state)
    expect(planReconcile(replaced, [target(3)])).toEqual([])
    expect(planLifecycle(replaced, [group(3, { drainTimeoutMs: 0 })], policy(10)).actions).toEqual([{ _tag: "Delete", instanceId: "web01" }])
  })

  it("the fold keeps the first retirement, never retires a deleting instance, and drains only a retiring one", () => {
    const once = fold([RetirementRequested.make({ instanceId: "web01", at: 9, reason: "unhealthy" })], retired)
    expect(instance(once, "web01").retirement).toEqual({ reason: "config-drift", at: 5 })
    const gone = fold([DeleteRequested.make({ instanceId: "web02", at: 9, reason: "scale-down" }), RetirementRequested.make({ instanceId: "web02", at: 10, reason: "unhealthy" })], retired)
    expect(instance(gone, "web02").retirement).toBeUndefined()
    const stray = fold([DrainStarted.make({ instanceId: "web02", at: 10, deleteAt: 99 })], retired)
    expect(instance(stray, "web02").drain).toBeUndefined()
  })
})

describe("planLifecycle: expiry", () => {
  const ages = { eligibleAgeMs: 100 * MINUTE, forcedAgeMs: 200 * MINUTE }

  it("retires the oldest instance past eligible_age, one per group and only while none retires", () => {
    const state = fold([...member("web01", 0, NEW), ...member("web02", 10 * MINUTE, NEW)])
    expect(planLifecycle(state, [group(2)], policy(99 * MINUTE, ages)).actions).toEqual([])
    expect(planLifecycle(state, [group(2)], policy(99 * MINUTE, ages)).nextAt).toBe(100 * MINUTE)
    expect(planLifecycle(state, [group(2)], policy(115 * MINUTE, ages)).actions).toEqual([{ _tag: "Retire", instanceId: "web01", reason: "eligible-expiry" }])
    const retiring = fold([RetirementRequested.make({ instanceId: "web01", at: 115 * MINUTE, reason: "eligible-expiry" })], state)
    expect(planLifecycle(retiring, [group(2)], policy(116 * MINUTE, ages)).actions).toEqual([])
  })

  it("retires an instance past forced_age even while another of its group retires", () => {
    const state = fold([
      ...member("web01", 0, NEW),
      ...member("web02", 10 * MINUTE, NEW),
      RetirementRequested.make({ instanceId: "web01", at: 150 * MINUTE, reason: "eligible-expiry" })
    ])
    expect(planLifecycle(state, [group(2)], policy(209 * MINUTE, ages)).actions).toEqual([])
    expect(planLifecycle(state, [group(2)], policy(210 * MINUTE, ages)).actions).toEqual([{ _tag: "Retire", instanceId: "web02", reason: "forced-expiry" }])
  })

  it("operator instances expire past ondemand_age without a replacement: their drain starts at once", () => {
    const state = fold([...member("web01", 0, NEW), ...member("web07", 0, NEW, { reason: "operator" })])
    const plan = planLifecycle(state, [group(1)], policy(61 * MINUTE, { ondemandAgeMs: 60 * MINUTE }))
    expect(plan.actions).toEqual([{ _tag: "Retire", instanceId: "web07", reason: "ondemand-expiry" }])
    const retiring = fold([RetirementRequested.make({ instanceId: "web07", at: 61 * MINUTE, reason: "ondemand-expiry" })], state)
    expect(planLifecycle(retiring, [group(1)], policy(62 * MINUTE, { ondemandAgeMs: 60 * MINUTE })).actions).toEqual([
      { _tag: "StartDrain", instanceId: "web07", deleteAt: 62 * MINUTE + 5 * MINUTE }
    ])
    // The group creates nothing for it.
    expect(planReconcile(retiring, [target(1)])).toEqual([])
  })
})
