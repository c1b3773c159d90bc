/**
 * Placement never chooses a node the preflight found without what the VM's group needs, however much room
 * it has; such a node is listed with why, and a group that no node suits is told so.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Demand, markUnfit, type NodeResources, NoPlacement, placeOne, planPlacements } from "../../src/domain/placement.js"

const GIB = 1024 ** 3
const node = (name: string, freeGiB: number): NodeResources => ({ node: name, status: "online", mem: (64 - freeGiB) * GIB, maxmem: 64 * GIB, cpu: 0.1, maxcpu: 16 })
const demand: Demand = { memoryBytes: 2 * GIB, cores: 2 }

describe("placement with the preflight's unfit nodes", () => {
  it("the roomiest node lacks the template: it is never chosen, and the ranking says why", () => {
    const nodes = markUnfit([node("pve1", 20), node("pve2", 60), node("pve3", 30)], new Map([["pve2", "no template named debian-13-template"]]))
    const placement = placeOne(nodes, demand)
    if (placement instanceof NoPlacement) throw new Error(placement.message)
    expect(placement.node).toBe("pve3")
    expect(placement.ranking.find((e) => e.node === "pve2")?.excluded).toBe("lacks what the group needs: no template named debian-13-template")
    const burst = planPlacements(nodes, demand, 6)
    if (burst instanceof NoPlacement) throw new Error(burst.message)
    expect(new Set(burst.map((p) => p.node))).toEqual(new Set(["pve1", "pve3"]))
  })

  it("no node suits the group: NoPlacement names each node's lack", () => {
    const nodes = markUnfit([node("pve1", 20), node("pve2", 60)], new Map([["pve1", "no storage ceph-vm"], ["pve2", "no bridge vmbr1"]]))
    const result = placeOne(nodes, demand)
    if (!(result instanceof NoPlacement)) throw new Error(`placed on ${result.node}`)
    expect(result.reason).toBe("no online node has what the group needs (pve1: no storage ceph-vm; pve2: no bridge vmbr1)")
  })

  it("nothing unfit: the nodes are left as they are", () => {
    const nodes = [node("pve1", 20)]
    expect(markUnfit(nodes, new Map())).toBe(nodes)
  })
})
