/**
 * TOPSIS multi-criteria ranking: the same algorithm as Proxmox VE's resource scheduler
 * (proxmox-resource-scheduling) and the original nstance server, so its reference vectors validate ours.
 * Pure and generic: rows are alternatives, columns are weighted criteria to maximise or minimise.
 */
import { Data } from "effect"

export type Direction = "max" | "min"

export interface Criterion {
  /** Relative importance, ≥ 0; weights are normalised to sum 1 (only their ratios matter). */
  readonly weight: number
  /** `max`: more is better; `min`: less is better. */
  readonly direction: Direction
}

export class TopsisError extends Data.TaggedError("TopsisError")<{ readonly reason: string }> {
  override get message() {
    return `TOPSIS: ${this.reason}`
  }
}

/**
 * Euclidean norm summed in ascending order of magnitude: the result then does not depend on the order of
 * the alternatives, so permuting the input can never flip a near-tie.
 */
const columnNorm = (values: ReadonlyArray<number>): number =>
  Math.sqrt(values.map((v) => v * v).sort((a, b) => a - b).reduce((sum, v) => sum + v, 0))

/**
 * Closeness scores in [0, 1], one per row (input order). Each column is divided by its Euclidean norm (a
 * zero column is left as is); distances to the ideal (best per column) and anti-ideal (worst per column)
 * are taken on the weighted values; score = d⁻ / (d⁺ + d⁻), 0 when both are 0 (all alternatives alike).
 * Negative values need no special case: the norm and the per-column best/worst handle them, as in Proxmox.
 */
export const topsisScores = (
  matrix: ReadonlyArray<ReadonlyArray<number>>,
  criteria: ReadonlyArray<Criterion>
): ReadonlyArray<number> | TopsisError => {
  if (criteria.length === 0) return new TopsisError({ reason: "no criteria" })
  for (const [j, c] of criteria.entries()) {
    if (!Number.isFinite(c.weight) || c.weight < 0) {
      return new TopsisError({ reason: `criterion ${j} has invalid weight ${c.weight}` })
    }
  }
  const totalWeight = criteria.reduce((sum, c) => sum + c.weight, 0)
  if (totalWeight <= 0) return new TopsisError({ reason: "no criterion has a non-zero weight" })
  for (const [i, row] of matrix.entries()) {
    if (row.length !== criteria.length) {
      return new TopsisError({ reason: `alternative ${i} has ${row.length} values for ${criteria.length} criteria` })
    }
    for (const [j, v] of row.entries()) {
      if (!Number.isFinite(v)) return new TopsisError({ reason: `alternative ${i} has invalid value ${v} for criterion ${j}` })
    }
  }
  if (matrix.length === 0) return []

  const columns = criteria.map((c, j) => {
    const values = matrix.map((row) => row[j] ?? 0)
    const norm = columnNorm(values)
    const weight = c.weight / totalWeight
    const weighted = values.map((v) => (norm === 0 ? v : v / norm) * weight)
    // reduce, not Math.max(...spread): a spread of many thousand values can overflow the call stack.
    const highest = weighted.reduce((a, b) => (b > a ? b : a), -Infinity)
    const lowest = weighted.reduce((a, b) => (b < a ? b : a), Infinity)
    const best = c.direction === "max" ? highest : lowest
    const worst = c.direction === "max" ? lowest : highest
    return { weighted, best, worst }
  })

  const scores = matrix.map((_, i) => {
    let toBest = 0
    let toWorst = 0
    for (const column of columns) {
      const v = column.weighted[i] ?? 0
      toBest += (v - column.best) ** 2
      toWorst += (v - column.worst) ** 2
    }
    const dBest = Math.sqrt(toBest)
    const dWorst = Math.sqrt(toWorst)
    return dBest + dWorst === 0 ? 0 : dWorst / (dBest + dWorst)
  })
  for (const [i, s] of scores.entries()) {
    if (!Number.isFinite(s)) return new TopsisError({ reason: `alternative ${i} got a non-finite score (values too large?)` })
  }
  return scores
}

/**
 * Indices of the alternatives, best first. Equal scores are ordered by `tieKey` (ascending); the default
 * key is the index, which matches Proxmox's stable sort and the original's "first in API order".
 */
export const topsisRank = (
  matrix: ReadonlyArray<ReadonlyArray<number>>,
  criteria: ReadonlyArray<Criterion>,
  tieKey?: (index: number) => string
): ReadonlyArray<number> | TopsisError => {
  const scores = topsisScores(matrix, criteria)
  if (scores instanceof TopsisError) return scores
  return rankByScore(scores, tieKey)
}

export const rankByScore = (scores: ReadonlyArray<number>, tieKey?: (index: number) => string): Array<number> =>
  scores.map((_, i) => i).sort((a, b) => {
    const byScore = (scores[b] ?? 0) - (scores[a] ?? 0)
    if (byScore !== 0) return byScore
    if (tieKey === undefined) return a - b
    const ka = tieKey(a)
    const kb = tieKey(b)
    return ka < kb ? -1 : ka > kb ? 1 : a - b
  })
