/**
 * `/cluster/resources` as pvestatd makes it: a snapshot rebuilt on a fixed refresh grid, so a change shows
 * only at the next tick — except nodes going offline, which corosync reports at once.
 */
import { PVE_SECONDS } from "../latency.js"
import { GiB } from "./config.js"
import type { SimCore } from "./core.js"
import { nodeUsage, vmStatus } from "./status.js"

interface ResourcesSnapshot {
  readonly at: number
  readonly items: ReadonlyArray<Readonly<Record<string, unknown>>>
}

export class ResourcesView {
  private snapshot: ResourcesSnapshot | undefined

  constructor(private readonly core: SimCore) {}

  /** Rebuilds the resources view now (tests use this instead of waiting a refresh interval). */
  refresh(): void {
    this.snapshot = { at: this.core.time.now(), items: this.build(this.core.time.now()) }
  }

  /** The view a `/cluster/resources` call sees now. */
  current(): ReadonlyArray<Readonly<Record<string, unknown>>> {
    const interval = this.core.ms(PVE_SECONDS.resourcesRefresh)
    const now = this.core.time.now()
    // Refresh ticks sit on a fixed grid from start-up, like pvestatd's loop; state changed since the last
    // tick becomes visible at the next one, never earlier.
    const tick = this.core.startedAt + Math.floor((now - this.core.startedAt) / interval) * interval
    if (this.snapshot === undefined || this.snapshot.at < tick) {
      this.snapshot = { at: tick, items: this.build(tick) }
    }
    // Online/offline comes from corosync membership, which is immediate.
    return this.snapshot.items.map((item) => {
      const node = typeof item["node"] === "string" ? this.core.nodes.get(item["node"]) : undefined
      if (node === undefined || node.online) return item
      if (item["type"] === "node") return { ...item, status: "offline", cpu: 0, mem: 0, uptime: 0 }
      return { ...item, status: "unknown" }
    })
  }

  private build(asOf: number): Array<Record<string, unknown>> {
    const items: Array<Record<string, unknown>> = []
    for (const node of this.core.nodes.values()) {
      const usage = nodeUsage(this.core, node)
      items.push({
        id: `node/${node.name}`, type: "node", node: node.name, status: "online",
        cpu: usage.cpu, maxcpu: node.maxcpu, mem: usage.mem, maxmem: node.maxmem,
        disk: 8 * GiB, maxdisk: 100 * GiB, uptime: Math.floor((this.core.time.now() - node.bootedAt) / 1000),
        level: "", "cgroup-mode": 2
      })
    }
    for (const vm of this.core.vms.values()) {
      if (vm.createdAt > asOf) continue
      const st = vmStatus(this.core, vm)
      const item: Record<string, unknown> = {
        // pvestatd records `qmpstatus || status`: a paused guest is listed as paused (status/current says running).
        id: `qemu/${vm.vmid}`, type: "qemu", vmid: vm.vmid, node: vm.node, status: vm.status === "running" && vm.paused ? "paused" : vm.status,
        name: st["name"] ?? "", template: this.core.isTemplate(vm) ? 1 : 0,
        cpu: st["cpu"], maxcpu: st["cpus"], mem: st["mem"], maxmem: st["maxmem"], disk: 0, maxdisk: st["maxdisk"],
        uptime: st["uptime"], netin: st["netin"], netout: st["netout"], diskread: 0, diskwrite: 0
      }
      if (st["tags"] !== undefined) item["tags"] = st["tags"]
      if (st["lock"] !== undefined) item["lock"] = st["lock"]
      const pool = vm.config.get("pool")
      if (pool !== undefined) item["pool"] = pool
      items.push(item)
    }
    for (const node of this.core.nodes.values()) {
      for (const s of this.core.storages.values()) {
        const used = this.core.volumesOn(node.name, s.id).reduce((sum, v) => sum + v.size, 0)
        items.push({
          id: `storage/${node.name}/${s.id}`, type: "storage", storage: s.id, node: node.name, status: "available",
          content: s.content.join(","), plugintype: s.type, shared: s.shared ? 1 : 0, disk: used, maxdisk: s.total
        })
      }
    }
    return items
  }
}
