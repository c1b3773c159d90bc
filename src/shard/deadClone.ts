/**
 * A clone killed by its node's reboot leaves its VMID held for good: PVE's worker dies between writing the
 * nameless `lock: clone` placeholder and the finished config, nothing ever lifts the lock, and an API token
 * may not (`skiplock` is root@pam's). Every look at that VMID answers `Busy` — "a clone is running, wait" —
 * so without this check the instance waits forever, and so does its delete.
 *
 * A placeholder is taken for dead only on evidence that no worker can still write it:
 * 1. its node booted after the clone was requested (a reboot kills every worker) — a cheap filter on the cached
 *    cluster read, so a placeholder of a clone that merely runs costs no extra call; `CLOCK_MARGIN_MS` allows
 *    for another replica's clock having stamped the request, and 2 and 3 are what make the verdict safe;
 * 2. no clone at all is active on that node or the template's (the worker runs on the source's node, and the
 *    placeholder may be another's: a second shard's, an operator's — a task's ID names only the source VM, so
 *    any running clone there is a reason to wait; `GET /nodes/{node}/tasks?source=active&typefilter=qmclone`);
 * 3. read again after 2, the placeholder is still nameless and locked — a worker that ended in between
 *    either named the VM (done) or removed it (failed), so a placeholder seen after every worker ended is dead.
 * The first costs nothing (the cached cluster read); the other two are read only when it holds.
 */
import { Clock, Effect, Metric, Option } from "effect"
import { CloneAbandoned } from "../domain/shard/events.js"
import type { Instance } from "../domain/shard/state.js"
import { clonesAbandoned } from "../metrics/metrics.js"
import { EventLog } from "../services/EventLog.js"
import { ProxmoxApi } from "../services/ProxmoxApi.js"
import { ClusterView } from "./ClusterView.js"

/** How far apart two replicas' clocks may be for a boot to count as after a request another replica wrote. */
export const CLOCK_MARGIN_MS = 5_000

export interface DeadClone {
  readonly vmid: number
  readonly node: string
  readonly bootedAt: number
}

/**
 * Whether the placeholder at `vmid` on `node` (seen `Busy`) is the dead clone of `instance`'s request made at
 * `requestedAt` (see the module comment). Any doubt — a read that fails, a clone still listed — is "no".
 */
export const deadCloneAt = (instance: Instance, vmid: number, node: string, requestedAt: number | undefined) =>
  Effect.gen(function* () {
    const { templateVmid, templateNode } = instance
    if (requestedAt === undefined || templateVmid === undefined) return Option.none<DeadClone>()
    const booted = yield* (yield* ClusterView).nodeBootedAt(node)
    if (Option.isNone(booted) || booted.value <= requestedAt + CLOCK_MARGIN_MS) return Option.none<DeadClone>()
    const pve = yield* ProxmoxApi
    for (const taskNode of new Set([node, templateNode ?? node])) {
      const active = yield* pve.listTasks(taskNode, { source: "active", type: "qmclone" })
      if (active.length > 0) return Option.none<DeadClone>()
    }
    const again = yield* pve.vmConfig(node, vmid)
    if (again.name !== undefined || again.lock !== "clone") return Option.none<DeadClone>()
    return Option.some<DeadClone>({ vmid, node, bootedAt: booted.value })
  }).pipe(Effect.orElseSucceed(() => Option.none<DeadClone>()))

/**
 * Records the dead clone (`CloneAbandoned`: the instance lets go of the VMID) and says what the operator is to
 * do about the placeholder, which nstance never touches again.
 */
export const abandonDeadClone = (instance: Instance, dead: DeadClone) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    yield* log.append([CloneAbandoned.make({ instanceId: instance.id, at: yield* Clock.currentTimeMillis, vmid: dead.vmid, node: dead.node, bootedAt: dead.bootedAt })])
    yield* Metric.increment(clonesAbandoned)
    yield* Effect.logError(
      `${instance.id}: the clone onto VM ${dead.vmid} died with node ${dead.node}'s reboot at ${new Date(dead.bootedAt).toISOString()}; ` +
        `its placeholder (lock: clone, no name) and any partial disks stay — an API token cannot unlock it. ` +
        `Once sure no clone of anyone's runs onto it (qm config ${dead.vmid}; the node's task list), remove it on ${dead.node} with: qm unlock ${dead.vmid} && qm destroy ${dead.vmid}`
    ).pipe(Effect.annotateLogs({ instance: instance.id, vmid: dead.vmid, node: dead.node }))
  })
