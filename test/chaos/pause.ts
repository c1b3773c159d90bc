/**
 * A paused replica, as a GC pause or SIGSTOP makes one: every call its fibers make — to PVE, to the store
 * (its lease's renewals too) — waits at the wrappers until it resumes, and its lease's timers (the renewal
 * loop, the watchdog that fences it) do not fire meanwhile, while the world's time goes on. A call that was
 * on its way when the pause came lands after it, when the lease may long have moved: the late-landing PUT,
 * the in-flight clone. With `callsFirst` the calls go on first and the lease's timers a little later
 * (`lagMs`), so a resumed step can reach its next log append, or its next PVE call, before the replica learns
 * it was deposed:
 * what fencing exists for. By default its store calls go on first on resume (a held log append lands, and is
 * refused when a newer leader owns its seq), then its lease's timers fire (the replica learns it was deposed,
 * its term is interrupted), and only then its PVE calls.
 */
import { type Clock, Duration, Effect, type Scope } from "effect"
import type { Who } from "./history.js"

interface Paused {
  /** Its store calls. */
  readonly calls: Effect.Latch
  readonly pve: Effect.Latch
  readonly lease: Effect.Latch
}

export interface Pauses {
  /** Waits while `who`'s store calls are held. */
  readonly gate: (who: Who) => Effect.Effect<void>
  /** Waits while `who`'s PVE calls are held. */
  readonly pveGate: (who: Who) => Effect.Effect<void>
  /** Waits while `who`'s lease timers are held (they open `lagMs` after its calls). */
  readonly leaseGate: (who: Who) => Effect.Effect<void>
  readonly isPaused: (who: Who) => boolean
  /**
   * Pauses `who` for `forMs`; the resume runs on a fiber of `scope`. `callsFirst`: on resume its calls go on
   * `lagMs` before its lease timers fire (a resumed step outruns the watchdog); else the timers fire first and
   * the calls follow `lagMs` later (as Node runs due timers before I/O callbacks).
   */
  readonly pause: (who: Who, forMs: number, lagMs: number, callsFirst: boolean, scope: Scope.Scope) => Effect.Effect<void>
  /** Resumes every paused replica (the faults stop): lease timers now, calls a second later on a fiber of `scope`. */
  readonly resumeAll: (scope: Scope.Scope) => Effect.Effect<void>
}

export const makePauses = (): Pauses => {
  const paused = new Map<Who, Paused>()
  const resume = (who: Who, p: Paused, lagMs: number, callsFirst: boolean) =>
    Effect.gen(function* () {
      // The store's answer first (a held append learns its fate), then the lease's timers, then PVE; or,
      // `callsFirst`, PVE with the store, the lease's timers last.
      yield* p.calls.open
      if (callsFirst) yield* p.pve.open
      yield* Effect.sleep(Duration.millis(Math.max(1, lagMs)))
      yield* p.lease.open
      yield* Effect.sleep("1 millis")
      yield* p.pve.open
      if (paused.get(who) === p) paused.delete(who)
    })
  return {
    gate: (who) => Effect.suspend(() => paused.get(who)?.calls.await ?? Effect.void),
    pveGate: (who) => Effect.suspend(() => paused.get(who)?.pve.await ?? Effect.void),
    leaseGate: (who) => Effect.suspend(() => paused.get(who)?.lease.await ?? Effect.void),
    isPaused: (who) => paused.has(who),
    pause: (who, forMs, lagMs, callsFirst, scope) =>
      Effect.suspend(() => {
        if (paused.has(who)) return Effect.void
        const p: Paused = { calls: Effect.unsafeMakeLatch(false), pve: Effect.unsafeMakeLatch(false), lease: Effect.unsafeMakeLatch(false) }
        paused.set(who, p)
        return Effect.asVoid(Effect.forkIn(Effect.sleep(Duration.millis(forMs)).pipe(Effect.zipRight(resume(who, p, lagMs, callsFirst))), scope))
      }),
    resumeAll: (scope) =>
      Effect.suspend(() => {
        const all = [...paused.values()]
        paused.clear()
        return Effect.forEach(all, (p) => p.lease.open, { discard: true }).pipe(
          Effect.zipRight(Effect.forkIn(Effect.zipRight(Effect.sleep("1 second"), Effect.forEach(all, (p) => Effect.zipRight(p.calls.open, p.pve.open), { discard: true })), scope)),
          Effect.asVoid
        )
      })
  }
}

/** `base` whose sleeps, once over, also wait for `gate`: the timers of a paused process fire only when it resumes. */
export const gatedClock = (base: Clock.Clock, gate: Effect.Effect<void>): Clock.Clock => ({
  ...base,
  sleep: (duration) => Effect.zipRight(base.sleep(duration), gate)
})
