import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import {
  ASSUMED_CPU_UTILISATION,
  type Demand,
  type NodeResources,
  NoPlacement,
  type Placement,
  placeOne,
  planPlacements,
  rankNodes
} from "../../src/domain/placement.js"
import { SchedulerTopsis } from "../../src/layers/SchedulerTopsis.js"
import { Scheduler } from "../../src/services/Scheduler.js"

const GIB = 1024 ** 3
const node = (name: string, over: Partial<NodeResources> = {}): NodeResources => ({
  node: name, status: "online", mem: 0, maxmem: 64 * GIB, cpu: 0, maxcpu: 16, ...over
})
const small: Demand = { memoryBytes: 2 * GIB, cores: 2 }

const placed = (result: Placement | NoPlacement): Placement => {
  if (result instanceof NoPlacement) throw new Error(result.message)
  return result
}
const failed = (result: Placement | NoPlacement | ReadonlyArray<Placement>): NoPlacement => {
  if (!(result instanceof NoPlacement)) throw new Error("expected NoPlacement")
  return result
}

describe("placement by TOPSIS (free memory 60 %, free CPU 40 %)", () => {
  it("matches a hand computation where the weights decide", () => {
    // a: 50 % memory free, 80 % CPU free; b: 80 % memory free, 40 % CPU free.
    // Memory column [50, 80], norm √8900 = 94.3398 → (0.53000, 0.84800) × 0.6 = (0.31800, 0.50880).
    // CPU column [80, 40], norm √8000 = 89.4427 → (0.89443, 0.44721) × 0.4 = (0.35777, 0.17889).
    // Ideal (0.50880, 0.35777), anti-ideal (0.31800, 0.17889).
    // a: d⁺ = 0.19080, d⁻ = 0.17889 → 0.17889 / 0.36969 = 0.48389
    // b: d⁺ = 0.17889, d⁻ = 0.19080 → 0.19080 / 0.36969 = 0.51611  → b, because memory weighs more.
    // (With the original's 1:1 weights a would win: 0.58443 vs 0.41557.)
    const nodes = [
      node("a", { mem: 50, maxmem: 100, cpu: 0.2 }),
      node("b", { mem: 20, maxmem: 100, cpu: 0.6 })
    ]
    const result = placed(placeOne(nodes, { memoryBytes: 0, cores: 1 }))
    expect(result.node).toBe("b")
    expect(result.score).toBeCloseTo(0.51611, 4)
    expect(result.ranking.map((e) => [e.node, e.score])).toEqual([["b", result.score], ["a", expect.closeTo(0.48389, 4)]])
    expect(result.ranking[1]).toMatchObject({ freeMemoryPercent: 50, freeCpuPercent: 80, freeMemoryBytes: 50 })
  })

  it("reports a single candidate with score 0 (nothing to compare) but still places on it", () => {
    const result = placed(placeOne([node("only", { mem: GIB })], small))
    expect(result.node).toBe("only")
    expect(result.score).toBe(0)
  })

  it("excludes offline nodes, nodes without capacity, without room, or with too few CPUs — and says why", () => {
    const ranking = rankNodes([
      node("ok"),
      node("down", { status: "offline" }),
      node("blank", { maxmem: 0, maxcpu: 0 }),
      node("full", { mem: 63 * GIB }),
      node("tiny", { maxcpu: 1 })
    ], small)
    expect(ranking.map((e) => [e.node, e.excluded])).toEqual([
      ["ok", undefined],
      ["blank", "reports no memory or CPU capacity"],
      ["down", "not online (status offline)"],
      ["full", "only 1024 MiB free, VM needs 2048 MiB"],
      ["tiny", "has 1 CPUs, VM needs 2 cores"]
    ])
    expect(ranking.slice(1).every((e) => e.score === undefined)).toBe(true)
  })

  it("breaks ties by node name, whatever the input order", () => {
    const nodes = ["pve3", "pve1", "pve2"].map((name) => node(name))
    expect(rankNodes(nodes, small).map((e) => e.node)).toEqual(["pve1", "pve2", "pve3"])
  })

  it.each([
    ["an empty cluster", [], "the cluster reported no nodes"],
    ["an all-offline cluster", [node("a", { status: "offline" }), node("b", { status: "unknown" })], "no node is online (a: offline, b: unknown)"],
    ["nodes without capacity", [node("a", { maxmem: 0 })], "no online node reports its capacity (a)"],
    [
      "nodes without room",
      [node("a", { mem: 63 * GIB }), node("b", { mem: 62.5 * GIB }), node("c", { status: "offline" })],
      "no online node has 2048 MiB of free memory; the most is 1536 MiB on b"
    ],
    ["nodes with too few CPUs", [node("a", { maxcpu: 1 })], "no online node has both 2048 MiB free and 2 CPUs; the most CPUs is 1 on a"]
  ])("fails clearly for %s", (_label, nodes, reason) => {
    const error = failed(placeOne(nodes, small))
    expect(error.reason).toBe(reason)
    expect(error.message).toBe(`no node can take the VM: ${reason}`)
  })
})

