/**
 * A VM's power and existence: `status/start` (which boots the guest), `status/stop`, `status/shutdown` and
 * `DELETE …/qemu/{vmid}` with the volumes it owns, each as its PVE worker task under the VM's config lock.
 */
import type { Params } from "../schema.js"
import { PVE_SECONDS } from "../latency.js"
import { bootGuest } from "./boot.js"
import { DRIVE_KEY, GiB, isCdrom, memoryMiB, MiB, parseDrive, volumeStorage } from "./config.js"
import type { SimCore } from "./core.js"
import { type CallContext, fail, type SimVm, TaskFailed } from "./state.js"
import { startTask } from "./tasks.js"

/** The guest's QEMU process runs now (a start, or `onboot` after the node booted); the caller boots the guest. */
export const markRunning = (core: SimCore, vm: SimVm): void => {
  vm.status = "running"
  vm.paused = false
  vm.startedAt = core.time.now()
  vm.pid = 100_000 + core.options.prng.int(0, 899_999)
}

/** The guest's QEMU process is gone (a stop, a crash, the node's reboot). */
export const markStopped = (vm: SimVm): void => {
  vm.status = "stopped"
  vm.paused = false
  vm.startedAt = undefined
  vm.pid = undefined
}

/** `status/start`: the handler only forks; config checks and the lock are in the `qmstart` worker. */
export const start = async (core: SimCore, p: Params, ctx: CallContext): Promise<string> => {
  const node = core.onlineNode(p)
  const vmid = Number(p["vmid"])
  const task = startTask(core, node.name, "qmstart", String(vmid), ctx.user, vmid, async (run) => {
    const release = await run.lock(core.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
    let booted: SimVm | undefined
    try {
      const vm = core.taskVm(node.name, vmid)
      if (core.isTemplate(vm)) throw new TaskFailed({ message: "you can't start a vm if it's a template" })
      core.checkLockInTask(vm)
      if (vm.status === "running") throw new TaskFailed({ message: `VM ${vmid} already running` })
      for (const [key, value] of vm.config) {
        if (!DRIVE_KEY.test(key) || key.startsWith("unused")) continue
        const file = parseDrive(value).file
        if (volumeStorage(file) !== undefined && core.volume(node.name, file) === undefined) {
          throw new TaskFailed({ message: `volume '${file}' does not exist` })
        }
      }
      await run.step(core.jittered(PVE_SECONDS.start))
      // KVM allocates guest memory lazily, so PVE overcommits; only a guest bigger than the host's RAM
      // plus swap fails to start (the kernel's overcommit heuristic refuses that single allocation).
      if (memoryMiB(vm.config) * MiB > node.maxmem + 8 * GiB) {
        run.log.push("kvm: cannot set up guest memory 'pc.ram': Cannot allocate memory")
        throw new TaskFailed({ message: "start failed: QEMU exited with code 1" })
      }
      markRunning(core, vm)
      booted = vm
    } finally {
      release()
    }
    if (booted !== undefined) bootGuest(core, booted)
  })
  return task.upid
}

/** `status/stop` and `status/shutdown`: a stopped VM is a no-op success, a missing one a task error. */
export const stop = async (core: SimCore, p: Params, ctx: CallContext, type: "qmstop" | "qmshutdown"): Promise<string> => {
  const node = core.onlineNode(p)
  const vmid = Number(p["vmid"])
  const vm = core.vms.get(vmid)
  let graceful = type === "qmshutdown"
  if (graceful && vm?.node === node.name && vm.status === "running" && vm.paused) {
    // A graceful shutdown of a paused guest would hang; PVE refuses it unless told to force a stop.
    if (p["forceStop"] !== "1") throw fail("VM is paused - cannot shutdown")
    graceful = false
  }
  const task = startTask(core, node.name, type, String(vmid), ctx.user, vmid, async (run) => {
    const release = await run.lock(core.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
    try {
      const current = core.vms.get(vmid)
      if (current === undefined || current.node !== node.name) {
        throw new TaskFailed({ message: `unable to find configuration file for VM ${vmid} on node '${node.name}'` })
      }
      if (current.status !== "running") return
      core.checkLockInTask(current)
      await run.step(core.jittered(graceful ? PVE_SECONDS.shutdown : PVE_SECONDS.stop))
      markStopped(current)
    } finally {
      release()
    }
  })
  return task.upid
}

/** `DELETE …/qemu/{vmid}`: existence and "running" checked in the handler, the rest in `qmdestroy`. */
export const destroy = async (core: SimCore, p: Params, ctx: CallContext): Promise<string> => {
  const node = core.onlineNode(p)
  const vmid = Number(p["vmid"])
  const vm = core.vmOn(node.name, vmid)
  if (vm.status === "running") throw fail(`VM ${vmid} is running - destroy failed`)
  const unreferenced = p["destroy-unreferenced-disks"] === "1"
  const partial = core.faults.taskPartial("qmdestroy", vmid)
  const task = startTask(core, node.name, "qmdestroy", String(vmid), ctx.user, vmid, async (run) => {
    const release = await run.lock(core.vmLock(node.name, vmid), PVE_SECONDS.lockTimeout)
    try {
      const current = core.taskVm(node.name, vmid)
      if (current.status === "running") throw new TaskFailed({ message: `VM ${vmid} is running - destroy failed` })
      core.checkLockInTask(current)
      const volumes = [...current.config].filter(([key, value]) => DRIVE_KEY.test(key) && !(isCdrom(value) && !value.includes("cloudinit")))
        .map(([, value]) => parseDrive(value).file).filter((file) => volumeStorage(file) !== undefined)
      if (core.isTemplate(current)) {
        for (const file of volumes) {
          if ([...core.volumes.values()].some((v) => v.parent === file)) {
            throw new TaskFailed({ message: `base volume '${file}' is still in use by linked cloned` })
          }
        }
      }
      await run.step(core.jittered(PVE_SECONDS.destroy))
      // Only volumes this VM owns go (a linked clone's base stays with its template; ISOs are not owned).
      const doomed = new Set(volumes.filter((file) => core.volume(node.name, file)?.vmid === vmid))
      if (unreferenced) {
        for (const v of core.volumes.values()) {
          if (v.vmid === vmid && v.content === "images" && (v.node === undefined || v.node === node.name)) doomed.add(v.volid)
        }
      }
      let kept = false
      for (const volid of doomed) {
        if (partial && !kept) {
          kept = true
          // PVE goes on without a disk it cannot remove, and says so only as a warning.
          run.warnings++
          run.log.push(`WARN: could not remove disk '${volid}', check manually: volume is busy`)
          continue
        }
        core.removeVolume(node.name, volid)
        run.log.push(`Removed volume '${volid}'`)
      }
      core.vms.delete(vmid)
      run.log.push(`destroyed VM ${vmid}`)
    } finally {
      release()
    }
  })
  return task.upid
}
