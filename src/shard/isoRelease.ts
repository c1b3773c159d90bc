/**
 * The cloud-init ISO after registration (`shard.infra.options.detach_iso_after_registration`): once an
 * instance's agent registered, its ISO has done its work — the nonce in it is spent — yet it keeps the VM
 * tied to the ISO's storage (a node-local `local` blocks migration and HA) and stays on that storage. The
 * leader then ejects it from the VM's `ide2` (the drive the create saga attaches it to; `ide2` stays as an
 * empty CD drive, which PVE applies to a running VM at once, while deleting an IDE drive of a running VM
 * only waits as a pending change until its next boot), deletes the volume, and records `IsoDeleted` — the
 * delete saga's own record of the ISO, so a later delete skips that step. Each part is idempotent (an
 * already empty drive, an already deleted volume count as done), so a pass that stopped between them is
 * resumed by the next one, of this leader or the next. A VM that is not ours at the VMID is not touched.
 */
import { Clock, Effect, Option } from "effect"
import { IsoDeleted } from "../domain/shard/events.js"
import type { Instance, State } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"
import { ProxmoxApi } from "../services/ProxmoxApi.js"
import { SagaLimits } from "./SagaLimits.js"
import { vmOfInstance } from "./vmCheck.js"

/** The drive the create saga attaches the ISO to. */
const ISO_DRIVE = "ide2"
/** An empty CD drive: what `ide2` becomes once the ISO is ejected. */
export const EMPTY_CDROM = "none,media=cdrom"

/** Registered instances whose ISO is still recorded as present: what a pass has to release. */
export const isoToRelease = (state: State): ReadonlyArray<Instance> => {
  const out: Array<Instance> = []
  for (const [, instance] of state.instances) {
    if (instance.phase === "registered" && instance.held === undefined && instance.isoVolid !== undefined && !instance.cleanup.isoDeleted) out.push(instance)
  }
  return out
}

/** Ejects, deletes and records the ISO of one registered instance; a failure is logged and left to the next pass. */
const releaseOne = (instance: Instance, volid: string) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const log = yield* EventLog
    const limits = yield* SagaLimits
    const at = yield* vmOfInstance(instance, "release-iso")
    // A VM gone or still locked is left to the GC and the next pass.
    if (at._tag !== "Ours" || instance.vmid === undefined) return
    const node = at.node
    const drive = at.config[ISO_DRIVE]
    if (typeof drive === "string" && drive.split(",")[0] === volid) {
      yield* limits.onNode(node)(pve.updateConfig(node, instance.vmid, { ide2: EMPTY_CDROM })).pipe(
        Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: (upid) => Effect.asVoid(pve.waitTask(node, upid)) }))
      )
    }
    // The ISO was uploaded to the node the VM was cloned on (HA may have moved the VM since; PVE answers for
    // a node-local volume only on its node, and a shared one on any).
    const isoNode = instance.node ?? node
    const storage = volid.split(":")[0] ?? ""
    const deleted = yield* limits.onNode(isoNode)(pve.deleteVolume(isoNode, storage, volid)).pipe(
      Effect.map(Option.some),
      Effect.catchTag("PveApiError", (error) => (error.classification === "notFound" ? Effect.succeed(Option.none()) : Effect.fail(error)))
    )
    if (Option.isSome(deleted) && Option.isSome(deleted.value)) yield* pve.waitTask(isoNode, deleted.value.value)
    yield* log.append([IsoDeleted.make({ instanceId: instance.id, at: yield* Clock.currentTimeMillis, volid })])
    yield* Effect.logInfo(`${instance.id}: cloud-init ISO ${volid} detached from VM ${instance.vmid} and deleted (registered; its nonce is spent)`)
  }).pipe(
    Effect.catchIf(
      (error) => error._tag !== "Fenced" && error._tag !== "LogUnavailable",
      (error) => Effect.logWarning(`${instance.id}: could not release its cloud-init ISO ${volid} yet: ${error.message}`)
    )
  )

/** One pass over the log's registered instances; does nothing while the option is off. */
export const releaseIsos = (enabled: boolean) =>
  Effect.gen(function* () {
    if (!enabled) return 0
    const candidates = isoToRelease(yield* (yield* EventLog).state)
    for (const instance of candidates) if (instance.isoVolid !== undefined) yield* releaseOne(instance, instance.isoVolid)
    return candidates.length
  })
