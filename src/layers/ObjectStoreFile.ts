/**
 * The object store in a local directory, for single-host deployments and tests: the same conditional
 * semantics as S3, kept across processes on one host. Writes are atomic (temp file, fsync, rename);
 * IfAbsent is `link(2)`, which fails when the name exists; IfMatch, plain puts and deletes of a key
 * serialise on a per-key lock file created with O_EXCL (`wx`), the only exclusive primitive Node offers
 * portably (no flock). A lock whose owner process is gone, or that is older than any write could take, is
 * broken by renaming it aside, so exactly one breaker wins.
 *
 * Etags are content hashes (SHA-256, 32 hex digits): rewriting identical bytes keeps the etag, which is
 * harmless because the state is then identical too.
 *
 * Keys never leave the directory: a directory under the root that is a symbolic link (`shard/pve-x` → a
 * directory elsewhere) makes every operation on keys below it fail with InvalidKey instead of following it.
 */
import { createHash, randomUUID } from "node:crypto"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import { dirname, join } from "node:path"
import { Effect, Layer, Stream } from "effect"
import { objectKeyProblem, objectPrefixProblem } from "../domain/objectKey.js"
import {
  AccessDenied,
  InvalidKey,
  NotFound,
  ObjectStore,
  type ObjectMeta,
  type ObjectStoreShape,
  type Precondition,
  PreconditionFailed,
  type StoreError,
  StoreUnavailable
} from "../services/ObjectStore.js"

/** Top-level directory for temp and lock files; never an object key. */
const RESERVED = ".nstance-store"
/** A held lock is only held for one read-compare-rename; anything this old is abandoned. */
const STALE_LOCK_MS = 30_000
const LOCK_ATTEMPTS = 2_000

export interface FileStoreOptions {
  /** The directory that plays the bucket; created when missing. */
  readonly directory: string
}

const errno = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined

/** A directory component of a key's path is a symbolic link (thrown inside, reported as InvalidKey). */
class SymlinkedDirectory extends Error {
  constructor(readonly relative: string) {
    super(`directory ${relative} is a symbolic link`)
  }
}

/** The bucket directory exists but is something else (thrown inside, reported as AccessDenied). */
class BucketNotDirectory extends Error {
  constructor(readonly directory: string) {
    super(`${directory} is not a directory`)
  }
}

const fileError = (operation: string, key: string, error: unknown): StoreError => {
  if (error instanceof SymlinkedDirectory) {
    return new InvalidKey({ key, reason: `${error.relative}/ in the bucket is a symbolic link; the file store does not follow links out of its directory` })
  }
  if (error instanceof BucketNotDirectory) {
    const what = key === error.directory ? "not a directory" : `the bucket ${error.directory} is not a directory`
    return new AccessDenied({ operation, key, reason: `${what} (--storage file needs a directory as --bucket)` })
  }
  const code = errno(error)
  const text = error instanceof Error ? error.message : String(error)
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") return new AccessDenied({ operation, key, reason: text })
  const syscall = typeof error === "object" && error !== null && "syscall" in error ? error.syscall : undefined
  if (code === "ENOTDIR" || code === "EISDIR" || code === "ENAMETOOLONG" || (code === "EEXIST" && syscall === "mkdir")) {
    return new InvalidKey({ key, reason: `collides with another object's path in the directory (${code})` })
  }
  return new StoreUnavailable({ operation, key, reason: text, cause: error })
}

const etagOf = (body: Uint8Array) => createHash("sha256").update(body).digest("hex").slice(0, 32)

const checkKey = (key: string) => {
  const problem =
    objectKeyProblem(key) ??
    (key.endsWith("/") ? "must not end with '/'" : undefined) ??
    (key === RESERVED || key.startsWith(`${RESERVED}/`) ? `'${RESERVED}/' is reserved by the file store` : undefined)
  return problem === undefined ? Effect.void : Effect.fail(new InvalidKey({ key, reason: problem }))
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return errno(error) === "EPERM"
  }
}

