/**
 * The delete saga — also the compensation of a failed create, and what scale-down, GC and an operator's
 * delete run: stop the VM if it runs → delete the cloud-init ISO → delete the VM (purge, unreferenced disks
 * too) → the instance is gone. Each step is idempotent (already gone counts as done) and recorded, so a
 * resumed delete skips what finished. A VMID is only ever acted on after checking that the VM there is
 * ours (its name is the instance ID, its notes name no other log; `vmCheck.ts`): VMIDs are reused by PVE.
 *
 * PVE calls of a delete: one config read (the check), the shutdown, the ISO's delete and the VM's delete —
 * no status reads. The stop step tries the shutdown rather than asking whether the VM runs: PVE's shutdown
 * of a VM that does not run ends at once, successfully, so asking would cost the same call and could be
 * stale by the time of the shutdown anyway. The delete-vm step right after the stop step in the same saga
 * run does not check again what that step has just checked (see `DeleteRun`); a step that starts a run —
 * after a crash, a failover or a failed step — always does.
 */
import { Clock, Effect, Option } from "effect"
import { InstanceGone, IsoDeleted, VmDeleted, VmStopped } from "../domain/shard/events.js"
import { type DeleteStage, deleteStageOf, type DeleteStep } from "../domain/shard/sagaView.js"
import type { Instance } from "../domain/shard/state.js"
import { EventLog, type Fenced, type LogUnavailable } from "../services/EventLog.js"
import { type PveApiError, type PveDecodeError, ProxmoxApi } from "../services/ProxmoxApi.js"
import { SagaLimits } from "./SagaLimits.js"
import { abandonDeadClone, anothersDeadClone, placeholderAt } from "./deadClone.js"
import { type StepError, stepErrorFrom, waitingStepError } from "./stepError.js"
import { type VmMismatch, vmOfInstance } from "./vmCheck.js"

const now = Clock.currentTimeMillis

const absentAsNone = <A, R>(effect: Effect.Effect<A, PveApiError | PveDecodeError, R>) =>
  effect.pipe(
    Effect.map(Option.some),
    Effect.catchTag("PveApiError", (error) => (error.classification === "notFound" ? Effect.succeed(Option.none()) : Effect.fail(error)))
  )

/**
 * Where this instance's VM (at `vmid`, the VMID its record names) is now, if it exists and is ours: its node
 * (PVE HA may have moved it). A VM that is not ours (`vmCheck.ts`) is never touched: another VM at the VMID
 * while ours is gone counts as gone; one while ours exists elsewhere, or ours by name but another log's by
 * its notes, stops the saga (`VmMismatch`) — except for an operator's delete, the deliberate way out of a
 * hold: the instance's record goes, the VM stays (one named after it is then an orphan for the GC to
 * confirm and collect).
 */
const locateOurVm = (instance: Instance, vmid: number, step: DeleteStep) =>
  Effect.gen(function* () {
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
        return Option.none<string>()
      case "Busy": {
        // A clone still running holds its VMID with a nameless, locked placeholder: calling that "not ours"
        // would record the VM deleted and leave the finished clone behind, untagged (chaos seed 1009). One
        // that died with its node never finishes: it is let go of (reported), and the instance has no VM.
        const placeholder = yield* placeholderAt(instance, vmid, at.node, instance.cloneRequestedAt)
        if (placeholder._tag === "Dead") {
          yield* abandonDeadClone(instance, placeholder.dead)
          return Option.none<string>()
        }
        if (placeholder._tag === "Another") {
          // Not the instance's clone: ours never got that far, so there is no VM of the instance to delete.
          yield* Effect.logWarning(`${instance.id}: ${anothersDeadClone(vmid, at.node)}; the instance has no VM there`)
          return Option.none<string>()
        }
        return yield* waitingStepError(instance.id, step, `VM ${vmid} is being created (lock: ${at.lock}); waiting to see whose it is`)
      }
      case "Ours":
        return Option.some(at.node)
    }
  }).pipe(Effect.mapError((e) => (e._tag === "StepError" || e._tag === "VmMismatch" || e._tag === "Fenced" || e._tag === "LogUnavailable" ? e : stepErrorFrom(instance.id, step)(e))))

