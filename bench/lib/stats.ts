/** Shared by the benchmarks: one percentile rule and one synchronous timing loop, so figures compare. */

/** The `fraction` quantile (0.5 = p50) of samples sorted ascending; NaN when there are none. */
export const percentile = (sorted: ReadonlyArray<number>, fraction: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? Number.NaN

/** Times `run` `iterations` times after a short warm-up and prints ops/s, µs/op, p50 and p99. */
export const measureSync = (label: string, iterations: number, run: () => void, labelWidth = 36) => {
  for (let i = 0; i < Math.min(20, iterations); i++) run()
  const samples: Array<number> = []
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint()
    run()
    samples.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
  const totalUs = Number(process.hrtime.bigint() - start) / 1000
  samples.sort((a, b) => a - b)
  console.log(
    `${label.padEnd(labelWidth)} ${(iterations / (totalUs / 1e6)).toFixed(1).padStart(10)} ops/s  ` +
      `${(totalUs / iterations).toFixed(1).padStart(10)} µs/op  p50 ${percentile(samples, 0.5).toFixed(1)} µs  p99 ${percentile(samples, 0.99).toFixed(1)} µs`
  )
}
