/**
 * The look every step takes at an instance's VM before acting on the VMID the log recorded for it. PVE reuses
 * VMIDs, and a log can be wrong (a hand-edited or foreign segment): a VMID is only acted on while the VM there
 * is named after the instance (the VM name is the instance ID) and its notes name no other log. Three answers:
 *
 * - `Ours`: named after the instance, and ours by its notes (or unmarked: the original server's VMs).
 * - `Gone`: no VM at the VMID, or another VM there while no VM anywhere is named after the instance — ours
 *   vanished and PVE gave its VMID away. The step may go on as if the VM were gone; the VM there is never touched.
 * - `VmMismatch` (a failure): another VM at the VMID while the instance's own VM exists elsewhere — the log's
 *   VMID is wrong — or a VM named after the instance whose notes name another log. Nothing is done to either
 *   VM; the saga runner records it (`VmMismatched`) and the fold holds the instance.
 */
import { Data, Effect, Option } from "effect"
import type { VmConfig } from "../domain/pve/schemas.js"
import { ownerByNotes } from "../domain/managedNotes.js"
import type { Instance } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"
import { type PveError, ProxmoxApi, type VmResourceInfo } from "../services/ProxmoxApi.js"

export class VmMismatch extends Data.TaggedError("VmMismatch")<{
  readonly instanceId: string
  readonly step: string
  readonly vmid: number
  readonly node: string
  /** The name of the VM at `vmid`. */
  readonly found: string
  /** The log the VM's notes name, when that is the mismatch. */
  readonly otherLog?: string
  readonly detail: string
}> {
  override get message() {
    return `${this.instanceId}: ${this.step} stopped: ${this.detail}`
  }
}

export type VmAt =
  | { readonly _tag: "Ours"; readonly node: string; readonly config: VmConfig }
  | { readonly _tag: "Gone"; readonly reason: string }
  /** A clone still running holds its VMID with a nameless, locked placeholder: whose it is cannot be told yet. */
  | { readonly _tag: "Busy"; readonly node: string; readonly lock: string }

const absentAsNone = <A, R>(effect: Effect.Effect<A, PveError, R>) =>
  effect.pipe(
    Effect.map(Option.some),
    Effect.catchTag("PveApiError", (error) => (error.classification === "notFound" ? Effect.succeed(Option.none<A>()) : Effect.fail(error)))
  )

/** What is at `instance.vmid` now (see the module comment); the instance must have a VMID. */
export const vmOfInstance = (instance: Instance, step: string): Effect.Effect<VmAt, PveError | VmMismatch, ProxmoxApi | EventLog> =>
  Effect.gen(function* () {
    const pve = yield* ProxmoxApi
    const logId = (yield* (yield* EventLog).state).logId
    const id = instance.id
    const vmid = instance.vmid
    if (vmid === undefined) return { _tag: "Gone", reason: `${id} has no VMID` } satisfies VmAt
    // The cluster listing (it lags ~10 s) is read only when the VM is not where the log says, or is not ours.
    let listing: ReadonlyArray<VmResourceInfo> | undefined
    const list = Effect.suspend(() =>
      listing === undefined ? Effect.tap(pve.vmResources(), (read) => Effect.sync(() => { listing = read })) : Effect.succeed(listing)
    )
    const recordedNode = instance.node
    let located = recordedNode === undefined
      ? Option.none<{ readonly node: string; readonly config: VmConfig }>()
      : Option.map(yield* absentAsNone(pve.vmConfig(recordedNode, vmid)), (config) => ({ node: recordedNode, config }))
    if (Option.isNone(located)) {
      // Not on its node: PVE HA may have moved it.
      const there = (yield* list).find((vm) => vm.vmid === vmid)
      if (there === undefined) return { _tag: "Gone", reason: `no VM ${vmid} in the cluster` } satisfies VmAt
      located = Option.map(yield* absentAsNone(pve.vmConfig(there.node, vmid)), (config) => ({ node: there.node, config }))
      if (Option.isNone(located)) return { _tag: "Gone", reason: `no VM ${vmid} in the cluster` } satisfies VmAt
    }
    const { node, config: found } = located.value
    if (found.name === undefined && found.lock !== undefined) return { _tag: "Busy", node, lock: found.lock } satisfies VmAt
    if (found.name !== id) {
      const name = found.name ?? "(no name)"
      const own = (yield* list).find((vm) => vm.name === id && vm.vmid !== vmid && !vm.template)
      if (own === undefined) return { _tag: "Gone", reason: `VM ${vmid} on ${node} is now ${name}, and no VM is named ${id}` } satisfies VmAt
      return yield* new VmMismatch({
        instanceId: id,
        step,
        vmid,
        node,
        found: name,
        detail: `VM ${vmid} on ${node}, which the log records for ${id}, is named ${name}, while ${id} is VM ${own.vmid} on ${own.node}: ` +
          `the log's VMID is wrong; neither VM is touched and ${id} is held until an operator deletes it`
      })
    }
    const owner = ownerByNotes(found.description, logId)
    if (owner._tag === "other") {
      return yield* new VmMismatch({
        instanceId: id,
        step,
        vmid,
        node,
        found: id,
        otherLog: owner.logId,
        detail: `VM ${vmid} on ${node} is named ${id}, but its notes say event log ${owner.logId} owns it, not this shard's log ${logId ?? "?"}: ` +
          `it is left alone and ${id} is held until an operator deletes it`
      })
    }
    return { _tag: "Ours", node, config: found } satisfies VmAt
  })
