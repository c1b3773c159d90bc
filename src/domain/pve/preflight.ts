/**
 * The preflight against PVE, judged: what the shard's config needs from the cluster (`shardNeeds`) set
 * against what a handful of reads found (`ClusterFacts`), as findings an operator reads — one line each,
 * naming the node, storage, bridge, template or privilege, errors (nstance cannot work: a privilege is
 * missing, a group has no node to go to) apart from warnings (it works, with less: a node without the
 * template, an ISO storage that is not shared) — and, per group, the nodes placement must not choose.
 *
 * Pure, so the leader, `nstance-server --validate` and the tests share it; the reads are in
 * `src/shard/Preflight.ts`. Nothing here decides from a read that failed: such a node or fact is reported
 * as not checked, and placement treats it as fit (the create's own steps still check).
 */
import { Either } from "effect"
import { parseSubnetId } from "../config/proxmox.js"
import type { ShardConfig } from "../config/types.js"
import { resolveVmSpec } from "../config/vmSpec.js"
import { hasActions } from "../goTemplate/index.js"
import { describeTargets, missingPrivileges, PRIVILEGE_USES, privilegeNeeds } from "./privileges.js"
import type { NetworkInterface, Permissions, PveVersion, StorageEntry } from "./schemas.js"

// ---------------------------------------------------------------------------------------------------------
// What the shard needs

export interface GroupNeeds {
  /** `tenant/group`. */
  readonly group: string
  readonly storagePool: string
  readonly template: { readonly name: string } | { readonly vmid: number }
  readonly bridge: string
  readonly vlanTag?: number
  readonly pool?: string
}

export interface ShardNeeds {
  readonly isoStorage: string
  /**
   * Every group whose VM spec resolves (a group that does not is the config validator's to report) and names
   * its storage, template, bridge and pool without template actions.
   */
  readonly groups: ReadonlyArray<GroupNeeds>
  /** Bridges the subnet pools name, with the pools naming each (a group's own bridge is in `groups`). */
  readonly poolBridges: ReadonlyArray<{ readonly bridge: string; readonly pools: ReadonlyArray<string> }>
}

/** What the config asks of the cluster, groups sorted by name. */
export const shardNeeds = (config: ShardConfig): ShardNeeds => {
  const groups = Object.values(config.groups)
    .flatMap((byName) => Object.values(byName))
    .flatMap((group): ReadonlyArray<GroupNeeds> => {
      const spec = resolveVmSpec(config, group.tenant, group.name, { argTypesReported: true })
      if (Either.isLeft(spec)) return []
      const { storagePool, template, bridge, vlanTag, pool } = spec.right
      // A templated value is only known per VM, once rendered at create time: that group's needs are checked
      // there (a failed create names the arg), not here, where every node would look unfit for it.
      const templated = [storagePool, "name" in template ? template.name : "", bridge, pool ?? ""].some(hasActions)
      if (templated) return []
      return [{
        group: `${group.tenant}/${group.name}`, storagePool, template, bridge,
        ...(vlanTag === undefined ? {} : { vlanTag }),
        ...(pool === undefined ? {} : { pool })
      }]
    })
    .sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0))
  const byBridge = new Map<string, Array<string>>()
  for (const [pool, subnets] of Object.entries(config.shard.subnetPools)) {
    for (const id of subnets) {
      const subnet = parseSubnetId(id)
      if (Either.isRight(subnet)) byBridge.set(subnet.right.bridge, [...(byBridge.get(subnet.right.bridge) ?? []), pool])
    }
  }
  const poolBridges = [...byBridge].sort(([a], [b]) => (a < b ? -1 : 1)).map(([bridge, pools]) => ({ bridge, pools: [...new Set(pools)].sort() }))
  return { isoStorage: config.shard.infra.options.cloudInitIsoStorage, groups, poolBridges }
}

/** Two configs with the same needs need no second preflight. */
export const needsKey = (needs: ShardNeeds): string => JSON.stringify(needs)

// ---------------------------------------------------------------------------------------------------------
// What the reads found

