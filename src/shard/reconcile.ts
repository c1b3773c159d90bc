/**
 * The reconcile loop: desired group sizes (the shard config, a `SubscriptionRef`) against the folded log.
 * It runs on every config change and every durable log change (debounced), and on a period anyway; each
 * pass records new instance requests and delete requests in one append and makes sure every instance that
 * is not at rest has its saga running. Creations of a group whose recent creates were compensated back
 * off (capped exponential, `groupCreateBackoff`), so a broken template does not turn into a tight
 * create/delete loop. While the log holds (a fresh log beside another log's VMs, see `Ownership.ts`) a pass
 * records nothing.
 */
import { Clock, Duration, Effect, Either, FiberHandle, HashMap, Option, Queue, ScheduleDecision, ScheduleIntervals, Stream, SubscriptionRef } from "effect"
import { desiredGroups, type ParsedShardConfig, vmSpecFor } from "../domain/config/index.js"
import { DeleteRequested, DrainStarted, InstanceRequested, RetirementRequested, type ShardEvent } from "../domain/shard/events.js"
import { type LifecycleAction, type LifecyclePolicy, planLifecycle } from "../domain/shard/lifecycle.js"
import { type GroupTarget, groupKey, planReconcile, stableHash } from "../domain/shard/plan.js"
import { fold, getInstance, type State } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"
import { InstanceIds } from "../services/InstanceIds.js"
import { ClusterView } from "./ClusterView.js"
import { everyInterval } from "./loop.js"
import { groupCreateBackoff, RECONCILE_DEBOUNCE, RECONCILE_PERIOD } from "./policies.js"
import { Ownership } from "./Ownership.js"
import { atRest, SagaRunner } from "./SagaRunner.js"
import { ShardContext } from "./ShardContext.js"

/** The groups to keep at size, with their spec hashes; groups whose spec does not resolve are skipped (and said). */
export const groupTargets = (config: ParsedShardConfig): { readonly targets: ReadonlyArray<GroupTarget>; readonly problems: ReadonlyArray<string> } => {
  const targets: Array<GroupTarget> = []
  const problems: Array<string> = []
  for (const group of desiredGroups(config.config)) {
    const spec = vmSpecFor(config.config, group.tenant, group.group)
    if (Either.isLeft(spec)) {
      problems.push(`group ${group.tenant}/${group.group} is not reconciled: ${spec.left.message}`)
      continue
    }
    targets.push({
      tenant: group.tenant,
      group: group.group,
      kind: group.kind,
      size: group.size,
      specHash: stableHash(spec.right),
      infraHash: group.infraHash,
      drainTimeoutMs: Duration.toMillis(group.drainTimeout)
    })
  }
  return { targets, problems }
}

export interface GroupBackoff {
  readonly lastFailureAt: number
  /** No create for the group before this time. */
  readonly notBefore: number
  /** `groupCreateBackoff`'s state after the group's compensations so far. */
  readonly policyState: unknown
}

/** A group's backoff after one more compensation, seen at `now`: the policy's next delay from there. */
export const nextGroupBackoff = (previous: GroupBackoff | undefined, now: number): Effect.Effect<GroupBackoff> =>
  Effect.map(
    groupCreateBackoff.step(now, undefined, previous === undefined ? groupCreateBackoff.initial : previous.policyState),
    ([policyState, , decision]) => ({
      lastFailureAt: now,
      // The policy never ends; one that did would keep the group from creating until a VM of it runs again.
      notBefore: ScheduleDecision.isDone(decision) ? Number.POSITIVE_INFINITY : ScheduleIntervals.start(decision.intervals),
      policyState
    })
  )

const optionalMillis = (duration: Duration.Duration | undefined) => (duration === undefined ? undefined : Duration.toMillis(duration))

export const lifecyclePolicy = (
  config: ParsedShardConfig,
  now: number,
  blocked: ReadonlySet<string>,
  pveStates: ReadonlyMap<string, string> = new Map()
): LifecyclePolicy => ({
  now,
  eligibleAgeMs: optionalMillis(config.config.shard.expiry.eligibleAge),
  forcedAgeMs: optionalMillis(config.config.shard.expiry.forcedAge),
  ondemandAgeMs: optionalMillis(config.config.shard.expiry.ondemandAge),
  defaultDrainTimeoutMs: Duration.toMillis(config.config.shard.defaultDrainTimeout),
  blocked,
  stopped: new Set([...pveStates].filter(([, state]) => state === "stopped").map(([id]) => id))
})

/** The event of a lifecycle action, and the one log line an operator reads about it. */
const lifecycleEvent = (state: State, action: LifecycleAction, now: number): Effect.Effect<ShardEvent> => {
  const instance = Option.getOrUndefined(getInstance(state, action.instanceId))
  const vm = instance?.vmid === undefined ? "" : ` (VM ${instance.vmid})`
  switch (action._tag) {
    case "Retire":
      return Effect.as(
        Effect.logInfo(`${action.instanceId}${vm}: retiring (${action.reason}); its replacement is created before it drains`),
        RetirementRequested.make({ instanceId: action.instanceId, at: now, reason: action.reason })
      )
    case "StartDrain":
      return Effect.as(
        Effect.logInfo(`${action.instanceId}${vm}: replacement ready; pending deletion (${instance?.retirement?.reason ?? "?"}) at ${new Date(action.deleteAt).toISOString()} unless acknowledged sooner`),
        DrainStarted.make({ instanceId: action.instanceId, at: now, deleteAt: action.deleteAt })
      )
    case "Delete":
      return Effect.as(
        Effect.logInfo(`${action.instanceId}${vm}: retired (${instance?.retirement?.reason ?? "?"}); deleting`),
        DeleteRequested.make({ instanceId: action.instanceId, at: now, reason: "retired" })
      )
  }
}

