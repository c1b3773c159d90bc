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
 *
 * Written on `@effect/platform`'s FileSystem (the Node implementation, captured once, so `makeFileStore`
 * stays a plain function): `open` with `wx` for temp files, `writeFile` with `wx` for locks, `link`,
 * `rename`, `stat`, `makeDirectory`, `readFile`, `remove` for temp/lock/aside clean-up, and `open` +
 * `sync` of a directory for its fsync. Three calls stay on `node:fs/promises`, wrapped in
 * `Effect.tryPromise` as a typed `NodeFsError`, because the platform FileSystem has no equivalent:
 * `lstat` (the symlink refusal must not follow links; platform `stat` does), `readdir` with file types
 * (platform `readDirectory` returns bare names, which would cost an lstat per entry in `list`), and
 * `unlink` for deleting a key (platform `remove` is `rm`, which reports a directory as ERR_FS_EISDIR
 * instead of EISDIR and so would change which error a key naming a directory gets).
 *
 * Lock waits follow the `lockWait` schedule and the stale-lock age compares a lock file's mtime with
 * Effect's Clock; both use the live Clock even when the caller runs on a TestClock, because the other
 * side of a lock is a real process and the mtime is stamped by the kernel's wall clock. The jitter
 * comes from Effect's Random. Temp-file names and lock tokens stay `crypto.randomUUID()`: they must be
 * unique across processes, not merely spread out.
 */
import { createHash, randomUUID } from "node:crypto"
import * as nodeFs from "node:fs/promises"
import { dirname, join } from "node:path"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Clock, Data, Duration, Effect, Layer, Option, Schedule, Stream } from "effect"
import { objectKeyProblem, objectPrefixProblem } from "../domain/objectKey.js"

/**
 * Objects and directories are the owner's alone: the bucket holds the event log, the sealed PKI keys and
 * configs with secrets in them. A umask can only take bits away, so these hold whatever it is.
 */
const OBJECT_MODE = 0o600
const DIRECTORY_MODE = 0o700
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
/** Every this many busy attempts, the lock is checked for being stale. */
const STALE_CHECK_EVERY = 20

/**
 * The waits between attempts at a busy per-key lock: after the n-th busy attempt (n from 0), 1 ms plus a
 * uniformly random share of min(20, n + 1) ms — 1–2 ms at first, growing to 1–21 ms — for at most
 * LOCK_ATTEMPTS waits (about 20 s in all if the lock never frees). Its output is n.
 */
const lockWait: Schedule.Schedule<number> = Schedule.recurs(LOCK_ATTEMPTS).pipe(
  Schedule.addDelay((n) => Duration.millis(Math.min(20, n + 1))),
  Schedule.jitteredWith({ min: 0, max: 1 }),
  Schedule.addDelay(() => Duration.millis(1))
)

/** The real clock, for lock waits and lock ages even under a TestClock (see the header). */
const systemClock = Clock.make()

export interface FileStoreOptions {
  /** The directory that plays the bucket; created when missing. */
  readonly directory: string
}

/** A `node:fs/promises` call the platform FileSystem has no equivalent for failed; `cause` is Node's error. */
class NodeFsError extends Data.TaggedError("NodeFsError")<{ readonly cause: unknown }> {}

/** A directory component of a key's path is a symbolic link (reported as InvalidKey). */
class SymlinkedDirectory extends Data.TaggedError("SymlinkedDirectory")<{ readonly relative: string }> {}

/** The bucket directory exists but is something else (reported as AccessDenied). */
class BucketNotDirectory extends Data.TaggedError("BucketNotDirectory")<{ readonly directory: string }> {}

/** The per-key lock is held by someone else (one attempt); after the last attempt, StoreUnavailable. */
class LockBusy extends Data.TaggedError("LockBusy")<{ readonly lock: string }> {}

type Fault = PlatformError | NodeFsError | SymlinkedDirectory | BucketNotDirectory | LockBusy

/** The Node error behind a fault, when there is one (platform errors keep it as `cause`). */
const underlying = (fault: Fault): unknown =>
  (fault._tag === "SystemError" || fault._tag === "BadArgument" || fault._tag === "NodeFsError") && fault.cause !== undefined ? fault.cause : fault

const errno = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined

const codeOf = (fault: Fault) => errno(underlying(fault))

const hasCode =
  (...codes: ReadonlyArray<string>) =>
  (fault: Fault): boolean => {
    const code = codeOf(fault)
    return code !== undefined && codes.includes(code)
  }

