/** Errors that end a CLI invocation with one line on stderr and exit status 1. */
import { Data } from "effect"

export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}
