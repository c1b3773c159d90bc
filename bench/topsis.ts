/**
 * Placement cost on large clusters: ranking 1,000 nodes for one VM, and planning a burst of 100 VMs over
 * 1,000 nodes (each placement re-ranks the cluster with the chosen node charged).
 */
import { type NodeResources, placeOne, planPlacements } from "../src/domain/placement.js"

const GIB = 1024 ** 3

// Deterministic cluster: varied sizes and loads, a few offline nodes.
const cluster = (size: number): Array<NodeResources> => {
  let x = 12345
  const next = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    return x / 2 ** 31
  }
  return Array.from({ length: size }, (_, i) => {
    const maxmem = (64 + Math.floor(next() * 4) * 64) * GIB
    return {
      node: `pve${String(i).padStart(4, "0")}`,
      status: i % 97 === 0 ? "offline" : "online",
      maxmem,
      mem: Math.floor(maxmem * next() * 0.9),
      maxcpu: 16 * (1 + Math.floor(next() * 4)),
      cpu: next()
    }
  })
}

const measure = (label: string, iterations: number, run: () => void) => {
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
  const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0
  console.log(
    `${label.padEnd(44)} ${(iterations / (totalUs / 1e6)).toFixed(1).padStart(10)} ops/s  ` +
      `${(totalUs / iterations).toFixed(1).padStart(10)} µs/op  p50 ${pct(0.5).toFixed(1)} µs  p99 ${pct(0.99).toFixed(1)} µs`
  )
}

const nodes = cluster(1000)
const demand = { memoryBytes: 4 * GIB, cores: 2 }
measure("placeOne: 1 VM on 1,000 nodes", 500, () => {
  placeOne(nodes, demand)
})
measure("planPlacements: 100 VMs on 1,000 nodes", 20, () => {
  planPlacements(nodes, demand, 100)
})
measure("placeOne: 1 VM on 10 nodes", 5000, () => {
  placeOne(nodes.slice(0, 10), demand)
})
