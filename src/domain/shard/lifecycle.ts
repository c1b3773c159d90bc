/**
 * What happens to instances that must be replaced — their agent went silent, their group's infra config
 * changed, they reached an expiry age — decided purely from the folded state, the groups and the time.
 *
 * Replacement comes first: a retiring instance stops counting towards its group's size, so reconcile
 * creates its replacement (at most size + 1 VMs per group, see `planReconcile`), while the old one keeps
 * running. Once the group has `size` ready instances besides the retiring ones, the old one drains: the
 * tenant's operators see `pending_deletion` with a reason and a `delete_at`, and it is deleted then (or at
 * once when they acknowledge, or when its drain timeout is zero). Everything is in the log, so a new
 * leader picks up retirements and drains where the last one left them, deadlines included.
 *
 * At most one new retirement per group per pass: a forced expiry, else — only while nothing of the group
 * is retiring — an eligible expiry, else the oldest instance built from another infra hash (rotation; only
 * once the group is at size and ready). A group whose creations are backing off starts none: a failed
 * replacement pauses the rotation, and the old instances go on serving.
 */
import type { RetireReason } from "./events.js"
import { groupKey, isStarted, liveMembers, vmsBeingDeleted } from "./plan.js"
import { type Instance, isHeld, type State } from "./state.js"

export interface LifecycleGroup {
  readonly tenant: string
  readonly group: string
  readonly size: number
  /** The group's current infra hash; instances recorded with another one are rotated. */
  readonly infraHash: string
  readonly drainTimeoutMs: number
}

export interface LifecyclePolicy {
  readonly now: number
  /** Zero or absent: that rule is off. */
  readonly eligibleAgeMs?: number | undefined
  readonly forcedAgeMs?: number | undefined
  readonly ondemandAgeMs?: number | undefined
  /** The drain timeout of an operator-requested instance whose group is no longer configured. */
  readonly defaultDrainTimeoutMs: number
  /** Groups (`tenant/group`) whose creations are backing off: they start no retirement. */
  readonly blocked: ReadonlySet<string>
  /** Instances whose VM PVE last listed as stopped: nothing to drain, they go once replaced. */
  readonly stopped?: ReadonlySet<string> | undefined
}

export type LifecycleAction =
  | { readonly _tag: "Retire"; readonly instanceId: string; readonly reason: RetireReason }
  | { readonly _tag: "StartDrain"; readonly instanceId: string; readonly deleteAt: number }
  /** The retirement is over (drain elapsed or none asked): delete it. */
  | { readonly _tag: "Delete"; readonly instanceId: string }

export interface LifecyclePlan {
  readonly actions: ReadonlyArray<LifecycleAction>
  /** The earliest future time at which a drain ends or an instance reaches an expiry age (undefined: none). */
  readonly nextAt: number | undefined
}

/** Serving: registered, or running without an agent to wait for (registration off, or an adopted VM). */
export const isReady = (instance: Instance): boolean =>
  instance.phase === "registered" || (instance.phase === "running" && instance.nonceHash === undefined)

/** Oldest first: by request time, then ID (IDs sort by creation time). */
const oldestFirst = (a: Instance, b: Instance) => a.requestedAt - b.requestedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

