/**
 * `refused(call)`: the error of a call the test expects to be refused. Unlike `Effect.flip`, a call that
 * succeeds after all does not print its answer in the failure — the answer of a nonce, registration or
 * renewal call is a live secret, and a test report is no place for one.
 */
import { Effect } from "effect"

export const refused = <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<E, never, R> =>
  call.pipe(Effect.matchEffect({
    onFailure: Effect.succeed,
    onSuccess: () => Effect.dieMessage("expected a refusal, but the call succeeded (its answer is not shown: it may hold a secret)")
  }))
