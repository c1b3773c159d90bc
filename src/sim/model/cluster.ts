/**
 * Cluster-wide endpoints: version, permissions (the token's privileges from the model's ACL, as
 * pve-access-control computes them), `/cluster/status` (quorum from the online nodes), `/cluster/resources`,
 * `/cluster/nextid` (with the scripted race where another client takes the ID just answered) and a node's status.
 */
import { GiB } from "./config.js"
import type { SimCore } from "./core.js"
import type { ResourcesView } from "./resources.js"
import { type Handler, paramError, type SimAcl } from "./state.js"
import { nodeUsage } from "./status.js"

/** The top-level paths `get_effective_permissions` always evaluates, besides those named by ACLs. */
const DEFAULT_ACL_PATHS = ["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"]

/** `/vms/100` → `/`, `/vms`, `/vms/100`. */
const pathChain = (path: string): ReadonlyArray<string> => {
  const parts = path.split("/").filter((part) => part !== "")
  return ["/", ...parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`)]
}

/**
 * `permissions($token, $path)`: walking down from `/`, the deepest ACL on the way replaces what came
 * before it; above `path` itself only privileges that propagate count. Privilege → propagate flag.
 */
export const effectivePrivileges = (acl: SimAcl, path: string): ReadonlyMap<string, boolean> => {
  const chain = pathChain(path)
  let privileges: ReadonlyMap<string, boolean> = new Map()
  chain.forEach((at, index) => {
    const entry = acl.get(at)
    if (entry !== undefined) privileges = new Map([...entry].filter(([, propagate]) => propagate || index === chain.length - 1))
  })
  return privileges
}

const asAnswer = (privileges: ReadonlyMap<string, boolean>) => Object.fromEntries([...privileges].map(([name, propagate]) => [name, propagate ? 1 : 0]))

export const lowestFreeVmid = (core: SimCore): number => {
  let id = 100
  while (core.vms.has(id)) id++
  return id
}

/** Another user's VM appearing at `vmid` (the losing side of a nextid race). */
export const createForeignVm = (core: SimCore, node: string, vmid: number): void => {
  if (core.vms.has(vmid)) return
  core.vms.set(vmid, {
    vmid, node, status: "stopped", paused: false, startedAt: undefined, pid: undefined, createdAt: core.time.now(),
    config: new Map([["cores", "1"], ["memory", "512"], ["name", `foreign-${vmid}`]])
  })
}

export const clusterRoutes = (core: SimCore, resources: ResourcesView): Readonly<Record<string, Handler>> => ({
  "GET /version": async () => ({ ...core.pveVersion }),

  // With `path`: that path's privileges; without: every default path and every ACL path, empty ones left out.
  "GET /access/permissions": async (p) => {
    const path = p["path"]
    if (path !== undefined) return path.startsWith("/") ? { [path]: asAnswer(effectivePrivileges(core.acl, path)) } : {}
    const paths = new Set([...DEFAULT_ACL_PATHS, ...core.acl.keys()])
    return Object.fromEntries([...paths].flatMap((at) => {
      const privileges = effectivePrivileges(core.acl, at)
      return privileges.size === 0 ? [] : [[at, asAnswer(privileges)]]
    }))
  },

  "GET /cluster/status": async () => {
    const nodes = [...core.nodes.values()]
    const online = nodes.filter((n) => n.online).length
    return [
      { type: "cluster", id: "cluster", name: "sim", nodes: nodes.length, quorate: online * 2 > nodes.length ? 1 : 0, version: nodes.length + 2 },
      ...nodes.map((n, i) => ({
        type: "node", id: `node/${n.name}`, name: n.name, nodeid: n.nodeid, ip: n.ip, online: n.online ? 1 : 0,
        local: i === 0 ? 1 : 0, level: ""
      }))
    ]
  },

  "GET /cluster/resources": async (p) => {
    const type = p["type"]
    const items = resources.current()
    if (type === undefined) return items
    const wanted = type === "vm" ? ["qemu", "lxc"] : [type]
    return items.filter((item) => typeof item["type"] === "string" && wanted.includes(item["type"]))
  },

  "GET /cluster/nextid": async (p) => {
    const asked = p["vmid"]
    if (asked !== undefined) {
      const vmid = Number(asked)
      if (core.vms.has(vmid)) throw paramError({ vmid: `VM ${vmid} already exists` })
      return String(vmid)
    }
    const id = lowestFreeVmid(core)
    if (core.faults.nextidRaceFires()) {
      const node = [...core.nodes.values()].find((n) => n.online)?.name ?? "pve1"
      // Another client's clone lands on the same ID a moment after we answered.
      core.faults.recordRace(id)
      setImmediate(() => createForeignVm(core, node, id))
    }
    return String(id)
  },

  "GET /nodes/{node}/status": async (p) => {
    const node = core.onlineNode(p)
    const usage = nodeUsage(core, node)
    return {
      cpu: usage.cpu,
      cpuinfo: { cores: node.maxcpu / 2, cpus: node.maxcpu, sockets: 1, model: "Simulated CPU @ 3.00GHz", mhz: "3000.000", hvm: "1", flags: "" },
      memory: { total: node.maxmem, used: usage.mem, free: node.maxmem - usage.mem, available: node.maxmem - usage.mem },
      swap: { total: 8 * GiB, used: 0, free: 8 * GiB },
      rootfs: { total: 100 * GiB, used: 8 * GiB, free: 92 * GiB, avail: 92 * GiB },
      ksm: { shared: 0 },
      uptime: Math.floor((core.time.now() - node.bootedAt) / 1000),
      loadavg: [(usage.cpu * node.maxcpu).toFixed(2), "0.50", "0.40"],
      idle: 0,
      wait: 0.001,
      kversion: "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2",
      pveversion: "pve-manager/9.0.10/deadbeef",
      "current-kernel": { sysname: "Linux", release: "6.14.8-2-pve", version: "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2", machine: "x86_64" },
      "boot-info": { mode: "efi", secureboot: 0 }
    }
  }
})
