/**
 * A clone killed by its node's reboot leaves its VMID held for good: PVE's worker dies between writing the
 * nameless `lock: clone` placeholder and the finished config, nothing ever lifts the lock, and an API token
 * may not (`skiplock` is root@pam's). Every look at that VMID answers `Busy` — "a clone is running, wait" —
 * so without this check the instance waits forever, and so does its delete.
 *
 * A placeholder is taken for dead only on evidence that no worker can still write it:
 * 1. its node booted after the clone was requested (a reboot kills every worker; the node's uptime, read last;
 *    `CLOCK_MARGIN_MS` allows for another replica's clock having stamped the request: a boot that close to it
 *    counts as after, so a placeholder that may be the instance's is reported rather than passed over);
 * 2. no clone at all is active on that node or the template's (the worker runs on the source's node, and the
 *    placeholder may be another's: a second shard's, an operator's — a task's ID names only the source VM, so
 *    any running clone there is a reason to wait; `GET /nodes/{node}/tasks?source=active&typefilter=qmclone`);
 * 3. read again after 2, the placeholder is still nameless and locked — a worker that ended in between
 *    either named the VM (done) or removed it (failed), so a placeholder seen after every worker ended is dead.
 * These cost a task list and a config read per look at a `Busy` VMID (the node's status only when both say so). A placeholder that fails only 1 — no clone runs, yet the node has not rebooted since the request — cannot be
 * the instance's clone at all (its worker would still be listed, or would have named or removed it): someone
 * else's dead clone, which the instance leaves alone like any VM not its own.
 */
import { Clock, Effect, Metric } from "effect"
import { CloneAbandoned } from "../domain/shard/events.js"
import type { Instance } from "../domain/shard/state.js"
import { clonesAbandoned } from "../metrics/metrics.js"
import { EventLog } from "../services/EventLog.js"
import { ProxmoxApi } from "../services/ProxmoxApi.js"

/** How far apart two replicas' clocks may be for a boot to count as after a request another replica wrote. */
export const CLOCK_MARGIN_MS = 5_000

export interface DeadClone {
  readonly vmid: number
  readonly node: string
  readonly bootedAt: number
}

/**
 * What the placeholder at `vmid` on `node` (seen `Busy`) is, for `instance` whose clone onto it was requested
 * at `requestedAt`:
 * - `Running`: a clone may still be writing it — wait (also the answer to any doubt: a failed read, an old log).
 * - `Dead`: the instance's own clone, killed by the node's reboot (see the module comment).
 * - `Another`: not the instance's clone at all: no clone runs there, and the node has not rebooted since the
 *   request — the instance's worker, had it made the placeholder, would still be listed or would have ended
 *   by naming or removing it. Someone else's dead clone (a second shard's, an operator's): the instance treats
 *   it as another VM at its VMID and never touches it.
 */
export type Placeholder =
  | { readonly _tag: "Running" }
  | { readonly _tag: "Dead"; readonly dead: DeadClone }
  | { readonly _tag: "Another" }

const running: Placeholder = { _tag: "Running" }

export const placeholderAt = (instance: Instance, vmid: number, node: string, requestedAt: number | undefined) =>
  Effect.gen(function* () {
    const { templateNode } = instance
    if (requestedAt === undefined) return running
    const pve = yield* ProxmoxApi
    for (const taskNode of new Set([node, templateNode ?? node])) {
      const active = yield* pve.listTasks(taskNode, { source: "active", type: "qmclone" })
      if (active.length > 0) return running
    }
    const again = yield* pve.vmConfig(node, vmid)
    if (again.name !== undefined || again.lock !== "clone") return running
    // The node's own uptime, read now: the cluster listing's lags a reboot by up to its refresh interval.
    const asked = yield* Clock.currentTimeMillis
    const uptime = (yield* pve.nodeStatus(node)).uptime
    if (uptime === undefined) return running
    const bootedAt = asked - (uptime + 1) * 1000
    // Booted within the clock margin of the request: it may be the instance's, so it is reported as such.
    if (bootedAt > requestedAt - CLOCK_MARGIN_MS) return { _tag: "Dead", dead: { vmid, node, bootedAt } } satisfies Placeholder
    return { _tag: "Another" } satisfies Placeholder
  }).pipe(Effect.orElseSucceed(() => running))

/** What an `Another` placeholder is, for the log line of the saga that passes it by. */
export const anothersDeadClone = (vmid: number, node: string) =>
  `VM ${vmid} on ${node} is another's clone that will not finish (lock: clone, no name, no clone running)`

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
