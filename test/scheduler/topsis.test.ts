import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { type Criterion, topsisRank, topsisScores, TopsisError } from "../../src/domain/topsis.js"

const max = (weight = 1): Criterion => ({ weight, direction: "max" })
const min = (weight = 1): Criterion => ({ weight, direction: "min" })

const rank = (matrix: ReadonlyArray<ReadonlyArray<number>>, criteria: ReadonlyArray<Criterion>, key?: (i: number) => string) => {
  const result = topsisRank(matrix, criteria, key)
  if (result instanceof TopsisError) throw result
  return result
}
const scores = (matrix: ReadonlyArray<ReadonlyArray<number>>, criteria: ReadonlyArray<Criterion>) => {
  const result = topsisScores(matrix, criteria)
  if (result instanceof TopsisError) throw result
  return result
}

// Proxmox's reference vectors (proxmox-resource-scheduling tests/topsis.rs): a negative weight there means
// "minimise", i.e. (|w|, min) here. Expected = alternative indices, best first.
const crossMatrix = [[7, 4], [1, 0.5], [-1, -1], [-8.5, 11.5], [4, 7]]
const smallMatrix = [[0, 1], [1, 0], [1, -1], [1, 1], [0, 0]]
const identity = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
const first = [max(10), max(0.2), max(0.1)]
const second = [max(0.2), max(10), max(0.1)]
const third = [max(0.2), max(0.1), max(10)]
const minimise = [min(10), min(5), max(0.1)]

describe("TOPSIS reproduces Proxmox's reference vectors", () => {
  it.each([
    ["cross matrix (max, min)", crossMatrix, [max(), min()], [0, 1, 4, 2, 3]],
    ["cross matrix (min, max)", crossMatrix, [min(), max()], [3, 2, 4, 1, 0]],
    ["cross matrix (min, min)", crossMatrix, [min(), min()], [2, 3, 1, 0, 4]],
    ["cross matrix (max, max)", crossMatrix, [max(), max()], [4, 0, 1, 3, 2]],
    ["small matrix (max, min)", smallMatrix, [max(), min()], [2, 1, 4, 3, 0]],
    ["small matrix (min, max)", smallMatrix, [min(), max()], [0, 3, 4, 1, 2]],
    ["small matrix (min, min)", smallMatrix, [min(), min()], [2, 4, 1, 0, 3]],
    ["small matrix (max, max)", smallMatrix, [max(), max()], [3, 0, 1, 4, 2]],
    ["single [[0]] max", [[0]], [max()], [0]],
    ["single [[0]] min", [[0]], [min()], [0]],
    ["single [[0],[2]] max", [[0], [2]], [max()], [1, 0]],
    ["single [[0],[2]] min", [[0], [2]], [min()], [0, 1]],
    ["single [[1],[2]] max", [[1], [2]], [max()], [1, 0]],
    ["single [[1],[2]] min", [[1], [2]], [min()], [0, 1]],
    ["single five max", [[1], [2], [5], [3], [4]], [max()], [2, 4, 3, 1, 0]],
    ["single five min", [[1], [2], [5], [3], [4]], [min()], [0, 1, 3, 4, 2]],
    ["single negatives max", [[-2], [-5], [-4], [1], [-3]], [max()], [3, 0, 4, 2, 1]],
    ["single negatives min", [[-2], [-5], [-4], [1], [-3]], [min()], [1, 2, 4, 0, 3]],
    ["identity, first", identity, first, [0, 1, 2]],
    ["identity, second", identity, second, [1, 0, 2]],
    ["identity, third", identity, third, [2, 0, 1]],
    ["identity, min", identity, minimise, [2, 1, 0]],
    ["identity with 1000, first", [[1, 0, 0], [0, 1, 0], [0, 0, 1000]], first, [0, 1, 2]],
    ["identity with 1000, second", [[1, 0, 0], [0, 1, 0], [0, 0, 1000]], second, [1, 0, 2]],
    ["identity with 1000, third", [[1, 0, 0], [0, 1, 0], [0, 0, 1000]], third, [2, 0, 1]],
    ["identity with 1000, min", [[1, 0, 0], [0, 1, 0], [0, 0, 1000]], minimise, [2, 1, 0]],
    ["negative diagonal, first", [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], first, [2, 1, 0]],
    ["negative diagonal, second", [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], second, [2, 0, 1]],
    ["negative diagonal, third", [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], third, [2, 1, 0]],
    ["negative diagonal, min", [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], minimise, [0, 1, 2]],
    ["zero column", [[0, 0, 0], [0, 1, 0], [0, 0, 1]], first, [1, 2, 0]]
  ])("%s", (_label, matrix, criteria, expected) => {
    expect(rank(matrix, criteria)).toEqual(expected)
  })

  it("refuses all-zero weights, NaN and ragged rows", () => {
    expect(topsisRank([[1, 2]], [max(0), max(0)])).toBeInstanceOf(TopsisError)
    expect(topsisRank([[1, Number.NaN]], [max(), max()])).toBeInstanceOf(TopsisError)
    expect(topsisRank([[1, 2], [3]], [max(), max()])).toBeInstanceOf(TopsisError)
    expect(topsisRank([[1]], [max(-1)])).toBeInstanceOf(TopsisError)
    expect(topsisRank([[1]], [])).toBeInstanceOf(TopsisError)
  })

  it("ranks nothing when there are no alternatives", () => {
    expect(rank([], [max()])).toEqual([])
  })
})