export const reconcileLoop = Effect.gen(function* () {
  const log = yield* EventLog
  const ids = yield* InstanceIds
  const runner = yield* SagaRunner
  const shard = yield* ShardContext
  const ownership = yield* Ownership
  const clusterView = yield* ClusterView
  const timer = yield* FiberHandle.make()
  let wakeAt: number | undefined
  const wake = yield* Queue.sliding<void>(1)
  const backoff = new Map<string, GroupBackoff>()
  const seenCompensations = new Set<string>()
  let lastProblems = ""

  /** Updates the per-group backoff from what the state shows: new compensations slow a group, a running VM resets it. */
  const updateBackoff = (state: State, now: number) =>
    Effect.gen(function* () {
      for (const [, instance] of state.instances) {
        if (instance.tenant === undefined || instance.group === undefined) continue
        const key = groupKey(instance.tenant, instance.group)
        if (instance.phase === "deleting" && instance.deleteReason === "compensation" && !seenCompensations.has(instance.id)) {
          seenCompensations.add(instance.id)
          backoff.set(key, yield* nextGroupBackoff(backoff.get(key), now))
        } else if (atRest(instance) && (instance.startedAt ?? 0) > (backoff.get(key)?.lastFailureAt ?? Infinity)) {
          backoff.delete(key)
        }
      }
      for (const id of seenCompensations) if (!HashMap.has(state.instances, id)) seenCompensations.delete(id)
    })

  const pass = Effect.fn("reconcile.pass")(function* () {
    if (yield* ownership.held) return
    const config = yield* SubscriptionRef.get(shard.config)
    const state = yield* log.state
    const now = yield* Clock.currentTimeMillis
    yield* updateBackoff(state, now)
    const blocked = new Set([...backoff].filter(([, b]) => b.notBefore > now).map(([key]) => key))
    const { targets, problems } = groupTargets(config)
    if (problems.join("\n") !== lastProblems) {
      lastProblems = problems.join("\n")
      yield* Effect.forEach(problems, (line) => Effect.logError(line), { discard: true })
    }
    // Retirements, drains and their deletions first: the creations are planned on the state with them folded
    // in, and both go into the log in one append.
    const lifecycle = planLifecycle(state, targets, lifecyclePolicy(config, now, blocked, yield* clusterView.vmStates))
    const events: Array<ShardEvent> = yield* Effect.forEach(lifecycle.actions, (action) => lifecycleEvent(state, action, now))
    const actions = planReconcile(events.length > 0 ? fold(events, state) : state, targets, blocked)
    for (const action of actions) {
      if (action._tag === "Create") {
        const instanceId = yield* ids.next(action.kind).pipe(Effect.orDie)
        events.push(InstanceRequested.make({
          instanceId,
          at: now,
          tenant: action.tenant,
          group: action.group,
          kind: action.kind,
          specHash: action.specHash,
          infraHash: action.infraHash,
          reason: action.reason
        }))
        yield* Effect.logInfo(`${instanceId}: requested for ${action.tenant}/${action.group} (${action.reason})`)
      } else {
        events.push(DeleteRequested.make({ instanceId: action.instanceId, at: now, reason: "scale-down" }))
        yield* Effect.logInfo(`${action.instanceId}: scale-down`)
      }
    }
    if (events.length > 0) yield* log.append(events)
    const after = events.length > 0 ? yield* log.state : state
    for (const [id, instance] of after.instances) if (!atRest(instance)) yield* runner.ensure(id)
    // Wake up again when the earliest backoff ends, a drain is over or an instance reaches an expiry age: one
    // timer, replaced when that time changes (expiry ages are weeks away; a timer per pass would pile up).
    const next = Math.min(lifecycle.nextAt ?? Infinity, ...[...backoff.values()].map((b) => b.notBefore).filter((at) => at > now))
    if (Number.isFinite(next) && next !== wakeAt) {
      wakeAt = next
      yield* FiberHandle.run(timer, Effect.sleep(Duration.millis(next - now + 10)).pipe(Effect.zipRight(Queue.offer(wake, undefined))))
    }
  })

  yield* Stream.runForEach(shard.config.changes, () => Queue.offer(wake, undefined)).pipe(Effect.forkScoped)
  yield* Stream.runForEach(ownership.hold.changes, () => Queue.offer(wake, undefined)).pipe(Effect.forkScoped)
  // Every durable state is looked at for compensations, not only the one a (debounced) pass reads: a
  // compensation that finishes within the debounce would otherwise never be seen, and a broken group would
  // be re-created in a tight loop.
  yield* Stream.runForEach(log.changes, (state) =>
    Clock.currentTimeMillis.pipe(
      Effect.tap((now) => updateBackoff(state, now)),
      Effect.zipRight(Queue.offer(wake, undefined))
    )).pipe(Effect.forkScoped)
  yield* everyInterval("reconcile", Effect.succeed(RECONCILE_PERIOD), Queue.offer(wake, undefined)).pipe(Effect.forkScoped)
  yield* Effect.forever(
    Queue.take(wake).pipe(
      Effect.zipRight(Effect.sleep(RECONCILE_DEBOUNCE)),
      Effect.zipRight(pass())
    )
  )
}).pipe(Effect.scoped)
