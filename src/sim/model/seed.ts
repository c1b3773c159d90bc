/**
 * The cluster a simulator starts with: `nodes` nodes named pve1…, local storages (plus shared Ceph ones on
 * request) and one Debian template per node, all drawn from the model's seeded PRNG so a seed replays.
 */
import { GiB, MiB } from "./config.js"
import type { SimCore } from "./core.js"

/** Every privilege the simulated API token holds unless the options say otherwise (PVEVMAdmin and friends, in part). */
export const SIM_PRIVILEGES: ReadonlyArray<string> = [
  "Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.PowerMgmt", "VM.Config.CPU", "VM.Config.Memory",
  "VM.Config.Network", "VM.Config.Disk", "VM.Config.CDROM", "VM.Config.Options", "VM.Config.Cloudinit",
  "Datastore.Audit", "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "SDN.Use"
]

/** Fills an empty model with its nodes, storages and templates. */
export const seedCluster = (core: SimCore): void => {
  const options = core.options
  const prng = options.prng
  for (let i = 1; i <= options.nodes; i++) {
    const name = `pve${i}`
    core.nodes.set(name, {
      name, nodeid: i, ip: `10.10.0.${10 + i}`, online: true,
      maxcpu: 16, maxmem: (options.nodeMemoryGiB ?? 64) * GiB,
      baseMem: Math.round(prng.between(2, 6) * GiB), baseCpu: prng.between(0.01, 0.05),
      bootedAt: core.startedAt - prng.int(2, 40) * 86_400_000, generation: 0
    })
  }
  // Two NICs per node: vmbr0 carries the node's address, vmbr1 is a VLAN-aware bridge for guests.
  for (const node of core.nodes.values()) {
    core.networks.set(node.name, [
      { iface: "eno1", type: "eth" },
      { iface: "eno2", type: "eth" },
      { iface: "vmbr0", type: "bridge", bridgePorts: "eno1", cidr: `${node.ip}/24`, gateway: "10.10.0.1" },
      { iface: "vmbr1", type: "bridge", bridgePorts: "eno2", vlanAware: true }
    ])
  }
  core.acl.set("/", new Map((options.privileges ?? SIM_PRIVILEGES).map((privilege) => [privilege, true])))
  core.storages.set("local", { id: "local", type: "dir", content: ["iso", "vztmpl", "backup"], shared: false, total: 100 * GiB })
  core.storages.set("local-lvm", { id: "local-lvm", type: "lvmthin", content: ["images", "rootdir"], shared: false, total: 800 * GiB })
  if (options.sharedStorage === true) {
    core.storages.set("ceph-vm", { id: "ceph-vm", type: "rbd", content: ["images", "rootdir"], shared: true, total: 4096 * GiB })
    core.storages.set("cephfs", { id: "cephfs", type: "cephfs", content: ["iso", "vztmpl", "backup"], shared: true, total: 1024 * GiB })
  }
  let index = 0
  for (const node of core.nodes.values()) {
    createTemplate(core, 9000 + index, node.name, "debian-13-template", "local-lvm")
    index++
  }
  if (options.sharedStorage === true) {
    const first = [...core.nodes.keys()][0]
    if (first !== undefined) createTemplate(core, 9100, first, "debian-13-shared", "ceph-vm")
  }
}

/** A cloud-init-ready Debian template `name` at `vmid` on `node`, its disks on `storageId`. */
export const createTemplate = (core: SimCore, vmid: number, node: string, name: string, storageId: string): void => {
  const disk = `${storageId}:base-${vmid}-disk-0`
  const cloudinit = `${storageId}:vm-${vmid}-cloudinit`
  core.addVolume(node, { volid: disk, storage: storageId, content: "images", format: "raw", size: 2 * GiB, vmid })
  core.addVolume(node, { volid: cloudinit, storage: storageId, content: "images", format: "raw", size: 4 * MiB, vmid })
  const config = new Map<string, string>([
    ["agent", "1"],
    ["boot", "order=scsi0"],
    ["cores", "2"],
    ["cpu", "x86-64-v2-AES"],
    ["ide2", `${cloudinit},media=cdrom`],
    ["memory", "2048"],
    ["meta", `creation-qemu=9.2.0,ctime=${Math.floor(core.startedAt / 1000) - 86_400}`],
    ["name", name],
    ["net0", `virtio=${core.mac()},bridge=vmbr0`],
    ["ostype", "l26"],
    ["scsi0", `${disk},size=2G`],
    ["scsihw", "virtio-scsi-single"],
    ["serial0", "socket"],
    ["smbios1", `uuid=${core.uuid()}`],
    ["template", "1"],
    ["vga", "serial0"],
    ["vmgenid", core.uuid()]
  ])
  core.vms.set(vmid, { vmid, node, config, status: "stopped", paused: false, startedAt: undefined, pid: undefined, createdAt: 0 })
}
