/**
 * `nstance-admin watch` across leader changes. A watch stream belongs to one leadership term: it ends with
 * `NotLeader` when that replica stops leading (naming the new leader when it already knows one), or with a
 * dropped connection when the process stops. Instead of exiting there, the watch finds the leader again —
 * the replica named, else the address the operator gave (any replica answers with where the leader is) —
 * retrying on `watchReconnect` while there is none yet, and says so in one line when it switches.
 *
 * The RPC has no way to resume from a sequence number (its events are differences between folded states, and
 * a new leader starts from its own), so the switch line says which stretch of the log may not have been
 * shown: after the last seq printed, up to the new leader's seq when it was found.
 */
import type { RpcClientError } from "@effect/rpc"
import { Cause, Effect, Schedule, Stream } from "effect"
import { AdminUnavailable, NotLeader, type StatusView, type WatchEvent } from "../rpc/AdminRpc.js"
import { type AdminCredentials, AdminUnreachable, callAdmin, connectAdmin, transportError } from "./AdminClient.js"

/**
 * Between attempts to find the leader: 250 ms doubling to 2 s, for about a minute in all — longer than a
 * failover takes with the default election timings (a 15 s leader timeout after a crash, one tick after a
 * resignation), short enough that a watch whose shard is gone ends with a line instead of hanging.
 */
export const watchReconnect = Schedule.exponential("250 millis").pipe(
  Schedule.either(Schedule.spaced("2 seconds")),
  Schedule.upTo("60 seconds")
)

export interface WatchOutput {
  readonly event: (event: WatchEvent) => Effect.Effect<void>
  /** One line about the watch itself (where it is connected, a switch); not an event. */
  readonly note: (line: string) => Effect.Effect<void>
}

type Transient = NotLeader | AdminUnreachable | AdminUnavailable

/** What ended a stream (or an attempt to find the leader) in a way another attempt can mend. */
const isTransient = (error: unknown): error is Transient =>
  error instanceof NotLeader || error instanceof AdminUnreachable || error instanceof AdminUnavailable

const isRpcClientError = (error: unknown): error is RpcClientError.RpcClientError =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "RpcClientError"

const describeLeader = (status: StatusView, address: string) => `${status.leader} (term ${status.term}) at ${address}`

/**
 * Prints the leader's events until interrupted, following the leadership from `entry` (any replica). Fails
 * only when no leader is found within `schedule`, or with a refusal no retry mends (credentials).
 */
export const watchFollowingLeader = (
  entry: string,
  credentials: AdminCredentials,
  output: WatchOutput,
  schedule: Schedule.Schedule<unknown, unknown> = watchReconnect
) =>
  Effect.gen(function* () {
    let target = entry
    // The log position up to which every change has been shown: the leader's seq when the stream started,
    // then each event's.
    let shownThrough = 0
    let leader: { readonly name: string; readonly term: number } | undefined
    // Where to look next after a failure: the leader it names, else the address the operator gave.
    const redirect = (error: Transient) => {
      target = error instanceof NotLeader && error.leaderAddr !== "" ? error.leaderAddr : entry
    }
    const find = Effect.suspend(() => callAdmin(target, credentials, (rpc) => rpc.Status())).pipe(
      Effect.tapError((error) => Effect.sync(() => { if (isTransient(error)) redirect(error) })),
      Effect.retry({ schedule, while: isTransient })
    )
    for (;;) {
      const { value: status, address } = yield* find
      const gap = status.seq > shownThrough ? `changes after seq ${shownThrough} up to seq ${status.seq} may not have been shown` : undefined
      if (leader === undefined) {
        yield* output.note(`watching the leader ${describeLeader(status, address)}; Ctrl-C to stop`)
      } else if (leader.name !== status.leader || leader.term !== status.term) {
        yield* output.note(`the leader changed: now watching ${describeLeader(status, address)}; ${gap ?? "nothing was missed"}`)
      } else if (gap !== undefined) {
        yield* output.note(`reconnected to ${describeLeader(status, address)}; ${gap}`)
      }
      leader = { name: status.leader, term: status.term }
      shownThrough = Math.max(shownThrough, status.seq)
      target = address
      const ended = yield* Effect.scoped(
        Effect.flatMap(connectAdmin(address, credentials), ({ rpc }) =>
          Stream.runForEach(rpc.WatchEvents(), (event) => Effect.zipRight(Effect.sync(() => { shownThrough = Math.max(shownThrough, event.seq) }), output.event(event))).pipe(
            Effect.catchIf(isRpcClientError, transportError(address))
          ))
      ).pipe(
        // A server that shuts down interrupts its handlers and sends that interruption as the stream's end:
        // it ends this stream, not the watch (Ctrl-C here interrupts this fiber, which no handler can catch).
        Effect.catchAllCause((cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : Effect.failCause(cause))),
        Effect.either
      )
      if (ended._tag === "Left") {
        const error = ended.left
        if (!isTransient(error)) return yield* Effect.fail(error)
        redirect(error)
      }
      // A stream that ended (its term did, or the connection) is followed by a search for the leader, which
      // waits on `schedule` while there is none.
    }
  })
