/**
 * Per-endpoint call counts and latencies of the PVE client, kept as plain data so benches, `/metrics` and
 * tests read the same figures. Endpoints are path templates (`POST /nodes/{node}/qemu/{vmid}/clone`), so
 * the number of series stays fixed however many VMs exist.
 */

/** Upper bounds (ms) of the latency histogram buckets; the last bucket is +Inf. */
export const LATENCY_BUCKETS_MS: ReadonlyArray<number> = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

export interface EndpointMetrics {
  readonly endpoint: string
  /** HTTP requests sent (each retry attempt counts). */
  readonly count: number
  /** Requests that ended in an error (HTTP status ≥ 400, no answer, or an undecodable body). */
  readonly errors: number
  /** Attempts that were retries of a transient failure. */
  readonly retries: number
  readonly totalMs: number
  readonly maxMs: number
  /** Cumulative counts per bucket of LATENCY_BUCKETS_MS, plus +Inf at the end. */
  readonly buckets: ReadonlyArray<number>
}

export type MetricsSnapshot = ReadonlyMap<string, EndpointMetrics>

export interface CallSample {
  readonly endpoint: string
  readonly durationMs: number
  readonly failed: boolean
  readonly retry: boolean
}

export const emptyMetrics: MetricsSnapshot = new Map()

export const recordCall = (metrics: MetricsSnapshot, sample: CallSample): MetricsSnapshot => {
  const old = metrics.get(sample.endpoint)
  const buckets = old?.buckets.slice() ?? new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0)
  LATENCY_BUCKETS_MS.forEach((bound, i) => {
    if (sample.durationMs <= bound) buckets[i] = (buckets[i] ?? 0) + 1
  })
  buckets[LATENCY_BUCKETS_MS.length] = (buckets[LATENCY_BUCKETS_MS.length] ?? 0) + 1
  const next = new Map(metrics)
  next.set(sample.endpoint, {
    endpoint: sample.endpoint,
    count: (old?.count ?? 0) + 1,
    errors: (old?.errors ?? 0) + (sample.failed ? 1 : 0),
    retries: (old?.retries ?? 0) + (sample.retry ? 1 : 0),
    totalMs: (old?.totalMs ?? 0) + sample.durationMs,
    maxMs: Math.max(old?.maxMs ?? 0, sample.durationMs),
    buckets
  })
  return next
}

/** Mean latency in ms (0 when nothing was recorded). */
export const meanMs = (m: EndpointMetrics): number => (m.count === 0 ? 0 : m.totalMs / m.count)
