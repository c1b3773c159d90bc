/**
 * Issue 16, class 5: node figures that cannot be true (negative, not finite, used above total, a CPU
 * load outside PVE's 0..1 fraction) are reported with the reason and never ranked — in `place` and, through
 * the same `nodeResourcesFrom`, in the daemon's placement.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { NoPlacement, nodeResourcesFrom, placeOne, planPlacements } from "../../src/domain/placement.js"
import { preflight } from "../../src/domain/shard/preflight.js"
import { admin, lines, scratch } from "./support.js"

const dir = scratch("place")
const GIB = 1024 ** 3
const good = { node: "good", status: "online", mem: 4 * GIB, maxmem: 64 * GIB, cpu: 0.1, maxcpu: 16 }

// Each row: what is wrong, the entry's bad fields, the reason shown.
const absurd: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
  ["negative used memory", { mem: -1e12, maxmem: 1e9 }, "mem -1000000000000 is negative"],
  ["negative total memory", { maxmem: -1 }, "maxmem -1 is negative"],
  ["used memory above total", { mem: 2e9, maxmem: 1e9 }, "mem 2000000000 is more than maxmem 1000000000"],
  ["negative CPU load", { cpu: -0.5 }, "cpu -0.5 is negative"],
  ["CPU load as a percentage", { cpu: 93 }, "cpu 93 is more than 1 (PVE reports the load as a fraction of all CPUs)"],
  ["fractional CPU count", { maxcpu: 2.5 }, "maxcpu 2.5 is not a whole number of CPUs"],
  ["negative CPU count", { maxcpu: -8 }, "maxcpu -8 is negative"]
]

const json = (value: unknown) => JSON.stringify(value)

describe("place reports an impossible node and ranks only the others", () => {
  it.each(absurd)("%s", async (_name, fields, reason) => {
    const file = join(dir, "resources.json")
    writeFileSync(file, json({ data: [{ type: "node", ...good }, { type: "node", ...good, node: "bad", ...fields }] }))
    const result = await admin(["place", "--resources", file, "--json"])
    expect(result.status).toBe(0)
    expect(result.stderr).toBe(`⚠ --resources ${file}: node "bad": ${reason}; not ranked\n`)
    expect((JSON.parse(result.stdout) as Array<{ node: string }>).map((entry) => entry.node)).toEqual(["good"])
    const table = await admin(["place", "--resources", file])
    expect(table.stdout).toMatch(new RegExp(`^-\\s+bad\\s+-\\s+-\\s+-\\s+-\\s+-\\s+excluded: reports impossible figures: ${reason.replace(/[()]/g, "\\$&")}$`, "m"))
    expect(table.stdout).toContain("chosen: good")
  })

  it("a figure JSON cannot hold (1e999 is Infinity) refuses the file, showing the value", async () => {
    const file = join(dir, "infinite.json")
    writeFileSync(file, JSON.stringify([good, { ...good, node: "inf", maxmem: "__INF__" }]).replace('"__INF__"', "1e999"))
    const result = await admin(["place", "--resources", file])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`✗ ${file}: entry 1 (node "inf"): field maxmem: expected a finite number or a numeric string, got Infinity\n`)
  })

  it("a cluster of only impossible nodes places nothing (exit 1), naming each reason", async () => {
    const file = join(dir, "all-bad.json")
    writeFileSync(file, json([{ ...good, node: "a", mem: -1e12, maxmem: 1e9 }, { ...good, node: "b", cpu: 93 }]))
    const result = await admin(["place", "--resources", file, "--json"])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(lines(result.stderr)).toEqual([
      `⚠ --resources ${file}: node "a": mem -1000000000000 is negative; not ranked`,
      `⚠ --resources ${file}: node "b": cpu 93 is more than 1 (PVE reports the load as a fraction of all CPUs); not ranked`,
      "✗ no node can take the VM: no online node reports plausible figures (a: reports impossible figures: mem -1000000000000 is negative; " +
        "b: reports impossible figures: cpu 93 is more than 1 (PVE reports the load as a fraction of all CPUs))"
    ])
  })
})

describe("the daemon's placement goes through the same guard", () => {
  const nodes = [nodeResourcesFrom(good), nodeResourcesFrom({ ...good, node: "bad", mem: -1e12, maxmem: 1e9 })]

  it("nodeResourcesFrom marks the node, placeOne never chooses it", () => {
    expect(nodes[1]?.invalid).toBe("mem -1000000000000 is negative")
    expect(nodes[0]?.invalid).toBeUndefined()
    const placed = placeOne(nodes, { memoryBytes: GIB, cores: 1 })
    expect(placed instanceof NoPlacement ? placed.message : placed.node).toBe("good")
  })

  it("a burst charges the good node past 100 % CPU without it becoming 'impossible'", () => {
    const plan = planPlacements([nodeResourcesFrom({ ...good, maxcpu: 2 })], { memoryBytes: GIB, cores: 2 }, 5)
    expect(plan instanceof NoPlacement ? plan.message : plan.map((p) => p.node)).toEqual(["good", "good", "good", "good", "good"])
  })

  it("preflight plans every VM on the plausible node", () => {
    const report = preflight({
      clusterId: "c",
      shard: "s",
      nodes,
      vms: [],
      groups: [{ tenant: "t", group: "g", size: 3, cores: 1, memoryMiB: 1024, template: { vmid: 9000 } }]
    })
    expect(report.groups[0]?.nodes).toEqual(["good", "good", "good"])
  })
})