describe("spreading a burst", () => {
  it("puts three VMs on three equal nodes", () => {
    const plan = planPlacements([node("a"), node("b"), node("c")], small, 3)
    if (plan instanceof NoPlacement) throw plan
    expect(plan.map((p) => p.node).sort()).toEqual(["a", "b", "c"])
  })

  it("without charging, every VM of a burst would land on the same node", () => {
    const nodes = [node("a", { cpu: 0.1 }), node("b", { cpu: 0.2 })]
    const naive = Array.from({ length: 4 }, () => placed(placeOne(nodes, small)).node)
    expect(new Set(naive)).toEqual(new Set(["a"]))
    const plan = planPlacements(nodes, small, 4)
    if (plan instanceof NoPlacement) throw plan
    expect(new Set(plan.map((p) => p.node))).toEqual(new Set(["a", "b"]))
  })

  it("charges memory and an assumed CPU load to the chosen node", () => {
    // One node: the second placement must see the first VM's memory and half of its cores as load.
    const plan = planPlacements([node("a", { maxmem: 8 * GIB, maxcpu: 4 }), node("b", { status: "offline" })], small, 4)
    if (plan instanceof NoPlacement) throw plan
    expect(plan).toHaveLength(4)
    const fifth = failed(planPlacements([node("a", { maxmem: 8 * GIB, maxcpu: 4 })], small, 5))
    expect(fifth.reason).toBe("only 4 of 5 VMs fit: no online node has 2048 MiB of free memory; the most is 0 MiB on a")
    expect(fifth.placed.map((p) => p.node)).toEqual(["a", "a", "a", "a"])
    const last = fifth.ranking.find((e) => e.node === "a")
    expect(last?.freeMemoryBytes).toBe(0)
    expect(last?.freeCpuPercent).toBe(100 - 100 * 4 * (2 / 4) * ASSUMED_CPU_UTILISATION)
  })

  it("spreads in proportion to room: a node twice as large takes about twice as many", () => {
    const plan = planPlacements([node("big", { maxmem: 256 * GIB, maxcpu: 64 }), node("small", { maxmem: 128 * GIB, maxcpu: 32 })], small, 60)
    if (plan instanceof NoPlacement) throw plan
    const onBig = plan.filter((p) => p.node === "big").length
    expect(onBig).toBeGreaterThanOrEqual(38)
    expect(onBig).toBeLessThanOrEqual(42)
  })
})

