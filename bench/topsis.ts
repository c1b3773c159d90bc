/**
 * Placement cost on large clusters: ranking 1,000 nodes for one VM, and planning a burst of 100 VMs over
 * 1,000 nodes (each placement re-ranks the cluster with the chosen node charged).
 */
import { type NodeResources, placeOne, planPlacements } from "../src/domain/placement.js"
import { measureSync } from "./lib/stats.js"

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

const nodes = cluster(1000)
const demand = { memoryBytes: 4 * GIB, cores: 2 }
measureSync("placeOne: 1 VM on 1,000 nodes", 500, () => {
  placeOne(nodes, demand)
}, 44)
measureSync("planPlacements: 100 VMs on 1,000 nodes", 20, () => {
  planPlacements(nodes, demand, 100)
}, 44)
measureSync("placeOne: 1 VM on 10 nodes", 5000, () => {
  placeOne(nodes.slice(0, 10), demand)
}, 44)
