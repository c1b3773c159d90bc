/**
 * One fiber per instance that is not at rest (being created or deleted), in a `FiberMap` keyed by
 * instance ID, so a create and a delete of one instance never run at once and a second `ensure` of a
 * running saga is a no-op. A saga fiber steps its instance until it runs or is gone. A step that fails
 * for good is recorded (`StepFailed`) and compensated (`DeleteRequested`, then the delete steps); one
 * that fails for a reason that may pass (PVE unreachable, a lock, no room, refused credentials) is
 * recorded and the saga restarts after a capped backoff — never dropped. A step that finds another VM than
 * the log says at the instance's VMID (`VmMismatch`) is recorded (`VmMismatched`): the fold holds the
 * instance and its saga stops, with nothing done to either VM. `Fenced` ends the leader's scope.
 */
import { Cause, Clock, Context, Effect, Exit, FiberMap, Layer, Option } from "effect"
import { DeleteRequested, StepFailed, VmMismatched } from "../domain/shard/events.js"
import { boundText } from "../domain/errorText.js"
import { isAtRest } from "../domain/shard/sagaView.js"
import { getInstance, type Instance } from "../domain/shard/state.js"
import { EventLog, type Fenced, type LogUnavailable } from "../services/EventLog.js"
import { createStep } from "./createSaga.js"
import { deleteStep, newDeleteRun } from "./deleteSaga.js"
import { sagaRestart } from "./policies.js"
import { StepError } from "./stepError.js"
import { VmMismatch } from "./vmCheck.js"
import { ShardContext } from "./ShardContext.js"
import { timedSagaStep } from "../metrics/metrics.js"

/** Whether nothing is left to do for the instance until something changes (registration, a delete request). */
export const atRest = (instance: Instance) => isAtRest(instance.phase)

export interface SagaRunnerShape {
  /** Starts the saga of `instanceId` unless it is already running or the instance is at rest. */
  readonly ensure: (instanceId: string) => Effect.Effect<void>
  /** Completes with the failure that should end leadership (`Fenced`, or the log lost for good). */
  readonly fatal: Effect.Effect<never, Fenced | LogUnavailable>
}

export class SagaRunner extends Context.Tag("nstance/SagaRunner")<SagaRunner, SagaRunnerShape>() {}

export const SagaRunnerLive = Layer.scoped(
  SagaRunner,
  Effect.gen(function* () {
    const log = yield* EventLog
    const context = yield* Effect.context<Effect.Effect.Context<ReturnType<typeof createStep>> | Effect.Effect.Context<ReturnType<typeof deleteStep>>>()
    const sagas = yield* FiberMap.make<string>()
    const fatal = yield* Effect.makeLatch(false)
    let fatalError: Fenced | LogUnavailable | undefined

    /** Records a VM that is not what the log says; the fold then holds the instance. */
    const recordMismatch = (mismatch: VmMismatch) =>
      Effect.gen(function* () {
        const { detail, found, instanceId, node, otherLog, step, vmid } = mismatch
        yield* log.append([VmMismatched.make({
          instanceId, at: yield* Clock.currentTimeMillis, step, vmid, node, found: boundText(found, 256), detail: boundText(detail),
          ...(otherLog === undefined ? {} : { otherLog: boundText(otherLog, 256) })
        })])
        yield* Effect.logError(mismatch.message)
      })

    /** Steps the instance until it is at rest or gone; fails with the step error that stopped it. */
    const drive = (instanceId: string) =>
      Effect.gen(function* () {
        let resumed = true
        // What this run's delete steps checked themselves; a new run (after a failure) starts with nothing.
        const deleteRun = newDeleteRun()
        for (;;) {
          const instance = getInstance(yield* log.state, instanceId)
          // A held instance (an impossible history, a VM that is not what the log says) is left to an operator.
          if (Option.isNone(instance) || atRest(instance.value) || instance.value.held !== undefined) return
          const step = instance.value.phase === "deleting" ? deleteStep(instance.value, deleteRun) : createStep(instance.value, resumed)
          const outcome = yield* Effect.exit(step.pipe(
            timedSagaStep(Context.get(context, ShardContext).shard, instance.value.phase),
            Effect.as("stepped" as const),
            Effect.catchIf((error) => error instanceof VmMismatch, (mismatch) => Effect.as(recordMismatch(mismatch), "held" as const))
          ))
          resumed = false
          if (Exit.isSuccess(outcome)) {
            if (outcome.value === "held") return
            continue
          }
          const typed = Option.getOrUndefined(Cause.failureOption(outcome.cause))
          if (!(typed instanceof StepError)) return yield* Effect.failCause(outcome.cause)
          // A failed delete, or a failure that may pass, is retried; any other failed create is compensated.
          const retried = typed.retryable || instance.value.phase === "deleting"
          const at = yield* Clock.currentTimeMillis
          yield* log.append([
            StepFailed.make({ instanceId, at, step: typed.step, errorClass: typed.errorClass, message: boundText(typed.detail), attempt: instance.value.failures + 1 }),
            ...(retried ? [] : [DeleteRequested.make({ instanceId, at, reason: "compensation" })])
          ])
          if (retried) {
            yield* (typed.errorClass === "unauthorized" ? Effect.logError(typed.message) : Effect.logWarning(typed.message))
            return yield* typed
          }
          yield* Effect.logWarning(`${typed.message}; compensating, a replacement follows`)
        }
      }).pipe(Effect.annotateLogs("instance", instanceId))

    const supervised = (instanceId: string) =>
      drive(instanceId).pipe(
        Effect.retry({ schedule: sagaRestart, while: (error) => error instanceof StepError }),
        Effect.catchAll((error) =>
          error instanceof StepError
            ? Effect.void
            : Effect.sync(() => { fatalError ??= error }).pipe(Effect.zipRight(fatal.open))
        ),
        Effect.catchAllDefect((defect) => Effect.logError(`saga of ${instanceId} died`, defect))
      )

    return SagaRunner.of({
      ensure: (instanceId) =>
        FiberMap.run(sagas, instanceId, Effect.provide(supervised(instanceId), context), { onlyIfMissing: true }).pipe(Effect.asVoid),
      // The latch opens only after the error is set.
      fatal: fatal.await.pipe(Effect.zipRight(Effect.suspend(() => (fatalError === undefined ? Effect.dieMessage("saga runner: fatal opened without an error") : Effect.fail(fatalError)))))
    })
  })
)