/** A read's answer, or the one-line error of the call that failed (`GET /nodes/pve2/storage: 595 …`). */
export type Read<A> = Either.Either<A, string>

export interface NodeFacts {
  readonly node: string
  readonly status: string
  /** `GET /nodes/{node}/storage`; absent for a node that is not online (not asked). */
  readonly storages?: Read<ReadonlyArray<StorageEntry>>
  /** `GET /nodes/{node}/network?type=any_bridge`; absent for a node that is not online. */
  readonly bridges?: Read<ReadonlyArray<NetworkInterface>>
}

/** A VM of `/cluster/resources?type=vm`, as far as templates go. */
export interface VmFact {
  readonly vmid: number
  readonly node: string
  readonly name?: string | undefined
  readonly template: boolean
  readonly pool?: string | undefined
}

export interface ClusterFacts {
  readonly version: Read<PveVersion>
  readonly permissions: Read<Permissions>
  readonly nodes: Read<ReadonlyArray<NodeFacts>>
  readonly vms: Read<ReadonlyArray<VmFact>>
}

// ---------------------------------------------------------------------------------------------------------
// The report

export type Severity = "error" | "warning"

export interface Finding {
  readonly severity: Severity
  /** One line naming what it is about (node, storage, bridge, template, privilege) and what follows from it. */
  readonly message: string
}

export interface PreflightReport {
  /** PVE's version as `GET /version` answered it, if it did. */
  readonly version: string | undefined
  /** Errors first, then warnings; in a stable order, so two runs with the same facts give the same list. */
  readonly findings: ReadonlyArray<Finding>
  /** Group (`tenant/group`) → node → why that node cannot take the group's VMs. Groups without such nodes are absent. */
  readonly unfit: Readonly<Record<string, Readonly<Record<string, string>>>>
}

/** The PVE release this build is checked against; older ones get a warning (and no SDN.Use check, which PVE 7 does not make). */
export const OLDEST_TESTED_PVE = { major: 8, minor: 0 }

const list = (items: ReadonlyArray<string>) => items.join(", ")

/** `pve1, pve2` or `every node (pve1, pve2, pve3)` — where a problem was seen. */
const where = (nodes: ReadonlyArray<string>, of: ReadonlyArray<string>) =>
  nodes.length === of.length && of.length > 1 ? `every node (${list(nodes)})` : list(nodes)

/** A problem seen on some nodes; reported once, with every node it was seen on. */
interface NodeProblem {
  readonly key: string
  /** The line without its nodes: `storage X (StoragePool of a/b) is not available on` + nodes. */
  readonly text: (nodes: string) => string
  /** Groups whose VMs cannot go to the node because of it, and how placement says why. */
  readonly groups: ReadonlyArray<string>
  readonly reason: string
  /** The nodes on which this kind of fact was read: a problem on all of them is an error. */
  readonly checked: ReadonlyArray<string>
}

const versionFindings = (version: Read<PveVersion>): ReadonlyArray<Finding> => {
  if (Either.isLeft(version)) return [{ severity: "error", message: `cannot reach PVE: ${version.left}` }]
  const match = /^(\d+)\.(\d+)/.exec(version.right.version)
  if (match === null) return [{ severity: "warning", message: `PVE version ${JSON.stringify(version.right.version)} is not a release number nstance knows; nothing is assumed about it` }]
  const [major, minor] = [Number(match[1]), Number(match[2])]
  return major < OLDEST_TESTED_PVE.major || (major === OLDEST_TESTED_PVE.major && minor < OLDEST_TESTED_PVE.minor)
    ? [{ severity: "warning", message: `PVE ${version.right.version} is older than ${OLDEST_TESTED_PVE.major}.${OLDEST_TESTED_PVE.minor}, the oldest release nstance is checked against` }]
    : []
}

const sdnChecked = (version: Read<PveVersion>): boolean => {
  if (Either.isLeft(version)) return true
  const major = Number(/^(\d+)\./.exec(version.right.version)?.[1] ?? Number.NaN)
  return !(major < 8)
}

