/**
 * The leader's periodic work (the GC and liveness passes, reconcile's pass when nothing signalled a change)
 * shares one shape: wait the interval, run, log a failed pass and carry on, and let `Fenced` through so a
 * deposed writer ends the leadership. One helper and one schedule keep the loops from drifting apart in
 * timing or in how they treat a failure.
 */
import { type Duration, Effect, Schedule } from "effect"

/**
 * A run after every `interval`, re-read before each wait: a pushed config changes the pace from the next
 * round. Run with `Effect.schedule`, which waits the first delay before the first run, so a loop's first pass
 * comes one interval after the term starts, not at once. The chaos seeds pin this exact order: read the
 * interval, sleep, run.
 */
export const afterEveryInterval = <R>(interval: Effect.Effect<Duration.DurationInput, never, R>): Schedule.Schedule<number, unknown, R> =>
  Schedule.forever.pipe(Schedule.modifyDelayEffect(() => interval))

/**
 * Forever: sleep `interval` (read afresh each round), then run `pass`. A failure other than `Fenced` is
 * logged as `${name} pass failed: …` and the loop waits for the next round; `Fenced` ends the loop.
 */
export const everyInterval = <E extends { readonly _tag: string; readonly message: string }, R, R2>(
  name: string,
  interval: Effect.Effect<Duration.DurationInput, never, R2>,
  pass: Effect.Effect<unknown, E, R>
): Effect.Effect<never, E, R | R2> =>
  pass.pipe(
    Effect.catchIf((error) => error._tag !== "Fenced", (error) => Effect.logWarning(`${name} pass failed: ${error.message}`)),
    Effect.schedule(afterEveryInterval(interval)),
    // `Schedule.forever` never ends: only a failure leaves the loop.
    Effect.zipRight(Effect.never)
  )
