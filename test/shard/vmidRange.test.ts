/**
 * The VMIDs a shard gives its VMs: `shard.infra.options.vmid_range` (default from 10000, never the template
 * script's 9000s), above every VMID the cluster uses; a VMID someone else takes first costs a fresh look at
 * the cluster and another VMID, not the create; a full range fails the create naming the range. And a VM of
 * another shard of the same cluster is warned about at the term's start (one cluster = one shard).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, SubscriptionRef } from "effect"
import { DEFAULT_VMID_RANGE, parseVmidRange, pickVmid } from "../../src/domain/vmids.js"
import { otherShardTag } from "../../src/domain/pveTags.js"
import { formatProblem, parseShardConfig } from "../../src/domain/config/index.js"
import { allInstances } from "../../src/domain/shard/state.js"
import type { ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { CLUSTER, configText, freshInstanceId, makeVmBehindOurBack, parseConfig, type World, makeWorld } from "../support/simWorld.js"

const withVmidRange = (size: number, range: string | undefined) => {
  const text = configText({ size, gcInterval: "30s" })
  return range === undefined ? text : text.replace(`"options": {`, `"options": { "vmid_range": ${JSON.stringify(range)},`)
}

const running = (w: World, size: number) =>
  Effect.map(w.state, (s) => {
    const up = allInstances(s).filter((i) => i.phase === "running").length
    return up === size ? [] : [`${up} of ${size} running`]
  })

const clonedVmids = (w: World) =>
  Effect.map(w.events, (events) => events.flatMap((e) => (e._tag === "Cloned" ? [e.vmid] : [])))

describe("vmid_range", () => {
  it("parses LOW-HIGH and refuses ranges PVE does not have or that overlap the template VMIDs", () => {
    expect(parseVmidRange("10000-99999")).toEqual({ low: 10_000, high: 99_999 })
    expect(parseVmidRange("100-8999")).toEqual({ low: 100, high: 8_999 })
    expect(parseVmidRange("9500-20000")).toMatch(/must not overlap 9000-9999/)
    expect(parseVmidRange("99-1000")).toMatch(/within PVE's VMIDs/)
    expect(parseVmidRange("20000-10000")).toMatch(/low to high/)
    expect(parseVmidRange("ten-twenty")).toMatch(/LOW-HIGH/)
  })

  it("is validated as one line naming the field; the default is the original's floor", () => {
    const problems = (text: string) => {
      const result = parseShardConfig(text)
      return Either.isLeft(result) ? result.left.problems.map(formatProblem) : []
    }
    const refused = problems(withVmidRange(1, "9000-20000"))
    expect(refused).toHaveLength(1)
    expect(refused[0]).toMatch(/^shard\.infra\.options\.vmid_range: must not overlap 9000-9999/)
    expect(parseConfig(withVmidRange(1, undefined)).config.shard.infra.options.vmidRange).toEqual(DEFAULT_VMID_RANGE)
    expect(DEFAULT_VMID_RANGE.low).toBe(10_000)
    expect(parseConfig(withVmidRange(1, "20000-29999")).config.shard.infra.options.vmidRange).toEqual({ low: 20_000, high: 29_999 })
  })

  it("picks above the mark, skips taken VMIDs, wraps to the bottom, and ends when all are taken", () => {
    const range = { low: 10, high: 14 }
    const taken = new Set([11, 13])
    expect(pickVmid(range, 0, (v) => taken.has(v))).toBe(10)
    expect(pickVmid(range, 10, (v) => taken.has(v))).toBe(12)
    expect(pickVmid(range, 14, (v) => taken.has(v))).toBe(10)
    expect(pickVmid(range, 99, (v) => taken.has(v))).toBe(10)
    expect(pickVmid(range, 12, (v) => v !== 11 && v <= 14)).toBe(11)
    expect(pickVmid(range, 12, () => true)).toBeUndefined()
  })
})

describe("VMID allocation on the simulated cluster", () => {
  it.scoped("the first VMs get VMIDs at or above the floor and above every VMID the cluster uses", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 3, gcInterval: "30s" })
      w.model.createForeignVm("pve2", 12_345)
      w.model.refreshResources()
      yield* w.leader(1)
      yield* w.advanceUntil("three running", running(w, 3))
      const vmids = yield* clonedVmids(w)
      expect(vmids).toHaveLength(3)
      for (const vmid of vmids) expect(vmid).toBeGreaterThan(12_345)
      expect(new Set(vmids).size).toBe(3)
    }))

  it.scoped("on an empty cluster the first VMID is the range's floor, never the templates' range", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, gcInterval: "30s" })
      yield* w.leader(1)
      yield* w.advanceUntil("two running", running(w, 2))
      const vmids = [...(yield* clonedVmids(w))].sort((a, b) => a - b)
      expect(vmids).toEqual([10_000, 10_001])
    }))

  it.scoped("someone else takes the VMIDs it picks, again and again: every create still succeeds, no failure, no compensation", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 3, gcInterval: "30s" })
      // Right before each of the first 12 clones, another tool takes its VMID and the one after it.
      const taken: Array<number> = []
      const racing = (pve: ProxmoxApiShape): ProxmoxApiShape => ({
        ...pve,
        clone: (node, vmid, options) =>
          Effect.suspend(() => {
            if (taken.length < 24) {
              for (const at of [options.newid, options.newid + 1]) {
                w.model.createForeignVm("pve3", at)
                taken.push(at)
              }
              w.model.refreshResources()
            }
            return pve.clone(node, vmid, options)
          })
      })
      yield* w.leader(1, { wrapPve: racing })
      yield* w.advanceUntil("three running", running(w, 3))
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
      expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
      expect(taken.length).toBeGreaterThanOrEqual(24)
      const vmids = yield* clonedVmids(w)
      expect(vmids).toHaveLength(3)
      for (const vmid of vmids) {
        expect(taken).not.toContain(vmid)
        expect(vmid).toBeGreaterThanOrEqual(DEFAULT_VMID_RANGE.low)
      }
      // Each collision led to a fresh look at the cluster, which raised the high-water mark.
      expect(events.some((e) => e._tag === "VmidsSeen")).toBe(true)
    }))

  it.scoped("a range with no free VMID fails the create permanently, naming the range", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "30s" })
      yield* SubscriptionRef.set(w.config, parseConfig(withVmidRange(1, "20000-20002")))
      for (const vmid of [20_000, 20_001, 20_002]) w.model.createForeignVm("pve1", vmid)
      w.model.refreshResources()
      yield* w.leader(1)
      yield* w.advanceUntil("a step failed", Effect.map(w.events, (events) => (events.some((e) => e._tag === "StepFailed") ? [] : ["not yet"])))
      const failed = (yield* w.events).find((e) => e._tag === "StepFailed")
      expect(failed).toMatchObject({ step: "iso", errorClass: "permanent" })
      expect(failed !== undefined && "message" in failed ? failed.message : "").toContain("shard.infra.options.vmid_range 20000-20002")
      expect((yield* clonedVmids(w))).toEqual([])
    }))
})

describe("one cluster = one shard", () => {
  it("reads the other shard from a VM's tags", () => {
    expect(otherShardTag("nstance;acme;pve-b", "acme", "pve-a")).toBe("pve-b")
    expect(otherShardTag("pve-b;acme;nstance", "acme", "pve-a")).toBe("pve-b")
    expect(otherShardTag("nstance;acme;pve-a", "acme", "pve-a")).toBeUndefined()
    expect(otherShardTag("nstance;other;pve-b", "acme", "pve-a")).toBeUndefined()
    expect(otherShardTag("web;prod", "acme", "pve-a")).toBeUndefined()
  })

  it.scoped("VMs with a second shard's tags for this cluster: one warning at the term's start naming it and the count", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 0, gcInterval: "30s" })
      for (const node of ["pve1", "pve2"]) {
        yield* w.drive(makeVmBehindOurBack(w.pve, { name: freshInstanceId(), node, tags: `nstance;${CLUSTER};pve-b` }))
      }
      w.model.refreshResources()
      yield* w.leader(1)
      yield* w.advanceUntil("leader elected", Effect.map(w.events, (events) => (events.some((e) => e._tag === "LeaderElected") ? [] : ["not yet"])))
      yield* w.advance("2 seconds")
      const warnings = w.logs.filter((line) => line.includes("WARN") && line.includes("another shard"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain("pve-b (2 VMs)")
      // Not ours: nothing adopted or deleted.
      expect(allInstances(yield* w.state)).toEqual([])
      expect(w.vms()).toHaveLength(2)
    }))
})