const nodeArb = (name: string) =>
  FastCheck.record({
    maxmem: FastCheck.integer({ min: 1, max: 2 ** 20 }).map((m) => m * 1024 * 1024),
    usedFraction: FastCheck.double({ min: 0, max: 1, noNaN: true }),
    cpu: FastCheck.double({ min: 0, max: 1, noNaN: true }),
    maxcpu: FastCheck.integer({ min: 1, max: 256 })
  }).map(({ maxmem, usedFraction, cpu, maxcpu }) => node(name, { maxmem, mem: Math.floor(maxmem * usedFraction), cpu, maxcpu }))

const cluster = FastCheck.integer({ min: 1, max: 12 }).chain((n) =>
  FastCheck.tuple(...Array.from({ length: n }, (_, i) => nodeArb(`pve${String(i).padStart(2, "0")}`)))
)
const rankOnly: Demand = { memoryBytes: 0, cores: 1 }

describe("placement invariants", () => {
  it.prop("a node with more free memory and more free CPU never ranks below one with less of both", [cluster], ([nodes]) => {
    const ranking = rankNodes(nodes, rankOnly)
    const position = new Map(ranking.map((e, i) => [e.node, i]))
    for (const a of ranking) {
      for (const b of ranking) {
        if (a.freeMemoryPercent > b.freeMemoryPercent && a.freeCpuPercent > b.freeCpuPercent) {
          expect(position.get(a.node)).toBeLessThan(position.get(b.node) ?? -1)
        }
      }
    }
  })

  it.prop("permuting the nodes does not change the ranking", [cluster, FastCheck.integer()], ([nodes, seed]) => {
    const shuffled = [...nodes].sort((a, b) => ((a.node.charCodeAt(4) * 31 + seed) % 7) - ((b.node.charCodeAt(4) * 31 + seed) % 7))
    const before = rankNodes(nodes, small).map((e) => [e.node, e.score])
    expect(rankNodes(shuffled, small).map((e) => [e.node, e.score])).toEqual(before)
    expect(rankNodes([...nodes].reverse(), small).map((e) => [e.node, e.score])).toEqual(before)
  })

  it.prop("scaling every node's memory by the same factor does not change the ranking", [cluster, FastCheck.integer({ min: -4, max: 4 })], ([nodes, k]) => {
    const scaled = nodes.map((n) => ({ ...n, mem: n.mem * 2 ** k, maxmem: n.maxmem * 2 ** k }))
    expect(rankNodes(scaled, rankOnly).map((e) => e.node)).toEqual(rankNodes(nodes, rankOnly).map((e) => e.node))
  })

  it.prop("a planned burst never puts more memory on a node than it has", [cluster, FastCheck.integer({ min: 1, max: 40 })], ([nodes, count]) => {
    const demand: Demand = { memoryBytes: 512 * 1024 * 1024, cores: 1 }
    const plan = planPlacements(nodes, demand, count)
    const placements = plan instanceof NoPlacement ? plan.placed : plan
    for (const n of nodes) {
      const vms = placements.filter((p) => p.node === n.node).length
      expect(n.mem + vms * demand.memoryBytes).toBeLessThanOrEqual(n.maxmem)
    }
  })
})

describe("Scheduler (TOPSIS layer)", () => {
  it.effect("places one VM and a burst, and fails with NoPlacement when nothing fits", () =>
    Effect.gen(function* () {
      const scheduler = yield* Scheduler
      const nodes = [node("a", { cpu: 0.5 }), node("b", { cpu: 0.1 })]
      expect((yield* scheduler.place(nodes, small)).node).toBe("b")
      expect((yield* scheduler.placeMany(nodes, small, 2)).map((p) => p.node)).toHaveLength(2)
      const error = yield* Effect.flip(scheduler.place([], small))
      expect(error).toBeInstanceOf(NoPlacement)
      expect(error.reason).toBe("the cluster reported no nodes")
      const tooMany = yield* Effect.flip(scheduler.placeMany([node("a", { maxmem: 4 * GIB })], small, 3))
      expect(tooMany.placed).toHaveLength(2)
    }).pipe(Effect.provide(SchedulerTopsis)))
})
