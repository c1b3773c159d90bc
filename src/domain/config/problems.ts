/** One finding about a shard config, addressed by its dotted path (`groups.default.web.size`). */
import { Data } from "effect"

export interface Problem {
  readonly path: string
  readonly message: string
}

export const formatProblem = (problem: Problem): string =>
  problem.path === "" ? problem.message : `${problem.path}: ${problem.message}`

/** Every problem found in a config, reported together so one edit-validate round fixes them all. */
export class InvalidShardConfig extends Data.TaggedError("InvalidShardConfig")<{
  readonly problems: ReadonlyArray<Problem>
}> {
  override get message() {
    const [first] = this.problems
    const rest = this.problems.length - 1
    return `invalid shard config: ${first === undefined ? "unknown problem" : formatProblem(first)}${rest > 0 ? ` (and ${rest} more)` : ""}`
  }
}
