/**
 * The object store in a local directory, for single-host deployments and tests: the same conditional
 * semantics as S3, kept across processes on one host. Writes are atomic (temp file, fsync, rename);
 * IfAbsent is `link(2)`, which fails when the name exists; IfMatch, plain puts and deletes of a key
 * serialise on a per-key lock file created with O_EXCL (`wx`), the only exclusive primitive Node offers
 * portably (no flock). A lock whose owner process is gone, or that is older than any write could take, is
 * broken by renaming it aside, so exactly one breaker wins.
 *
 * Etags are content hashes (SHA-256, 32 hex digits): rewriting identical bytes keeps the etag, which is
 * harmless because the state is then identical too. A HEAD and an IfMatch's comparison take the etag remembered
 * for the file's identity (inode, size, times) when it has not changed, instead of reading and hashing it.
 *
 * Keys never leave the directory: a directory under the root that is a symbolic link (`shard/pve-x` → a
 * directory elsewhere) makes every operation on keys below it fail with InvalidKey instead of following it.
 *
 * The calls on every operation's path — reading, the temp file's write and fsync, the lock file, link, rename,
 * unlink, `realpath`/`stat`/`lstat`, the directory's fsync — are `node:fs/promises`, wrapped in
 * `Effect.tryPromise` as a typed `NodeFsError`, with the expected outcomes (a missing key, a busy lock, a name
 * that exists) answered inside the call rather than failed: through `@effect/platform`'s FileSystem each call
 * cost a scope and each expected outcome an error object with its stack, most of an idle leader's CPU on this
 * store. The platform FileSystem (the Node implementation, captured once, so `makeFileStore` stays a plain
 * function) remains for the rare paths: creating directories and breaking stale locks.
 *
 * Lock waits follow the `lockWait` schedule and the stale-lock age compares a lock file's mtime with
 * Effect's Clock; both use the live Clock even when the caller runs on a TestClock, because the other
 * side of a lock is a real process and the mtime is stamped by the kernel's wall clock. The jitter
 * comes from Effect's Random. Temp-file names and lock tokens stay `crypto.randomUUID()`: they must be
 * unique across processes, not merely spread out.
 */
import { createHash, randomUUID } from "node:crypto"
import type { BigIntStats } from "node:fs"
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
/** Files whose etags are remembered per store (see `knownEtags`). */
const ETAG_MEMO = 4096

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

