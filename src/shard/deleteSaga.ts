/**
 * The delete saga — also the compensation of a failed create, and what scale-down, GC and an operator's
 * delete run: stop the VM if it runs → delete the cloud-init ISO → delete the VM (purge, unreferenced disks
 * too) → the instance is gone. Each step is idempotent (already gone counts as done) and recorded, so a
 * resumed delete skips what finished. A VMID is only ever acted on after checking that the VM there is
 * ours (its name is the instance ID, its notes name no other log; `vmCheck.ts`): VMIDs are reused by PVE.
 */
import { Clock, Effect, Option } from "effect"
import { InstanceGone, IsoDeleted, VmDeleted, VmStopped } from "../domain/shard/events.js"
import type { Instance } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"
import { type PveApiError, ProxmoxApi } from "../services/ProxmoxApi.js"
import { SagaLimits } from "./SagaLimits.js"
import { stepErrorFrom, waitingStepError } from "./stepError.js"
import { vmOfInstance } from "./vmCheck.js"

const now = Clock.currentTimeMillis

const absentAsNone = <A, R>(effect: Effect.Effect<A, PveApiError | import("../services/ProxmoxApi.js").PveDecodeError, R>) =>
  effect.pipe(
    Effect.map(Option.some),
    Effect.catchTag("PveApiError", (error) => (error.classification === "notFound" ? Effect.succeed(Option.none()) : Effect.fail(error)))
  )

/**
 * Where this instance's VM is now, if it exists and is ours: its node (PVE HA may have moved it). A VM that
 * is not ours (`vmCheck.ts`) is never touched: another VM at the VMID while ours is gone counts as gone; one
 * while ours exists elsewhere, or ours by name but another log's by its notes, stops the saga (`VmMismatch`)
 * — except for an operator's delete, the deliberate way out of a hold: the instance's record goes, the VM
 * stays (one named after it is then an orphan for the GC to confirm and collect).
 */
const locateOurVm = (instance: Instance, step: string) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const at = yield* vmOfInstance(instance, step).pipe(
      Effect.catchTag("VmMismatch", (mismatch) =>
        instance.deleteReason === "operator"
          ? Effect.as(
            Effect.logWarning(`${mismatch.message}; deleted by an operator, so only the instance's record goes (no VM is touched)`),
            { _tag: "Gone", reason: mismatch.detail } as const
          )
          : Effect.fail(mismatch))
    )
    switch (at._tag) {
      case "Gone":
        return Option.none<{ readonly node: string; readonly running: boolean }>()
      case "Busy":
        // A clone still running holds its VMID with a nameless, locked placeholder: calling that "not ours"
        // would record the VM deleted and leave the finished clone behind, untagged (chaos seed 1009).
        return yield* waitingStepError(instance.id, step, `VM ${instance.vmid} is being created (lock: ${at.lock}); waiting to see whose it is`)
      case "Ours": {
        const status = yield* pve.vmStatus(at.node, instance.vmid!)
        return Option.some({ node: at.node, running: status.status === "running" })
      }
    }
  })

/** Runs the next compensation step of a deleting instance; `InstanceGone` is the last. */
export const deleteStep = (instance: Instance) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    const pve = yield* ProxmoxApi
    const limits = yield* SagaLimits
    const id = instance.id
    const wait = (node: string) => (upid: import("../services/ProxmoxApi.js").Upid) => pve.waitTask(node, upid)

    if (!instance.cleanup.vmStopped) {
      const vm = yield* locateOurVm(instance, "stop").pipe(Effect.mapError((e) => (e._tag === "StepError" || e._tag === "VmMismatch" ? e : stepErrorFrom(id, "stop")(e))))
      if (Option.isSome(vm) && vm.value.running) {
        const node = vm.value.node
        yield* limits.onNode(node)(pve.shutdown(node, instance.vmid!, { timeout: 30, forceStop: true })).pipe(
          Effect.flatMap(wait(node)),
          Effect.mapError(stepErrorFrom(id, "stop"))
        )
      }
      yield* log.append([VmStopped.make({ instanceId: id, at: yield* now })])
      return
    }
    if (!instance.cleanup.isoDeleted) {
      const volid = instance.isoVolid
      if (volid !== undefined && instance.node !== undefined) {
        const storage = volid.split(":")[0] ?? ""
        yield* limits.onNode(instance.node)(absentAsNone(pve.deleteVolume(instance.node, storage, volid))).pipe(
          Effect.flatMap((upid) => (Option.isSome(upid) && Option.isSome(upid.value) ? Effect.asVoid(wait(instance.node!)(upid.value.value)) : Effect.void)),
          Effect.mapError(stepErrorFrom(id, "delete-iso"))
        )
      }
      yield* log.append([IsoDeleted.make({ instanceId: id, at: yield* now, volid: volid ?? "" })])
      return
    }
    if (!instance.cleanup.vmDeleted && instance.vmid !== undefined) {
      const vm = yield* locateOurVm(instance, "delete-vm").pipe(Effect.mapError((e) => (e._tag === "StepError" || e._tag === "VmMismatch" ? e : stepErrorFrom(id, "delete-vm")(e))))
      if (Option.isSome(vm)) {
        const node = vm.value.node
        // A VM started again behind our back cannot be destroyed while it runs: stop it first.
        if (vm.value.running) {
          yield* limits.onNode(node)(pve.stop(node, instance.vmid)).pipe(Effect.flatMap(wait(node)), Effect.mapError(stepErrorFrom(id, "delete-vm")))
        }
        yield* limits.onNode(node)(pve.deleteVm(node, instance.vmid, { purge: true, destroyUnreferencedDisks: true })).pipe(
          Effect.flatMap(wait(node)),
          Effect.mapError(stepErrorFrom(id, "delete-vm"))
        )
      }
      yield* log.append([VmDeleted.make({ instanceId: id, at: yield* now, vmid: instance.vmid })])
      return
    }
    yield* log.append([InstanceGone.make({ instanceId: id, at: yield* now })])
    yield* Effect.logInfo(`${id}: deleted (${instance.deleteReason ?? "requested"})${instance.vmid === undefined ? "" : `, VM ${instance.vmid} and its ISO removed`}`)
  })
