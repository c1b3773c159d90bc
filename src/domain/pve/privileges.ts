/**
 * The PVE privileges nstance's API token needs, each on the ACL path a call checks it on, and whether an
 * answer of `GET /access/permissions` grants them. The privileges are the integration guide's table, no
 * more; the paths are the `permissions` checks of the official API schema for the calls nstance makes
 * (`src/sim/pve-api/schema.json`), so a missing privilege is named with the path an operator grants it on.
 */
import type { Permissions } from "./schemas.js"

/** Why nstance needs a privilege: what fails without it, and the calls. */
export const PRIVILEGE_USES: Readonly<Record<string, string>> = {
  "Sys.Audit": "read node usage for placement (GET /cluster/resources, GET /nodes/{node}/status)",
  "VM.Allocate": "create VMs by cloning and delete them (POST /nodes/{node}/qemu/{vmid}/clone, DELETE /nodes/{node}/qemu/{vmid})",
  "VM.Audit": "read VMs, their status and config (GET /nodes/{node}/qemu, …/status/current, …/config)",
  "VM.Clone": "clone the template (POST /nodes/{node}/qemu/{vmid}/clone)",
  "VM.PowerMgmt": "start and stop VMs (POST …/status/start, …/status/shutdown, …/status/stop)",
  "VM.Config.CPU": "set the VMs' cores (POST …/config)",
  "VM.Config.Memory": "set the VMs' memory (POST …/config)",
  "VM.Config.Network": "set the VMs' net0 (POST …/config)",
  "VM.Config.Disk": "set the boot order and grow the disk (POST …/config, PUT …/resize)",
  "VM.Config.CDROM": "attach the cloud-init ISO as ide2 (POST …/config)",
  "VM.Config.Options": "set tags, notes and start-on-boot (POST …/config)",
  "Datastore.Audit": "list the cloud-init ISOs (GET /nodes/{node}/storage/{storage}/content)",
  "Datastore.Allocate": "delete cloud-init ISOs (DELETE /nodes/{node}/storage/{storage}/content/{volume})",
  "Datastore.AllocateSpace": "allocate the clones' disks (POST …/clone with storage)",
  "Datastore.AllocateTemplate": "upload cloud-init ISOs (POST /nodes/{node}/storage/{storage}/upload)",
  "SDN.Use": "attach VMs to the bridge (net0 of POST …/config; PVE 8 and later)"
}

/** The VM privileges checked on every new VM (`/vms/{newid}`, or its pool). */
export const NEW_VM_PRIVILEGES = [
  "VM.Allocate", "VM.Audit", "VM.PowerMgmt", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
  "VM.Config.Disk", "VM.Config.CDROM", "VM.Config.Options"
] as const

/**
 * Where a privilege must hold: `path` as an operator writes it in an ACL. `below`: on paths under it that
 * do not exist yet (the VMIDs of VMs still to be created), so it must propagate from `path` or above.
 */
export interface AclTarget {
  readonly path: string
  readonly below?: boolean
}

/** One privilege nstance needs, satisfied on any of `anyOf` (PVE's `or` checks: a VM's own path or its pool's). */
export interface PrivilegeNeed {
  readonly privilege: string
  readonly anyOf: ReadonlyArray<AclTarget>
}

/** What nstance's calls touch, for the paths of its privileges. */
export interface PrivilegeScope {
  readonly nodes: ReadonlyArray<string>
  /** The `Pool` arg of each group (undefined: none); a VM in a pool may be allowed by the pool's ACL instead. */
  readonly pools: ReadonlyArray<string | undefined>
  /** The templates groups clone, with the pool each is in (if any). */
  readonly templates: ReadonlyArray<{ readonly vmid: number; readonly pool?: string | undefined }>
  readonly storagePools: ReadonlyArray<string>
  readonly isoStorage: string
  /** Bridges groups attach VMs to, with their VLAN (SDN.Use on a bridge or on one of its VLANs both do). */
  readonly bridges: ReadonlyArray<{ readonly bridge: string; readonly vlanTag?: number | undefined }>
  /** PVE checks SDN.Use on bridges since 8.0. */
  readonly checkSdn: boolean
}