const span = (step: DeleteStep) => `deleteSaga.${step}`

/**
 * What one run of an instance's saga fiber (the steps it takes one after another, until it ends or a step
 * fails) has found out itself: the VM at `vmid` on `node` was checked to be ours by this run's stop step. The
 * delete-vm step of the same run acts on it without a second look — within a term only this leader writes
 * the log, and the few seconds of an ISO delete in between are no more than the create steps allow between
 * a check and a call — while a new run (after a crash, a failover, a failed step and its backoff) starts
 * empty, so its first step that touches the VM checks again.
 */
export interface DeleteRun {
  verified?: { readonly vmid: number; readonly node: string }
}

/** A fresh run: nothing verified yet. */
export const newDeleteRun = (): DeleteRun => ({})

/** Without a VMID there was never a VM (the create failed before its clone): nothing to stop. */
const stopStep = Effect.fn(span("stop"))(function* (instance: Instance, { vmid }: DeleteStage<"stop">, run: DeleteRun) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const limits = yield* SagaLimits
  const id = instance.id
  if (vmid !== undefined) {
    const vm = yield* locateOurVm(instance, vmid, "stop")
    if (Option.isSome(vm)) {
      const node = vm.value
      // Tried whether or not the VM runs (no status read): qemu-server's stop returns at once when no QEMU
      // process runs, so a stopped VM costs one quick task, and a paused one is stopped (forceStop).
      yield* limits.onNode(node)(pve.shutdown(node, vmid, { timeout: 30, forceStop: true })).pipe(
        Effect.flatMap((upid) => pve.waitTask(node, upid)),
        Effect.mapError(stepErrorFrom(id, "stop"))
      )
      run.verified = { vmid, node }
    }
  }
  yield* log.append([VmStopped.make({ instanceId: id, at: yield* now })])
})

const deleteIsoStep = Effect.fn(span("delete-iso"))(function* (instance: Instance, { volid, node }: DeleteStage<"delete-iso">, _run: DeleteRun) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const limits = yield* SagaLimits
  const id = instance.id
  if (volid !== undefined && node !== undefined) {
    const storage = volid.split(":")[0] ?? ""
    yield* limits.onNode(node)(absentAsNone(pve.deleteVolume(node, storage, volid))).pipe(
      Effect.flatMap((upid) => (Option.isSome(upid) && Option.isSome(upid.value) ? Effect.asVoid(pve.waitTask(node, upid.value.value)) : Effect.void)),
      Effect.mapError(stepErrorFrom(id, "delete-iso"))
    )
  }
  yield* log.append([IsoDeleted.make({ instanceId: id, at: yield* now, volid: volid ?? "" })])
})

const deleteVmStep = Effect.fn(span("delete-vm"))(function* (instance: Instance, { vmid }: DeleteStage<"delete-vm">, run: DeleteRun) {
  const log = yield* EventLog
  const pve = yield* ProxmoxApi
  const limits = yield* SagaLimits
  const id = instance.id
  // Checked by this run's stop step a moment ago (see `DeleteRun`), or checked now.
  const verified = run.verified
  const vm = verified !== undefined && verified.vmid === vmid ? Option.some(verified.node) : yield* locateOurVm(instance, vmid, "delete-vm")
  if (Option.isSome(vm)) {
    const node = vm.value
    const destroy = limits.onNode(node)(pve.deleteVm(node, vmid, { purge: true, destroyUnreferencedDisks: true })).pipe(
      Effect.flatMap((upid) => pve.waitTask(node, upid))
    )
    // PVE refuses to destroy a running VM. The stop step left it stopped, so its status is read only when the
    // destroy fails: one started again behind our back is stopped, then destroyed; any other failure stands.
    const destroyed = yield* destroy.pipe(
      Effect.catchAll((error) =>
        pve.vmStatus(node, vmid).pipe(
          Effect.orElseFail(() => error),
          Effect.flatMap((status) =>
            status.status === "running"
              ? limits.onNode(node)(pve.stop(node, vmid)).pipe(Effect.flatMap((upid) => pve.waitTask(node, upid)), Effect.zipRight(destroy))
              : Effect.fail(error)
          )
        )
      ),
      Effect.mapError(stepErrorFrom(id, "delete-vm"))
    )
    if (destroyed.exitstatus?.startsWith("WARNINGS") === true) yield* removeLeftDisks(id, node, vmid).pipe(Effect.mapError(stepErrorFrom(id, "delete-vm")))
  } else if (instance.node !== undefined) {
    // Gone before this run destroyed it: an earlier run's destroy whose end nobody read (a crash, a lost
    // lease) may have ended with warnings, a disk left. Looked for once, here; rare, so the calls are too.
    yield* removeLeftDisks(id, instance.node, vmid).pipe(Effect.mapError(stepErrorFrom(id, "delete-vm")))
  }
  yield* log.append([VmDeleted.make({ instanceId: id, at: yield* now, vmid })])
})

