/**
 * The preflight's judgement, pure: a shard config's needs against hand-made cluster facts — each finding
 * (privileges named with their ACL path, storages, ISO content, a node-local ISO storage, bridges, templates,
 * the PVE version, reads that failed) with its severity, and the nodes each group must not be placed on.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { type ClusterFacts, evaluatePreflight, type NodeFacts, shardNeeds, unfitNodesOf } from "../../src/domain/pve/preflight.js"
import { grants, NEW_VM_PRIVILEGES, privilegeNeeds } from "../../src/domain/pve/privileges.js"
import type { NetworkInterface, Permissions, StorageEntry } from "../../src/domain/pve/schemas.js"
import { parseConfig, shardConfigText } from "../support/shardConfig.js"

/** The simulated worlds' config: group shop/web, StoragePool local-lvm, TemplateName debian-13-template, bridge vmbr1, ISOs on local. */
const config = (change: (text: string) => string = (text) => text) =>
  parseConfig(change(shardConfigText({
    title: "preflight test", gcInterval: "1m", registrationTimeout: "5m", greeting: "hi",
    groups: [{ group: "web", kind: "web", cpu: 1, memoryMiB: 512, diskGiB: 4, size: 2 }]
  }))).config
const needs = shardNeeds(config())

/** The privileges of the integration guide's table: what nstance asks of its token, no more. */
const GUIDE_PRIVILEGES = [
  "Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.PowerMgmt", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
  "VM.Config.Disk", "VM.Config.CDROM", "VM.Config.Options", "Datastore.Audit", "Datastore.Allocate", "Datastore.AllocateSpace",
  "Datastore.AllocateTemplate", "SDN.Use"
]

/** PVE's answer for a token with `privileges` on `/` (propagated): every default path lists them. */
const grantedOnRoot = (privileges: ReadonlyArray<string>): Permissions => {
  const all = Object.fromEntries(privileges.map((p) => [p, true]))
  return Object.fromEntries(["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"].map((path) => [path, all]))
}

const storage = (id: string, content: string, extra: Partial<StorageEntry> = {}): StorageEntry =>
  ({ storage: id, type: "dir", content, enabled: true, active: true, shared: false, ...extra })
const STORAGES = [storage("local", "iso,vztmpl,backup"), storage("local-lvm", "images,rootdir")]
const bridges = (...names: ReadonlyArray<string>): ReadonlyArray<NetworkInterface> => names.map((iface) => ({ iface, type: "bridge" }))
const node = (name: string, change: Partial<NodeFacts> = {}): NodeFacts =>
  ({ node: name, status: "online", storages: Either.right(STORAGES), bridges: Either.right(bridges("vmbr0", "vmbr1")), ...change })
const TEMPLATES = [9000, 9001, 9002].map((vmid, i) => ({ vmid, node: `pve${i + 1}`, name: "debian-13-template", template: true }))

const facts = (change: Partial<ClusterFacts> = {}): ClusterFacts => ({
  version: Either.right({ version: "9.0.10", release: "9.0" }),
  permissions: Either.right(grantedOnRoot(GUIDE_PRIVILEGES)),
  nodes: Either.right([node("pve1"), node("pve2"), node("pve3")]),
  vms: Either.right(TEMPLATES),
  ...change
})

const NODE_LOCAL_ISO = "storage local (cloud_init_iso_storage) is node-local, not shared: each VM's cloud-init ISO stays on its node, " +
  "which blocks live migration and HA of nstance's VMs; use a shared storage with iso content"

const lines = (report: ReturnType<typeof evaluatePreflight>) => report.findings.map((f) => `${f.severity}: ${f.message}`)

describe("preflight: what the shard needs", () => {
  it("reads the groups' storage, template, bridge and the ISO storage from the config", () => {
    expect(needs).toEqual({
      isoStorage: "local",
      groups: [{ group: "shop/web", storagePool: "local-lvm", template: { name: "debian-13-template" }, bridge: "vmbr1" }],
      poolBridges: [{ bridge: "vmbr1", pools: ["edge"] }]
    })
  })

  it("needs exactly the privileges of the integration guide's table", () => {
    const privileges = privilegeNeeds({
      nodes: ["pve1"], pools: [undefined], templates: [{ vmid: 9000 }], storagePools: ["local-lvm"], isoStorage: "local",
      bridges: [{ bridge: "vmbr1" }], checkSdn: true
    }).map((need) => need.privilege)
    expect([...new Set(privileges)].sort()).toEqual([...GUIDE_PRIVILEGES].sort())
  })
})

