/**
 * A local copy of the newest snapshot (`--cachedir`), so that a restart can skip the snapshot download. Only
 * ever a shortcut: failures to read or write it are logged and the store stays the truth (replay trusts the
 * copy only while the store still holds the segment it ends at, byte for byte).
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect, Either, Option } from "effect"
import { type CachedSnapshot, parseCachedSnapshot } from "./format.js"

/** The local snapshot copy could not be read or written; never fatal, the store is the truth. */
export class SnapshotCacheError extends Data.TaggedError("SnapshotCacheError")<{
  readonly operation: string
  readonly path: string
  readonly cause: unknown
}> {
  override get message() {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot ${this.operation} ${this.path}: ${reason}`
  }
}

/** Where the local copy of the newest snapshot lives: a file (`fileSnapshotCache`) or memory in tests. */
export interface SnapshotCache {
  /** The cached bytes; none when there is no copy yet. */
  readonly read: () => Effect.Effect<Option.Option<Uint8Array>, SnapshotCacheError>
  /** Replaces the copy; a reader sees the old bytes or the new ones, never a mix. */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, SnapshotCacheError>
}

/** `{dir}/snapshot.json`, written atomically (temp file in the same directory, then rename); `dir` is created on write. */
export const fileSnapshotCache = (dir: string): SnapshotCache => {
  const path = join(dir, "snapshot.json")
  return {
    read: () =>
      Effect.tryPromise({
        try: async () => {
          try {
            return Option.some<Uint8Array>(new Uint8Array(await fs.readFile(path)))
          } catch (error) {
            if (typeof error === "object" && error !== null && "code" in error && error.code === "ENOENT") return Option.none<Uint8Array>()
            throw error
          }
        },
        catch: (cause) => new SnapshotCacheError({ operation: "read", path, cause })
      }),
    write: (bytes) =>
      Effect.tryPromise({
        try: async () => {
          await fs.mkdir(dir, { recursive: true })
          const tmp = join(dir, `.snapshot.json.${randomUUID()}.tmp`)
          try {
            const handle = await fs.open(tmp, "w")
            try {
              await handle.writeFile(bytes)
              await handle.sync()
            } finally {
              await handle.close()
            }
            await fs.rename(tmp, path)
          } catch (error) {
            await fs.rm(tmp, { force: true })
            throw error
          }
        },
        catch: (cause) => new SnapshotCacheError({ operation: "write", path, cause })
      })
  }
}

/** The cached snapshot when it parses; why not is logged (a missing copy silently). */
export const readCache = (cache: SnapshotCache) =>
  Effect.gen(function* () {
    const bytes = yield* cache.read()
    if (Option.isNone(bytes)) return Option.none<CachedSnapshot>()
    const parsed = parseCachedSnapshot(bytes.value)
    if (Either.isRight(parsed)) return Option.some(parsed.right)
    yield* Effect.logInfo(`event log: ignoring the cached snapshot (${parsed.left})`)
    return Option.none<CachedSnapshot>()
  }).pipe(
    Effect.catchAll((error) => Effect.as(Effect.logInfo(`event log: ignoring the cached snapshot (${error.message})`), Option.none<CachedSnapshot>()))
  )
