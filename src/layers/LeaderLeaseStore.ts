/**
 * The shard lease on object storage: `leader.json` renewed with If-Match on its own fiber, a watchdog that
 * fences a leader whose renewals stopped succeeding (even while store calls hang), and a scoped
 * "while leader" runner for the shard actor. The election rule itself is the pure `decideTick`
 * (`src/domain/lease.ts`, which also states the clock assumptions).
 */
import { randomBytes } from "node:crypto"
import { Clock, Deferred, Duration, Effect, FiberHandle, Layer, Option, Ref, Schedule, Scope, Stream, SubscriptionRef } from "effect"
import {
  decideTick,
  decodeLeaseRecord,
  encodeLeaseRecord,
  GO_ZERO_MILLIS,
  type LeaseAction,
  type LeaseRead,
  type LeaseTimings,
  nextDelayMillis,
  type Observation,
  type Role
} from "../domain/lease.js"
import { LEADER_KEY } from "../domain/bucketKeys.js"
import { causeLine } from "../domain/errorText.js"
import { DuplicateReplica, InvalidLeaseOptions, LeaderLease, type LeaderInfo, type LeaderLeaseShape } from "../services/LeaderLease.js"
import { ObjectStore, type ObjectStoreShape, type Precondition, StoreUnavailable } from "../services/ObjectStore.js"

export interface LeaderLeaseOptions {
  /** This replica's id, written as `leaderID`. */
  readonly id: string
  /** Written as `leaderAddr` (host:port); non-leaders point clients at it. */
  readonly address: string
  /** Key of the record in the (shard-scoped) store. Default `leader.json`. */
  readonly key?: string
  /** Renewal and follower poll period (default 5 s). */
  readonly frequentInterval?: Duration.DurationInput
  /** Follower poll period while a healthy leader is seen, when `relaxFollowerPolling` (default 30 s). */
  readonly infrequentInterval?: Duration.DurationInput
  /** A record unchanged this long is dead (default 15 s). */
  readonly leaderTimeout?: Duration.DurationInput
  /** The leader fences itself at `leaderTimeout − margin` without a successful renewal (default timeout / 5). */
  readonly margin?: Duration.DurationInput
  /** Bound on every store call (default: the frequent interval). */
  readonly callTimeout?: Duration.DurationInput
  /**
   * Followers poll at the infrequent interval while they watch the leader renew (default false). Saves
   * bucket reads; failover then takes up to infrequent + timeout + frequent instead of timeout + frequent.
   */
  readonly relaxFollowerPolling?: boolean
  /** Release the record when the scope closes (default true); false behaves like a killed process. */
  readonly resignOnClose?: boolean
  /** Written as `incarnation` to tell this process from another with the same id (default: random per lease). */
  readonly incarnation?: string
}

interface Resolved {
  readonly id: string
  readonly address: string
  readonly key: string
  readonly timings: LeaseTimings
  readonly callTimeoutMillis: number
  readonly resignOnClose: boolean
}

const millisOf = (field: string, input: Duration.DurationInput | undefined, fallback: number) => {
  if (input === undefined) return Effect.succeed(fallback)
  const decoded = Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) return Effect.fail(new InvalidLeaseOptions({ field, reason: `not a duration: ${String(input)}` }))
  const ms = Duration.toMillis(decoded.value)
  return Number.isFinite(ms) && ms > 0
    ? Effect.succeed(ms)
    : Effect.fail(new InvalidLeaseOptions({ field, reason: "must be a positive, finite duration" }))
}