const contentOf = (entry: StorageEntry) => entry.content.split(",").map((c) => c.trim()).filter((c) => c !== "")

/** Whose storage it is: `StoragePool of shop/web, shop/api` or `cloud_init_iso_storage`. */
const storageRole = (role: string, groups: ReadonlyArray<string>) => (groups.length === 0 ? role : `${role} of ${list(groups)}`)

/** Problems of one storage on one node: missing, disabled or inactive, or without the content type nstance puts there. */
const storageProblems = (
  node: string, entries: ReadonlyArray<StorageEntry>, storage: string, content: "images" | "iso", role: string, groups: ReadonlyArray<string>, checked: ReadonlyArray<string>
): ReadonlyArray<NodeProblem & { readonly node: string }> => {
  const who = storageRole(role, groups)
  const entry = entries.find((e) => e.storage === storage)
  if (entry === undefined) {
    return [{ node, key: `storage-missing:${role}:${storage}`, text: (nodes) => `storage ${storage} (${who}) is not available on ${nodes}`, groups, reason: `no storage ${storage}`, checked }]
  }
  if (entry.enabled === false || entry.active === false) {
    return [{ node, key: `storage-inactive:${role}:${storage}`, text: (nodes) => `storage ${storage} (${who}) is not active on ${nodes}`, groups, reason: `storage ${storage} is not active`, checked }]
  }
  if (!contentOf(entry).includes(content)) {
    const what = content === "images" ? "disk images" : "ISO images"
    return [{
      node, key: `storage-content:${role}:${storage}`, groups, checked, reason: `storage ${storage} has no ${content} content`,
      text: (nodes) => `storage ${storage} (${who}) on ${nodes} does not take ${what}: its content is ${entry.content || "empty"}, ${content} is needed`
    }]
  }
  return []
}

