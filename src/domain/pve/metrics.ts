/**
 * PVE call figures per endpoint template as plain data, read off the `nstance_pve_*` series of Effect's
 * metric registry (`src/metrics/metrics.ts` counts; benches and tests read). The registry is process-wide
 * and only grows, so a reader compares two readings: `pveCallsBetween(before, after)`.
 */

export interface PveCallFigures {
  readonly endpoint: string
  /** HTTP requests sent (each retry attempt and each task poll counts). */
  readonly count: number
  /** Requests that failed (an outcome other than `ok`). */
  readonly errors: number
  /** Attempts that were retries of a transient failure. */
  readonly retries: number
  /** Summed latency of the requests, in ms. */
  readonly totalMs: number
}

export type PveCallTable = ReadonlyMap<string, PveCallFigures>

const zero = (endpoint: string): PveCallFigures => ({ endpoint, count: 0, errors: 0, retries: 0, totalMs: 0 })

/** One series' reading, as the registry holds it. */
export type PveCallSeries =
  | { readonly kind: "calls"; readonly endpoint: string; readonly outcome: string; readonly count: number }
  | { readonly kind: "retries"; readonly endpoint: string; readonly count: number }
  | { readonly kind: "seconds"; readonly endpoint: string; readonly sumSeconds: number }

/** Folds the series of one reading into figures per endpoint. */
export const pveCallTable = (series: Iterable<PveCallSeries>): PveCallTable => {
  const table = new Map<string, PveCallFigures>()
  for (const s of series) {
    const old = table.get(s.endpoint) ?? zero(s.endpoint)
    table.set(s.endpoint,
      s.kind === "calls"
        ? { ...old, count: old.count + s.count, errors: old.errors + (s.outcome === "ok" ? 0 : s.count) }
        : s.kind === "retries"
        ? { ...old, retries: old.retries + s.count }
        : { ...old, totalMs: old.totalMs + s.sumSeconds * 1000 })
  }
  return table
}

/** What happened between two readings; endpoints without new requests are left out. */
export const pveCallsBetween = (before: PveCallTable, after: PveCallTable): PveCallTable => {
  const delta = new Map<string, PveCallFigures>()
  for (const [endpoint, a] of after) {
    const b = before.get(endpoint) ?? zero(endpoint)
    if (a.count === b.count) continue
    delta.set(endpoint, { endpoint, count: a.count - b.count, errors: a.errors - b.errors, retries: a.retries - b.retries, totalMs: a.totalMs - b.totalMs })
  }
  return delta
}

/** Mean latency in ms (0 when nothing was sent). */
export const meanMs = (m: PveCallFigures): number => (m.count === 0 ? 0 : m.totalMs / m.count)
