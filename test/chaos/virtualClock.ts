/**
 * Virtual time for chaos runs: Effect's `Clock` service with timers kept in a queue and fired in time order
 * by `advance`, like `TestClock.adjust` — but after each wake it yields with `setImmediate` rather than a
 * 1 ms `setTimeout`. A chaos world wakes thousands of timers (lease ticks, task polls, simulated tasks), so
 * TestClock's yield alone cost seconds of idle wall time per seed. Runs use a scheduler that never falls
 * back to `setTimeout` (everything is in memory: no I/O to starve), so when `setImmediate` fires every fiber
 * woken before it has run to its next wait: the order of events depends only on the seed.
 */
import { Clock, Duration, Effect, Scheduler } from "effect"

interface Timer {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
}

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve))

export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private nowMs: number
  private seq = 0
  /** Sorted by (at, seq). */
  private timers: Array<Timer> = []
  /** Timers fired so far (for the run's summary). */
  wakes = 0
  /**
   * Work outside the fibers in flight (WebCrypto on the thread pool): time stands still until it is done,
   * so when it completes in wall-clock time cannot change the order of events.
   */
  pending = 0

  constructor(startMs: number) {
    this.nowMs = Math.round(startMs)
  }

  unsafeCurrentTimeMillis(): number {
    return this.nowMs
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.nowMs)

  unsafeCurrentTimeNanos(): bigint {
    return BigInt(this.nowMs) * 1_000_000n
  }

  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      // Whole milliseconds, as the system clock reads: the simulator's jittered durations are fractional.
      const ms = Math.max(0, Math.ceil(Duration.toMillis(duration)))
      const timer: Timer = { at: this.nowMs + (Number.isFinite(ms) ? ms : Number.MAX_SAFE_INTEGER), seq: ++this.seq, wake: () => resume(Effect.void) }
      // Insert keeping (at, seq) order; the queue is short (tens of timers).
      let i = this.timers.length
      while (i > 0 && this.timers[i - 1]!.at > timer.at) i--
      this.timers.splice(i, 0, timer)
      return Effect.sync(() => {
        const at = this.timers.indexOf(timer)
        if (at >= 0) this.timers.splice(at, 1)
      })
    })
  }

  /** Moves time forward by `ms`, firing every timer due on the way in order and letting its work run. */
  advance(ms: number): Effect.Effect<void> {
    const settle = async () => {
      await immediate()
      while (this.pending > 0) await immediate()
    }
    return Effect.promise(async () => {
      const target = this.nowMs + Math.round(ms)
      await settle()
      for (;;) {
        const next = this.timers[0]
        if (next === undefined || next.at > target) break
        this.timers.shift()
        this.nowMs = Math.max(this.nowMs, next.at)
        this.wakes++
        next.wake()
        await settle()
      }
      this.nowMs = target
      await settle()
    })
  }

  /** Runs `effect` (one awaiting work off the fibers) as pending work: time waits for it. */
  holding<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.acquireUseRelease(Effect.sync(() => void this.pending++), () => effect, () => Effect.sync(() => void this.pending--))
  }
}

/** Effect's scheduler with its `setTimeout` fallback switched off: fibers run on microtasks only. */
export const microtaskScheduler = new Scheduler.MixedScheduler(Number.POSITIVE_INFINITY)