describe("preflight findings", () => {
  it("a cluster with everything: only the node-local ISO storage warning, no node unfit", () => {
    const report = evaluatePreflight(needs, facts())
    expect(lines(report)).toEqual([`warning: ${NODE_LOCAL_ISO}`])
    expect(report.version).toBe("9.0.10")
    expect(report.unfit).toEqual({})
  })

  it("a shared ISO storage gets no warning", () => {
    const shared = [storage("local", "iso,vztmpl,backup", { shared: true }), storage("local-lvm", "images")]
    const report = evaluatePreflight(needs, facts({ nodes: Either.right(["pve1", "pve2"].map((n) => node(n, { storages: Either.right(shared) }))) }))
    expect(report.findings).toEqual([])
  })

  it.each([
    ["Sys.Audit", "/nodes/pve1, /nodes/pve2, /nodes/pve3", "read node usage for placement"],
    ["VM.Allocate", "/vms", "create VMs by cloning and delete them"],
    ["VM.Audit", "/vms", "read VMs"],
    ["VM.Clone", "/vms/9000, /vms/9001, /vms/9002", "clone the template"],
    ["VM.PowerMgmt", "/vms", "start and stop VMs"],
    ["VM.Config.CPU", "/vms", "set the VMs' cores"],
    ["VM.Config.Memory", "/vms", "set the VMs' memory"],
    ["VM.Config.Network", "/vms", "set the VMs' net0"],
    ["VM.Config.Disk", "/vms", "set the boot order and grow the disk"],
    ["VM.Config.CDROM", "/vms", "attach the cloud-init ISO"],
    ["VM.Config.Options", "/vms", "set tags, notes and start-on-boot"],
    ["Datastore.Audit", "/storage/local", "list the cloud-init ISOs"],
    ["Datastore.Allocate", "/storage/local", "delete cloud-init ISOs"],
    ["Datastore.AllocateSpace", "/storage/local-lvm", "allocate the clones' disks"],
    ["Datastore.AllocateTemplate", "/storage/local", "upload cloud-init ISOs"],
    ["SDN.Use", "/sdn/zones/localnetwork/vmbr1", "attach VMs to the bridge"]
  ])("a token without %s: one error naming it and where it is needed (%s)", (privilege, paths, why) => {
    const permissions = grantedOnRoot(GUIDE_PRIVILEGES.filter((p) => p !== privilege))
    const errors = evaluatePreflight(needs, facts({ permissions: Either.right(permissions) })).findings.filter((f) => f.severity === "error")
    expect(errors).toHaveLength(1)
    expect(errors[0]!.message).toMatch(new RegExp(`^the API token lacks ${privilege.replace(".", "\\.")} on ${paths.replace(/[/.]/g, "\\$&")}: needed to ${why}`))
  })

  it("a privilege given only on one storage or template counts there; a pool's ACL stands in for /vms when the group sets Pool", () => {
    const perms: Permissions = {
      ...grantedOnRoot(GUIDE_PRIVILEGES.filter((p) => p !== "VM.Clone" && !(NEW_VM_PRIVILEGES as ReadonlyArray<string>).includes(p))),
      "/vms/9000": { "VM.Clone": false }, "/vms/9001": { "VM.Clone": true }, "/vms/9002": { "VM.Clone": true },
      "/pool/shop": Object.fromEntries(NEW_VM_PRIVILEGES.map((p) => [p, true]))
    }
    const inPool = shardNeeds(config((text) => text.replace(`"StartOnBoot": true`, `"StartOnBoot": true, "Pool": "shop"`)))
    expect(evaluatePreflight(inPool, facts({ permissions: Either.right(perms) })).findings.filter((f) => f.severity === "error")).toEqual([])
    // Without the pool the new VMs' privileges must come from /vms.
    const errors = evaluatePreflight(needs, facts({ permissions: Either.right(perms) })).findings.filter((f) => f.severity === "error")
    expect(errors.map((f) => f.message.split(":")[0])).toEqual(NEW_VM_PRIVILEGES.map((p) => `the API token lacks ${p} on /vms`))
  })

  it("what PVE lists decides: a privilege that does not propagate stops at its path; a default path missing from the answer holds nothing", () => {
    const perms: Permissions = { "/": { "VM.Allocate": true }, "/vms": { "VM.Allocate": false } }
    expect(grants(perms, { path: "/vms" }, "VM.Allocate")).toBe(true)
    expect(grants(perms, { path: "/vms", below: true }, "VM.Allocate")).toBe(false)
    expect(grants(perms, { path: "/vms/100" }, "VM.Allocate")).toBe(false)
    // `/storage` is always evaluated by PVE: not listed means nothing there, whatever `/` has.
    expect(grants({ "/": { "Datastore.Audit": true } }, { path: "/storage/local" }, "Datastore.Audit")).toBe(false)
    expect(grants({ "/": { "Datastore.Audit": true }, "/storage": { "Datastore.Audit": true } }, { path: "/storage/local" }, "Datastore.Audit")).toBe(true)
  })

  it("a storage missing on one node: a warning naming node and storage, and that node is unfit for the group", () => {
    const report = evaluatePreflight(needs, facts({
      nodes: Either.right([node("pve1"), node("pve2", { storages: Either.right([STORAGES[0]!]) }), node("pve3")])
    }))
    expect(lines(report)).toEqual([
      "warning: storage local-lvm (StoragePool of shop/web) is not available on pve2",
      `warning: ${NODE_LOCAL_ISO}`
    ])
    expect(unfitNodesOf(report, "shop", "web")).toEqual(new Map([["pve2", "no storage local-lvm"]]))
  })

  it("a storage missing on every node is an error; so is an inactive one", () => {
    const missing = evaluatePreflight(needs, facts({ nodes: Either.right(["pve1", "pve2"].map((n) => node(n, { storages: Either.right([STORAGES[0]!]) }))) }))
    expect(lines(missing)[0]).toBe("error: storage local-lvm (StoragePool of shop/web) is not available on every node (pve1, pve2)")
    const inactive = [STORAGES[0]!, storage("local-lvm", "images", { active: false })]
    const report = evaluatePreflight(needs, facts({ nodes: Either.right([node("pve1", { storages: Either.right(inactive) })]) }))
    expect(lines(report)[0]).toBe("error: storage local-lvm (StoragePool of shop/web) is not active on pve1")
  })

  it("a StoragePool without images content is an error", () => {
    const noImages = [STORAGES[0]!, storage("local-lvm", "rootdir")]
    const report = evaluatePreflight(needs, facts({ nodes: Either.right(["pve1", "pve2"].map((n) => node(n, { storages: Either.right(noImages) }))) }))
    expect(lines(report)[0]).toBe(
      "error: storage local-lvm (StoragePool of shop/web) on every node (pve1, pve2) does not take disk images: its content is rootdir, images is needed"
    )
  })

  it("an ISO storage without iso content is an error (and no node-local warning is given for it)", () => {
    const noIso = [storage("local", "vztmpl,backup"), STORAGES[1]!]
    const report = evaluatePreflight(needs, facts({ nodes: Either.right(["pve1", "pve2", "pve3"].map((n) => node(n, { storages: Either.right(noIso) }))) }))
    expect(lines(report)).toEqual([
      "error: storage local (cloud_init_iso_storage) on every node (pve1, pve2, pve3) does not take ISO images: its content is vztmpl,backup, iso is needed"
    ])
    expect(Object.keys(report.unfit["shop/web"] ?? {})).toEqual(["pve1", "pve2", "pve3"])
  })

  it("a template missing on one node: a warning, and only that node is unfit for the group", () => {
    const report = evaluatePreflight(needs, facts({ vms: Either.right(TEMPLATES.filter((t) => t.node !== "pve2")) }))
    expect(lines(report)).toEqual([
      "warning: template debian-13-template (TemplateName of shop/web) is missing on pve2",
      `warning: ${NODE_LOCAL_ISO}`
    ])
    expect(unfitNodesOf(report, "shop", "web")).toEqual(new Map([["pve2", "no template named debian-13-template"]]))
  })

  it("a template missing everywhere, two of one name on a node, a TemplateVMID that is no template", () => {
    const nowhere = evaluatePreflight(needs, facts({ vms: Either.right([]) }))
    expect(lines(nowhere)[0]).toBe("error: template debian-13-template (TemplateName of shop/web) is missing on every node (pve1, pve2, pve3)")
    const twice = evaluatePreflight(needs, facts({ vms: Either.right([...TEMPLATES, { vmid: 9100, node: "pve3", name: "debian-13-template", template: true }]) }))
    expect(lines(twice)[0]).toBe("warning: 2 templates named debian-13-template (TemplateName of shop/web) on pve3 (VMIDs 9002, 9100); exactly one is required")
    expect(unfitNodesOf(twice, "shop", "web").get("pve3")).toBe("2 templates named debian-13-template")
    const byVmid = shardNeeds(config((text) => text.replace(`"TemplateName": "debian-13-template"`, `"TemplateVMID": 150`)))
    const notTemplate = evaluatePreflight(byVmid, facts({ vms: Either.right([...TEMPLATES, { vmid: 150, node: "pve2", name: "app", template: false }]) }))
    expect(lines(notTemplate)[0]).toBe("error: VM 150 (app) on pve2 (TemplateVMID of shop/web) is not a template")
  })

  it("a group whose storage or template is a template expression is left to create time, not judged unfit everywhere", () => {
    const templated = shardNeeds(config((text) => text.replace(`"TemplateName": "debian-13-template"`, `"TemplateName": "debian-{{ .Vars.Release }}-template"`)))
    expect(templated.groups).toEqual([])
    expect(lines(evaluatePreflight(templated, facts({ vms: Either.right([]) }))).filter((line) => line.includes("TemplateName"))).toEqual([])
  })

  it("a bridge missing on one node: a warning naming the bridge and who uses it; the node is unfit", () => {
    const report = evaluatePreflight(needs, facts({ nodes: Either.right([node("pve1"), node("pve2"), node("pve3", { bridges: Either.right(bridges("vmbr0")) })]) }))
    expect(lines(report)[0]).toBe("warning: bridge vmbr1 (subnet pool edge, shop/web) does not exist on pve3")
    expect(unfitNodesOf(report, "shop", "web")).toEqual(new Map([["pve3", "no bridge vmbr1"]]))
  })

  it("a group that lost every node to different problems is an error naming each node's", () => {
    const report = evaluatePreflight(needs, facts({
      nodes: Either.right([node("pve1", { bridges: Either.right(bridges("vmbr0")) }), node("pve2", { storages: Either.right([STORAGES[0]!]) })]),
      vms: Either.right(TEMPLATES)
    }))
    expect(lines(report)[0]).toBe("error: group shop/web has no node with everything it needs: pve1: no bridge vmbr1; pve2: no storage local-lvm")
  })

  it("PVE older than 8.0: a warning, and SDN.Use on bridges (which PVE 7 does not check) is not asked for", () => {
    const permissions = grantedOnRoot(GUIDE_PRIVILEGES.filter((p) => p !== "SDN.Use"))
    const report = evaluatePreflight(needs, facts({ version: Either.right({ version: "7.4-3", release: "7.4" }), permissions: Either.right(permissions) }))
    expect(lines(report)).toEqual([
      "warning: PVE 7.4-3 is older than 8.0, the oldest release nstance is checked against",
      `warning: ${NODE_LOCAL_ISO}`
    ])
  })

  it("PVE not answering at all (or refusing the token): one error, not one per call", () => {
    const down = (call: string) => Either.left(`${call}: 401 authentication failure (unauthorized)`)
    const report = evaluatePreflight(needs, { version: down("GET /version"), permissions: down("GET /access/permissions"), nodes: down("GET /cluster/resources"), vms: down("GET /cluster/resources") })
    expect(lines(report)).toEqual(["error: cannot reach PVE: GET /version: 401 authentication failure (unauthorized)"])
    expect(report.unfit).toEqual({})
  })

  it("reads that failed are said, and decide nothing: the node is not made unfit", () => {
    const report = evaluatePreflight(needs, facts({
      version: Either.left("GET /version: no response ECONNREFUSED (transient, gave up after 2 attempts)"),
      nodes: Either.right([node("pve1"), node("pve2", { storages: Either.left("GET /nodes/pve2/storage: 595 No route to host (transient)") }), { node: "pve3", status: "offline" }])
    }))
    expect(lines(report)).toEqual([
      "error: cannot reach PVE: GET /version: no response ECONNREFUSED (transient, gave up after 2 attempts)",
      "warning: node pve3 is offline: not checked (placement skips it while it is not online)",
      "warning: node pve2: storages not checked: GET /nodes/pve2/storage: 595 No route to host (transient)",
      `warning: ${NODE_LOCAL_ISO}`
    ])
    expect(report.unfit).toEqual({})
  })
})