export const resolveLeaseOptions = (options: LeaderLeaseOptions): Effect.Effect<Resolved, InvalidLeaseOptions> =>
  Effect.gen(function* () {
    if (options.id.trim() === "") return yield* new InvalidLeaseOptions({ field: "id", reason: "must not be empty" })
    const frequentMillis = yield* millisOf("frequentInterval", options.frequentInterval, 5_000)
    const infrequentMillis = yield* millisOf("infrequentInterval", options.infrequentInterval, 30_000)
    const timeoutMillis = yield* millisOf("leaderTimeout", options.leaderTimeout, 15_000)
    const marginMillis = yield* millisOf("margin", options.margin, timeoutMillis / 5)
    const callTimeoutMillis = yield* millisOf("callTimeout", options.callTimeout, frequentMillis)
    if (infrequentMillis < frequentMillis) {
      return yield* new InvalidLeaseOptions({ field: "infrequentInterval", reason: `${infrequentMillis} ms is shorter than frequentInterval ${frequentMillis} ms` })
    }
    if (marginMillis >= timeoutMillis) {
      return yield* new InvalidLeaseOptions({ field: "margin", reason: `${marginMillis} ms must be shorter than leaderTimeout ${timeoutMillis} ms` })
    }
    // The leader must get at least one renewal in before it would fence itself.
    if (timeoutMillis - marginMillis <= frequentMillis) {
      return yield* new InvalidLeaseOptions({
        field: "leaderTimeout",
        reason: `leaderTimeout − margin (${timeoutMillis - marginMillis} ms) must exceed frequentInterval ${frequentMillis} ms`
      })
    }
    return {
      id: options.id,
      address: options.address,
      key: options.key ?? LEADER_KEY,
      timings: { frequentMillis, infrequentMillis, timeoutMillis, marginMillis, relaxFollowerPolling: options.relaxFollowerPolling ?? false },
      callTimeoutMillis,
      resignOnClose: options.resignOnClose ?? true
    }
  })

type LeaderState = { readonly _tag: "Leader"; readonly term: number; readonly etag: string; readonly renewedAtMono: number }
type State = {
  readonly role: { readonly _tag: "Follower" } | LeaderState
  readonly observation: Observation | undefined
  readonly holdOffUntilMono: number
  readonly leader: LeaderInfo | undefined
}

/** Monotonic milliseconds: Effect's default clock derives nanos from hrtime; TestClock keeps both in step. */
const monoMillis = Effect.map(Clock.currentTimeNanos, (n) => Number(n) / 1e6)

export const makeLeaderLease = (options: LeaderLeaseOptions): Effect.Effect<LeaderLeaseShape, InvalidLeaseOptions, ObjectStore | Scope.Scope> =>
  Effect.gen(function* () {
    const store = yield* ObjectStore
    return yield* makeLeaderLeaseOn(store, options)
  })