const byRetirement = (a: Instance, b: Instance) =>
  (a.retirement?.at ?? 0) - (b.retirement?.at ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

const positive = (ms: number | undefined): ms is number => ms !== undefined && ms > 0

export const planLifecycle = (state: State, groups: ReadonlyArray<LifecycleGroup>, policy: LifecyclePolicy): LifecyclePlan => {
  const { now } = policy
  const actions: Array<LifecycleAction> = []
  let nextAt: number | undefined
  const wakeAt = (at: number) => {
    if (at > now && (nextAt === undefined || at < nextAt)) nextAt = at
  }
  const { byGroup: members, onDemand } = liveMembers(state)
  const drainTimeouts = new Map(groups.map((g) => [groupKey(g.tenant, g.group), g.drainTimeoutMs]))
  const vmsGoing = vmsBeingDeleted(state)

  const nothingToDrain = (instance: Instance) => instance.retirement?.skipDrain === true || policy.stopped?.has(instance.id) === true

  /** Ends a retirement: drain once, then delete at the deadline. `ready` says the replacement is there. */
  const advance = (instance: Instance, ready: boolean, groupDrainTimeoutMs: number) => {
    if (isHeld(instance)) return
    const drainTimeoutMs = nothingToDrain(instance) ? 0 : groupDrainTimeoutMs
    if (instance.drain !== undefined) {
      if (now >= instance.drain.deleteAt || (ready && drainTimeoutMs === 0)) actions.push({ _tag: "Delete", instanceId: instance.id })
      else wakeAt(instance.drain.deleteAt)
    } else if (ready) {
      if (drainTimeoutMs <= 0) actions.push({ _tag: "Delete", instanceId: instance.id })
      else {
        actions.push({ _tag: "StartDrain", instanceId: instance.id, deleteAt: now + drainTimeoutMs })
        wakeAt(now + drainTimeoutMs)
      }
    }
  }

  for (const target of groups) {
    const key = groupKey(target.tenant, target.group)
    const list = members.get(key) ?? []
    const retiring = list.filter((i) => i.retirement !== undefined).sort(byRetirement)
    const counted = list.filter((i) => i.retirement === undefined)
    const ready = counted.filter((i) => isReady(i) && !isHeld(i)).length
    // Replacements serve retirements oldest first: while a later retiring instance still serves, it stands in
    // for the replacement it is waiting for (the size + 1 cap holds that replacement back until then).
    retiring.forEach((instance, k) => {
      const standingIn = retiring.slice(k + 1).filter((later) => isReady(later) && later.drain === undefined && !isHeld(later)).length
      advance(instance, ready + standingIn >= target.size, target.drainTimeoutMs)
    })

    const candidates = counted.filter((i) => isStarted(i) && !isHeld(i)).sort(oldestFirst)
    for (const instance of candidates) {
      if (positive(policy.eligibleAgeMs)) wakeAt(instance.requestedAt + policy.eligibleAgeMs)
      if (positive(policy.forcedAgeMs)) wakeAt(instance.requestedAt + policy.forcedAgeMs)
    }
    if (policy.blocked.has(key)) continue
    const pastAge = (ms: number | undefined) => (positive(ms) ? candidates.find((i) => now - i.requestedAt >= ms) : undefined)
    const forced = pastAge(policy.forcedAgeMs)
    if (forced !== undefined) {
      actions.push({ _tag: "Retire", instanceId: forced.id, reason: "forced-expiry" })
      continue
    }
    // One at a time: the last retirement's VM is gone before the next begins (size + 1 VMs at most).
    if (retiring.length > 0 || (vmsGoing.get(key) ?? 0) > 0) continue
    const eligible = pastAge(policy.eligibleAgeMs)
    if (eligible !== undefined) {
      actions.push({ _tag: "Retire", instanceId: eligible.id, reason: "eligible-expiry" })
      continue
    }
    // Rotation starts from a settled group, so the group never has two replacements booting for drift.
    if (counted.length < target.size || ready < target.size) continue
    const drifted = candidates.find((i) => i.infraHash !== undefined && i.infraHash !== target.infraHash)
    if (drifted !== undefined) actions.push({ _tag: "Retire", instanceId: drifted.id, reason: "config-drift" })
  }

  // Operator-requested instances are on top of their group's size: no replacement, their drain starts at once.
  const drainOf = (i: Instance) => drainTimeouts.get(groupKey(i.tenant ?? "", i.group ?? "")) ?? policy.defaultDrainTimeoutMs
  for (const instance of onDemand) {
    if (instance.retirement !== undefined) advance(instance, true, drainOf(instance))
  }
  if (positive(policy.ondemandAgeMs)) {
    const ondemandAgeMs = policy.ondemandAgeMs
    const candidates = onDemand.filter((i) => i.retirement === undefined && isStarted(i) && !isHeld(i)).sort(oldestFirst)
    const expired = candidates.find((i) => now - i.requestedAt >= ondemandAgeMs)
    if (expired !== undefined) actions.push({ _tag: "Retire", instanceId: expired.id, reason: "ondemand-expiry" })
    for (const instance of candidates) wakeAt(instance.requestedAt + ondemandAgeMs)
  }
  return { actions, nextAt }
}
