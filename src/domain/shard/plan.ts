/**
 * What the reconcile loop should do, decided purely from the folded state and the desired groups: which
 * groups need new instances and which instances must go. Scale-down removes instances that are not yet
 * running first (they cost least and are furthest from serving), then the newest.
 *
 * A retiring instance (see `lifecycle.ts`) no longer counts towards its group's size, so its replacement is
 * created while it still runs. While any of a group retires, a creation is made only if the group then has at
 * most size + 1 VMs (live members and those whose delete is under way), so two retirements at once are
 * replaced one after the other. The cap holds creations back; it does not delete: right after a size cut the
 * group may stand above size + 1 until its scale-down deletes finish.
 */
import { createHash } from "node:crypto"
import type { RequestReason } from "./events.js"
import { type Instance, isHeld, liveInstances, type State } from "./state.js"

export interface GroupTarget {
  readonly tenant: string
  readonly group: string
  readonly kind: string
  readonly size: number
  /** Hash of the resolved VM spec, recorded with each request. */
  readonly specHash: string
  /** The group's infra hash (the original's definition), recorded with each request and compared for rotation. */
  readonly infraHash: string
  readonly drainTimeoutMs: number
}

export interface CreateAction {
  readonly _tag: "Create"
  readonly tenant: string
  readonly group: string
  readonly kind: string
  readonly specHash: string
  readonly infraHash: string
  readonly reason: RequestReason
}

export interface DeleteAction {
  readonly _tag: "Delete"
  readonly instanceId: string
}

export type ReconcileAction = CreateAction | DeleteAction

export const groupKey = (tenant: string, group: string) => `${tenant}/${group}`

/** A stable hash of any JSON-able value (keys sorted), e.g. a VM spec. */
export const stableHash = (value: unknown): string => {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : typeof v === "object" && v !== null
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, canonical(x)]))
      : v
  return createHash("sha256").update(JSON.stringify(canonical(value))).digest("hex").slice(0, 16)
}

/** Its VM was started: running, or registered. */
export const isStarted = (instance: Instance) => instance.phase === "running" || instance.phase === "registered"

/**
 * Live instances by group (`tenant/group`), and apart the operators' own requests (`nstance-admin instance
 * create`), which are on top of their group's size: never counted, scaled away or replaced.
 */
export const liveMembers = (state: State): { readonly byGroup: ReadonlyMap<string, ReadonlyArray<Instance>>; readonly onDemand: ReadonlyArray<Instance> } => {
  const byGroup = new Map<string, Array<Instance>>()
  const onDemand: Array<Instance> = []
  for (const instance of liveInstances(state)) {
    if (instance.tenant === undefined || instance.group === undefined) continue
    if (instance.reason === "operator") {
      onDemand.push(instance)
      continue
    }
    const key = groupKey(instance.tenant, instance.group)
    const list = byGroup.get(key)
    if (list === undefined) byGroup.set(key, [instance])
    else list.push(instance)
  }
  return { byGroup, onDemand }
}

/** Per group, the instances being deleted whose VM may still exist (not yet recorded as deleted). */
export const vmsBeingDeleted = (state: State): ReadonlyMap<string, number> => {
  const counts = new Map<string, number>()
  for (const [, instance] of state.instances) {
    if (instance.phase !== "deleting" || instance.tenant === undefined || instance.group === undefined || instance.reason === "operator") continue
    if (instance.vmid === undefined || instance.cleanup.vmDeleted) continue
    const key = groupKey(instance.tenant, instance.group)
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return counts
}

/** Scale-down order: not yet running first, then newest first (IDs sort by creation time). */
export const scaleDownOrder = (members: ReadonlyArray<Instance>): ReadonlyArray<Instance> =>
  [...members].sort((a, b) => Number(isStarted(a)) - Number(isStarted(b)) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))

/**
 * The actions that bring every group to its size. `blocked` names groups whose creations are backing off
 * (their recent creates were compensated); they get no new instances this time. Instances of groups that
 * are no longer desired are deleted, except adopted ones, which are left alone.
 */
export const planReconcile = (state: State, targets: ReadonlyArray<GroupTarget>, blocked: ReadonlySet<string> = new Set()): ReadonlyArray<ReconcileAction> => {
  const members = liveMembers(state).byGroup
  const replacing = new Set<string>()
  const vmsGoing = vmsBeingDeleted(state)
  for (const [, instance] of state.instances) {
    if (instance.phase === "deleting" && instance.deleteReason !== "scale-down" && instance.tenant !== undefined && instance.group !== undefined) {
      replacing.add(groupKey(instance.tenant, instance.group))
    }
  }
  const actions: Array<ReconcileAction> = []
  const desired = new Set<string>()
  for (const target of targets) {
    const key = groupKey(target.tenant, target.group)
    desired.add(key)
    const all = members.get(key) ?? []
    const live = all.filter((instance) => instance.retirement === undefined)
    const retiring = all.length - live.length
    // While some retire, one replacement at a time: at most size + 1 VMs in the group, counting those whose
    // delete is still under way.
    const wanted = retiring === 0 ? target.size - live.length : Math.min(target.size - live.length, target.size + 1 - all.length - (vmsGoing.get(key) ?? 0))
    if (wanted > 0 && !blocked.has(key)) {
      const reason: RequestReason = replacing.has(key) || retiring > 0 ? "replacement" : "scale-up"
      for (let i = 0; i < wanted; i++) {
        actions.push({ _tag: "Create", tenant: target.tenant, group: target.group, kind: target.kind, specHash: target.specHash, infraHash: target.infraHash, reason })
      }
    } else if (live.length > target.size) {
      // A held instance counts towards its group (its VM may well run) but is never the one scaled away.
      const candidates = scaleDownOrder(live).filter((instance) => !isHeld(instance))
      for (const instance of candidates.slice(0, live.length - target.size)) actions.push({ _tag: "Delete", instanceId: instance.id })
    }
  }
  for (const [key, live] of members) {
    if (desired.has(key)) continue
    // An adopted VM of a group this config does not have is kept: deleting it would surprise whoever made it.
    for (const instance of live) if (!instance.adopted && !isHeld(instance)) actions.push({ _tag: "Delete", instanceId: instance.id })
  }
  return actions
}