describe("TOPSIS by hand", () => {
  it("matches a hand computation (the original server's test (a): three nodes, equal weights)", () => {
    // Columns [80,40,60] and [60,20,80]; norms √(6400+1600+3600)=√11600≈107.703 and √(3600+400+6400)=√10400≈101.980.
    // Weighted (×0.5): n1 (0.37139, 0.29417), n2 (0.18570, 0.09806), n3 (0.27854, 0.39223).
    // Ideal (0.37139, 0.39223), anti-ideal (0.18570, 0.09806).
    // n1: d⁺ = 0.09806, d⁻ = √(0.18570² + 0.19612²) = 0.27009 → 0.27009/0.36815 = 0.73364
    // n2: d⁺ = √(0.18570² + 0.29417²) = 0.34788, d⁻ = 0 → 0
    // n3: d⁺ = 0.09285, d⁻ = √(0.09285² + 0.29417²) = 0.30848 → 0.30848/0.40133 = 0.76865
    const s = scores([[80, 60], [40, 20], [60, 80]], [max(), max()])
    expect(s[0]).toBeCloseTo(0.73364, 4)
    expect(s[1]).toBeCloseTo(0, 10)
    expect(s[2]).toBeCloseTo(0.76865, 4)
    expect(rank([[80, 60], [40, 20], [60, 80]], [max(), max()])).toEqual([2, 0, 1])
  })

  it("weights shift the choice (original test (c): weights 3:1)", () => {
    // Column 1 [100,50], norm 111.80: weighted ×0.75 → (0.67082, 0.33541); column 2 [20,100], norm 101.98:
    // weighted ×0.25 → (0.04903, 0.24515). Ideal (0.67082, 0.24515), anti (0.33541, 0.04903).
    // node1: d⁺ = 0.19612, d⁻ = 0.33541 → 0.63103; node2: d⁺ = 0.33541, d⁻ = 0.19612 → 0.36897.
    const s = scores([[100, 20], [50, 100]], [max(3), max(1)])
    expect(s[0]).toBeCloseTo(0.63103, 4)
    expect(s[1]).toBeCloseTo(0.36897, 4)
  })

  it("cost criteria prefer the smallest values (original test (b))", () => {
    expect(rank([[90, 80], [10, 20], [50, 50]], [min(), min()])[0]).toBe(1)
  })

  it("scores the ideal alternative 1 and the anti-ideal 0; identical alternatives all 0", () => {
    const s = scores([[10, 10], [5, 5], [0, 0]], [max(), max()])
    expect(s[0]).toBe(1)
    expect(s[2]).toBe(0)
    expect(scores([[3, 4], [3, 4]], [max(), min()])).toEqual([0, 0])
  })

  it("breaks ties with the caller's key, not the input order", () => {
    const names = ["pve3", "pve1", "pve2"]
    expect(rank([[1, 1], [1, 1], [1, 1]], [max(), max()], (i) => names[i] ?? "")).toEqual([1, 2, 0])
  })
})

