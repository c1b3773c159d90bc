/**
 * The leader's read-only look at its cluster before (and, in this build, instead of) creating anything:
 * which VMs already carry this shard's tags, whether every group's template can be resolved on the nodes
 * the scheduler would pick, and where each group's VMs would land. Pure, so the same report serves the
 * daemon's log, tests and a future admin view.
 */
import { hasAssociationTags } from "../pveTags.js"
import { type Demand, NoPlacement, type NodeResources, planPlacements, withVmPlaced } from "../placement.js"

/** A group as the planner needs it: desired size and the resolved VM spec's placement-relevant parts. */
export interface GroupDemand {
  readonly tenant: string
  readonly group: string
  readonly size: number
  readonly cores: number
  readonly memoryMiB: number
  readonly template: { readonly name: string } | { readonly vmid: number }
}

/** One `/cluster/resources?type=vm` entry, decoded. */
export interface VmResource {
  readonly vmid: number
  readonly node: string
  readonly name?: string
  readonly tags?: string
  readonly template: boolean
  readonly status: string
}

export type TemplateCheck =
  | { readonly _tag: "Resolved"; readonly node: string; readonly vmid: number }
  | { readonly _tag: "Missing"; readonly node: string; readonly reason: string }

export interface GroupPlan {
  readonly tenant: string
  readonly group: string
  readonly desired: number
  /** Nodes chosen for the group's VMs, in order, when all fit. */
  readonly nodes: ReadonlyArray<string>
  /** Why not all VMs fit, if they did not. */
  readonly placementProblem?: string
  readonly templates: ReadonlyArray<TemplateCheck>
}

export interface PreflightReport {
  readonly onlineNodes: ReadonlyArray<string>
  readonly offlineNodes: ReadonlyArray<string>
  readonly ownedVms: ReadonlyArray<VmResource>
  readonly groups: ReadonlyArray<GroupPlan>
}

const MIB = 1024 * 1024

/**
 * Resolves a template for a clone onto `node`: by VMID anywhere in the cluster (PVE clones across nodes
 * from shared storage), or by name among the templates on `node` itself — exactly one must match.
 */
export const resolveTemplate = (
  vms: ReadonlyArray<VmResource>,
  template: GroupDemand["template"],
  node: string
): TemplateCheck => {
  if ("vmid" in template) {
    const vm = vms.find((candidate) => candidate.vmid === template.vmid)
    if (vm === undefined) return { _tag: "Missing", node, reason: `no VM with VMID ${template.vmid} in the cluster` }
    if (!vm.template) return { _tag: "Missing", node, reason: `VM ${template.vmid} is not a template` }
    return { _tag: "Resolved", node: vm.node, vmid: vm.vmid }
  }
  const matches = vms.filter((vm) => vm.template && vm.node === node && vm.name === template.name)
  if (matches.length === 1) return { _tag: "Resolved", node, vmid: matches[0]!.vmid }
  return {
    _tag: "Missing",
    node,
    reason: matches.length === 0
      ? `no template named ${template.name} on node ${node}`
      : `${matches.length} templates named ${template.name} on node ${node} (VMIDs ${matches.map((vm) => vm.vmid).join(", ")}); exactly one is required`
  }
}

/**
 * Plans every group on one snapshot of the cluster. Groups are planned one after another on the same
 * charged node set, so the plan for the whole shard spreads, not only within a group.
 */
export const preflight = (input: {
  readonly clusterId: string
  readonly shard: string
  readonly nodes: ReadonlyArray<NodeResources>
  readonly vms: ReadonlyArray<VmResource>
  readonly groups: ReadonlyArray<GroupDemand>
}): PreflightReport => {
  let nodes = input.nodes
  const groups = input.groups.map((group): GroupPlan => {
    const demand: Demand = { memoryBytes: group.memoryMiB * MIB, cores: group.cores }
    const base = { tenant: group.tenant, group: group.group, desired: group.size }
    if (group.size === 0) return { ...base, nodes: [], templates: [] }
    const planned = planPlacements(nodes, demand, group.size)
    const placements = planned instanceof NoPlacement ? planned.placed : planned
    for (const placement of placements) {
      nodes = nodes.map((node) => (node.node === placement.node ? withVmPlaced(node, demand) : node))
    }
    const chosen = placements.map((placement) => placement.node)
    const templates = [...new Set(chosen)].sort().map((node) => resolveTemplate(input.vms, group.template, node))
    return planned instanceof NoPlacement
      ? { ...base, nodes: chosen, placementProblem: planned.reason, templates }
      : { ...base, nodes: chosen, templates }
  })
  return {
    onlineNodes: input.nodes.filter((node) => node.status === "online").map((node) => node.node).sort(),
    offlineNodes: input.nodes.filter((node) => node.status !== "online").map((node) => node.node).sort(),
    ownedVms: input.vms.filter((vm) => !vm.template && hasAssociationTags(vm.tags, input.clusterId, input.shard)),
    groups
  }
}

/** Human lines for the log and the terminal, one per fact, problems first in each group. */
export const describePreflight = (report: PreflightReport): ReadonlyArray<string> => {
  const lines = [
    `nodes: ${report.onlineNodes.length} online (${report.onlineNodes.join(", ") || "none"})` +
      (report.offlineNodes.length > 0 ? `, ${report.offlineNodes.length} offline (${report.offlineNodes.join(", ")})` : ""),
    `VMs tagged for this shard: ${report.ownedVms.length}`
  ]
  for (const group of report.groups) {
    const name = `${group.tenant}/${group.group}`
    if (group.desired === 0) {
      lines.push(`${name}: size 0, nothing to place`)
      continue
    }
    const counts = new Map<string, number>()
    for (const node of group.nodes) counts.set(node, (counts.get(node) ?? 0) + 1)
    const spread = [...counts].map(([node, count]) => `${node}×${count}`).join(", ")
    lines.push(`${name}: ${group.desired} VM(s) → ${spread || "no node"}`)
    if (group.placementProblem !== undefined) lines.push(`${name}: cannot place all: ${group.placementProblem}`)
    for (const check of group.templates) {
      lines.push(
        check._tag === "Resolved"
          ? `${name}: template on ${check.node}: VMID ${check.vmid}`
          : `${name}: template problem: ${check.reason}`
      )
    }
  }
  return lines
}
