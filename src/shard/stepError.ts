/**
 * What a failed saga step means for the saga: one typed error carrying the step, the class of the failure
 * and whether waiting can help. The PVE error classes (src/domain/pve/errors.ts) decide it; a step never
 * guesses from message text itself.
 */
import { Data } from "effect"
import { boundText } from "../domain/errorText.js"
import type { ErrorClass } from "../domain/shard/events.js"
import type { PhaseWork, SagaStep } from "../domain/shard/sagaView.js"
import type { PveApiError, PveDecodeError, TaskFailed, TaskTimeout } from "../services/ProxmoxApi.js"

/**
 * The step a failure is recorded under (`StepFailed.step`): a saga step, or the work of the phase when the
 * instance's record did not let any step start.
 */
export type StepName = SagaStep | PhaseWork

export class StepError extends Data.TaggedError("StepError")<{
  readonly instanceId: string
  readonly step: StepName
  readonly errorClass: ErrorClass
  readonly detail: string
  /**
   * True: the instance stays where it is and the saga is run again after a backoff (PVE unreachable,
   * locks, no node with room, credentials refused). False: the create is compensated and replaced.
   */
  readonly retryable: boolean
}> {
  override get message() {
    return `${this.instanceId}: ${this.step} failed (${this.errorClass}): ${this.detail}`
  }
}

type PveFailure = PveApiError | PveDecodeError | TaskFailed | TaskTimeout

const classOf = (error: PveFailure): ErrorClass => {
  switch (error._tag) {
    case "PveApiError":
    case "TaskFailed":
      return error.classification
    case "PveDecodeError":
      return "permanent"
    case "TaskTimeout":
      return "timeout"
  }
}

/** Transient failures and refused credentials are waited out; the rest end the create. */
export const isRetryableClass = (errorClass: ErrorClass): boolean => errorClass === "transient" || errorClass === "unauthorized"

export const stepErrorFrom = (instanceId: string, step: StepName) => (error: PveFailure): StepError => {
  const errorClass = classOf(error)
  return new StepError({ instanceId, step, errorClass, detail: boundText(error.message), retryable: isRetryableClass(errorClass) })
}

export const permanentStepError = (instanceId: string, step: StepName, detail: string) =>
  new StepError({ instanceId, step, errorClass: "permanent", detail: boundText(detail), retryable: false })

export const waitingStepError = (instanceId: string, step: StepName, detail: string) =>
  new StepError({ instanceId, step, errorClass: "transient", detail: boundText(detail), retryable: true })
