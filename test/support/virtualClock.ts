/**
 * Virtual time for the simulated worlds (the chaos runs, `simWorld`): Effect's `Clock` service with timers
 * kept in a queue and fired in time order (ties in the order they were set) by `advance`, like
 * `TestClock.adjust`. Not `TestClock` itself: it lets fibers settle with real `setTimeout` turns before every
 * timer it fires, 1 to 30 ms each on a busy machine, and a world wakes thousands of timers (lease ticks,
 * task polls, simulated tasks). This clock settles with `setImmediate` turns instead. The worlds run on
 * `microtaskScheduler` and do no I/O, so when `setImmediate` fires every fiber woken before it has run to
 * its next wait: the order of events depends only on the seed. An interrupted sleep takes its timer with it.
 *
 * The chaos runs and `simWorld` were written against slightly different timers (see `VirtualClockOptions`);
 * each keeps its own, since a chaos seed replays its world only under the timers it was drawn with.
 */
import { Clock, Duration, Effect, Scheduler } from "effect"

export interface VirtualClockOptions {
  /** Epoch milliseconds at the start (default 0). */
  readonly startMs?: number
  /**
   * `millis` (the chaos runs): a sleep is rounded up to whole milliseconds, as the system clock reads, and
   * one of zero still waits for the next `advance`. `exact` (`simWorld`, the default): fractional
   * milliseconds stay (the simulator's jittered durations), and a sleep of zero returns at once.
   */
  readonly resolution?: "millis" | "exact"
  /**
   * When the world counts as settled after a timer fired: `oneTurn` (the chaos runs), after one
   * `setImmediate` turn; `untilQuiet` (`simWorld`, the default), after a pair of turns during which no timer
   * was set or fired. Either way also not before the work `holding` waits for is done.
   */
  readonly settle?: "oneTurn" | "untilQuiet"
}

interface Timer {
  readonly at: number
  readonly order: number
  readonly wake: () => void
}

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve))

export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private nowMs: number
  private order = 0
  private fired = 0
  /** Sorted by (at, order). */
  private timers: Array<Timer> = []
  /**
   * Work outside the fibers in flight (WebCrypto on the thread pool): time stands still until it is done,
   * so when it completes in wall-clock time cannot change the order of events.
   */
  private pending = 0
  private readonly resolution: "millis" | "exact"
  private readonly settleMode: "oneTurn" | "untilQuiet"

  constructor(options: VirtualClockOptions = {}) {
    this.resolution = options.resolution ?? "exact"
    this.settleMode = options.settle ?? "untilQuiet"
    const start = options.startMs ?? 0
    this.nowMs = this.resolution === "millis" ? Math.round(start) : start
  }

  unsafeCurrentTimeMillis(): number {
    return this.nowMs
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.nowMs)

  unsafeCurrentTimeNanos(): bigint {
    // An epoch in nanoseconds is past 2^53: only whole milliseconds convert exactly through bigint.
    return Number.isInteger(this.nowMs) ? BigInt(this.nowMs) * 1_000_000n : BigInt(Math.round(this.nowMs * 1_000_000))
  }

  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const requested = Duration.toMillis(duration)
      let ms: number
      if (this.resolution === "millis") {
        ms = Math.max(0, Math.ceil(requested))
      } else {
        if (!(requested > 0)) return resume(Effect.void)
        ms = requested
      }
      const timer: Timer = { at: Number.isFinite(ms) ? this.nowMs + ms : Number.POSITIVE_INFINITY, order: this.order++, wake: () => resume(Effect.void) }
      // After every timer due no later; the queue is short (tens of timers).
      let i = this.timers.length
      while (i > 0 && this.timers[i - 1]!.at > timer.at) i--
      this.timers.splice(i, 0, timer)
      return Effect.sync(() => {
        const at = this.timers.indexOf(timer)
        if (at >= 0) this.timers.splice(at, 1)
      })
    })
  }

  /** Moves time forward by `duration`, firing every timer due on the way in order, the world settled before each. */
  advance(duration: Duration.DurationInput): Effect.Effect<void> {
    return Effect.promise(async () => {
      const ms = Duration.toMillis(Duration.decode(duration))
      const target = this.nowMs + (this.resolution === "millis" ? Math.round(ms) : ms)
      await this.settle()
      for (;;) {
        const next = this.timers[0]
        if (next === undefined || next.at > target) break
        this.timers.shift()
        this.nowMs = Math.max(this.nowMs, next.at)
        this.fired++
        next.wake()
        await this.settle()
      }
      this.nowMs = Math.max(this.nowMs, target)
      await this.settle()
    })
  }

  /** Runs `effect` (one awaiting work off the fibers) as pending work: time waits for it. */
  holding<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.acquireUseRelease(Effect.sync(() => void this.pending++), () => effect, () => Effect.sync(() => void this.pending--))
  }

  private async settle(): Promise<void> {
    if (this.settleMode === "oneTurn") {
      await immediate()
      while (this.pending > 0) await immediate()
      return
    }
    let seen = -1
    for (;;) {
      await immediate()
      await immediate()
      while (this.pending > 0) await immediate()
      const activity = this.order + this.fired
      if (activity === seen) return
      seen = activity
    }
  }
}

/** Effect's scheduler with its `setTimeout` fallback switched off: fibers run on microtasks only. */
export const microtaskScheduler = new Scheduler.MixedScheduler(Number.POSITIVE_INFINITY)

/**
 * How far a clock is off its base, in milliseconds: wall time (`currentTimeMillis`) and monotonic time
 * (`currentTimeNanos`, none if absent). Read on every call, so a jump takes effect at once.
 */
export interface ClockSkew {
  readonly wall: number
  readonly mono?: number
}

/** `base` shifted by `skew`; sleeping is the base clock's. */
export const skewedClock = (base: Clock.Clock, skew: ClockSkew): Clock.Clock => {
  const monoNanos = () => BigInt(Math.round((skew.mono ?? 0) * 1e6))
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis() + skew.wall,
    currentTimeMillis: Effect.map(base.currentTimeMillis, (ms) => ms + skew.wall),
    unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos() + monoNanos(),
    currentTimeNanos: Effect.map(base.currentTimeNanos, (ns) => ns + monoNanos()),
    sleep: (duration) => base.sleep(duration)
  }
}
