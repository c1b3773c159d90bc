/**
 * What a simulated world must not leave behind on its PVE cluster once at rest, for the judges of the
 * simulated suites (`simWorld`) and of the chaos runs alike: VMs are judged by each against its own log,
 * volumes here.
 */
import type { SimModel, SimVm } from "../../src/sim/server.js"

/** Non-template VMs of a model. */
export const nonTemplateVms = (model: SimModel): Array<SimVm> =>
  [...model.vms.values()].filter((vm) => vm.config.get("template") !== "1")

/**
 * Disks of VMs that do not exist, and ISOs of instances that are not `owned` (named `nstance-<id>.iso`).
 * `otherIsos`: whether an ISO by any other name is a leak too (`simWorld`'s judge says so; the chaos
 * judge keeps to the ISOs named after instances).
 */
export const leakedVolumes = (model: SimModel, owned: (instanceId: string) => boolean, otherIsos: "leaked" | "ignored"): Array<string> => {
  const problems: Array<string> = []
  for (const volume of model.volumes.values()) {
    if (volume.content === "images") {
      if (volume.vmid === undefined || !model.vms.has(volume.vmid)) problems.push(`leaked disk ${volume.volid} on ${volume.node ?? "shared"}`)
    } else if (volume.content === "iso") {
      const match = /^[^:]+:iso\/nstance-(.+)\.iso$/.exec(volume.volid)
      if (match === null ? otherIsos === "leaked" : !owned(match[1]!)) problems.push(`leaked ISO ${volume.volid} on ${volume.node ?? "shared"}`)
    }
  }
  return problems
}
