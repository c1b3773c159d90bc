/**
 * The rules for instances that retire — rotation for config drift, expiry, health silence
 * (src/domain/shard/lifecycle.ts, the cap in src/domain/shard/plan.ts) — judged on one shard's log as it
 * landed, segment by segment, with the product's fold giving the state after each.
 *
 * The history does not record what state a leader read when it decided, only what landed and when. A
 * leader's state is always a prefix of the landed log — no shorter than what it replayed at its election
 * (its `LeaderElected`), no longer than the segment before its decision's — and the pass that decided read
 * it at the virtual time its events carry (`at`). So a rule holds the leader to what it must have seen: a
 * fact counts as seen when its segment landed at an earlier virtual millisecond and its write was not
 * ambiguous (an ambiguous segment is not in the writer's state until the next write settles it). Where a
 * rule needs a count the leader compared with a size, the check is the most favourable one over every
 * state the leader may have read, against the sizes in force within a second of the decision. What is
 * left is what the design promises whatever the faults; nothing here is judged on timing.
 *
 * - size + 1: a creation for a group with an instance retiring (seen) leaves the group at no more than
 *   size + 1 VMs: live members (not operator-requested) and members whose VM delete is still under way
 *   (seen). The state alone may exceed it — the size went down, several instances went silent at once —
 *   but reconcile must not add to it.
 * - one at a time: a rotation (config drift) or eligible expiry starts only while no other instance of its
 *   group retires and none of its VMs is still being deleted (both seen): that is what keeps a rotation at
 *   size + 1. Forced expiry and health silence do not wait.
 * - drains as configured: a drain's `deleteAt` is its group's drain timeout after its start, and scale-down
 *   never picks a retiring instance (which would cut its drain short, or take it before its replacement).
 * - replacement first: a retiring instance's drain starts, or it is deleted without one, only when its group
 *   has `size` ready instances besides it (not retiring, or retiring after it and not draining). That holds
 *   for a VM that is stopped too (it is deleted without a drain, but only once replaced); a VM deleted
 *   behind our back goes by GC (`vm-gone`), not by retirement, and an operator's ack ends a drain that
 *   already began with the group at size.
 */
import { Either, HashMap, Option } from "effect"
import { decodeEvent, type ShardEvent } from "../../src/domain/shard/events.js"
import { emptyState, fold, type Instance, type State } from "../../src/domain/shard/state.js"
import type { Violation } from "./checker.js"
import { GROUPS, TENANT } from "./config.js"
import { type ConfigInForce, EPOCH, type StoreWrite } from "./history.js"

/** Virtual time (history ms) at which a segment's facts count as seen: never, for an ambiguous write. */
const seenFrom = (w: StoreWrite): number => (w.outcome === "applied" ? w.settledT ?? Number.POSITIVE_INFINITY : Number.POSITIVE_INFINITY)

/** A group's setting in every config in force at some time within [from, to] (history ms), in config order. */
const settingsWithin = (configs: ReadonlyArray<ConfigInForce>, of: (c: ConfigInForce) => number | undefined, from: number, to: number): Array<number> => {
  const out: Array<number> = []
  let before: number | undefined
  for (const c of configs) {
    const value = of(c)
    if (value === undefined) continue
    if (c.t <= from) before = value
    else if (c.t <= to) out.push(value)
  }
  return before === undefined ? out : [before, ...out]
}

/** Within the second before a decision at `at` (epoch ms): the configs its pass may have read. */
const around = (configs: ReadonlyArray<ConfigInForce>, of: (c: ConfigInForce) => number | undefined, at: number) =>
  settingsWithin(configs, of, at - EPOCH - 1000, at - EPOCH)

const inGroup = (i: Instance, group: string) => i.tenant === TENANT && i.group === group && i.reason !== "operator"

/** Live members of a group as reconcile counts them: not being deleted, not an operator's own. */
const members = (state: State, group: string): Array<Instance> => {
  const out: Array<Instance> = []
  for (const i of HashMap.values(state.instances)) if (i.phase !== "deleting" && inGroup(i, group)) out.push(i)
  return out
}

/** Members being deleted whose VM may still exist (reconcile's `vmsBeingDeleted`). */
const vmsGoing = (state: State, group: string): Array<Instance> => {
  const out: Array<Instance> = []
  for (const i of HashMap.values(state.instances)) {
    if (i.phase === "deleting" && inGroup(i, group) && i.vmid !== undefined && !i.cleanup.vmDeleted) out.push(i)
  }
  return out
}

