/**
 * A node's network interfaces (`GET /nodes/{node}/network`), in the shape PVE lists them, with the `type`
 * filter pve-manager applies: one interface type, `any_bridge` (Linux and OVS bridges and SDN VNets) or
 * `any_local_bridge` (without the VNets).
 */
import type { SimCore } from "./core.js"
import type { Handler, SimIface } from "./state.js"

const LOCAL_BRIDGES: ReadonlyArray<SimIface["type"]> = ["bridge", "OVSBridge"]

const matches = (iface: SimIface, filter: string | undefined): boolean =>
  filter === undefined || filter === "include_sdn"
    ? true
    : filter === "any_bridge"
    ? LOCAL_BRIDGES.includes(iface.type) || iface.type === "vnet"
    : filter === "any_local_bridge"
    ? LOCAL_BRIDGES.includes(iface.type)
    : iface.type === filter

/** One interface as PVE answers it: only fields of the official schema, booleans as 0/1. */
const listed = (iface: SimIface, priority: number): Record<string, unknown> => ({
  iface: iface.iface,
  type: iface.type,
  active: 1,
  autostart: 1,
  ...(iface.type === "eth" ? { exists: 1 } : {}),
  families: ["inet"],
  method: iface.cidr === undefined ? "manual" : "static",
  method6: "manual",
  priority,
  ...(iface.bridgePorts === undefined ? {} : { bridge_ports: iface.bridgePorts }),
  ...(iface.vlanAware === true ? { bridge_vlan_aware: 1, bridge_vids: "2-4094" } : {}),
  ...(iface.cidr === undefined ? {} : { cidr: iface.cidr, address: iface.cidr.split("/")[0], netmask: "255.255.255.0" }),
  ...(iface.gateway === undefined ? {} : { gateway: iface.gateway })
})

export const networkRoutes = (core: SimCore): Readonly<Record<string, Handler>> => ({
  "GET /nodes/{node}/network": async (p) => {
    const node = core.onlineNode(p)
    const filter = p["type"]
    return (core.networks.get(node.name) ?? [])
      .map((iface, index) => ({ iface, priority: index + 3 }))
      .filter(({ iface }) => matches(iface, filter))
      .map(({ iface, priority }) => listed(iface, priority))
  }
})
