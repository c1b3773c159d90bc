/**
 * What a leader knows, for one term, about VMs that carry this shard's tags but belong to another event
 * log (their managed notes name another log's identity): a server running the same shard from another
 * bucket or prefix, or a log that was replaced. Such VMs are never adopted or deleted. A log that has never
 * had an instance and meets them *holds*: it creates, adopts and deletes nothing until an operator decides
 * (`nstance-admin adopt --from-log <id>`, or stopping the server that points at the wrong bucket), because
 * a fresh log beside another log's VMs is far more likely a mistake than a new shard.
 */
import { Context, Effect, Layer, Option, SubscriptionRef } from "effect"

/** VMs of other logs seen on the last look, by log ID: their VMIDs, ascending. */
export type ForeignVms = ReadonlyMap<string, ReadonlyArray<number>>

export interface OwnershipShape {
  /** The other logs' VMs as last seen (at the term's start, then by every GC pass). */
  readonly foreign: Effect.Effect<ForeignVms>
  /** Records what was seen; a change is logged once (a warning, unless the log holds: the hold says it as an error). */
  readonly setForeign: (foreign: ForeignVms) => Effect.Effect<void>
  /** The hold's one-line reason while this (fresh) log holds; none when it works normally. */
  readonly hold: SubscriptionRef.SubscriptionRef<Option.Option<string>>
  /** Holds, for log `logId` meeting `foreign`; says why once, as an error. */
  readonly startHold: (logId: string, foreign: ForeignVms) => Effect.Effect<void>
  /** Ends the hold (an operator's adoption, or no other log's VM left). */
  readonly endHold: Effect.Effect<void>
  /** Whether work is held right now. */
  readonly held: Effect.Effect<boolean>
  /** What `nstance-admin status` shows about ownership: the hold, else the other logs' VMs; none when all is ours. */
  readonly notice: Effect.Effect<Option.Option<string>>
  /**
   * The other log a VM's notes named when last read this term, by VMID and name: the GC reads a VM's notes once,
   * not on every pass. Forgotten when this log adopts the VM.
   */
  readonly otherOwner: (vmid: number, name: string) => Effect.Effect<Option.Option<string>>
  readonly noteOtherOwner: (vmid: number, name: string, logId: string | undefined) => Effect.Effect<void>
}

export class Ownership extends Context.Tag("nstance/Ownership")<Ownership, OwnershipShape>() {}

const countOf = (foreign: ForeignVms) => [...foreign.values()].reduce((sum, vmids) => sum + vmids.length, 0)
const vms = (n: number) => (n === 1 ? "1 VM" : `${n} VMs`)

const describeLogs = (foreign: ForeignVms) =>
  [...foreign].map(([logId, vmids]) => `${logId} (${vmids.length === 1 ? "VM" : "VMs"} ${vmids.slice(0, 5).join(", ")}${vmids.length > 5 ? ", …" : ""})`).join(", ")

/** The one line a held log says (logged once as an error, and shown by `status`). */
export const holdReason = (logId: string, foreign: ForeignVms): string => {
  const first = [...foreign.keys()][0] ?? "<id>"
  return `this shard's event log ${logId} is new, but ${vms(countOf(foreign))} with this shard's tags belong to another log: ${describeLogs(foreign)}; ` +
    `another server may be running this shard from another bucket or prefix. Nothing is created, adopted or deleted until you decide: ` +
    `stop this server if it points at the wrong bucket, or take those VMs over into this log with \`nstance-admin adopt --from-log ${first}\``
}

/** The line a working log says about other logs' VMs it leaves alone. */
export const foreignNotice = (foreign: ForeignVms): string => {
  const first = [...foreign.keys()][0] ?? "<id>"
  return `${vms(countOf(foreign))} with this shard's tags belong to another event log, not this one: ${describeLogs(foreign)}; ` +
    `they are left alone (never adopted or deleted). If that log is gone for good, \`nstance-admin adopt --from-log ${first}\` takes them over`
}

export const OwnershipLive = Layer.effect(
  Ownership,
  Effect.gen(function* () {
    let foreign: ForeignVms = new Map()
    let reported = "[]"
    let holding: string | undefined
    const owners = new Map<string, string>()
    const key = (vmid: number, name: string) => `${vmid}/${name}`
    const hold = yield* SubscriptionRef.make(Option.none<string>())
    return Ownership.of({
      foreign: Effect.sync(() => foreign),
      setForeign: (next) =>
        Effect.gen(function* () {
          foreign = next
          const seen = JSON.stringify([...next])
          if (seen === reported) return
          reported = seen
          // While holding, the reason follows what is seen (status shows it); the error was said once.
          if (holding !== undefined) {
            if (next.size > 0) yield* SubscriptionRef.set(hold, Option.some(holdReason(holding, next)))
            return
          }
          if (next.size > 0) yield* Effect.logWarning(foreignNotice(next))
        }),
      startHold: (logId, next) =>
        Effect.gen(function* () {
          holding = logId
          foreign = next
          reported = JSON.stringify([...next])
          const reason = holdReason(logId, next)
          yield* SubscriptionRef.set(hold, Option.some(reason))
          yield* Effect.logError(reason)
        }),
      endHold: Effect.suspend(() => {
        holding = undefined
        // Other logs' VMs still there are said again, now as what a working log leaves alone.
        reported = "[]"
        return SubscriptionRef.set(hold, Option.none())
      }),
      hold,
      held: Effect.map(SubscriptionRef.get(hold), Option.isSome),
      notice: Effect.gen(function* () {
        const reason = yield* SubscriptionRef.get(hold)
        if (Option.isSome(reason)) return reason
        return foreign.size === 0 ? Option.none() : Option.some(foreignNotice(foreign))
      }),
      otherOwner: (vmid, name) => Effect.sync(() => Option.fromNullable(owners.get(key(vmid, name)))),
      noteOtherOwner: (vmid, name, logId) =>
        Effect.sync(() => {
          if (logId === undefined) owners.delete(key(vmid, name))
          else owners.set(key(vmid, name), logId)
        })
    })
  })
)
