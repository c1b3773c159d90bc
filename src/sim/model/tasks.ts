/**
 * PVE worker tasks: a UPID per fork, a body that runs in the background with the fault controller's slow
 * factor, injected failure and warnings applied, an exit status as PVE writes it (`OK`, `WARNINGS: n` or the
 * error's first line), a bounded task table, and the task status endpoint clients poll.
 */
import { Option } from "effect"
import { formatUpid, parseUpid } from "../../domain/pve/upid.js"
import type { SimCore } from "./core.js"
import type { FileLock } from "../locks.js"
import { type Handler, paramError, type SimTask, TaskFailed, TaskKilled } from "./state.js"

const MAX_TASKS = 50_000

/** A task body's view of its own run. */
export interface TaskRun {
  readonly slow: number
  failure: string | undefined
  warnings: number
  readonly log: Array<string>
  /** Sleeps `ms` (times the slow factor); an injected failure surfaces at the first step. */
  readonly step: (ms: number) => Promise<void>
  /** Throws `TaskKilled` if the node rebooted since the task started. */
  readonly alive: () => void
  /** Waits for a lock as the worker does (`SimCore.lockInTask`); a worker killed meanwhile stops there. */
  readonly lock: (lock: FileLock, timeoutSeconds: number, shared?: boolean) => Promise<() => void>
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
  const generation = nodeInfo?.generation ?? 0
  let killNow: () => void = () => undefined
  const killed = new Promise<void>((resolve) => { killNow = resolve })
  const alive = () => {
    if (nodeInfo !== undefined && nodeInfo.generation !== generation) throw new TaskKilled({ upid })
  }
  const run: TaskRun = {
    slow: faults.taskSlowFactor(type, vmid),
    failure,
    warnings: faults.taskWarningCount(type, vmid),
    log: [],
    step: async (ms: number) => {
      await Promise.race([core.time.sleep(ms * run.slow), killed])
      alive()
      steps++
      if (run.failure !== undefined && steps >= failAt) {
        const message = run.failure
        run.failure = undefined
        throw new TaskFailed({ message })
      }
    },
    alive,
    lock: async (lock, timeoutSeconds, shared) => {
      const release = await core.lockInTask(lock, timeoutSeconds, shared)
      try {
        alive()
      } catch (error) {
        release()
        throw error
      }
      return release
    }
  }
  let finish: () => void = () => undefined
  const done = new Promise<void>((resolve) => { finish = resolve })
  const task: SimTask = {
    upid, node, pid, pstart, starttime, type, id, user, status: "running", exitstatus: undefined, endtime: undefined,
    log: run.log, done, kill: () => killNow()
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
      // Killed by a reboot: `rebootNode` already ended it as PVE shows such a task afterwards.
      if (error instanceof TaskKilled) return
      const message = error instanceof Error ? error.message.split("\n")[0] ?? "unknown error" : String(error)
      task.exitstatus = message
      run.log.push(`TASK ERROR: ${message}`)
      core.log(`task ${type} ${id} on ${node} failed: ${message}`)
    } finally {
      if (task.status === "running") {
        task.status = "stopped"
        task.endtime = Math.floor(core.time.now() / 1000)
      }
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

/** A task as `GET /nodes/{node}/tasks` lists it (the status only once it ended, as PVE's list has it). */
const listedTask = (task: SimTask): Record<string, unknown> => ({
  upid: task.upid, node: task.node, pid: task.pid, pstart: task.pstart, starttime: task.starttime, type: task.type,
  id: task.id, user: task.user,
  ...(task.status === "stopped" ? { status: task.exitstatus, endtime: task.endtime } : {})
})

export const taskRoutes = (core: SimCore): Readonly<Record<string, Handler>> => ({
  /**
   * The node's task list: `source=active` the running workers, `archive` (the default) the ended ones, `all`
   * both; filtered by type, `vmid` (the task's ID: a clone's is its source VM), user and errors; newest first.
   */
  "GET /nodes/{node}/tasks": async (p) => {
    const node = core.onlineNode(p)
    const source = p["source"] ?? "archive"
    const vmid = p["vmid"]
    const typefilter = p["typefilter"]
    const userfilter = p["userfilter"]?.toLowerCase()
    const errorsOnly = p["errors"] === "1"
    const since = p["since"] === undefined ? undefined : Number(p["since"])
    const until = p["until"] === undefined ? undefined : Number(p["until"])
    const listed = [...core.tasks.values()].filter((task) =>
      task.node === node.name &&
      (source === "all" || (source === "active") === (task.status === "running")) &&
      (vmid === undefined || task.id === vmid) &&
      (typefilter === undefined || task.type === typefilter) &&
      (userfilter === undefined || task.user.toLowerCase().includes(userfilter)) &&
      (!errorsOnly || (task.status === "stopped" && task.exitstatus !== "OK" && !(task.exitstatus ?? "").startsWith("WARNINGS"))) &&
      (since === undefined || task.starttime >= since) &&
      (until === undefined || task.starttime <= until)
    ).sort((a, b) => b.starttime - a.starttime)
    const start = Number(p["start"] ?? "0")
    const limit = Number(p["limit"] ?? "50")
    return listed.slice(start, limit === 0 ? undefined : start + limit).map(listedTask)
  },
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
