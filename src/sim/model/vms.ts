/**
 * The `/nodes/{node}/qemu` endpoints: the VM list, a VM's config and current status as PVE answers them, and
 * the routes to cloning, config changes, resizing and the power/destroy tasks.
 */
import { clone } from "./clone.js"
import { configDigest } from "./config.js"
import type { SimCore } from "./core.js"
import { destroy, start, stop } from "./lifecycle.js"
import type { Handler } from "./state.js"
import { typedConfigValue, vmStatus } from "./status.js"
import { resize, updateConfig } from "./vmConfig.js"

export const vmRoutes = (core: SimCore): Readonly<Record<string, Handler>> => ({
  "GET /nodes/{node}/qemu": async (p) => {
    const node = core.onlineNode(p)
    return [...core.vms.values()].filter((vm) => vm.node === node.name).map((vm) => vmStatus(core, vm))
  },

  "GET /nodes/{node}/qemu/{vmid}/config": async (p) => {
    const vm = core.vmOn(core.onlineNode(p).name, Number(p["vmid"]))
    const out: Record<string, unknown> = {}
    for (const [key, value] of vm.config) out[key] = typedConfigValue(core, key, value)
    out["digest"] = configDigest(vm.config)
    return out
  },

  "GET /nodes/{node}/qemu/{vmid}/status/current": async (p) => {
    const vm = core.vmOn(core.onlineNode(p).name, Number(p["vmid"]))
    const out: Record<string, unknown> = { ...vmStatus(core, vm), ha: { managed: 0 } }
    if (vm.config.get("agent") !== undefined) out["agent"] = Number(/^(?:enabled=)?([01])/.exec(vm.config.get("agent") ?? "")?.[1] ?? "0")
    // PVE's `status` is only running|stopped; a paused guest shows in qmpstatus (stopped mirrors status).
    out["qmpstatus"] = vm.status === "running" ? (vm.paused ? "paused" : "running") : "stopped"
    if (vm.status === "running") {
      out["running-machine"] = "pc-i440fx-9.2+pve1"
      out["running-qemu"] = "9.2.0"
    }
    return out
  },

  "POST /nodes/{node}/qemu/{vmid}/clone": async (p, ctx) => clone(core, p, ctx),

  "POST /nodes/{node}/qemu/{vmid}/config": async (p, ctx) => updateConfig(core, p, ctx, false),

  "PUT /nodes/{node}/qemu/{vmid}/config": async (p, ctx) => updateConfig(core, p, ctx, true),

  "PUT /nodes/{node}/qemu/{vmid}/resize": async (p, ctx) => resize(core, p, ctx),

  "POST /nodes/{node}/qemu/{vmid}/status/start": async (p, ctx) => start(core, p, ctx),

  "POST /nodes/{node}/qemu/{vmid}/status/stop": async (p, ctx) => stop(core, p, ctx, "qmstop"),

  "POST /nodes/{node}/qemu/{vmid}/status/shutdown": async (p, ctx) => stop(core, p, ctx, "qmshutdown"),

  "DELETE /nodes/{node}/qemu/{vmid}": async (p, ctx) => destroy(core, p, ctx)
})