/**
 * After a destroy that ended with warnings: PVE removes the VM's config even when it cannot remove a disk
 * ("could not remove disk …, check manually"), and such a disk would stay for good — nothing else names it.
 * Every image volume still carrying the VMID is deleted, on each image storage of the node, while no VM in the
 * cluster holds the VMID again (a VM created there since owns its disks; `nextid` with the VMID says whether
 * it is free, cluster-wide and at once). Only after warnings, or when a resumed delete finds the VM already
 * gone: a clean destroy costs nothing.
 */
const removeLeftDisks = (id: string, node: string, vmid: number) =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const storages = yield* pve.listStorage(node, { content: "images", enabled: true })
    for (const storage of storages) {
      const left = yield* pve.listStorageContent(node, storage.storage, { content: "images", vmid })
      for (const volume of left.filter((entry) => entry.vmid === vmid)) {
        const reused = yield* pve.nextId(vmid).pipe(
          Effect.as(false),
          Effect.catchTag("PveApiError", (error) => (error.classification === "conflict" ? Effect.succeed(true) : Effect.fail(error)))
        )
        if (reused) return yield* Effect.logWarning(`${id}: VM ${vmid} exists again on ${node}; the disks its destroy left (${volume.volid} …) are its now`)
        const task = yield* pve.deleteVolume(node, storage.storage, volume.volid)
        if (Option.isSome(task)) yield* pve.waitTask(node, task.value)
        yield* Effect.logWarning(`${id}: removed disk ${volume.volid}, which the destroy of VM ${vmid} left behind (it ended with warnings)`)
      }
    }
  })

const forgetStep = Effect.fn(span("forget"))(function* (instance: Instance, { vmid }: DeleteStage<"forget">, _run: DeleteRun) {
  const log = yield* EventLog
  const id = instance.id
  yield* log.append([InstanceGone.make({ instanceId: id, at: yield* now })])
  yield* Effect.logInfo(`${id}: deleted (${instance.deleteReason ?? "requested"})${vmid === undefined ? "" : `, VM ${vmid} and its ISO removed`}`)
})

type DeleteStepFailure = StepError | VmMismatch | Fenced | LogUnavailable

type DeleteStepOf<S extends DeleteStep> = (instance: Instance, stage: DeleteStage<S>, run: DeleteRun) => Effect.Effect<void, DeleteStepFailure, EventLog | ProxmoxApi | SagaLimits>

/** The step for each stage of a delete; a stage added to `DeleteStep` does not compile until it has one. */
export const DELETE_STEPS: { readonly [S in DeleteStep]: DeleteStepOf<S> } = {
  stop: stopStep,
  "delete-iso": deleteIsoStep,
  "delete-vm": deleteVmStep,
  forget: forgetStep
}

const stepOf = <S extends DeleteStep>(instance: Instance, stage: DeleteStage<S>, run: DeleteRun) => DELETE_STEPS[stage.step](instance, stage, run)

/**
 * Runs the next compensation step of a deleting instance; `InstanceGone` is the last. `run` is the saga
 * run's memory (`DeleteRun`); without one the step checks everything itself, as the first step of a run.
 */
export const deleteStep = Effect.fn("deleteSaga")(function* (instance: Instance, run: DeleteRun = newDeleteRun()) {
  return yield* stepOf(instance, deleteStageOf(instance), run)
})