const matrixOf = (rows: number, cols: number) =>
  FastCheck.array(FastCheck.array(FastCheck.integer({ min: -1000, max: 1000 }), { minLength: cols, maxLength: cols }), {
    minLength: rows,
    maxLength: rows
  })
const criteriaOf = (cols: number) =>
  FastCheck.array(
    FastCheck.record({ weight: FastCheck.integer({ min: 1, max: 10 }), direction: FastCheck.constantFrom<"max" | "min">("max", "min") }),
    { minLength: cols, maxLength: cols }
  )
const problem = FastCheck.tuple(FastCheck.integer({ min: 1, max: 12 }), FastCheck.integer({ min: 1, max: 4 })).chain(([rows, cols]) =>
  FastCheck.tuple(matrixOf(rows, cols), criteriaOf(cols))
)

describe("TOPSIS invariants", () => {
  it.prop("scores stay within [0, 1]", [problem], ([[matrix, criteria]]) => {
    for (const s of scores(matrix, criteria)) {
      expect(s).toBeGreaterThanOrEqual(0)
      expect(s).toBeLessThanOrEqual(1)
    }
  })

  it.prop("scaling a column by a power of two changes no score", [problem, FastCheck.integer({ min: -20, max: 20 })], ([[matrix, criteria], k]) => {
    const scaled = matrix.map((row) => row.map((v, j) => (j === 0 ? v * 2 ** k : v)))
    expect(scores(scaled, criteria)).toEqual(scores(matrix, criteria))
  })

  it.prop("scaling every value by any positive factor keeps scores (to rounding)", [problem, FastCheck.double({ min: 1e-3, max: 1e3, noNaN: true })], ([[matrix, criteria], factor]) => {
    const scaled = matrix.map((row) => row.map((v) => v * factor))
    const before = scores(matrix, criteria)
    scores(scaled, criteria).forEach((s, i) => expect(s).toBeCloseTo(before[i] ?? -1, 9))
  })

  it.prop("permuting the alternatives permutes the scores and keeps the ranking by key", [problem, FastCheck.integer()], ([[matrix, criteria], seed]) => {
    const order = matrix.map((_, i) => i).sort((a, b) => ((a * 7919 + seed) % 13) - ((b * 7919 + seed) % 13) || a - b)
    const permuted = order.map((i) => matrix[i] ?? [])
    const before = scores(matrix, criteria)
    const after = scores(permuted, criteria)
    order.forEach((original, position) => expect(after[position]).toBe(before[original]))
    const key = (i: number) => `n${String(i).padStart(3, "0")}`
    const ranked = rank(matrix, criteria, key)
    const rankedPermuted = rank(permuted, criteria, (p) => key(order[p] ?? -1)).map((p) => order[p])
    expect(rankedPermuted).toEqual(ranked)
  })

  it.prop("an alternative at least as good on every criterion and better on one never scores lower", [problem], ([[matrix, criteria]]) => {
    const base = matrix[0] ?? []
    const better = base.map((v, j) => (criteria[j]?.direction === "max" ? v + 1 : v - 1))
    const s = scores([...matrix, better], criteria)
    expect(s[s.length - 1]).toBeGreaterThanOrEqual(s[0] ?? 2)
  })
})
