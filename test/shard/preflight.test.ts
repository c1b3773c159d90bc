import { describe, expect, it } from "@effect/vitest"
import { describePreflight, type GroupDemand, preflight, resolveTemplate, type VmResource } from "../../src/domain/shard/preflight.js"

const GiB = 1024 ** 3
const node = (name: string, freeGiB: number, status = "online") => ({
  node: name, status, maxmem: 64 * GiB, mem: (64 - freeGiB) * GiB, maxcpu: 16, cpu: 0.1
})
const templates: ReadonlyArray<VmResource> = [
  { vmid: 9000, node: "pve1", name: "debian-13-template", template: true, status: "stopped" },
  { vmid: 9001, node: "pve2", name: "debian-13-template", template: true, status: "stopped" },
  { vmid: 9002, node: "pve3", name: "debian-13-template", template: true, status: "stopped" },
  { vmid: 9100, node: "pve3", name: "debian-13-template", template: true, status: "stopped" }
]
const web: GroupDemand = {
  tenant: "acme", group: "web", size: 4, cores: 2, memoryMiB: 4096, template: { name: "debian-13-template" }
}

describe("shard preflight", () => {
  it("spreads a group over the nodes and resolves the template on each chosen node", () => {
    const report = preflight({
      clusterId: "c", shard: "s",
      nodes: [node("pve1", 40), node("pve2", 40)],
      vms: templates,
      groups: [web]
    })
    const plan = report.groups[0]!
    expect(plan.nodes).toHaveLength(4)
    expect(new Set(plan.nodes)).toEqual(new Set(["pve1", "pve2"]))
    expect(plan.templates).toEqual([
      { _tag: "Resolved", node: "pve1", vmid: 9000 },
      { _tag: "Resolved", node: "pve2", vmid: 9001 }
    ])
  })

  it("charges nodes across groups, so the second group goes where the first did not", () => {
    const big = { ...web, group: "db", size: 1, memoryMiB: 30 * 1024 }
    const report = preflight({
      clusterId: "c", shard: "s",
      nodes: [node("pve1", 40), node("pve2", 39)],
      vms: templates,
      groups: [big, { ...big, group: "db2" }]
    })
    expect(report.groups.map((group) => group.nodes)).toEqual([["pve1"], ["pve2"]])
  })

  it("reports groups that do not fit, with the VMs that did", () => {
    const report = preflight({
      clusterId: "c", shard: "s",
      nodes: [node("pve1", 9), node("pve2", 1, "offline")],
      vms: templates,
      groups: [{ ...web, size: 3 }]
    })
    const plan = report.groups[0]!
    expect(plan.nodes).toEqual(["pve1", "pve1"])
    expect(plan.placementProblem).toContain("only 2 of 3 VMs fit")
    expect(report.offlineNodes).toEqual(["pve2"])
    expect(describePreflight(report)).toContain("acme/web: cannot place all: " + plan.placementProblem)
  })

  it.each([
    [{ name: "debian-13-template" }, "pve3", "2 templates named debian-13-template on node pve3 (VMIDs 9002, 9100); exactly one is required"],
    [{ name: "ubuntu" }, "pve1", "no template named ubuntu on node pve1"],
    [{ vmid: 1234 }, "pve1", "no VM with VMID 1234 in the cluster"]
  ] as const)("explains an unresolvable template %j on %s", (template, onNode, reason) => {
    expect(resolveTemplate(templates, template, onNode)).toEqual({ _tag: "Missing", node: onNode, reason })
  })

  it("resolves a template by VMID on its own node, and refuses a VMID that is not a template", () => {
    const vms = [...templates, { vmid: 150, node: "pve2", name: "app", template: false, status: "running" }]
    expect(resolveTemplate(vms, { vmid: 9001 }, "pve1")).toEqual({ _tag: "Resolved", node: "pve2", vmid: 9001 })
    expect(resolveTemplate(vms, { vmid: 150 }, "pve1")).toEqual({ _tag: "Missing", node: "pve1", reason: "VM 150 is not a template" })
  })

  it("counts only VMs carrying all three association tags", () => {
    const vms: ReadonlyArray<VmResource> = [
      ...templates,
      { vmid: 100, node: "pve1", name: "a", tags: "nstance;c;s", template: false, status: "running" },
      { vmid: 101, node: "pve1", name: "b", tags: "nstance;c;other", template: false, status: "running" },
      { vmid: 102, node: "pve2", name: "c", template: false, status: "stopped" }
    ]
    const report = preflight({ clusterId: "c", shard: "s", nodes: [node("pve1", 10)], vms, groups: [] })
    expect(report.ownedVms.map((vm) => vm.vmid)).toEqual([100])
  })
})