export const makeLeaderLeaseOn: (
  store: ObjectStoreShape,
  options: LeaderLeaseOptions
) => Effect.Effect<LeaderLeaseShape, InvalidLeaseOptions, Scope.Scope> = Effect.fn("lease.make")(
  function* (store: ObjectStoreShape, options: LeaderLeaseOptions) {
    const cfg = yield* resolveLeaseOptions(options)
    const { id, address, key, timings } = cfg
    const incarnation = options.incarnation ?? randomBytes(8).toString("hex")
    const duplicate = yield* Deferred.make<never, DuplicateReplica>()
    const leaseScope = yield* Effect.scope
    const state = yield* Ref.make<State>({ role: { _tag: "Follower" }, observation: undefined, holdOffUntilMono: -Infinity, leader: undefined })
    const isLeader = yield* SubscriptionRef.make(false)
    const lastContact = yield* Ref.make(Option.none<number>())
    const roleRef = yield* SubscriptionRef.make<Role>({ _tag: "Follower" })
    // Serialises role changes (tick, watchdog, resign) so isLeader and the role never disagree for long.
    const roleLock = yield* Effect.makeSemaphore(1)
    // Serialises ticks with resign, so a resign never races an in-flight renewal of the same record.
    const tickLock = yield* Effect.makeSemaphore(1)
    const annotate = Effect.annotateLogs({ lease: key, replica: id })
    // One clock-skew warning per leader term is enough for an operator.
    let skewWarnedFor: string | undefined
    let watchedOwnId: string | undefined

    const bound = <A, E>(operation: string, call: Effect.Effect<A, E>) =>
      call.pipe(
        Effect.timeoutFail({
          duration: Duration.millis(cfg.callTimeoutMillis),
          onTimeout: () => new StoreUnavailable({ operation, key, reason: `no answer within ${cfg.callTimeoutMillis} ms` })
        })
      )

    const readRecord = bound("get", store.get(key)).pipe(
      Effect.map((object): LeaseRead => {
        const decoded = decodeLeaseRecord(object.body)
        return decoded._tag === "Right"
          ? { _tag: "Present", record: decoded.right, etag: object.etag }
          : { _tag: "Corrupt", etag: object.etag, reason: decoded.left.reason }
      }),
      Effect.catchTag("NotFound", () => Effect.succeed<LeaseRead>({ _tag: "Absent" }))
    )

    const write = (term: number, lastUpdated: number, precondition: Precondition) =>
      bound("put", store.put(key, encodeLeaseRecord({ leaderID: id, leaderAddr: address, term, lastUpdated, incarnation }), precondition))

    const becomeLeader = (term: number, etag: string, renewedAtMono: number, reason: string) =>
      roleLock.withPermits(1)(
        Effect.gen(function* () {
          yield* Ref.update(state, (s) => ({ ...s, role: { _tag: "Leader" as const, term, etag, renewedAtMono }, leader: { id, address, term } }))
          yield* SubscriptionRef.set(roleRef, { _tag: "Leader", term })
          yield* SubscriptionRef.set(isLeader, true)
          yield* Effect.logInfo(`lease: acquired term ${term}`).pipe(Effect.annotateLogs({ term, reason }))
        })
      )

    /** Steps down if still leader (of `term`, when given); returns whether it did. */
    const stepDown = (reason: string, term?: number) =>
      roleLock.withPermits(1)(
        Effect.gen(function* () {
          const s = yield* Ref.get(state)
          if (s.role._tag !== "Leader" || (term !== undefined && s.role.term !== term)) return false
          const lost = s.role.term
          yield* Ref.set(state, { ...s, role: { _tag: "Follower" }, leader: undefined })
          yield* SubscriptionRef.set(isLeader, false)
          yield* SubscriptionRef.set(roleRef, { _tag: "Follower" })
          yield* Effect.logWarning(`lease: lost leadership of term ${lost}: ${reason}`).pipe(Effect.annotateLogs({ term: lost, reason }))
          return true
        })
      )

    const afterWrite = (term: number, etag: string, atMono: number) =>
      Ref.update(state, (s) => ({
        ...s,
        observation: {
          etag,
          firstSeenMono: atMono,
          holder: { id, address, term },
          sawRenewal: true,
          highestTerm: Math.max(term, s.observation?.highestTerm ?? 0)
        }
      }))

    const act = (action: LeaseAction) =>
      Effect.gen(function* () {
        switch (action._tag) {
          case "Renew": {
            const startMono = yield* monoMillis
            const result = yield* Effect.either(write(action.term, yield* Clock.currentTimeMillis, { _tag: "IfMatch", etag: action.etag }))
            if (result._tag === "Left") {
              // Keep leading: the watchdog decides when silence has lasted too long.
              return yield* Effect.logWarning(`lease: renewal of term ${action.term} failed: ${result.left.message}`)
            }
            yield* afterWrite(action.term, result.right.etag, startMono)
            yield* roleLock.withPermits(1)(
              Ref.update(state, (s) =>
                s.role._tag === "Leader" && s.role.term === action.term
                  ? { ...s, role: { ...s.role, etag: result.right.etag, renewedAtMono: startMono } }
                  : s
              )
            )
            return
          }
          case "Acquire": {
            const startMono = yield* monoMillis
            const result = yield* Effect.either(write(action.term, yield* Clock.currentTimeMillis, action.precondition))
            if (result._tag === "Left") {
              return yield* result.left._tag === "PreconditionFailed"
                ? Effect.logDebug(`lease: lost the race for term ${action.term}`)
                : Effect.logWarning(`lease: acquiring term ${action.term} failed: ${result.left.message}`)
            }
            yield* afterWrite(action.term, result.right.etag, startMono)
            return yield* becomeLeader(action.term, result.right.etag, startMono, action.reason)
          }
          case "Follow": {
            const before = (yield* Ref.get(state)).leader
            yield* Ref.update(state, (s) => ({ ...s, leader: action.leader }))
            if (before?.id !== action.leader.id || before?.term !== action.leader.term) {
              yield* Effect.logInfo(`lease: following ${action.leader.id} (term ${action.leader.term})`)
            }
            const holderKey = `${action.leader.id}/${action.leader.term}`
            if (action.clockLagMillis !== undefined && skewWarnedFor !== holderKey) {
              skewWarnedFor = holderKey
              const lag = action.clockLagMillis
              yield* Effect.logWarning(
                `lease: our clock and ${action.leader.id}'s disagree by about ${Math.round(Math.abs(lag) / 1000)} s ` +
                  `(its renewals look ${lag > 0 ? "old" : "to come from the future"}); the lease stays safe, but Go replicas in this shard rely on synchronised clocks`
              )
            }
            return
          }
          case "StepDown":
            yield* stepDown(action.reason)
            return
          case "Nothing":
            yield* Ref.update(state, (s) => ({ ...s, leader: undefined }))
            return yield* Effect.logDebug(`lease: ${action.reason}`)
          case "WatchOwnId": {
            const watched = (yield* Ref.get(state)).observation?.etag
            yield* Ref.update(state, (s) => ({ ...s, leader: undefined }))
            // Said once per version watched, not at every tick of the wait.
            if (watched !== watchedOwnId) {
              watchedOwnId = watched
              yield* Effect.logInfo(
                `lease: ${key} names our id ${id} (term ${action.holder.term}) but another process (incarnation ${action.incarnation}); ` +
                  `waiting up to ${Math.round(timings.timeoutMillis / 1000)} s: if it is renewed, a second nstance-server runs with --id ${id} and this one stops; if not, it was an earlier run of ours`
              )
            }
            return
          }
          case "DuplicateId": {
            const error = new DuplicateReplica({ id, key, term: action.holder.term, address: action.holder.address })
            yield* Effect.logError(`lease: ${error.message}`)
            yield* Deferred.fail(duplicate, error)
            return
          }
        }
      })

    const tick = tickLock.withPermits(1)(
      Effect.gen(function* () {
        const read = yield* Effect.either(readRecord)
        if (read._tag === "Left") {
          yield* Effect.logWarning(`lease: reading ${key} failed: ${read.left.message}`)
          return timings.frequentMillis
        }
        yield* Ref.set(lastContact, Option.some(yield* Clock.currentTimeMillis))
        if (read.right._tag === "Corrupt") {
          yield* Effect.logError(`lease: ${key} is not a lease record (${read.right.reason}); treating it as no lease`)
        }
        const s = yield* Ref.get(state)
        const nowMono = yield* monoMillis
        const { action, observation } = decideTick({
          self: id,
          role: s.role._tag === "Leader" ? { _tag: "Leader", term: s.role.term } : { _tag: "Follower" },
          read: read.right,
          nowWall: yield* Clock.currentTimeMillis,
          nowMono,
          previous: s.observation,
          timings,
          acquireHeldOff: nowMono < s.holdOffUntilMono,
          incarnation
        })
        yield* Ref.update(state, (current) => ({ ...current, observation }))
        yield* act(action)
        return nextDelayMillis(action, timings)
      })
    ).pipe(Effect.withSpan("lease.tick"))

    // Fencing is a timer, not a store call: it fires even when every store call hangs.
    const watchdog = Effect.gen(function* () {
      const s = yield* Ref.get(state)
      const now = yield* monoMillis
      if (s.role._tag !== "Leader") return yield* Effect.sleep(Duration.millis(timings.frequentMillis))
      const deadline = s.role.renewedAtMono + timings.timeoutMillis - timings.marginMillis
      if (now >= deadline) {
        yield* stepDown(`no successful renewal for ${Math.round(now - s.role.renewedAtMono)} ms (fencing at leaderTimeout − margin)`, s.role.term)
        return
      }
      yield* Effect.sleep(Duration.millis(deadline - now))
    }).pipe(Effect.forever)

    /** Releases the record of our current term, or of `given` when this replica already stepped down from it. */
    const release = (reason: string, given?: number) =>
      tickLock.withPermits(1)(
        Effect.gen(function* () {
          const now = yield* monoMillis
          yield* Ref.update(state, (s) => ({ ...s, holdOffUntilMono: now + timings.timeoutMillis }))
          const s = yield* Ref.get(state)
          const term = given ?? (s.role._tag === "Leader" ? s.role.term : undefined)
          if (term === undefined) return
          yield* stepDown(reason, term)
          const read = yield* readRecord
          if (read._tag !== "Present" || read.record.leaderID !== id || read.record.term !== term) {
            return yield* Effect.logWarning(`lease: not releasing ${key}: it no longer holds our term ${term}`)
          }
          yield* write(term, GO_ZERO_MILLIS, { _tag: "IfMatch", etag: read.etag })
          yield* Effect.logInfo(`lease: resigned term ${term}`).pipe(Effect.annotateLogs({ term, reason }))
        })
      ).pipe(
        Effect.withSpan("lease.resign"),
        Effect.catchAll((error) => Effect.logWarning(`lease: resigning failed (${error.message}); others take over after the timeout`)),
        annotate
      )

    const resign = release("resigned")

    yield* Effect.addFinalizer(() =>
      (cfg.resignOnClose ? release("shutting down") : stepDown("process stopped without resigning").pipe(annotate, Effect.asVoid))
    )

    let nextDelay = 0
    const loop = Effect.gen(function* () {
      nextDelay = yield* tick.pipe(
        // A bug in one tick must not end the election: a dead loop would leave followers waiting forever.
        Effect.catchAllDefect((defect) =>
          Effect.logError("lease: tick failed unexpectedly; retrying at the next interval", defect).pipe(Effect.as(timings.frequentMillis))
        )
      )
    }).pipe(
      Effect.repeat(Schedule.forever.pipe(Schedule.addDelay(() => Duration.millis(nextDelay)))),
      annotate
    )
    yield* Effect.forkScoped(loop)
    yield* Effect.forkScoped(watchdog.pipe(annotate))

    const whileLeader = <E, R>(work: (term: number) => Effect.Effect<unknown, E, R>) =>
      Effect.gen(function* () {
        const handle = yield* FiberHandle.make()
        const run = (term: number) =>
          work(term).pipe(
            Effect.catchAllCause((cause) => {
              // The cause goes into the line itself: a text log shows the message only.
              const line = causeLine(cause) ?? "no cause given"
              const reason = `leader work failed: ${line}`
              return Effect.logError(`lease: leader work of term ${term} failed: ${line}; resigning so a standby takes over`, cause).pipe(
                // Held off like a resign, so no tick re-acquires in between.
                Effect.zipRight(monoMillis.pipe(Effect.flatMap((now) => Ref.update(state, (s) => ({ ...s, holdOffUntilMono: now + timings.timeoutMillis }))))),
                // Forked into the lease's scope: stepping down interrupts this very fiber. It steps down before
                // waiting for a tick that may hold the store: a leader that cannot work must not renew, nor
                // look like a leader to readiness and clients, for a moment longer.
                Effect.zipRight(Effect.forkIn(stepDown(reason, term).pipe(Effect.zipRight(release(reason, term))), leaseScope)),
                Effect.asVoid
              )
            }),
            annotate
          )
        yield* roleRef.changes.pipe(
          Stream.map((role) => (role._tag === "Leader" ? role.term : undefined)),
          Stream.changes,
          Stream.runForEach((term) => (term === undefined ? FiberHandle.clear(handle) : FiberHandle.run(handle, run(term)))),
          Effect.forkScoped
        )
      })

    const shape: LeaderLeaseShape = {
      id,
      isLeader,
      term: Effect.map(Ref.get(state), (s) => (s.role._tag === "Leader" ? s.role.term : (s.leader?.term ?? 0))),
      currentLeader: Effect.map(Ref.get(state), (s) => Option.fromNullable(s.leader)),
      lastContact: Ref.get(lastContact),
      whileLeader,
      resign,
      duplicate: Deferred.await(duplicate)
    }
    return shape
  }
)

/** The lease as a layer over the (shard-scoped) object store; resigns when the layer's scope closes. */
export const LeaderLeaseStore = (options: LeaderLeaseOptions) => Layer.scoped(LeaderLease, makeLeaderLease(options))
