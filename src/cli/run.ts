/**
 * Shared runner for the CLIs: every failure reaches the operator as one clear line on stderr and exit
 * status 1 — never a stack trace for an expected error.
 */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Exit, Option } from "effect"

export const VERSION = "0.1.0"

const oneLine = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" && error.message !== "") {
    return error.message
  }
  return String(error)
}

export const runCli = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>,
  name: string
) => {
  const cli = Command.run(command, { name, version: VERSION })
  const program = Effect.suspend(() => cli(process.argv)).pipe(
    Effect.catchAllCause((cause) => {
      // SIGINT/SIGTERM: the daemon's finalizers (lease resign) have run; nothing to report.
      if (Cause.isInterruptedOnly(cause)) return Effect.void
      const failure = Cause.failureOption(cause)
      // @effect/cli has already printed its own help/usage text for validation errors.
      if (Option.isSome(failure) && ValidationError.isValidationError(failure.value)) {
        return Effect.sync(() => { process.exitCode = 1 })
      }
      const message = Option.match(failure, {
        onNone: () => Cause.pretty(cause),
        onSome: oneLine
      })
      return Console.error(`✗ ${message}`).pipe(Effect.zipRight(Effect.sync(() => { process.exitCode = 1 })))
    }),
    Effect.provide(NodeContext.layer)
  )
  NodeRuntime.runMain(program as Effect.Effect<void, never, never>, { disableErrorReporting: true, disablePrettyLogger: true })
}

export { Exit }