const textDecoder = new TextDecoder()

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
  const walkForLinks = (key: string) =>
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

  /** The root's resolved path (the root itself may be a link), looked up again when a path no longer matches it. */
  let realRoot: string | undefined
  const resolvedRoot = (fresh: boolean) =>
    !fresh && realRoot !== undefined
      ? Effect.succeed(realRoot)
      : Effect.tap(nodeCall(() => nodeFs.realpath(root)), (path) => Effect.sync(() => (realRoot = path)))

  /**
   * The same refusal in one system call in the usual case: when the key's directory resolves to the path it
   * names under the resolved root, no component is a link (an `lstat` per component cost most of an idle
   * leader's store CPU). Anything else — a missing directory, a file in the path, a link, a root retargeted
   * since — takes the component walk, which says which.
   */
  const checkNoLinks = (key: string) => {
    const parts = key.split("/").slice(0, -1)
    if (parts.length === 0) return Effect.void
    const matches = (fresh: boolean) =>
      Effect.zipWith(resolvedRoot(fresh), nodeCall(() => nodeFs.realpath(join(root, ...parts))), (base, resolved) => resolved === join(base, ...parts))
    return matches(false).pipe(
      Effect.flatMap((same) => (same ? Effect.succeed(true) : matches(true))),
      Effect.orElseSucceed(() => false),
      Effect.flatMap((same) => (same ? Effect.void : walkForLinks(key)))
    )
  }

  // The calls on every operation's path go to `node:fs/promises` directly: through the platform FileSystem each
  // one cost a scope and, for the expected outcomes (a missing key, a busy lock, a name that exists), a
  // failure object with its stack — most of an idle leader's CPU on this store.

  const syncDir = (dir: string) =>
    nodeCall(async () => {
      const handle = await nodeFs.open(dir, "r")
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    })

  /** Writes `body` to a fresh temp file and makes it durable before anyone can see it. */
  const writeTemp = (tmp: string, body: Uint8Array) =>
    nodeCall(async () => {
      const handle = await nodeFs.open(tmp, "wx", OBJECT_MODE)
      try {
        await handle.writeFile(body)
        await handle.sync()
      } finally {
        await handle.close()
      }
    })

  /** A path through a file, or naming a directory of other keys, is simply not an object (an answer, not a failure). */
  const readCurrent = (path: string): Effect.Effect<Uint8Array | undefined, Fault> =>
    nodeCall(async () => {
      try {
        const data = await nodeFs.readFile(path)
        return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      } catch (error) {
        const code = errno(error)
        if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return undefined
        throw error
      }
    })

  /**
   * Etags of files as last seen, by path with the file's identity (device, inode, size, modification and change
   * times in ns). An object's file never changes once published — every write is a fresh file renamed or
   * linked into place — so a file with the same identity has the same bytes: a HEAD (the config check every
   * 5 s) and an IfMatch's comparison (every lease renewal) then cost one `stat` instead of reading and hashing
   * the file. Bounded: forgotten wholesale past ETAG_MEMO entries.
   */
  const knownEtags = new Map<string, { readonly identity: string; readonly etag: string }>()
  const identityOf = (stats: BigIntStats) => `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`
  const rememberEtag = (path: string, stats: BigIntStats, etag: string) => {
    if (knownEtags.size >= ETAG_MEMO) knownEtags.clear()
    knownEtags.set(path, { identity: identityOf(stats), etag })
  }

  /** The file's size and etag, or undefined when it is not an object (as `readCurrent`). */
  const currentEtag = (path: string): Effect.Effect<{ readonly size: number; readonly etag: string } | undefined, Fault> =>
    nodeCall(async () => {
      try {
        const stats = await nodeFs.stat(path, { bigint: true })
        if (!stats.isFile()) return undefined
        const known = knownEtags.get(path)
        if (known !== undefined && known.identity === identityOf(stats)) return { size: Number(stats.size), etag: known.etag }
        // Read through one descriptor, so the identity remembered is that of the bytes hashed.
        const handle = await nodeFs.open(path, "r")
        try {
          const opened = await handle.stat({ bigint: true })
          const body = await handle.readFile()
          const etag = etagOf(body)
          rememberEtag(path, opened, etag)
          return { size: body.byteLength, etag }
        } finally {
          await handle.close()
        }
      } catch (error) {
        const code = errno(error)
        if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return undefined
        throw error
      }
    })

  /** Creates `path` with `text` unless it exists: false when it does. */
  const createExclusive = (path: string, text: string) =>
    nodeCall(async () => {
      try {
        await nodeFs.writeFile(path, text, { flag: "wx", mode: OBJECT_MODE })
        return true
      } catch (error) {
        if (errno(error) === "EEXIST") return false
        throw error
      }
    })

  /** Removes `path` when it is there (a key, a temp file, our lock). */
  const unlinkIfPresent = (path: string) =>
    nodeCall(async () => {
      try {
        await nodeFs.unlink(path)
      } catch (error) {
        if (errno(error) !== "ENOENT") throw error
      }
    })

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
      const attempt = createExclusive(lock, token).pipe(
        Effect.flatMap((taken) => (taken ? Effect.void : Effect.fail(new LockBusy({ lock })))),
        Effect.uninterruptible
      )
      // Only our own lock is removed: a breaker may have moved a lock it judged stale, and another taken it since.
      const release = readCurrent(lock).pipe(
        Effect.flatMap((still) => (still !== undefined && textDecoder.decode(still) === token ? unlinkIfPresent(lock) : Effect.void)),
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
    yield* checkKey(key)
    const current = yield* Effect.zipRight(checkNoLinks(key), currentEtag(pathOf(key))).pipe(Effect.mapError((fault) => fileError("head", key, fault)))
    if (current === undefined) return yield* new NotFound({ key })
    return { key, size: current.size, etag: current.etag } satisfies ObjectMeta
  })

  type PutOutcome = { readonly etag: string } | "precondition-failed"

  /**
   * Runs `place` (a link or rename onto `target`); when the key's directory does not exist yet, creates it and
   * places again — `mkdir -p` only for the first object of a directory, not for every write. The link check
   * runs again after the mkdir: a directory swapped for a link meanwhile must not receive the object either.
   */
  const intoDirectory = <A>(key: string, target: string, place: Effect.Effect<A, Fault>): Effect.Effect<A, Fault> =>
    place.pipe(
      Effect.catchIf(hasCode("ENOENT"), () =>
        fs.makeDirectory(dirname(target), { recursive: true, mode: DIRECTORY_MODE }).pipe(
          Effect.zipRight(checkNoLinks(key)),
          Effect.zipRight(place)
        ))
    )

  const putFile = (key: string, body: Uint8Array, precondition: Precondition | undefined): Effect.Effect<PutOutcome, Fault> =>
    Effect.gen(function* () {
      const target = pathOf(key)
      yield* ensureDirs
      const tmp = join(tmpDir, `${process.pid}-${randomUUID()}`)
      /** Whether the temp name still has to go (a rename consumed it; a link leaves it). */
      let tmpLeft = true
      const publish = Effect.gen(function* () {
        yield* writeTemp(tmp, body)
        // Checked once the temp file is durable, right before the object appears.
        yield* checkNoLinks(key)
        if (precondition?._tag === "IfAbsent") {
          const linked = yield* intoDirectory(key, target, nodeCall(async () => {
            try {
              await nodeFs.link(tmp, target)
              return true
            } catch (error) {
              if (errno(error) === "EEXIST") return false
              throw error
            }
          }))
          if (!linked) return "precondition-failed" as const
        } else {
          const applied = yield* withLock(
            key,
            Effect.gen(function* () {
              if (precondition?._tag === "IfMatch") {
                const current = yield* currentEtag(target)
                if (current === undefined || current.etag !== precondition.etag) return false
              }
              yield* intoDirectory(key, target, nodeCall(() => nodeFs.rename(tmp, target)))
              tmpLeft = false
              // Still under the key's lock, so the file at `target` is the one just renamed there: the next
              // IfMatch on this key (our own next renewal) compares without reading it.
              // Only a shortcut: the object is in place whether or not this look succeeds.
              yield* nodeCall(() => nodeFs.stat(target, { bigint: true })).pipe(
                Effect.flatMap((stats) => Effect.sync(() => rememberEtag(target, stats, etagOf(body)))),
                Effect.ignore
              )
              return true
            })
          )
          if (!applied) return "precondition-failed" as const
        }
        yield* syncDir(dirname(target))
        return { etag: etagOf(body) }
      })
      return yield* Effect.ensuring(publish, Effect.suspend(() => (tmpLeft ? Effect.ignore(unlinkIfPresent(tmp)) : Effect.void)))
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
        // Entries outside the prefix or before `startAfter` are dropped here, not as stream elements: a log
        // listed from its tail skips thousands of segments (a stream element each cost ~100 ms per 5,000).
        Stream.fromIterable(entries.filter((entry) => {
          const key = keyPrefix + entry.sortKey
          if (entry.isDir) {
            if (!(key.startsWith(prefix) || prefix.startsWith(key))) return false
            return !(startAfter !== undefined && key < startAfter && !startAfter.startsWith(key))
          }
          return key.startsWith(prefix) && !(startAfter !== undefined && key <= startAfter)
        })).pipe(
          Stream.flatMap((entry): Stream.Stream<ObjectMeta, Fault> => {
            const key = keyPrefix + entry.sortKey
            if (entry.isDir) return walk(join(dir, entry.name), key, prefix, startAfter)
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
