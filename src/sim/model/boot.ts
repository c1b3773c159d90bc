/**
 * A started VM's guest booting: it reads the seed ISO attached as ide2 (an uploaded NoCloud ISO; PVE's own
 * cloud-init drive carries no nstance seed) and hands it to the guest hook; every boot, good or failed, is
 * recorded in `boots`.
 */
import { readSeed } from "../../domain/noCloudSeed.js"
import { parseDrive } from "./config.js"
import type { SimCore } from "./core.js"
import type { BootRecord, SimVm } from "./state.js"

export const bootGuest = (core: SimCore, vm: SimVm): void => {
  const name = vm.config.get("name") ?? ""
  const record = (r: Omit<BootRecord, "at" | "node" | "vmid" | "name">) => {
    core.boots.push({ at: core.time.now(), node: vm.node, vmid: vm.vmid, name, ...r })
    if (r.outcome === "failed") core.log(`VM ${vm.vmid} (${name}) boot failed: ${r.reason ?? ""}`)
  }
  const ide2 = vm.config.get("ide2")
  const file = ide2 === undefined ? undefined : parseDrive(ide2).file
  if (file === undefined || file === "none" || file === "cdrom") {
    record({ outcome: "failed", reason: "no cloud-init ISO attached (ide2 empty)" })
    return
  }
  const volume = core.volume(vm.node, file)
  if (volume === undefined || volume.content !== "iso" || volume.data === undefined) {
    record({ outcome: "failed", reason: `ide2 ${file} is not an uploaded ISO (PVE-generated cloud-init drives carry no nstance seed)` })
    return
  }
  const seed = readSeed(volume.data)
  if (seed._tag === "Unreadable") {
    record({ outcome: "failed", reason: seed.reason })
    return
  }
  const hook = core.options.guestHook
  const boot = {
    node: vm.node, vmid: vm.vmid, name, instanceId: seed.instanceId, metaData: seed.metaData,
    userData: seed.userData, volumeId: seed.volumeId,
    ...(seed.networkConfig === undefined ? {} : { networkConfig: seed.networkConfig })
  }
  if (hook === undefined) {
    record({ outcome: "booted", instanceId: seed.instanceId })
    return
  }
  core.track((async () => {
    try {
      await hook(boot)
      record({ outcome: "booted", instanceId: seed.instanceId })
    } catch (error) {
      record({ outcome: "failed", instanceId: seed.instanceId, reason: `guest hook failed: ${error instanceof Error ? error.message : String(error)}` })
    }
  })())
}
