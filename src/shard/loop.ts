/**
 * The leader's periodic passes (GC, liveness) share one shape: wait the interval, run a pass, log a failed
 * pass and carry on, and let `Fenced` through so a deposed writer ends the leadership. One helper keeps the
 * two loops from drifting apart in timing or in how they treat a failure.
 *
 * Not an `Effect.repeat` with a `Schedule.spaced`: the interval is re-read from the live config before
 * every wait (a pushed config changes the pace from the next round), and the first pass runs one interval
 * after the term starts, not at once. The chaos seeds pin this exact order of sleep, read and pass.
 */
import { type Duration, Effect } from "effect"

/**
 * Forever: sleep `interval` (read afresh each round), then run `pass`. A failure other than `Fenced` is
 * logged as `${name} pass failed: …` and the loop waits for the next round; `Fenced` ends the loop.
 */
export const everyInterval = <E extends { readonly _tag: string; readonly message: string }, R, R2>(
  name: string,
  interval: Effect.Effect<Duration.DurationInput, never, R2>,
  pass: Effect.Effect<unknown, E, R>
): Effect.Effect<never, E, R | R2> =>
  Effect.forever(
    Effect.flatMap(interval, Effect.sleep).pipe(
      Effect.zipRight(pass.pipe(Effect.catchIf((error) => error._tag !== "Fenced", (error) => Effect.logWarning(`${name} pass failed: ${error.message}`))))
    )
  )
