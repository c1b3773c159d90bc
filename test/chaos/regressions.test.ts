/**
 * Seeds that found bugs, kept as regressions, and proof that the checker fails when it should: a
 * deliberately broken build run through the harness, and hand-made histories that break each history rule.
 */
import { describe, expect, it } from "vitest"
import type { ShardEventEncoded } from "../../src/domain/shard/events.js"
import { checkHistory } from "./checker.js"
import { History } from "./history.js"
import { failureReport, runSeed } from "./world.js"

const expectClean = async (seed: number) => {
  const result = await runSeed({ seed })
  if (result.violations.length > 0) expect.fail(failureReport(result))
}

describe("chaos regressions", () => {
  it("seed 16: a clone that waited for its storage slot is not made for an instance whose delete landed meanwhile", () => expectClean(16), 30_000)
  it("seed 1005: a new leader does not adopt a VM the previous leader deleted seconds ago (the listing lags)", () => expectClean(1005), 30_000)
  // Found as seed 1009; after other changes moved that world, 1044, 1045 and 1056 still leak without the fix.
  it("seed 1045: a delete that finds its VM still being cloned waits instead of leaving the clone behind", () => expectClean(1045), 30_000)
  it("seed 1056: the same, another world", () => expectClean(1056), 30_000)
  it("seed 1898: GC does not request the delete of an instance whose delete finished during its pass", () => expectClean(1898), 30_000)
})

describe("the checker fails a broken build", () => {
  it("compensation that skips the ISO delete: the run fails with leaked ISOs and the command that reproduces it", async () => {
    const result = await runSeed({ seed: 2, breakMode: "skip-iso-delete", convergeBoundMs: 3 * 60_000 })
    expect(result.convergedAfterMs).toBeUndefined()
    const convergence = result.violations.find((v) => v.rule === "convergence")
    expect(convergence?.message).toMatch(/leaked ISO local:iso\/nstance-/)
    expect(failureReport(result, "skip-iso-delete")).toContain("reproduce: NSTANCE_CHAOS_BREAK=skip-iso-delete npm run chaos -- --seed 2")
  }, 30_000)
})

/** A history with term `term` of `who` elected and its segments written as given. */
const historyOf = (segments: ReadonlyArray<{ readonly who: string; readonly term: number; readonly events: ReadonlyArray<ShardEventEncoded> }>) => {
  const h = new History(() => 0)
  let seq = 0
  for (const s of segments) {
    const w = h.write({ who: s.who, term: s.term, op: "put", key: `log/${String(++seq).padStart(16, "0")}.json`, seq, events: s.events })
    h.settle(w, "applied")
  }
  return h
}

const ID = "web06eadcewvhrp3b1ztjxey4tn4c"
const at = 0

describe("history rules", () => {
  it("a saga that skips a step breaks the state machine", () => {
    const h = historyOf([
      { who: "r0#1", term: 1, events: [{ _tag: "LeaderElected", v: 1, term: 1, replica: "r0" }] },
      { who: "r0#1", term: 1, events: [{ _tag: "InstanceRequested", v: 1, instanceId: ID, at, tenant: "shop", group: "web", kind: "web", specHash: "x", reason: "scale-up" }] },
      { who: "r0#1", term: 1, events: [{ _tag: "Cloned", v: 1, instanceId: ID, at, vmid: 100, node: "pve1" }] },
      { who: "r0#1", term: 1, events: [{ _tag: "DeleteRequested", v: 1, instanceId: ID, at, reason: "scale-down" }] },
      { who: "r0#1", term: 1, events: [{ _tag: "InstanceGone", v: 1, instanceId: ID, at }] }
    ])
    const rules = checkHistory(h).map((v) => v.message)
    expect(rules).toEqual([
      expect.stringContaining("Cloned in phase requested"),
      expect.stringContaining("InstanceGone before its cleanup")
    ])
  })

  it("a PVE mutation or a log write by a replica after its lease was lost is a fencing violation", () => {
    const h = historyOf([{ who: "r0#1", term: 1, events: [{ _tag: "LeaderElected", v: 1, term: 1, replica: "r0" }] }])
    h.mark("r0#1", "termStart", 1)
    h.mark("r0#1", "leaseLost", 1)
    h.pveStart("r0#1", 1, "start", "pve1,100", true)
    h.write({ who: "r0#1", term: 1, op: "put", key: "log/0000000000000002.json", seq: 2, events: [] })
    expect(checkHistory(h).map((v) => v.rule)).toEqual(["fencing-pve", "fencing-log"])
  })

  it("a deposed term's mutation after a newer term was elected is a fencing violation", () => {
    const h = historyOf([
      { who: "r0#1", term: 1, events: [{ _tag: "LeaderElected", v: 1, term: 1, replica: "r0" }] },
      { who: "r1#2", term: 2, events: [{ _tag: "LeaderElected", v: 1, term: 2, replica: "r1" }] }
    ])
    h.mark("r0#1", "termStart", 1)
    h.pveStart("r0#1", 1, "deleteVm", "pve1,100", true)
    expect(checkHistory(h).map((v) => v.rule)).toEqual(["fencing-pve"])
  })

  it("two VMs named after one instance, and a clone after the delete was recorded, are violations", () => {
    const h = historyOf([
      { who: "r0#1", term: 1, events: [{ _tag: "LeaderElected", v: 1, term: 1, replica: "r0" }] },
      { who: "r0#1", term: 1, events: [{ _tag: "InstanceRequested", v: 1, instanceId: ID, at, tenant: "shop", group: "web", kind: "web", specHash: "x", reason: "scale-up" }] },
      { who: "r0#1", term: 1, events: [{ _tag: "DeleteRequested", v: 1, instanceId: ID, at, reason: "scale-down" }] }
    ])
    h.mark("r0#1", "termStart", 1)
    h.pveStart("r0#1", 1, "clone", "pve1,9000", true, ID)
    h.sample(`two VMs named ${ID}: 100 and 101`)
    expect(checkHistory(h).map((v) => v.rule)).toEqual(["no-clone-after-delete", "one-vm-per-instance"])
  })
})
