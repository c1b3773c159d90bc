/**
 * What PVE reports about nodes and VMs: node memory and CPU as the running VMs make them, and the fields of
 * PVE's `vmstatus` shared by the VM list, `status/current` and `/cluster/resources`; config values typed as
 * the GET answers type them.
 */
import { coresOf, isCdrom, memoryMiB, MiB, parseDrive, parseSize } from "./config.js"
import type { SimCore } from "./core.js"
import type { SimNode, SimVm } from "./state.js"

const runningVms = (core: SimCore, node: string): Array<SimVm> => {
  return [...core.vms.values()].filter((vm) => vm.node === node && vm.status === "running")
}

/** Node memory and CPU as the VMs on it make them. */
export const nodeUsage = (core: SimCore, node: SimNode): { readonly mem: number; readonly cpu: number } => {
  const running = runningVms(core, node.name)
  const mem = node.baseMem + running.reduce((sum, vm) => sum + memoryMiB(vm.config) * MiB, 0)
  const cpu = Math.min(1, node.baseCpu + running.reduce((sum, vm) => sum + (vm.paused ? 0 : coresOf(vm.config) * 0.03), 0) / node.maxcpu)
  return { mem: Math.min(mem, node.maxmem), cpu }
}

const vmDiskSize = (vm: SimVm): number => {
  for (const [key, value] of vm.config) {
    if (!/^(?:scsi|virtio|sata|ide)\d+$/.test(key) || isCdrom(value)) continue
    const size = parseSize(parseDrive(value).opts.get("size") ?? "")
    if (size !== undefined) return size
  }
  return 0
}

const vmUptime = (core: SimCore, vm: SimVm): number => {
  return vm.status === "running" && vm.startedAt !== undefined ? Math.floor((core.time.now() - vm.startedAt) / 1000) : 0
}

// Deterministic per VM: drawing from the PRNG here would make status polling shift later random draws.
const vmCpu = (vm: SimVm): number => {
  return vm.status === "running" && !vm.paused ? 0.02 + ((vm.vmid * 7919) % 30) / 1000 : 0
}

/** Fields common to `/nodes/{node}/qemu` items and `status/current` (PVE's vmstatus). */
export const vmStatus = (core: SimCore, vm: SimVm): Record<string, unknown> => {
  const maxmem = memoryMiB(vm.config) * MiB
  const running = vm.status === "running"
  const out: Record<string, unknown> = {
    vmid: vm.vmid,
    status: vm.status,
    name: vm.config.get("name") ?? `VM ${vm.vmid}`,
    cpus: Math.min(coresOf(vm.config), core.nodes.get(vm.node)?.maxcpu ?? 1),
    maxmem,
    mem: running ? Math.round(maxmem * 0.4) : 0,
    maxdisk: vmDiskSize(vm),
    disk: 0,
    cpu: vmCpu(vm),
    uptime: vmUptime(core, vm),
    netin: running ? 1500 : 0,
    netout: running ? 300 : 0,
    diskread: 0,
    diskwrite: 0
  }
  const tags = vm.config.get("tags")
  if (tags !== undefined) out["tags"] = tags
  const lock = vm.config.get("lock")
  if (lock !== undefined) out["lock"] = lock
  if (core.isTemplate(vm)) out["template"] = 1
  if (running && vm.pid !== undefined) out["pid"] = vm.pid
  if (vm.config.get("serial0") !== undefined) out["serial"] = 1
  return out
}

/** A config value typed as PVE's GET answers it: integer/boolean/number keys as JSON numbers. */
export const typedConfigValue = (core: SimCore, key: string, value: string): unknown => {
  const spec = core.options.configSpecs[key] ?? core.options.configSpecs[key.replace(/\d+$/, "[n]")]
  if (spec !== undefined && (spec.type === "integer" || spec.type === "boolean" || spec.type === "number")) {
    const n = Number(value)
    return Number.isFinite(n) ? n : value
  }
  return value
}
