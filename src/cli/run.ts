/**
 * Shared runner for the CLIs: every failure reaches the operator as one clear line on stderr and exit
 * status 1 — never a stack trace for an expected error. The program part (`cliProgram`) returns the exit
 * status instead of touching the process, so tests run a command in-process through the same code path as
 * the binary, with the Console swapped for one that records what it prints.
 */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Context, Data, Effect, Option } from "effect"

export const VERSION = "0.1.0"

/**
 * Ends the command with this exit status; whatever the operator needs to know has already been printed.
 * (Commands fail with it rather than set `process.exitCode`, so an in-process run sees the status too.)
 */
export class CliExit extends Data.TaggedError("CliExit")<{ readonly code: number }> {}

export const exitWith = (code: number) => Effect.fail(new CliExit({ code }))

/** Where raw bytes for stdout go (`config pull` without `-o`): the process's stdout unless a test swaps it. */
export class StdoutBytes extends Context.Reference<StdoutBytes>()("nstance/StdoutBytes", {
  defaultValue: () => (bytes: Uint8Array): void => { process.stdout.write(bytes) }
}) {}

const oneLine = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" && error.message !== "") {
    return error.message
  }
  return String(error)
}

/** Runs `command` on `argv` (as `process.argv`: node, script, args…) and yields the exit status. */
export const cliProgram = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, name: string) => {
  const cli = Command.run(command, { name, version: VERSION })
  return (argv: ReadonlyArray<string>) =>
    Effect.suspend(() => cli(argv)).pipe(
      Effect.as(0),
      Effect.catchAllCause((cause) => {
        // SIGINT/SIGTERM: the daemon's finalizers (lease resign) have run; nothing to report.
        if (Cause.isInterruptedOnly(cause)) return Effect.succeed(0)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) {
          const error: unknown = failure.value
          if (error instanceof CliExit) return Effect.succeed(error.code)
          // @effect/cli has already printed its own help/usage text for validation errors.
          if (ValidationError.isValidationError(error)) return Effect.succeed(1)
        }
        const message = Option.match(failure, { onNone: () => Cause.pretty(cause), onSome: oneLine })
        return Console.error(`✗ ${message}`).pipe(Effect.as(1))
      })
    )
}

export const runCli = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, name: string) => {
  const program = cliProgram(command, name)(process.argv).pipe(
    Effect.flatMap((code) => Effect.sync(() => { process.exitCode = code })),
    Effect.provide(NodeContext.layer)
  )
  NodeRuntime.runMain(program as Effect.Effect<void, never, never>, { disableErrorReporting: true, disablePrettyLogger: true })
}