/** Judges `facts` against `needs`. */
export const evaluatePreflight = (needs: ShardNeeds, facts: ClusterFacts): PreflightReport => {
  // Nothing answered (PVE away, the token refused): one line, not one per call that failed the same way.
  if (Either.isLeft(facts.version) && Either.isLeft(facts.permissions) && Either.isLeft(facts.nodes) && Either.isLeft(facts.vms)) {
    return { version: undefined, findings: [{ severity: "error", message: `cannot reach PVE: ${facts.version.left}` }], unfit: {} }
  }
  const errors: Array<Finding> = []
  const warnings: Array<Finding> = []
  const add = (finding: Finding) => (finding.severity === "error" ? errors : warnings).push(finding)
  versionFindings(facts.version).forEach(add)

  const nodes = Either.getOrElse(facts.nodes, () => [])
  if (Either.isLeft(facts.nodes)) add({ severity: "error", message: `cannot list the nodes: ${facts.nodes.left}` })
  else if (nodes.length === 0) add({ severity: "error", message: "GET /cluster/resources lists no node: the token sees none (it needs Sys.Audit on /nodes)" })
  const online = nodes.filter((n) => n.status === "online").map((n) => n.node).sort()
  for (const n of nodes) if (n.status !== "online") add({ severity: "warning", message: `node ${n.node} is ${n.status}: not checked (placement skips it while it is not online)` })

  // ---- per node: storages, bridges, templates ----
  const problems: Array<NodeProblem & { readonly node: string }> = []
  const readOf = <A>(pick: (n: NodeFacts) => Read<A> | undefined, what: string): ReadonlyArray<{ readonly node: string; readonly value: A }> =>
    nodes.flatMap((n) => {
      const read = pick(n)
      if (read === undefined) return []
      if (Either.isLeft(read)) {
        add({ severity: "warning", message: `node ${n.node}: ${what} not checked: ${read.left}` })
        return []
      }
      return [{ node: n.node, value: read.right }]
    })
  const storagesRead = readOf((n) => n.storages, "storages")
  const storageChecked = storagesRead.map((r) => r.node)
  const storagePools = [...new Set(needs.groups.map((g) => g.storagePool))].sort()
  const allGroups = needs.groups.map((g) => g.group)
  for (const { node, value } of storagesRead) {
    for (const storage of storagePools) {
      const groups = needs.groups.filter((g) => g.storagePool === storage).map((g) => g.group)
      problems.push(...storageProblems(node, value, storage, "images", "StoragePool", groups, storageChecked))
    }
    problems.push(...storageProblems(node, value, needs.isoStorage, "iso", "cloud_init_iso_storage", [], storageChecked).map((p) => ({ ...p, groups: allGroups })))
  }
  const bridgesRead = readOf((n) => n.bridges, "bridges")
  const bridgeChecked = bridgesRead.map((r) => r.node)
  const bridges = [...new Set([...needs.groups.map((g) => g.bridge), ...needs.poolBridges.map((b) => b.bridge)])].sort()
  for (const { node, value } of bridgesRead) {
    const present = new Set(value.map((iface) => iface.iface))
    for (const bridge of bridges) {
      if (present.has(bridge)) continue
      const groups = needs.groups.filter((g) => g.bridge === bridge).map((g) => g.group)
      const pools = needs.poolBridges.find((b) => b.bridge === bridge)?.pools ?? []
      const who = [...pools.map((p) => `subnet pool ${p}`), ...groups].join(", ")
      problems.push({ node, key: `bridge:${bridge}`, text: (on) => `bridge ${bridge} (${who}) does not exist on ${on}`, groups, reason: `no bridge ${bridge}`, checked: bridgeChecked })
    }
  }

  const vms = Either.getOrElse(facts.vms, () => [])
  if (Either.isLeft(facts.vms)) add({ severity: "warning", message: `templates not checked: ${facts.vms.left}` })
  const templateChecked = Either.isRight(facts.vms) ? online : []
  const templates: Array<{ readonly vmid: number; readonly pool?: string | undefined }> = []
  const byTemplate = new Map<string, Array<GroupNeeds>>()
  for (const group of needs.groups) {
    const key = "vmid" in group.template ? `vmid:${group.template.vmid}` : `name:${group.template.name}`
    byTemplate.set(key, [...(byTemplate.get(key) ?? []), group])
  }
  if (Either.isRight(facts.vms)) {
    for (const groupsOf of byTemplate.values()) {
      const template = groupsOf[0]!.template
      const names = groupsOf.map((g) => g.group)
      if ("vmid" in template) {
        const vm = vms.find((v) => v.vmid === template.vmid)
        if (vm === undefined) add({ severity: "error", message: `template VMID ${template.vmid} (TemplateVMID of ${list(names)}) does not exist in the cluster` })
        else if (!vm.template) add({ severity: "error", message: `VM ${template.vmid}${vm.name === undefined ? "" : ` (${vm.name})`} on ${vm.node} (TemplateVMID of ${list(names)}) is not a template` })
        else templates.push({ vmid: vm.vmid, pool: vm.pool })
        continue
      }
      for (const node of online) {
        const found = vms.filter((v) => v.template && v.node === node && v.name === template.name)
        if (found.length === 1) {
          templates.push({ vmid: found[0]!.vmid, pool: found[0]!.pool })
          continue
        }
        problems.push(found.length === 0
          ? { node, key: `template-missing:${template.name}`, text: (on) => `template ${template.name} (TemplateName of ${list(names)}) is missing on ${on}`, groups: names, reason: `no template named ${template.name}`, checked: templateChecked }
          : {
            node, key: `template-ambiguous:${template.name}:${node}`, groups: names, checked: templateChecked, reason: `${found.length} templates named ${template.name}`,
            text: (on) => `${found.length} templates named ${template.name} (TemplateName of ${list(names)}) on ${on} (VMIDs ${found.map((v) => v.vmid).join(", ")}); exactly one is required`
          })
      }
    }
  }

  // ---- node problems: one line each, on every node seen; per group, the nodes placement must skip ----
  const unfit: Record<string, Record<string, string>> = {}
  const grouped = new Map<string, Array<NodeProblem & { readonly node: string }>>()
  for (const problem of problems) grouped.set(problem.key, [...(grouped.get(problem.key) ?? []), problem])
  const fatalFor = new Set<string>()
  for (const seen of grouped.values()) {
    const first = seen[0]!
    const on = [...new Set(seen.map((p) => p.node))].sort()
    const everywhere = first.checked.length > 0 && first.checked.every((node) => on.includes(node))
    add({ severity: everywhere ? "error" : "warning", message: first.text(where(on, first.checked)) })
    if (everywhere) for (const group of first.groups) fatalFor.add(group)
    for (const problem of seen) {
      for (const group of problem.groups) {
        const reasons = (unfit[group] ??= {})
        reasons[problem.node] = reasons[problem.node] === undefined ? problem.reason : `${reasons[problem.node]}; ${problem.reason}`
      }
    }
  }
  // A group may have lost every node to different problems, none of them everywhere: say that it cannot go anywhere.
  for (const group of allGroups) {
    const reasons = unfit[group] ?? {}
    if (online.length === 0 || fatalFor.has(group) || !online.every((node) => reasons[node] !== undefined)) continue
    add({ severity: "error", message: `group ${group} has no node with everything it needs: ${online.map((node) => `${node}: ${reasons[node]}`).join("; ")}` })
  }

  const isoEntries = storagesRead.flatMap(({ value }) => value.filter((e) => e.storage === needs.isoStorage && contentOf(e).includes("iso")))
  if (isoEntries.length > 0 && isoEntries.some((e) => e.shared !== true)) {
    add({
      severity: "warning",
      message: `storage ${needs.isoStorage} (cloud_init_iso_storage) is node-local, not shared: each VM's cloud-init ISO stays on its node, which blocks live migration and HA of nstance's VMs; use a shared storage with iso content`
    })
  }

  // ---- privileges ----
  if (Either.isLeft(facts.permissions)) add({ severity: "error", message: `privileges not checked: ${facts.permissions.left}` })
  else {
    const missing = missingPrivileges(facts.permissions.right, privilegeNeeds({
      nodes: nodes.map((n) => n.node).sort(),
      pools: needs.groups.map((g) => g.pool),
      templates,
      storagePools,
      isoStorage: needs.isoStorage,
      bridges: needs.groups.map((g) => ({ bridge: g.bridge, vlanTag: g.vlanTag })),
      checkSdn: sdnChecked(facts.version)
    }))
    const byPrivilege = new Map<string, Array<string>>()
    for (const need of missing) byPrivilege.set(need.privilege, [...(byPrivilege.get(need.privilege) ?? []), describeTargets(need)])
    for (const [privilege, paths] of byPrivilege) {
      add({ severity: "error", message: `the API token lacks ${privilege} on ${list(paths)}: needed to ${PRIVILEGE_USES[privilege] ?? "do its work"}` })
    }
  }

  return { version: Either.isRight(facts.version) ? facts.version.right.version : undefined, findings: [...errors, ...warnings], unfit }
}

/** `✗ …` / `⚠ …`: a finding as the terminal, the log and `/readyz` show it. */
export const formatFinding = (finding: Finding): string => `${finding.severity === "error" ? "✗" : "⚠"} ${finding.message}`

/** `2 errors, 1 warning` (or `no findings`). */
export const summarizeFindings = (findings: ReadonlyArray<Finding>): string => {
  const errors = findings.filter((f) => f.severity === "error").length
  const warnings = findings.length - errors
  if (findings.length === 0) return "no findings"
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`
  return [errors > 0 ? plural(errors, "error") : "", warnings > 0 ? plural(warnings, "warning") : ""].filter((s) => s !== "").join(", ")
}

/** The nodes a group's VMs must not be placed on, with why (empty: none known). */
export const unfitNodesOf = (report: PreflightReport, tenant: string, group: string): ReadonlyMap<string, string> =>
  new Map(Object.entries(report.unfit[`${tenant}/${group}`] ?? {}))
