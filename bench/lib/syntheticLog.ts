/**
 * A synthetic shard event log for the benches: `instances` VMs created by concurrent sagas in waves of 20
 * (requested → placed → templated → ISO → clone → cloned → configured → started, a few transient clone
 * failures), a tenth of them deleted again with the whole delete saga on record, and a leader change every
 * 2,500 instances. Deterministic (seeded), so every bench folds the same history.
 */
import { makeInstanceIdGenerator } from "../../src/domain/instanceId.js"
import {
  Cloned,
  CloneRequested,
  Configured,
  DeleteRequested,
  InstanceGone,
  InstanceRequested,
  IsoDeleted,
  IsoUploaded,
  IsoUploadRequested,
  LeaderElected,
  NodeChosen,
  type ShardEvent,
  Started,
  StartRequested,
  StepFailed,
  TemplateResolved,
  VmDeleted,
  VmidsSeen,
  VmStopped
} from "../../src/domain/shard/events.js"
import { makePrng } from "../../src/sim/prng.js"

/** Instances in flight together: their events interleave in the log as concurrent sagas' do. */
const WAVE = 20
export const NODES = ["pve1", "pve2", "pve3"]

/** The events of a shard that created `instances` VMs (a tenth of them deleted again), oldest first. */
export const buildEvents = (instances: number, groups = 1): Array<ShardEvent> => {
  const prng = makePrng(42)
  const mint = makeInstanceIdGenerator()
  const events: Array<ShardEvent> = []
  let at = Date.UTC(2025, 0, 1)
  let vmid = 100
  let term = 0
  const elect = () => {
    term++
    events.push(LeaderElected.make({ term, replica: `replica-${term % 3}` }))
    events.push(VmidsSeen.make({ highest: vmid }))
  }
  elect()
  for (let first = 0; first < instances; first += WAVE) {
    if (first > 0 && first % 2500 === 0) elect()
    const wave = Array.from({ length: Math.min(WAVE, instances - first) }, (_, i) => {
      at += 50
      const node = NODES[(first + i) % NODES.length]!
      const id = mint("web", at, new Uint8Array(16).map(() => prng.int(0, 255)))
      return { id, node, group: groups === 1 ? "web" : `web-${(first + i) % groups}`, vmid: ++vmid, template: 9000 + NODES.indexOf(node), failed: prng.next() < 0.02 }
    })
    const volid = (id: string) => `local:iso/nstance-${id}.iso`
    const steps: Array<(vm: (typeof wave)[number]) => ReadonlyArray<ShardEvent>> = [
      (vm) => [InstanceRequested.make({ instanceId: vm.id, at, tenant: "shop", group: vm.group, kind: "web", specHash: "9f2c4e1ab07d3c55", reason: "scale-up" })],
      (vm) => [NodeChosen.make({ instanceId: vm.id, at, node: vm.node })],
      (vm) => [TemplateResolved.make({ instanceId: vm.id, at, templateVmid: vm.template, templateNode: vm.node })],
      (vm) => [IsoUploadRequested.make({ instanceId: vm.id, at, node: vm.node, storage: "local", volid: volid(vm.id) })],
      (vm) => [IsoUploaded.make({ instanceId: vm.id, at, volid: volid(vm.id) })],
      (vm) => [CloneRequested.make({ instanceId: vm.id, at, vmid: vm.vmid, node: vm.node, templateVmid: vm.template, templateNode: vm.node })],
      (vm) => vm.failed
        ? [StepFailed.make({ instanceId: vm.id, at, step: "clone", errorClass: "transient", message: "can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout", attempt: 1 }),
          Cloned.make({ instanceId: vm.id, at, vmid: vm.vmid, node: vm.node })]
        : [Cloned.make({ instanceId: vm.id, at, vmid: vm.vmid, node: vm.node })],
      (vm) => [Configured.make({ instanceId: vm.id, at })],
      (vm) => [StartRequested.make({ instanceId: vm.id, at })],
      (vm) => [Started.make({ instanceId: vm.id, at })]
    ]
    for (const step of steps) {
      at += 300
      for (const vm of wave) events.push(...step(vm))
    }
    // A tenth of the instances go again later (scale-down, GC), with the whole delete saga on record.
    for (const vm of wave.filter((_, i) => (first + i) % 10 === 3)) {
      events.push(
        DeleteRequested.make({ instanceId: vm.id, at, reason: "scale-down" }),
        VmStopped.make({ instanceId: vm.id, at }),
        IsoDeleted.make({ instanceId: vm.id, at, volid: volid(vm.id) }),
        VmDeleted.make({ instanceId: vm.id, at, vmid: vm.vmid }),
        InstanceGone.make({ instanceId: vm.id, at })
      )
    }
  }
  return events
}

