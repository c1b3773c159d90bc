/**
 * The one way nstance's programs (server, admin, agent, simulator) read an operator's input file: checked
 * to be a regular file of bounded size before anything reads it, so a FIFO, a device or a directory given
 * as FILE is one clear line instead of a hang. Its error, UsageError, ends a CLI invocation with that line
 * on stderr and exit status 1. Kept outside `cli/` because the agent, the simulator and the daemon's
 * embedded mode read files too, and none of them should depend on the admin CLI.
 */
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import { Data, Effect } from "effect"

export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

const errno = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined

const kindOf = (stats: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSymbolicLink(): boolean }) =>
  stats.isDirectory() ? "directory"
  : stats.isFIFO() ? "FIFO"
  : stats.isSocket() ? "socket"
  : stats.isCharacterDevice() ? "character device"
  : stats.isBlockDevice() ? "block device"
  : stats.isSymbolicLink() ? "symbolic link"
  : "unknown type"

const MIB = 1024 * 1024
export const formatBytes = (bytes: number) =>
  bytes >= MIB ? `${(bytes / MIB).toFixed(bytes % MIB === 0 ? 0 : 1)} MiB` : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} bytes`

const problemOf = (error: unknown): string => {
  switch (errno(error)) {
    case "ENOENT": return "no such file"
    case "EACCES":
    case "EPERM": return "permission denied"
    case "ENOTDIR": return "a component of the path is not a directory"
    case "ELOOP": return "too many symbolic links"
    default: return error instanceof Error ? error.message : String(error)
  }
}

export interface InputFile {
  /** How the file was named on the command line: `--validate`, `--resources`, or "" for a positional FILE. */
  readonly flag: string
  readonly path: string
  /** What the file is, for the size message: "a shard config". */
  readonly what: string
  readonly maxBytes: number
  /** The file holds a secret: refused when its group or others may read or write it (mode 0600 or tighter). */
  readonly ownerOnly?: boolean
}

/**
 * The bytes of an operator's input file. `stat` first, so nothing that is not a regular file is opened;
 * the open itself is non-blocking and re-checked with `fstat`, so a path swapped for a FIFO in between
 * cannot hang the command either.
 */
export const readInputFile = (input: InputFile): Effect.Effect<Uint8Array, UsageError> => {
  const label = input.flag === "" ? input.path : `${input.flag} ${input.path}`
  const refuse = (problem: string) => new UsageError({ message: `${label}: ${problem}` })
  const check = (stats: Awaited<ReturnType<typeof fs.stat>>) => {
    if (!stats.isFile()) return refuse(`not a regular file (${kindOf(stats)})`)
    if (stats.size > input.maxBytes) {
      return refuse(`${formatBytes(Number(stats.size))} is too large for ${input.what} (at most ${formatBytes(input.maxBytes)})`)
    }
    const mode = Number(stats.mode) & 0o777
    if (input.ownerOnly === true && (mode & 0o077) !== 0) {
      return refuse(`mode ${mode.toString(8).padStart(4, "0")} lets others read ${input.what}, which holds a secret; make it 0600 (chmod 600 ${input.path})`)
    }
    return undefined
  }
  return Effect.tryPromise({
    try: async () => {
      const refused = check(await fs.stat(input.path))
      if (refused !== undefined) return refused
      const handle = await fs.open(input.path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
      try {
        const again = check(await handle.stat())
        if (again !== undefined) return again
        return new Uint8Array(await handle.readFile())
      } finally {
        await handle.close()
      }
    },
    catch: (error) => refuse(problemOf(error))
  }).pipe(Effect.flatMap((result) => (result instanceof UsageError ? Effect.fail(result) : Effect.succeed(result))))
}

/** `bytes` as UTF-8 text, or a UsageError naming the file. */
export const decodeUtf8 = (input: Pick<InputFile, "flag" | "path">, bytes: Uint8Array): Effect.Effect<string, UsageError> =>
  Effect.try({
    try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
    catch: () => new UsageError({ message: `${input.flag === "" ? input.path : `${input.flag} ${input.path}`}: not UTF-8 text` })
  })
