/**
 * PVE worker tasks: a UPID per fork, a body that runs in the background with the fault controller's slow
 * factor, injected failure and warnings applied, an exit status as PVE writes it (`OK`, `WARNINGS: n` or the
 * error's first line), a bounded task table, and the task status endpoint clients poll.
 */
import { Option } from "effect"
import { formatUpid, parseUpid } from "../../domain/pve/upid.js"
import type { SimCore } from "./core.js"
import { type Handler, paramError, type SimTask, TaskFailed } from "./state.js"

const MAX_TASKS = 50_000

/** A task body's view of its own run. */
export interface TaskRun {
  readonly slow: number
  failure: string | undefined
  warnings: number
  readonly log: Array<string>
  /** Sleeps `ms` (times the slow factor); an injected failure surfaces at the first step. */
  readonly step: (ms: number) => Promise<void>
}

export const startTask = (core: SimCore, node: string, type: string, id: string, user: string, vmid: number | undefined,
  body: (task: TaskRun) => Promise<void>): SimTask => {
  const starttime = Math.floor(core.time.now() / 1000)
  const pid = core.takePid()
  const nodeInfo = core.nodes.get(node)
  const pstart = Math.floor((core.time.now() - (nodeInfo?.bootedAt ?? core.startedAt)) / 10) & 0x7fffffff
  const upid = formatUpid({ node, pid, pstart, starttime, type, id, user })
  const faults = core.faults
  const failure = faults.taskFailure(type, vmid)
  // A clone has three steps (setup, cloud-init drive, disk copy): failing at any of them exercises the
  // clean-up of what the earlier ones made. Other tasks commit after their only step, so fail there.
  const failAt = failure !== undefined && type === "qmclone" ? core.options.prng.int(1, 3) : 1
  let steps = 0
  const run: TaskRun = {
    slow: faults.taskSlowFactor(type, vmid),
    failure,
    warnings: faults.taskWarningCount(type, vmid),
    log: [],
    step: async (ms: number) => {
      await core.time.sleep(ms * run.slow)
      steps++
      if (run.failure !== undefined && steps >= failAt) {
        const message = run.failure
        run.failure = undefined
        throw new TaskFailed({ message })
      }
    }
  }
  let finish: () => void = () => undefined
  const done = new Promise<void>((resolve) => { finish = resolve })
  const task: SimTask = {
    upid, node, pid, pstart, starttime, type, id, user, status: "running", exitstatus: undefined, endtime: undefined,
    log: run.log, done
  }
  core.tasks.set(upid, task)
  pruneTasks(core)
  core.track((async () => {
    try {
      await body(run)
      // An injected failure that no step consumed still fails the task, at its end.
      if (run.failure !== undefined) throw new TaskFailed({ message: run.failure })
      task.exitstatus = run.warnings > 0 ? `WARNINGS: ${run.warnings}` : "OK"
      run.log.push(task.exitstatus === "OK" ? "TASK OK" : `TASK ${task.exitstatus}`)
    } catch (error) {
      const message = error instanceof Error ? error.message.split("\n")[0] ?? "unknown error" : String(error)
      task.exitstatus = message
      run.log.push(`TASK ERROR: ${message}`)
      core.log(`task ${type} ${id} on ${node} failed: ${message}`)
    } finally {
      task.status = "stopped"
      task.endtime = Math.floor(core.time.now() / 1000)
      finish()
    }
  })())
  return task
}

/** Long demo runs must not grow without bound: forget the oldest finished tasks beyond a cap. */
const pruneTasks = (core: SimCore): void => {
  if (core.tasks.size <= MAX_TASKS) return
  for (const [upid, task] of core.tasks) {
    if (core.tasks.size <= MAX_TASKS * 0.9) break
    if (task.status === "stopped") core.tasks.delete(upid)
  }
}

export const taskRoutes = (core: SimCore): Readonly<Record<string, Handler>> => ({
  "GET /nodes/{node}/tasks/{upid}/status": async (p) => {
    const node = core.onlineNode(p)
    const upid = p["upid"] ?? ""
    // PVE raises these as parameter errors (400), not as 500s.
    if (Option.isNone(parseUpid(upid))) throw paramError({ upid: "unable to parse worker upid" })
    const task = core.tasks.get(upid)
    if (task === undefined || task.node !== node.name) throw paramError({ upid: "no such task" })
    const out: Record<string, unknown> = {
      upid: task.upid, node: task.node, pid: task.pid, pstart: task.pstart, starttime: task.starttime,
      type: task.type, id: task.id, user: task.user, status: task.status
    }
    // A token's task shows its user and token separately, as pve-manager's task API splits them.
    const bang = task.user.indexOf("!")
    if (bang > 0) {
      out["user"] = task.user.slice(0, bang)
      out["tokenid"] = task.user.slice(bang + 1)
    }
    if (task.status === "stopped") out["exitstatus"] = task.exitstatus
    return out
  }
})
