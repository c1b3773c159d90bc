/**
 * A node rebooting under the cluster's feet (a kernel panic, a fenced HA node, an operator's `reboot`): every
 * worker task on it dies where it is, its guests stop, the node drops out of the cluster for a while, then
 * comes back with a new boot time and starts the guests marked `onboot`.
 */
import { bootGuest } from "./boot.js"
import type { SimCore } from "./core.js"
import { markRunning, markStopped } from "./lifecycle.js"

/** What PVE shows for a task whose worker vanished with the node (the active-task list's verdict at boot). */
export const KILLED_TASK_STATUS = "unexpected status"

export const rebootNode = (core: SimCore, nodeName: string, downMs: number): void => {
  const node = core.nodes.get(nodeName)
  if (node === undefined) throw new Error(`no such node ${nodeName}`)
  node.generation++
  node.online = false
  // Whatever brings the node back (this timer, or a test's `resetNodes` first), it comes back booted since now.
  node.bootedAt = core.time.now()
  const endtime = Math.floor(core.time.now() / 1000)
  for (const task of core.tasks.values()) {
    if (task.node !== nodeName || task.status !== "running") continue
    // The worker's body notices at its next step (TaskKilled) and stops there, cleaning nothing up.
    task.status = "stopped"
    task.exitstatus = KILLED_TASK_STATUS
    task.endtime = endtime
    task.log.push(`TASK ERROR: ${KILLED_TASK_STATUS}`)
    task.kill()
  }
  for (const vm of core.vms.values()) {
    if (vm.node === nodeName && vm.status === "running") markStopped(vm)
  }
  core.log(`node ${nodeName} rebooting (down ${Math.round(downMs / 1000)} s)`)
  const generation = node.generation
  core.track(core.time.sleep(downMs).then(() => {
    if (node.generation !== generation) return
    if (!node.online) {
      node.online = true
      node.bootedAt = core.time.now()
    }
    core.log(`node ${nodeName} is back`)
    for (const vm of core.vms.values()) {
      // pve-guests starts what is marked to start on boot; a VM still locked (a dead clone's placeholder) is skipped.
      if (vm.node !== nodeName || vm.status === "running" || vm.config.get("onboot") !== "1" || vm.config.has("lock") || core.isTemplate(vm)) continue
      markRunning(core, vm)
      bootGuest(core, vm)
    }
  }))
}