/** Serving: registered, or running without an agent to wait for. */
const ready = (i: Instance) => i.held === undefined && (i.phase === "registered" || (i.phase === "running" && i.nonceHash === undefined))

/** Retired after `x` in the order replacements serve retirements (oldest first, then by ID). */
const retiredAfter = (y: Instance, x: Instance) => {
  const ya = y.retirement?.at ?? 0
  const xa = x.retirement?.at ?? 0
  return ya > xa || (ya === xa && y.id > x.id)
}

/** Instances that serve in place of retiring `x`: ready and not retiring, or retiring after it and not yet draining. */
const servingBesides = (state: State, x: Instance): number => {
  if (x.group === undefined) return 0
  let n = 0
  for (const y of members(state, x.group)) {
    if (y.id !== x.id && ready(y) && (y.retirement === undefined || (retiredAfter(y, x) && y.drain === undefined))) n++
  }
  return n
}

const short = (id: string) => id.slice(-8)

export interface RetirementJudgement {
  readonly violations: Array<Violation>
  /** Instances that retired, with where their retirement landed. */
  readonly retired: ReadonlyMap<string, number>
  /** Instances whose delete is in the log. */
  readonly deleted: ReadonlySet<string>
}

/** The retirement rules over one shard's landed log segments (in sequence order) and the configs it had. */
export const judgeRetirements = (segments: ReadonlyArray<StoreWrite>, configs: ReadonlyArray<ConfigInForce>): RetirementJudgement => {
  const out: Array<Violation> = []
  const retired = new Map<string, number>()
  const deleted = new Set<string>()
  /** When each retirement, and each member's VM being deleted, counts as seen (history ms). */
  const retiredSeen = new Map<string, number>()
  const goingSeen = new Map<string, number>()
  /** Per retiring instance: the most instances serving besides it in any state the leader may have read. */
  const bestServing = new Map<string, number>()
  let state = emptyState
  const groupNames: ReadonlySet<string> = new Set(GROUPS.map((g) => g.group))

  for (const w of segments) {
    const events: Array<ShardEvent> = []
    for (const encoded of w.events ?? []) {
      const decoded = decodeEvent(encoded)
      if (Either.isRight(decoded)) events.push(decoded.right)
    }
    const at = w.appliedAt ?? w.i
    const before = state
    const bad = (rule: string, message: string) => out.push({ rule, at, message: `${message} (segment ${w.seq}, term ${w.term ?? "?"})` })
    const seenBy = (when: number | undefined, eventAt: number) => when !== undefined && when < eventAt - EPOCH

    for (const e of events) {
      if (e._tag === "RetirementRequested" && !retired.has(e.instanceId)) retired.set(e.instanceId, at)
      if (e._tag === "DeleteRequested") deleted.add(e.instanceId)
      if (!("instanceId" in e)) continue
      const x = HashMap.get(before.instances, e.instanceId)
      if (Option.isNone(x) || x.value.group === undefined || !groupNames.has(x.value.group) || x.value.tenant !== TENANT) continue
      const instance = x.value
      const group = x.value.group

      // One at a time: a rotation or an eligible expiry begins only in a group where nothing retires or goes.
      if (e._tag === "RetirementRequested" && (e.reason === "config-drift" || e.reason === "eligible-expiry") && instance.phase !== "deleting" && instance.reason !== "operator") {
        const retiring = members(before, group).filter((y) => y.id !== instance.id && y.retirement !== undefined && seenBy(retiredSeen.get(y.id), e.at))
        const going = vmsGoing(before, group).filter((y) => seenBy(goingSeen.get(y.id), e.at))
        if (retiring.length > 0 || going.length > 0) {
          bad("one-retirement-at-a-time", `${instance.id} retired (${e.reason}) while ${[
            ...retiring.map((y) => `${short(y.id)} retires (${y.retirement?.reason ?? "?"})`),
            ...going.map((y) => `VM ${y.vmid ?? "?"} of ${short(y.id)} is being deleted`)
          ].join(", ")} in group ${group}`)
        }
      }

      // Scale-down picks from the instances that count towards the size: never one that retires (its drain would be cut short).
      if (e._tag === "DeleteRequested" && e.reason === "scale-down" && instance.phase !== "deleting" && instance.retirement !== undefined && seenBy(retiredSeen.get(instance.id), e.at)) {
        bad("retiring-not-scaled-down", `${instance.id} scaled down while it retires (${instance.retirement.reason}${instance.drain === undefined ? "" : ", draining"})`)
      }

      // A drain lasts the group's drain timeout.
      if (e._tag === "DrainStarted" && instance.drain === undefined && instance.retirement !== undefined && instance.phase !== "deleting") {
        const drains = around(configs, (c) => c.drainMs[group], e.at)
        if (drains.length > 0 && !drains.includes(e.deleteAt - e.at)) bad("drain-as-configured", `${instance.id} drains for ${(e.deleteAt - e.at) / 1000}s, group ${group}'s drain timeout is ${drains.map((d) => `${d / 1000}s`).join(" or ")}`)
      }

      // Replacement first: the drain, or the delete without one, only with the group at size besides it.
      const acting = (e._tag === "DrainStarted" && instance.drain === undefined) ||
        (e._tag === "DeleteRequested" && e.reason === "retired" && (instance.drain === undefined || e.at < instance.drain.deleteAt))
      if (acting && instance.phase !== "deleting" && instance.reason !== "operator") {
        const sizes = around(configs, (c) => c.sizes[group], e.at)
        const size = Math.min(...sizes)
        const serving = bestServing.get(instance.id)
        if (sizes.length > 0 && (serving === undefined || serving < size)) {
          bad("replacement-first", serving === undefined
            ? `${e._tag === "DrainStarted" ? "drain of" : "retirement delete of"} ${instance.id} before its retirement was in the log`
            : `${e._tag === "DrainStarted" ? "drain of" : "retirement delete of"} ${instance.id} (${instance.retirement?.reason ?? "?"}) with at most ${serving} ready instance(s) besides it in group ${group} of size ${size}`)
        }
      }
    }

    state = fold(events, before)
    const touched = new Set(events.flatMap((e) => ("instanceId" in e ? [e.instanceId] : [])))
    for (const id of touched) {
      const i = HashMap.get(state.instances, id)
      if (Option.isNone(i)) continue
      if (i.value.retirement !== undefined && !retiredSeen.has(id)) retiredSeen.set(id, seenFrom(w))
      if (i.value.phase === "deleting" && i.value.vmid !== undefined && !goingSeen.has(id)) goingSeen.set(id, seenFrom(w))
    }

    // Size + 1: what reconcile created here, with a retirement it saw, leaves the group at size + 1 VMs at most.
    const created = new Map<string, number>()
    for (const e of events) {
      if (e._tag === "InstanceRequested" && e.reason !== "operator" && e.tenant === TENANT && groupNames.has(e.group)) created.set(e.group, Math.min(e.at, created.get(e.group) ?? e.at))
    }
    for (const [group, eventAt] of created) {
      const live = members(state, group)
      const retiring = live.filter((y) => y.retirement !== undefined && seenBy(retiredSeen.get(y.id), eventAt))
      if (retiring.length === 0) continue
      const going = vmsGoing(state, group).filter((y) => seenBy(goingSeen.get(y.id), eventAt))
      const sizes = around(configs, (c) => c.sizes[group], eventAt)
      const size = Math.max(...sizes)
      if (sizes.length > 0 && live.length + going.length > size + 1) {
        bad("size-plus-one", `group ${group} of size ${size} has ${live.length + going.length} VMs after a creation while ${retiring.map((y) => short(y.id)).join(", ")} retire(s): ` +
          `${live.length} live (${live.filter((y) => y.retirement !== undefined).length} retiring)${going.length === 0 ? "" : `, ${going.length} being deleted`}`)
      }
    }

    // The states a leader may read from here on: from its election, and from each retirement, on.
    const elected = events.some((e) => e._tag === "LeaderElected")
    for (const [id, best] of bestServing) {
      const i = HashMap.get(state.instances, id)
      if (Option.isNone(i) || i.value.phase === "deleting") bestServing.delete(id)
      else bestServing.set(id, elected ? servingBesides(state, i.value) : Math.max(best, servingBesides(state, i.value)))
    }
    for (const id of touched) {
      const i = HashMap.get(state.instances, id)
      if (Option.isSome(i) && i.value.retirement !== undefined && i.value.phase !== "deleting" && !bestServing.has(id)) {
        bestServing.set(id, servingBesides(state, i.value))
      }
    }
  }
  return { violations: out, retired, deleted }
}

/** Once the world has converged: every instance that retired has been deleted (none drained and kept). */
export const retiredButKept = (j: RetirementJudgement): Array<Violation> =>
  [...j.retired].filter(([id]) => !j.deleted.has(id)).map(([id, at]) => ({ rule: "retired-then-deleted", at, message: `${id} retired but its delete is not in the log` }))