const fileError = (operation: string, key: string, fault: Fault): StoreError => {
  switch (fault._tag) {
    case "SymlinkedDirectory":
      return new InvalidKey({ key, reason: `${fault.relative}/ in the bucket is a symbolic link; the file store does not follow links out of its directory` })
    case "BucketNotDirectory": {
      const what = key === fault.directory ? "not a directory" : `the bucket ${fault.directory} is not a directory`
      return new AccessDenied({ operation, key, reason: `${what} (--storage file needs a directory as --bucket)` })
    }
    case "LockBusy":
      return new StoreUnavailable({ operation, key, reason: `lock ${fault.lock} stayed busy`, cause: fault })
  }
  const error = underlying(fault)
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

const nodeCall = <A>(run: () => Promise<A>) => Effect.tryPromise({ try: run, catch: (cause) => new NodeFsError({ cause }) })

/** The Node FileSystem service, built once (its layer is synchronous and needs nothing). */
let nodeFileSystem: FileSystem.FileSystem | undefined
const theNodeFileSystem = () => (nodeFileSystem ??= Effect.runSync(Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)))

const makeFileStoreOn = (fs: FileSystem.FileSystem, options: FileStoreOptions): ObjectStoreShape => {
  const root = options.directory
  const tmpDir = join(root, RESERVED, "tmp")
  const lockDir = join(root, RESERVED, "locks")
  const pathOf = (key: string) => join(root, ...key.split("/"))
  const lockPathOf = (key: string) => join(lockDir, `${createHash("sha256").update(key).digest("hex")}.lock`)

  /** The root may be a symlink (the operator's choice); it must be a directory if it exists. */
  const checkRoot = fs.stat(root).pipe(
    Effect.map(Option.some),
    Effect.catchIf(hasCode("ENOENT"), () => Effect.succeed(Option.none<FileSystem.File.Info>())),
    Effect.flatMap((stats) => (Option.isSome(stats) && stats.value.type !== "Directory" ? Effect.fail(new BucketNotDirectory({ directory: root })) : Effect.void))
  )

  /** Checked and created once per store; the outcome, failure included, is remembered. */
  const ensureDirs: Effect.Effect<void, Fault> = Effect.runSync(
    Effect.cached(
      checkRoot.pipe(
        Effect.zipRight(
          Effect.all([fs.makeDirectory(tmpDir, { recursive: true, mode: DIRECTORY_MODE }), fs.makeDirectory(lockDir, { recursive: true, mode: DIRECTORY_MODE })], { concurrency: 2, discard: true })
        )
      )
    )
  )

  /**
   * Refuses a key below a symlinked directory: each existing directory of its path is `lstat`ed, from the
   * root down (a missing one ends the walk: what put creates there is a real directory).
   */
  const checkNoLinks = (key: string) =>
    Effect.gen(function* () {
      const parts = key.split("/").slice(0, -1)
      for (let i = 1; i <= parts.length; i++) {
        const relative = parts.slice(0, i).join("/")
        const stats = yield* nodeCall(() => nodeFs.lstat(join(root, ...parts.slice(0, i)))).pipe(
          Effect.catchIf(hasCode("ENOENT", "ENOTDIR"), () => Effect.succeed(undefined))
        )
        if (stats === undefined) return
        if (stats.isSymbolicLink()) return yield* new SymlinkedDirectory({ relative })
        if (!stats.isDirectory()) return
      }
    })

  const syncDir = (dir: string) => Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (handle) => handle.sync))

  /** Writes `body` to a fresh temp file and makes it durable before anyone can see it. */
  const writeTemp = (tmp: string, body: Uint8Array) =>
    Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* fs.open(tmp, { flag: "wx", mode: OBJECT_MODE })
        // The platform's writeAll refuses an empty buffer (WriteZero); an empty object is an empty file.
        if (body.byteLength > 0) yield* handle.writeAll(body)
        yield* handle.sync
      })
    )

  /** A path through a file, or naming a directory of other keys, is simply not an object. */
  const readCurrent = (path: string): Effect.Effect<Uint8Array | undefined, Fault> =>
    fs.readFile(path).pipe(
      Effect.map((data): Uint8Array | undefined => new Uint8Array(data)),
      Effect.catchIf(hasCode("ENOENT", "ENOTDIR", "EISDIR"), () => Effect.succeed(undefined))
    )

  const tryBreakStale = (lock: string) =>
    Effect.gen(function* () {
      const observed = yield* Effect.option(
        Effect.all([fs.readFileString(lock), fs.stat(lock), Clock.currentTimeMillis])
      )
      if (Option.isNone(observed)) return
      const [seen, stats, now] = observed.value
      const age = now - Option.match(stats.mtime, { onNone: () => now, onSome: (mtime) => mtime.getTime() })
      const pid = Number.parseInt(seen.split(" ")[0] ?? "", 10)
      const ownerGone = Number.isInteger(pid) && pid > 0 && !pidAlive(pid)
      if (!ownerGone && age < STALE_LOCK_MS) return
      // Renaming is atomic: of several breakers only one moves the lock; the check after the move detects
      // the rare case of having moved a fresh lock taken meanwhile, and puts it back.
      const aside = `${lock}.stale-${randomUUID()}`
      const movedAside = yield* fs.rename(lock, aside).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
      if (!movedAside) return
      const moved = yield* fs.readFileString(aside).pipe(Effect.orElseSucceed(() => seen))
      if (moved !== seen) yield* Effect.ignore(fs.link(aside, lock))
      yield* Effect.ignore(fs.remove(aside))
    }).pipe(Effect.uninterruptible)

  /**
   * Runs `body` holding the key's lock. Each attempt to take it, the stale-lock breaking and `body` with the
   * release are uninterruptible (an interrupted attempt must not leave a lock behind); the waits are not.
   */
  const withLock = <A, E>(key: string, body: Effect.Effect<A, E>): Effect.Effect<A, E | Fault> =>
    Effect.gen(function* () {
      yield* ensureDirs
      const lock = lockPathOf(key)
      const token = `${process.pid} ${randomUUID()}`
      const attempt = fs
        .writeFileString(lock, token, { flag: "wx" })
        .pipe(Effect.catchIf(hasCode("EEXIST"), () => Effect.fail(new LockBusy({ lock }))), Effect.uninterruptible)
      const release = fs.readFileString(lock).pipe(
        Effect.flatMap((still) => (still === token ? fs.remove(lock) : Effect.void)),
        Effect.ignore
      )
      return yield* Effect.uninterruptibleMask((restore) =>
        restore(
          Effect.retry(
            attempt,
            lockWait.pipe(
              Schedule.whileInput((fault: Fault) => fault._tag === "LockBusy"),
              Schedule.tapOutput((n) => (n % STALE_CHECK_EVERY === STALE_CHECK_EVERY - 1 ? tryBreakStale(lock) : Effect.void))
            )
          ).pipe(Effect.withClock(systemClock))
        ).pipe(Effect.zipRight(Effect.ensuring(body, release)))
      )
    })

  const get = Effect.fn("objectStore.file.get")(function* (key: string) {
    yield* checkKey(key)
    const body = yield* Effect.zipRight(checkNoLinks(key), readCurrent(pathOf(key))).pipe(Effect.mapError((fault) => fileError("get", key, fault)))
    if (body === undefined) return yield* new NotFound({ key })
    return { body, etag: etagOf(body) }
  })

  const head = Effect.fn("objectStore.file.head")(function* (key: string) {
    const { body, etag } = yield* get(key)
    return { key, size: body.byteLength, etag } satisfies ObjectMeta
  })

  type PutOutcome = { readonly etag: string } | "precondition-failed"

  const putFile = (key: string, body: Uint8Array, precondition: Precondition | undefined): Effect.Effect<PutOutcome, Fault> =>
    Effect.gen(function* () {
      const target = pathOf(key)
      yield* checkNoLinks(key)
      yield* ensureDirs
      const tmp = join(tmpDir, `${process.pid}-${randomUUID()}`)
      const publish = Effect.gen(function* () {
        yield* writeTemp(tmp, body)
        yield* fs.makeDirectory(dirname(target), { recursive: true, mode: DIRECTORY_MODE })
        // Again after mkdir: a directory swapped for a link in between must not receive the object either.
        yield* checkNoLinks(key)
        if (precondition?._tag === "IfAbsent") {
          const linked = yield* fs.link(tmp, target).pipe(
            Effect.as(true),
            Effect.catchIf(hasCode("EEXIST"), () => Effect.succeed(false))
          )
          if (!linked) return "precondition-failed" as const
        } else {
          const applied = yield* withLock(
            key,
            Effect.gen(function* () {
              if (precondition?._tag === "IfMatch") {
                const current = yield* readCurrent(target)
                if (current === undefined || etagOf(current) !== precondition.etag) return false
              }
              yield* fs.rename(tmp, target)
              return true
            })
          )
          if (!applied) return "precondition-failed" as const
        }
        yield* syncDir(dirname(target))
        return { etag: etagOf(body) }
      })
      return yield* Effect.ensuring(publish, Effect.ignore(fs.remove(tmp)))
    })

  const put = Effect.fn("objectStore.file.put")(function* (key: string, body: Uint8Array, precondition?: Precondition) {
    yield* checkKey(key)
    const outcome = yield* putFile(key, body, precondition).pipe(Effect.mapError((fault) => fileError("put", key, fault)))
    if (outcome === "precondition-failed") return yield* new PreconditionFailed({ key, precondition: precondition! })
    return outcome
  })

  const del = Effect.fn("objectStore.file.delete")(function* (key: string) {
    yield* checkKey(key)
    yield* withLock(
      key,
      Effect.zipRight(
        checkNoLinks(key),
        nodeCall(() => nodeFs.unlink(pathOf(key))).pipe(Effect.catchIf(hasCode("ENOENT"), () => Effect.void))
      )
    ).pipe(Effect.mapError((fault) => fileError("delete", key, fault)))
  })

  interface Entry {
    readonly name: string
    readonly isDir: boolean
    readonly sortKey: string
  }

  const entriesOf = (dir: string, keyPrefix: string): Effect.Effect<ReadonlyArray<Entry>, Fault> =>
    nodeCall(() => nodeFs.readdir(dir, { withFileTypes: true })).pipe(
      Effect.map((entries) =>
        entries
          // Symbolic links are not objects of this store (and a linked directory is not walked into).
          .filter((entry) => !(keyPrefix === "" && entry.name === RESERVED) && !entry.isSymbolicLink())
          .map((entry) => ({ name: entry.name, isDir: entry.isDirectory(), sortKey: entry.isDirectory() ? `${entry.name}/` : entry.name }))
          .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0))
      ),
      Effect.catchIf(hasCode("ENOENT", "ENOTDIR"), () => Effect.succeed([]))
    )

  /**
   * Depth-first over sorted entries where a directory sorts as `name/`: that order equals the order of the
   * full keys, so the walk yields keys ascending without collecting the whole tree first.
   */
  const walk = (dir: string, keyPrefix: string, prefix: string, startAfter: string | undefined): Stream.Stream<ObjectMeta, Fault> =>
    Stream.unwrap(
      Effect.map(entriesOf(dir, keyPrefix), (entries) =>
        Stream.fromIterable(entries).pipe(
          Stream.flatMap((entry): Stream.Stream<ObjectMeta, Fault> => {
            const key = keyPrefix + entry.sortKey
            if (entry.isDir) {
              if (!(key.startsWith(prefix) || prefix.startsWith(key))) return Stream.empty
              if (startAfter !== undefined && key < startAfter && !startAfter.startsWith(key)) return Stream.empty
              return walk(join(dir, entry.name), key, prefix, startAfter)
            }
            if (!key.startsWith(prefix) || (startAfter !== undefined && key <= startAfter)) return Stream.empty
            return Stream.unwrap(
              Effect.map(readCurrent(join(dir, entry.name)), (body) =>
                body === undefined ? Stream.empty : Stream.make({ key, size: body.byteLength, etag: etagOf(body) })
              )
            )
          })
        )
      )
    )

  const list = (prefix: string, startAfter?: string): Stream.Stream<ObjectMeta, StoreError> => {
    const problem = objectPrefixProblem(prefix)
    if (problem !== undefined) return Stream.fail(new InvalidKey({ key: prefix, reason: problem }))
    return walk(root, "", prefix, startAfter).pipe(Stream.mapError((fault) => fileError("list", prefix, fault)))
  }

  return ObjectStore.of({ get, head, put, delete: del, list })
}

/** The file store on the Node file system; the directory is created at the first write. */
export const makeFileStore = (options: FileStoreOptions): ObjectStoreShape => makeFileStoreOn(theNodeFileSystem(), options)

/** The file store as a layer; the directory is created when missing. */
export const ObjectStoreFile = (options: FileStoreOptions): Layer.Layer<ObjectStore, StoreError> =>
  Layer.effect(
    ObjectStore,
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const existing = yield* Effect.option(fs.stat(options.directory))
      if (Option.isSome(existing) && existing.value.type !== "Directory") return yield* new BucketNotDirectory({ directory: options.directory })
      yield* fs.makeDirectory(options.directory, { recursive: true, mode: DIRECTORY_MODE })
      return makeFileStoreOn(fs, options)
    }).pipe(Effect.mapError((fault) => fileError("open", options.directory, fault)))
  ).pipe(Layer.provide(NodeFileSystem.layer))
