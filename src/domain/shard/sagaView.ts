/**
 * What the sagas read of an instance, typed by where it stands. `Instance` is the fold's record: every field
 * past the request is optional because it is filled in as the events arrive. A saga step runs from one phase
 * and relies on what the events leading there recorded; `inPhase` checks that once and hands the step a
 * record whose type says so, instead of each step asserting it field by field. Nothing here changes the
 * record itself or its stored form (snapshots encode `Instance` as it is).
 */
import { Data, Either } from "effect"
import type { Instance, Phase } from "./state.js"

/** The create saga's steps: the names their step errors, spans and the `step` metric label carry. */
export type CreateStep = "place" | "template" | "iso" | "clone" | "configure" | "resize" | "start"

/** The delete saga's steps, in order; `forget` drops the record once the VM and its ISO are gone. */
export type DeleteStep = "stop" | "delete-iso" | "delete-vm" | "forget"

export type SagaStep = CreateStep | DeleteStep

/**
 * What a saga does from each phase: a create step, the delete saga (one metric label for all its steps), or
 * nothing until something changes (`none`: the instance is at rest).
 */
export const SAGA_OF_PHASE = {
  requested: "place",
  placed: "template",
  templated: "iso",
  "iso-uploading": "iso",
  "iso-ready": "clone",
  cloning: "clone",
  cloned: "configure",
  configured: "resize",
  starting: "start",
  running: "none",
  registered: "none",
  deleting: "delete"
} as const satisfies { readonly [P in Phase]: CreateStep | "delete" | "none" }

export type PhaseWork = (typeof SAGA_OF_PHASE)[Phase]

/** Whether an instance in `phase` needs no saga until something changes (registration, a delete request). */
export const isAtRest = (phase: Phase): boolean => SAGA_OF_PHASE[phase] === "none"

type OptionalField = "node" | "templateVmid" | "templateNode" | "vmid"

/**
 * The fields the step from each phase relies on; the events that lead to the phase record every one of them
 * (`NodeChosen` the node, `TemplateResolved` and `CloneRequested` the template, `Cloned` and `Adopted` the
 * VMID). Only what the step reads is listed: a log written by an older build may lack the rest.
 */
const PHASE_FIELDS = {
  requested: [],
  placed: ["node"],
  templated: ["node", "templateVmid", "templateNode"],
  "iso-uploading": ["node", "templateVmid", "templateNode"],
  "iso-ready": ["node", "templateVmid", "templateNode"],
  cloning: ["node", "templateVmid", "templateNode"],
  cloned: ["node", "vmid"],
  configured: ["node", "vmid"],
  starting: ["node", "vmid"],
  running: [],
  registered: [],
  deleting: []
} as const satisfies { readonly [P in Phase]: ReadonlyArray<OptionalField> }

type FieldsOf<P extends Phase> = (typeof PHASE_FIELDS)[P][number]

type Present<K extends OptionalField> = { readonly [F in K]-?: NonNullable<Instance[F]> }

/**
 * An instance in phase `P` with the fields that phase has as required ones. Written as a mapped type indexed
 * by `P` so that `InstanceIn` (all phases) is the union of the phases' records, and a table of steps indexed
 * by phase can be called with the record of that phase.
 */
export type InstanceIn<P extends Phase = Phase> = { readonly [K in P]: Instance & { readonly phase: K } & Present<FieldsOf<K>> }[P]

/** A record that lacks a field its phase has: the fold let an event sequence through that cannot lead there. */
export class RecordIncomplete extends Data.TaggedError("RecordIncomplete")<{
  readonly instanceId: string
  readonly phase: Phase
  readonly missing: ReadonlyArray<OptionalField>
}> {
  override get message() {
    return `the log's record of ${this.instanceId} in phase ${this.phase} lacks ${this.missing.join(", ")}, which the events leading there record (a fold bug)`
  }
}

const hasFields = <K extends OptionalField>(instance: Instance, fields: ReadonlyArray<K>): instance is Instance & Present<K> =>
  fields.every((field) => instance[field] !== undefined)

/** The instance as the record of its phase, or which of that phase's fields it lacks. */
export const inPhase = <P extends Phase>(instance: Instance & { readonly phase: P }): Either.Either<InstanceIn<P>, RecordIncomplete> => {
  const fields: ReadonlyArray<FieldsOf<P>> = PHASE_FIELDS[instance.phase]
  if (hasFields(instance, fields)) return Either.right(instance)
  return Either.left(new RecordIncomplete({ instanceId: instance.id, phase: instance.phase, missing: fields.filter((field) => instance[field] === undefined) }))
}

/** The stages of a delete by what each acts on; `deleteStageOf` gives the next one. */
interface DeleteStages {
  /** The VM is stopped if it runs; none to stop without a VMID. */
  readonly stop: { readonly vmid: number | undefined }
  /** The cloud-init ISO is deleted where it was uploaded; the event records the volid even when there is none to delete. */
  readonly "delete-iso": { readonly volid: string | undefined; readonly node: string | undefined }
  readonly "delete-vm": { readonly vmid: number }
  readonly forget: { readonly vmid: number | undefined }
}

export type DeleteStage<S extends DeleteStep = DeleteStep> = { readonly [K in S]: DeleteStages[K] & { readonly step: K } }[S]

/**
 * The next step of a deleting instance, from what compensation has recorded so far (`cleanup`): each step's
 * result event marks it done, so a resumed delete skips what finished. An instance without a VMID has no VM
 * to delete.
 */
export const deleteStageOf = (instance: Instance): DeleteStage => {
  const { cleanup, vmid } = instance
  if (!cleanup.vmStopped) return { step: "stop", vmid }
  if (!cleanup.isoDeleted) return { step: "delete-iso", volid: instance.isoVolid, node: instance.node }
  if (!cleanup.vmDeleted && vmid !== undefined) return { step: "delete-vm", vmid }
  return { step: "forget", vmid }
}
