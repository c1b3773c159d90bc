import { describe, expect, it } from "@effect/vitest"
import { Adopted, DeleteRequested, InstanceRequested, NodeChosen, type ShardEvent, Started } from "../../src/domain/shard/events.js"
import { groupKey, planReconcile, scaleDownOrder, stableHash } from "../../src/domain/shard/plan.js"
import { allInstances, fold } from "../../src/domain/shard/state.js"

const requested = (id: string, group = "web", tenant = "acme"): ShardEvent =>
  InstanceRequested.make({ instanceId: id, at: 1, tenant, group, kind: "web", specHash: "h", reason: "scale-up" })
const started = (id: string): Array<ShardEvent> => [NodeChosen.make({ instanceId: id, at: 2, node: "pve1" }), Started.make({ instanceId: id, at: 3 })]
const target = (size: number, group = "web") => ({ tenant: "acme", group, kind: "web", size, specHash: "h", infraHash: "sha256:h", drainTimeoutMs: 0 })

describe("planReconcile", () => {
  it("requests the missing instances of a group, as scale-up", () => {
    const state = fold([requested("web01")])
    const actions = planReconcile(state, [target(3)])
    expect(actions).toEqual([
      { _tag: "Create", tenant: "acme", group: "web", kind: "web", specHash: "h", infraHash: "sha256:h", reason: "scale-up" },
      { _tag: "Create", tenant: "acme", group: "web", kind: "web", specHash: "h", infraHash: "sha256:h", reason: "scale-up" }
    ])
  })

  it("calls a create a replacement while a failed or lost instance of the group is being deleted", () => {
    const state = fold([requested("web01"), DeleteRequested.make({ instanceId: "web01", at: 5, reason: "compensation" })])
    expect(planReconcile(state, [target(1)])).toEqual([
      { _tag: "Create", tenant: "acme", group: "web", kind: "web", specHash: "h", infraHash: "sha256:h", reason: "replacement" }
    ])
  })

  it("scales down instances that are not yet running first, then the newest", () => {
    const state = fold([requested("web01"), ...started("web01"), requested("web02"), ...started("web02"), requested("web03"), requested("web04"), ...started("web04")])
    expect(scaleDownOrder(allInstances(state)).map((i) => i.id)).toEqual(["web03", "web04", "web02", "web01"])
    expect(planReconcile(state, [target(2)])).toEqual([
      { _tag: "Delete", instanceId: "web03" },
      { _tag: "Delete", instanceId: "web04" }
    ])
  })

  it("does nothing for a group at its size, and never counts deleting instances as members", () => {
    const state = fold([requested("web01"), requested("web02"), DeleteRequested.make({ instanceId: "web02", at: 4, reason: "scale-down" })])
    expect(planReconcile(state, [target(1)])).toEqual([])
  })

  it("holds back creations of a blocked (backing-off) group but still scales others", () => {
    const state = fold([])
    const actions = planReconcile(state, [target(1), target(1, "api")], new Set([groupKey("acme", "web")]))
    expect(actions).toEqual([{ _tag: "Create", tenant: "acme", group: "api", kind: "web", specHash: "h", infraHash: "sha256:h", reason: "scale-up" }])
  })

  it("deletes the instances of a group that left the config, but keeps adopted VMs of unknown groups", () => {
    const state = fold([
      requested("web01", "gone"),
      Adopted.make({ instanceId: "web09", at: 1, vmid: 120, node: "pve1", tenant: "acme", group: "legacy", kind: "web", status: "running" }),
      Adopted.make({ instanceId: "web10", at: 1, vmid: 121, node: "pve1", kind: "web", status: "running" })
    ])
    expect(planReconcile(state, [])).toEqual([{ _tag: "Delete", instanceId: "web01" }])
  })

  it("counts adopted VMs toward the group their notes name", () => {
    const state = fold([Adopted.make({ instanceId: "web09", at: 1, vmid: 120, node: "pve1", tenant: "acme", group: "web", kind: "web", status: "running" })])
    expect(planReconcile(state, [target(1)])).toEqual([])
  })
})

describe("stableHash", () => {
  it("ignores key order and undefined fields, and sees every value", () => {
    expect(stableHash({ a: 1, b: { c: 2, d: undefined } })).toBe(stableHash({ b: { c: 2 }, a: 1 }))
    expect(stableHash({ a: 1, b: { c: 2 } })).not.toBe(stableHash({ a: 1, b: { c: 3 } }))
  })
})