const unique = <A>(items: ReadonlyArray<A>, key: (a: A) => string): ReadonlyArray<A> => {
  const seen = new Map<string, A>()
  for (const item of items) if (!seen.has(key(item))) seen.set(key(item), item)
  return [...seen.values()]
}

/** Every privilege the shard's calls need, on its paths. */
export const privilegeNeeds = (scope: PrivilegeScope): ReadonlyArray<PrivilegeNeed> => {
  const needs: Array<PrivilegeNeed> = []
  const nodes = scope.nodes.length > 0 ? scope.nodes.map((node) => ({ path: `/nodes/${node}` })) : [{ path: "/nodes", below: true }]
  for (const target of nodes) needs.push({ privilege: "Sys.Audit", anyOf: [target] })
  for (const pool of unique(scope.pools, (p) => p ?? "")) {
    const anyOf = pool === undefined ? [{ path: "/vms", below: true }] : [{ path: "/vms", below: true }, { path: `/pool/${pool}` }]
    for (const privilege of NEW_VM_PRIVILEGES) needs.push({ privilege, anyOf })
  }
  for (const template of unique(scope.templates, (t) => String(t.vmid))) {
    needs.push({ privilege: "VM.Clone", anyOf: [{ path: `/vms/${template.vmid}` }, ...(template.pool === undefined ? [] : [{ path: `/pool/${template.pool}` }])] })
  }
  for (const storage of [...new Set(scope.storagePools)]) needs.push({ privilege: "Datastore.AllocateSpace", anyOf: [{ path: `/storage/${storage}` }] })
  const iso = { path: `/storage/${scope.isoStorage}` }
  needs.push({ privilege: "Datastore.AllocateTemplate", anyOf: [iso] }, { privilege: "Datastore.Allocate", anyOf: [iso] }, { privilege: "Datastore.Audit", anyOf: [iso] })
  if (scope.checkSdn) {
    for (const { bridge, vlanTag } of unique(scope.bridges, (b) => `${b.bridge}.${b.vlanTag ?? ""}`)) {
      const path = `/sdn/zones/localnetwork/${bridge}`
      needs.push({ privilege: "SDN.Use", anyOf: [{ path }, ...(vlanTag === undefined ? [] : [{ path: `${path}/${vlanTag}` }])] })
    }
  }
  return needs
}

/** Paths `get_effective_permissions` always evaluates: absent from its answer means no privilege there at all. */
const ALWAYS_LISTED = new Set(["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"])

/** `/vms/100` → `/vms/100`, `/vms`, `/`. */
const deepestFirst = (path: string): ReadonlyArray<string> => {
  const parts = path.split("/").filter((part) => part !== "")
  return [...parts.map((_, i) => `/${parts.slice(0, parts.length - i).join("/")}`), "/"]
}

/**
 * Whether a `GET /access/permissions` answer (the token's effective privileges on every path an ACL or PVE
 * names) grants `privilege` on `target`. A path the answer lists holds its own privileges; one it does not
 * list inherits from its nearest listed ancestor what propagates. An ACL that takes privileges away on an
 * unlisted path cannot be told from the answer (PVE leaves paths without privileges out).
 */
export const grants = (permissions: Permissions, target: AclTarget, privilege: string): boolean => {
  for (const at of deepestFirst(target.path)) {
    const entry = permissions[at]
    if (entry !== undefined) return at === target.path && target.below !== true ? Object.hasOwn(entry, privilege) : entry[privilege] === true
    if (ALWAYS_LISTED.has(at)) return false
  }
  return false
}

/** The needs `permissions` does not meet. */
export const missingPrivileges = (permissions: Permissions, needs: ReadonlyArray<PrivilegeNeed>): ReadonlyArray<PrivilegeNeed> =>
  needs.filter((need) => !need.anyOf.some((target) => grants(permissions, target, need.privilege)))

/** `/vms (or /pool/web)` — how a need's paths read in a finding. */
export const describeTargets = (need: PrivilegeNeed): string => need.anyOf.map((target) => target.path).join(" or ")