export const makeFileStore = (options: FileStoreOptions): ObjectStoreShape => {
  const root = options.directory
  const tmpDir = join(root, RESERVED, "tmp")
  const lockDir = join(root, RESERVED, "locks")
  const pathOf = (key: string) => join(root, ...key.split("/"))
  const lockPathOf = (key: string) => join(lockDir, `${createHash("sha256").update(key).digest("hex")}.lock`)

  let ready: Promise<void> | undefined
  const ensureDirs = () =>
    (ready ??= checkRoot().then(() => Promise.all([fs.mkdir(tmpDir, { recursive: true }), fs.mkdir(lockDir, { recursive: true })])).then(() => undefined))

  /** The root may be a symlink (the operator's choice); it must be a directory if it exists. */
  async function checkRoot() {
    const stats = await fs.stat(root).catch((error: unknown) => (errno(error) === "ENOENT" ? undefined : Promise.reject(error)))
    if (stats !== undefined && !stats.isDirectory()) throw new BucketNotDirectory(root)
  }

  /**
   * Refuses a key below a symlinked directory: each existing directory of its path is `lstat`ed, from the
   * root down (a missing one ends the walk: what put creates there is a real directory).
   */
  const checkNoLinks = async (key: string) => {
    const parts = key.split("/").slice(0, -1)
    for (let i = 1; i <= parts.length; i++) {
      const relative = parts.slice(0, i).join("/")
      let stats
      try {
        stats = await fs.lstat(join(root, ...parts.slice(0, i)))
      } catch (error) {
        if (errno(error) === "ENOENT" || errno(error) === "ENOTDIR") return
        throw error
      }
      if (stats.isSymbolicLink()) throw new SymlinkedDirectory(relative)
      if (!stats.isDirectory()) return
    }
  }

  const syncDir = async (dir: string) => {
    const handle = await fs.open(dir, fsConstants.O_RDONLY)
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  /** Writes `body` to a fresh temp file and makes it durable before anyone can see it. */
  const writeTemp = async (body: Uint8Array) => {
    await ensureDirs()
    const tmp = join(tmpDir, `${process.pid}-${randomUUID()}`)
    const handle = await fs.open(tmp, "wx", 0o644)
    try {
      await handle.writeFile(body)
      await handle.sync()
    } finally {
      await handle.close()
    }
    return tmp
  }

  const readCurrent = async (path: string): Promise<Uint8Array | undefined> => {
    try {
      return new Uint8Array(await fs.readFile(path))
    } catch (error) {
      // A path through a file, or naming a directory of other keys, is simply not an object.
      const code = errno(error)
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return undefined
      throw error
    }
  }

  const tryBreakStale = async (lock: string) => {
    let seen: string
    let age: number
    try {
      seen = await fs.readFile(lock, "utf8")
      age = Date.now() - (await fs.stat(lock)).mtimeMs
    } catch {
      return
    }
    const pid = Number.parseInt(seen.split(" ")[0] ?? "", 10)
    const ownerGone = Number.isInteger(pid) && pid > 0 && !pidAlive(pid)
    if (!ownerGone && age < STALE_LOCK_MS) return
    // Renaming is atomic: of several breakers only one moves the lock; the check after the move detects
    // the rare case of having moved a fresh lock taken meanwhile, and puts it back.
    const aside = `${lock}.stale-${randomUUID()}`
    try {
      await fs.rename(lock, aside)
    } catch {
      return
    }
    const moved = await fs.readFile(aside, "utf8").catch(() => seen)
    if (moved !== seen) await fs.link(aside, lock).catch(() => undefined)
    await fs.unlink(aside).catch(() => undefined)
  }

  const withLock = async <A>(key: string, body: () => Promise<A>): Promise<A> => {
    await ensureDirs()
    const lock = lockPathOf(key)
    const token = `${process.pid} ${randomUUID()}`
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.writeFile(lock, token, { flag: "wx" })
        break
      } catch (error) {
        if (errno(error) !== "EEXIST") throw error
        if (attempt >= LOCK_ATTEMPTS) throw new Error(`lock ${lock} stayed busy`)
        if (attempt % 20 === 19) await tryBreakStale(lock)
        await new Promise((resolve) => setTimeout(resolve, 1 + Math.random() * Math.min(20, attempt + 1)))
      }
    }
    try {
      return await body()
    } finally {
      const still = await fs.readFile(lock, "utf8").catch(() => undefined)
      if (still === token) await fs.unlink(lock).catch(() => undefined)
    }
  }

  const attempt = <A>(operation: string, key: string, run: () => Promise<A>) =>
    Effect.tryPromise({ try: run, catch: (error) => fileError(operation, key, error) })

  const get = Effect.fn("objectStore.file.get")(function* (key: string) {
    yield* checkKey(key)
    const body = yield* attempt("get", key, async () => {
      await checkNoLinks(key)
      return readCurrent(pathOf(key))
    })
    if (body === undefined) return yield* new NotFound({ key })
    return { body, etag: etagOf(body) }
  })

  const head = Effect.fn("objectStore.file.head")(function* (key: string) {
    const { body, etag } = yield* get(key)
    return { key, size: body.byteLength, etag } satisfies ObjectMeta
  })

  type PutOutcome = { readonly etag: string } | "precondition-failed"

  const putFile = async (key: string, body: Uint8Array, precondition: Precondition | undefined): Promise<PutOutcome> => {
    const target = pathOf(key)
    await checkNoLinks(key)
    const tmp = await writeTemp(body)
    try {
      await fs.mkdir(dirname(target), { recursive: true })
      // Again after mkdir: a directory swapped for a link in between must not receive the object either.
      await checkNoLinks(key)
      if (precondition?._tag === "IfAbsent") {
        try {
          await fs.link(tmp, target)
        } catch (error) {
          if (errno(error) === "EEXIST") return "precondition-failed"
          throw error
        }
      } else {
        const applied = await withLock(key, async () => {
          if (precondition?._tag === "IfMatch") {
            const current = await readCurrent(target)
            if (current === undefined || etagOf(current) !== precondition.etag) return false
          }
          await fs.rename(tmp, target)
          return true
        })
        if (!applied) return "precondition-failed"
      }
      await syncDir(dirname(target))
      return { etag: etagOf(body) }
    } finally {
      await fs.unlink(tmp).catch(() => undefined)
    }
  }

  const put = Effect.fn("objectStore.file.put")(function* (key: string, body: Uint8Array, precondition?: Precondition) {
    yield* checkKey(key)
    const outcome = yield* attempt("put", key, () => putFile(key, body, precondition))
    if (outcome === "precondition-failed") return yield* new PreconditionFailed({ key, precondition: precondition! })
    return outcome
  })

  const del = Effect.fn("objectStore.file.delete")(function* (key: string) {
    yield* checkKey(key)
    yield* attempt("delete", key, () =>
      withLock(key, async () => {
        await checkNoLinks(key)
        try {
          await fs.unlink(pathOf(key))
        } catch (error) {
          if (errno(error) !== "ENOENT") throw error
        }
      })
    )
  })

  /**
   * Depth-first over sorted entries where a directory sorts as `name/`: that order equals the order of the
   * full keys, so the walk yields keys ascending without collecting the whole tree first.
   */
  async function* walk(dir: string, keyPrefix: string, prefix: string, startAfter: string | undefined): AsyncGenerator<ObjectMeta> {
    let entries: Array<{ name: string; isDir: boolean; sortKey: string }>
    try {
      entries = (await fs.readdir(dir, { withFileTypes: true }))
        // Symbolic links are not objects of this store (and a linked directory is not walked into).
        .filter((entry) => !(keyPrefix === "" && entry.name === RESERVED) && !entry.isSymbolicLink())
        .map((entry) => ({ name: entry.name, isDir: entry.isDirectory(), sortKey: entry.isDirectory() ? `${entry.name}/` : entry.name }))
        .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0))
    } catch (error) {
      if (errno(error) === "ENOENT" || errno(error) === "ENOTDIR") return
      throw error
    }
    for (const entry of entries) {
      const key = keyPrefix + entry.sortKey
      if (entry.isDir) {
        if (!(key.startsWith(prefix) || prefix.startsWith(key))) continue
        if (startAfter !== undefined && key < startAfter && !startAfter.startsWith(key)) continue
        yield* walk(join(dir, entry.name), key, prefix, startAfter)
      } else {
        if (!key.startsWith(prefix) || (startAfter !== undefined && key <= startAfter)) continue
        const body = await readCurrent(join(dir, entry.name))
        if (body !== undefined) yield { key, size: body.byteLength, etag: etagOf(body) }
      }
    }
  }

  const list = (prefix: string, startAfter?: string): Stream.Stream<ObjectMeta, StoreError> => {
    const problem = objectPrefixProblem(prefix)
    if (problem !== undefined) return Stream.fail(new InvalidKey({ key: prefix, reason: problem }))
    return Stream.fromAsyncIterable(
      { [Symbol.asyncIterator]: () => walk(root, "", prefix, startAfter) },
      (error) => fileError("list", prefix, error)
    )
  }

  return ObjectStore.of({ get, head, put, delete: del, list })
}

/** The file store as a layer; the directory is created when missing. */
export const ObjectStoreFile = (options: FileStoreOptions) =>
  Layer.effect(
    ObjectStore,
    Effect.tryPromise({
      try: async () => {
        const existing = await fs.stat(options.directory).catch(() => undefined)
        if (existing !== undefined && !existing.isDirectory()) throw new BucketNotDirectory(options.directory)
        await fs.mkdir(options.directory, { recursive: true })
      },
      catch: (error) => fileError("open", options.directory, error)
    }).pipe(Effect.as(makeFileStore(options)))
  )
