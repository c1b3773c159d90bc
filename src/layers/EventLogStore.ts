/**
 * The shard event log on the (shard-scoped) object store. Segments `log/{seq:016}.json` are created with
 * IfAbsent, which is the fence: of two writers only one can own a sequence number, and the loser stops
 * writing at once. Concurrent appends share one segment (group commit) through a queue drained by a single
 * writer fiber, and the folded state is updated only after the segment is durable. Snapshots
 * `snapshot/{seq:016}.json` carry a checksum; replay takes the newest valid one plus the segments after it.
 * A local copy of the newest snapshot (`--cachedir`) lets a restart skip the snapshot download; it is
 * trusted only while the store still holds the segment it ends at, byte for byte.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import { join } from "node:path"
import {
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  Layer,
  Option,
  type ParseResult,
  Queue,
  Ref,
  Schedule,
  Schema,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import { makeInstanceIdGenerator } from "../domain/instanceId.js"
import { encodeEvent, LeaderElected, LogIdentity, ShardEvent, type ShardEventEncoded, strict } from "../domain/shard/events.js"
import { decodeState, emptyState, encodeState, fold, type State } from "../domain/shard/state.js"
import { shortParseProblem } from "../domain/errorText.js"
import { EventLog, type EventLogShape, Fenced, LogCorrupt, LogUnavailable } from "../services/EventLog.js"
import { ifAbsent, ObjectStore, type ObjectStoreShape } from "../services/ObjectStore.js"

export interface EventLogOptions {
  /** How long the writer waits after the first queued append for others to join its segment (default 20 ms). */
  readonly batchWindow?: Duration.DurationInput
  /** Flush as soon as this many events are queued; a segment holds at most this many unless one append is larger (default 256). */
  readonly maxBatch?: number
  /** Write a snapshot after this many events since the last one (default 1000). */
  readonly snapshotEvery?: number
  /** Segments kept behind the newest snapshot when pruning (default 100). */
  readonly keepSegments?: number
  /** A local copy of the newest snapshot, written with every store snapshot and tried first on replay. */
  readonly cache?: SnapshotCache
}

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

// ---- keys and formats --------------------------------------------------------------------------------------

const pad = (seq: number) => String(seq).padStart(16, "0")
export const segmentKey = (seq: number) => `log/${pad(seq)}.json`
export const snapshotKey = (seq: number) => `snapshot/${pad(seq)}.json`
export const SEGMENT_KEY = /^log\/(\d{16})\.json$/
export const SNAPSHOT_KEY = /^snapshot\/(\d{16})\.json$/

const seqOf = (pattern: RegExp, key: string): number | undefined => {
  const match = pattern.exec(key)
  return match?.[1] === undefined ? undefined : Number.parseInt(match[1], 10)
}

const Segment = Schema.Struct({ seq: Schema.Int, events: Schema.Array(ShardEvent) })
const decodeSegment = Schema.decodeUnknownEither(Schema.parseJson(Segment), strict)

const SnapshotFile = Schema.Struct({ seq: Schema.Int, state: Schema.Unknown, checksum: Schema.String })
const decodeSnapshotFile = Schema.decodeUnknownEither(Schema.parseJson(SnapshotFile), strict)
/** The cached copy also names the hash of segment `seq`, so a copy of another log (or a rewritten one) is never trusted. */
const CachedSnapshotFile = Schema.Struct({ ...SnapshotFile.fields, segmentHash: Schema.String })
const decodeCachedSnapshotFile = Schema.decodeUnknownEither(Schema.parseJson(CachedSnapshotFile), strict)

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

const sha256 = (text: string | Uint8Array) => createHash("sha256").update(text).digest("hex")

const segmentBody = (seq: number, events: ReadonlyArray<ShardEventEncoded>) => encoder.encode(JSON.stringify({ seq, events }))

const snapshotJson = (seq: number, state: State) => {
  const stateJson = JSON.stringify(encodeState(state))
  return `{"seq":${seq},"state":${stateJson},"checksum":"${sha256(stateJson)}"`
}
const snapshotBody = (seq: number, state: State) => encoder.encode(`${snapshotJson(seq, state)}}`)
const cachedSnapshotBody = (seq: number, state: State, segmentHash: string) =>
  encoder.encode(`${snapshotJson(seq, state)},"segmentHash":"${segmentHash}"}`)

const bytesEqual = (a: Uint8Array, b: Uint8Array) =>
  a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

// One short line: Schema's full message names the whole expected type (kilobytes for a segment).
const parseProblem = (error: ParseResult.ParseError) => shortParseProblem(error)

const textOf = (body: Uint8Array): Either.Either<string, string> => {
  try {
    return Either.right(decoder.decode(body))
  } catch {
    return Either.left("not UTF-8")
  }
}

/** Decodes a segment body read from `key`, strictly; the body must carry the key's sequence number. */
export const parseSegment = (key: string, seq: number, body: Uint8Array): Either.Either<ReadonlyArray<ShardEvent>, LogCorrupt> =>
  Either.flatMap(
    Either.mapLeft(textOf(body), (reason) => new LogCorrupt({ key, reason })),
    (text) => {
      const decoded = decodeSegment(text)
      if (Either.isLeft(decoded)) return Either.left(new LogCorrupt({ key, reason: parseProblem(decoded.left) }))
      if (decoded.right.seq !== seq) return Either.left(new LogCorrupt({ key, reason: `segment says seq ${decoded.right.seq}` }))
      return Either.right(decoded.right.events)
    }
  )

/** A snapshot's state, or why it cannot be used. */
export const parseSnapshot = (seq: number, body: Uint8Array): Either.Either<State, string> =>
  Either.flatMap(textOf(body), (text) => {
    const file = decodeSnapshotFile(text)
    if (Either.isLeft(file)) return Either.left(parseProblem(file.left))
    if (file.right.seq !== seq) return Either.left(`snapshot says seq ${file.right.seq}`)
    if (sha256(JSON.stringify(file.right.state)) !== file.right.checksum) return Either.left("checksum mismatch")
    return Either.mapLeft(decodeState(file.right.state), parseProblem)
  })

interface CachedSnapshot {
  readonly seq: number
  readonly state: State
  readonly segmentHash: string
}

/** The cached copy, checked like a store snapshot (format, checksum, state), or why it cannot be used. */
const parseCachedSnapshot = (body: Uint8Array): Either.Either<CachedSnapshot, string> =>
  Either.flatMap(textOf(body), (text) => {
    const file = decodeCachedSnapshotFile(text)
    if (Either.isLeft(file)) return Either.left(parseProblem(file.left))
    if (file.right.seq < 1) return Either.left(`it says seq ${file.right.seq}`)
    if (sha256(JSON.stringify(file.right.state)) !== file.right.checksum) return Either.left("checksum mismatch")
    const { seq, segmentHash } = file.right
    return Either.map(Either.mapLeft(decodeState(file.right.state), parseProblem), (state) => ({ seq, state, segmentHash }))
  })

// ---- store access ------------------------------------------------------------------------------------------

/** Transient store failures are retried briefly; the stores already settle ambiguous writes themselves. */
const storeRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(3)))
const retryTransient = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.retry(effect, { schedule: storeRetry, while: (error) => error._tag === "StoreUnavailable" })

const unavailable = (operation: string, key: string, inDoubt?: boolean) => (error: { readonly message: string }) =>
  new LogUnavailable({ operation, key, reason: error.message, cause: error, ...(inDoubt === true ? { inDoubt } : {}) })

const listKeys = (store: ObjectStoreShape, prefix: string, startAfter?: string) =>
  store.list(prefix, startAfter).pipe(
    Stream.map((meta) => meta.key),
    Stream.runCollect,
    Effect.map((chunk) => Array.from(chunk)),
    retryTransient,
    Effect.mapError(unavailable("list", prefix))
  )

/** Reads `key`; undefined when it does not exist. */
const readKey = (store: ObjectStoreShape, key: string) =>
  retryTransient(store.get(key)).pipe(
    Effect.map((object): Uint8Array | undefined => object.body),
    Effect.catchTag("NotFound", () => Effect.succeed(undefined)),
    Effect.mapError(unavailable("get", key))
  )

type PutOutcome = { readonly _tag: "Written" } | { readonly _tag: "Taken"; readonly body: Uint8Array | undefined }

/**
 * Creates segment `seq`. When the key exists already, it is ours if its bytes equal ours (a retried write
 * of ours that had landed), else it is `Taken` by another writer.
 */
const putSegment = (store: ObjectStoreShape, seq: number, body: Uint8Array): Effect.Effect<PutOutcome, LogUnavailable> => {
  const key = segmentKey(seq)
  return retryTransient(store.put(key, body, ifAbsent)).pipe(
    Effect.as<PutOutcome>({ _tag: "Written" }),
    Effect.catchTag("PreconditionFailed", () =>
      Effect.map(readKey(store, key), (current): PutOutcome =>
        current !== undefined && bytesEqual(current, body) ? { _tag: "Written" } : { _tag: "Taken", body: current }
      )
    ),
    Effect.catchTags({
      StoreUnavailable: (error) => Effect.fail(unavailable("put", key, true)(error)),
      AccessDenied: (error) => Effect.fail(unavailable("put", key)(error)),
      InvalidKey: (error) => Effect.fail(unavailable("put", key)(error))
    })
  )
}

// ---- replay ------------------------------------------------------------------------------------------------

export interface LoggedEvent {
  readonly seq: number
  readonly event: ShardEvent
}

export interface Replayed {
  readonly state: State
  /** Sequence number of the last segment (0 for an empty log). */
  readonly seq: number
  /** The last events of the replayed tail (after the snapshot used), oldest first. */
  readonly lastEvents: ReadonlyArray<LoggedEvent>
  /** Sequence number of the snapshot replay started from (0 when none was usable). */
  readonly snapshotSeq: number
  /** Where that snapshot came from: the store, the local cached copy, or nowhere (replay from seq 1). */
  readonly snapshotSource: "store" | "cache" | "none"
}

const LAST_EVENTS = 100
const FETCH_CONCURRENCY = 8

/** Sequence numbers of the store's snapshots, newest first. */
const snapshotSeqs = (store: ObjectStoreShape) =>
  Effect.gen(function* () {
    const seqs: Array<number> = []
    for (const key of yield* listKeys(store, "snapshot/")) {
      const seq = seqOf(SNAPSHOT_KEY, key)
      if (seq === undefined) yield* Effect.logWarning(`event log: ignoring ${key}: not a snapshot name`)
      else seqs.push(seq)
    }
    return seqs.sort((a, b) => b - a)
  })

/** The newest of `seqs` that reads, decodes and matches its checksum; corrupt ones are skipped with a warning. */
const newestValidSnapshot = Effect.fn("eventLog.snapshot.load")(function* (store: ObjectStoreShape, seqs: ReadonlyArray<number>) {
  for (const seq of seqs) {
    const key = snapshotKey(seq)
    const body = yield* readKey(store, key)
    if (body === undefined) continue
    const parsed = parseSnapshot(seq, body)
    if (Either.isRight(parsed)) return Option.some({ seq, state: parsed.right })
    yield* Effect.logWarning(`event log: skipping snapshot ${key} (${parsed.left}); trying the one before it`)
  }
  return Option.none<{ seq: number; state: State }>()
})

/** The cached snapshot when it parses; why not is logged (a missing copy silently). */
const readCache = (cache: SnapshotCache) =>
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

/**
 * Whether the store still holds segment `cached.seq` with the bytes the copy was taken after. This is what
 * ties the copy to this log: a copy of another log, of a log since rewritten, or one pruned past, is refused.
 */
const cacheMatchesStore = (store: ObjectStoreShape, cached: CachedSnapshot) =>
  Effect.gen(function* () {
    const segment = yield* readKey(store, segmentKey(cached.seq))
    if (segment === undefined) {
      yield* Effect.logInfo(`event log: ignoring the cached snapshot at seq ${cached.seq}: the store has no ${segmentKey(cached.seq)}`)
      return false
    }
    if (sha256(segment) !== cached.segmentHash) {
      yield* Effect.logInfo(`event log: ignoring the cached snapshot at seq ${cached.seq}: ${segmentKey(cached.seq)} differs (a copy of another log)`)
      return false
    }
    return true
  })

/** Where replay starts: the cached copy when it is at least as new as the store's and matches it, else the store's newest valid snapshot. */
const replayStart = (store: ObjectStoreShape, cache: SnapshotCache | undefined) =>
  Effect.gen(function* () {
    const seqs = yield* snapshotSeqs(store)
    const cached = cache === undefined ? Option.none<CachedSnapshot>() : yield* readCache(cache)
    const useCached = (above: number) =>
      Effect.gen(function* () {
        if (Option.isNone(cached)) return Option.none<CachedSnapshot>()
        if (cached.value.seq < above) {
          yield* Effect.logDebug(`event log: ignoring the cached snapshot at seq ${cached.value.seq}: the store has one at seq ${above}`)
          return Option.none<CachedSnapshot>()
        }
        return (yield* cacheMatchesStore(store, cached.value)) ? cached : Option.none<CachedSnapshot>()
      })
    // At least as new as every listed snapshot: no snapshot download at all (the point of the copy).
    const first = yield* useCached(seqs[0] ?? 0)
    if (Option.isSome(first)) return { ...first.value, source: "cache" as const }
    const fromStore = yield* newestValidSnapshot(store, seqs)
    const storeSeq = Option.match(fromStore, { onNone: () => 0, onSome: (snapshot) => snapshot.seq })
    // The newest listed snapshots were corrupt, and the copy is newer than the one that was valid.
    if (Option.isSome(cached) && cached.value.seq < (seqs[0] ?? 0) && cached.value.seq > storeSeq) {
      const second = yield* useCached(storeSeq)
      if (Option.isSome(second)) return { ...second.value, source: "cache" as const }
    }
    return Option.match(fromStore, {
      onNone: () => ({ seq: 0, state: emptyState, source: "none" as const }),
      onSome: (snapshot) => ({ ...snapshot, source: "store" as const })
    })
  })

/** The newest snapshot after `from` that does not read (replay skipped it), and why. */
const unreadableSnapshot = (store: ObjectStoreShape, from: number) =>
  Effect.gen(function* () {
    for (const seq of yield* snapshotSeqs(store)) {
      if (seq <= from) continue
      const body = yield* readKey(store, snapshotKey(seq))
      if (body === undefined) continue
      const parsed = parseSnapshot(seq, body)
      if (Either.isLeft(parsed)) return Option.some({ key: snapshotKey(seq), reason: `snapshot unreadable (${parsed.left})` })
    }
    return Option.none<{ key: string; reason: string }>()
  })

/**
 * Replays the log read-only: newest valid snapshot (or the cached copy, see `replayStart`), then every
 * segment after it in order. A segment that does not decode, or a missing sequence number, fails with
 * `LogCorrupt`; nothing is skipped. Usable offline (`nstance-admin state`) since it never writes.
 */
export const replayStore = Effect.fn("eventLog.replay")(function* (store: ObjectStoreShape, cache?: SnapshotCache) {
  const start = yield* replayStart(store, cache)
  if (start.source === "cache") yield* Effect.logInfo(`event log: replaying from the cached snapshot at seq ${start.seq}`)
  const last: Array<LoggedEvent> = []
  const result = yield* store.list("log/", start.seq === 0 ? undefined : segmentKey(start.seq)).pipe(
    Stream.mapError(unavailable("list", "log/")),
    Stream.mapEffect(
      (meta) =>
        Effect.gen(function* () {
          const seq = seqOf(SEGMENT_KEY, meta.key)
          if (seq === undefined) return yield* new LogCorrupt({ key: meta.key, reason: "not a segment name (log/{seq:016}.json)" })
          const body = yield* readKey(store, meta.key)
          if (body === undefined) return yield* new LogCorrupt({ key: meta.key, reason: "listed but vanished during replay" })
          return { key: meta.key, seq, events: yield* parseSegment(meta.key, seq, body) }
        }),
      { concurrency: FETCH_CONCURRENCY }
    ),
    Stream.runFoldEffect({ seq: start.seq, state: start.state }, (acc, segment) => {
      if (segment.seq !== acc.seq + 1) {
        // Right after the snapshot replay started from: the segments were pruned behind a newer snapshot
        // that did not read. That snapshot is the object to name, not the first missing segment.
        const prunedPast = acc.seq === start.seq ? unreadableSnapshot(store, start.seq) : Effect.succeed(Option.none())
        return Effect.flatMap(prunedPast, (snapshot) =>
          Effect.fail(
            Option.match(snapshot, {
              onSome: ({ key, reason }) =>
                new LogCorrupt({ key, reason: `${reason}; the segments before seq ${segment.seq} were pruned behind it, so the log cannot be replayed` }),
              onNone: () =>
                new LogCorrupt({
                  key: segmentKey(acc.seq + 1),
                  reason: `missing: the log jumps from seq ${acc.seq} to ${segment.seq}${acc.seq === start.seq ? " (pruned beyond every valid snapshot?)" : ""}`
                })
            })
          ))
      }
      for (const event of segment.events) {
        last.push({ seq: segment.seq, event })
        if (last.length > 2 * LAST_EVENTS) last.splice(0, last.length - LAST_EVENTS)
      }
      return Effect.succeed({ seq: segment.seq, state: fold(segment.events, acc.state, segment.seq) })
    })
  )
  return {
    state: result.state,
    seq: result.seq,
    lastEvents: last.slice(-LAST_EVENTS),
    snapshotSeq: start.seq,
    snapshotSource: start.source
  } satisfies Replayed
})

// ---- the writer --------------------------------------------------------------------------------------------

/**
 * A new log identity: "log" and a UUIDv7 in the instance IDs' base32, its time from Effect's Clock. The random
 * part comes from the OS, not Effect's `Random`: two servers started at the same moment must never mint the same
 * identity, and drawing from a seeded simulation's `Random` would shift every later draw of its world (the
 * chaos seeds replay the same histories with or without identities). Nothing is decided from its value.
 */
const mintLogId = Effect.map(Clock.currentTimeMillis, (now) => makeInstanceIdGenerator()("log", now, new Uint8Array(randomBytes(16))))

interface Pending {
  readonly events: ReadonlyArray<ShardEvent>
  readonly encoded: ReadonlyArray<ShardEventEncoded>
  readonly done: Deferred.Deferred<{ readonly seq: number }, Fenced | LogUnavailable>
}

/** A segment whose PUT ended without a known outcome; settled by reading it back before the next write. */
interface InDoubt {
  readonly seq: number
  readonly body: Uint8Array
  readonly events: ReadonlyArray<ShardEvent>
}

type Status =
  | { readonly _tag: "Unopened" }
  | {
      readonly _tag: "Open"
      readonly term: number
      readonly lastSeq: number
      readonly sinceSnapshot: number
      readonly inDoubt: InDoubt | undefined
    }
  | { readonly _tag: "Fenced"; readonly error: Fenced }
  | { readonly _tag: "Closed" }

interface Resolved {
  readonly windowMillis: number
  readonly maxBatch: number
  readonly snapshotEvery: number
  readonly keepSegments: number
}

const resolve = (options: EventLogOptions): Effect.Effect<Resolved> => {
  const window = Duration.decodeUnknown(options.batchWindow ?? "20 millis")
  const windowMillis = Option.isSome(window) ? Duration.toMillis(window.value) : Number.NaN
  const maxBatch = options.maxBatch ?? 256
  const snapshotEvery = options.snapshotEvery ?? 1000
  const keepSegments = options.keepSegments ?? 100
  if (!Number.isFinite(windowMillis) || windowMillis < 0) return Effect.dieMessage(`EventLogStore: batchWindow must be a finite duration >= 0, got ${String(options.batchWindow)}`)
  if (!Number.isInteger(maxBatch) || maxBatch < 1) return Effect.dieMessage(`EventLogStore: maxBatch must be an integer >= 1, got ${maxBatch}`)
  if (!Number.isInteger(snapshotEvery) || snapshotEvery < 1) return Effect.dieMessage(`EventLogStore: snapshotEvery must be an integer >= 1, got ${snapshotEvery}`)
  if (!Number.isInteger(keepSegments) || keepSegments < 0) return Effect.dieMessage(`EventLogStore: keepSegments must be an integer >= 0, got ${keepSegments}`)
  return Effect.succeed({ windowMillis, maxBatch, snapshotEvery, keepSegments })
}

/** Splits queued appends into segments of at most `max` events (one append is never split). */
const chunkByEvents = (items: ReadonlyArray<Pending>, max: number): Array<Array<Pending>> => {
  const chunks: Array<Array<Pending>> = []
  let current: Array<Pending> = []
  let count = 0
  for (const item of items) {
    if (current.length > 0 && count + item.events.length > max) {
      chunks.push(current)
      current = []
      count = 0
    }
    current.push(item)
    count += item.events.length
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

/** The event log over `store`; the writer fiber lives as long as the calling scope. */
export const makeEventLog: (store: ObjectStoreShape, options?: EventLogOptions) => Effect.Effect<EventLogShape, never, Scope.Scope> =
  Effect.fn("eventLog.make")(function* (store: ObjectStoreShape, options: EventLogOptions = {}) {
    const cfg = yield* resolve(options)
    const stateRef = yield* SubscriptionRef.make<State>(emptyState)
    const status = yield* Ref.make<Status>({ _tag: "Unopened" })
    /** Last durable segment, kept after a fence too (for status views). */
    const lastSeqRef = yield* Ref.make(0)
    /** SHA-256 of the last durable segment's bytes, for the cached snapshot copy. */
    const lastSegmentHash = yield* Ref.make("")
    const queue = yield* Queue.unbounded<Pending>()
    /** Events queued and not yet taken by the writer; reaching `maxBatch` ends the batch window early. */
    const queuedEvents = yield* Ref.make(0)
    const available = yield* Effect.makeLatch(false)
    const full = yield* Effect.makeLatch(false)
    /** Serialises open, segment writes and snapshots: the status and the state change only under it. */
    const lock = yield* Effect.makeSemaphore(1)

    const notOpen = (operation: string) =>
      Effect.map(Ref.get(status), (s) =>
        s._tag === "Fenced"
          ? s.error
          : new LogUnavailable({ operation, key: "log/", reason: s._tag === "Closed" ? "the event log is closed" : "the event log is not open yet" })
      )

    const settleAll = (items: ReadonlyArray<Pending>, exit: Effect.Effect<{ readonly seq: number }, Fenced | LogUnavailable>) =>
      Effect.forEach(items, (item) => Deferred.complete(item.done, exit), { discard: true })

    /** Marks this writer fenced: no further writes of any kind. */
    const fence = (term: number, seq: number, reason: string, corruptKey?: string) =>
      Effect.gen(function* () {
        const error = new Fenced({ term, seq, reason, ...(corruptKey === undefined ? {} : { corruptKey }) })
        yield* Ref.set(status, { _tag: "Fenced", error })
        yield* Effect.logError(`event log: ${error.message}; this writer stops writing`)
        return error
      })

    /**
     * Segment `seq` exists and is not ours. A valid segment is another writer's (a newer leader): fenced. An
     * object that does not decode is a corrupt log: fenced too (nothing can be appended after it), and it
     * is named, so the operator learns which object to look at rather than "written by another writer".
     */
    const fenceTaken = (term: number, seq: number, body: Uint8Array | undefined) => {
      const key = segmentKey(seq)
      const parsed = body === undefined ? Either.right([]) : parseSegment(key, seq, body)
      return Either.isLeft(parsed)
        ? fence(term, seq, `${key} is not a valid segment (${parsed.left.reason}); nothing can be appended after it`, key)
        : fence(term, seq, `${key} was written by another writer`)
    }

    const commit = (seq: number, events: ReadonlyArray<ShardEvent>, body: Uint8Array) =>
      Effect.gen(function* () {
        const next = fold(events, yield* SubscriptionRef.get(stateRef), seq)
        yield* SubscriptionRef.set(stateRef, next)
        yield* Ref.set(lastSeqRef, seq)
        yield* Ref.set(lastSegmentHash, sha256(body))
        yield* Ref.update(status, (s) =>
          s._tag === "Open" ? { ...s, lastSeq: seq, sinceSnapshot: s.sinceSnapshot + events.length, inDoubt: undefined } : s
        )
      })

    // -- snapshots and pruning (callers hold `lock`) --

    const prune = (newSeq: number) =>
      Effect.gen(function* () {
        const snapshots = (yield* listKeys(store, "snapshot/"))
          .map((key) => seqOf(SNAPSHOT_KEY, key))
          .filter((seq): seq is number => seq !== undefined && seq < newSeq)
          .sort((a, b) => a - b)
        // The previous snapshot stays as a fallback, and so do the segments after it: a corrupt newest
        // snapshot must still replay exactly.
        const previous = snapshots.at(-1) ?? 0
        for (const seq of snapshots.slice(0, -1)) yield* retryTransient(store.delete(snapshotKey(seq)))
        const cutoff = Math.min(previous, newSeq - cfg.keepSegments)
        if (cutoff < 1) return
        yield* store.list("log/").pipe(
          Stream.takeWhile((meta) => meta.key <= segmentKey(cutoff)),
          Stream.mapEffect((meta) => retryTransient(store.delete(meta.key)), { concurrency: FETCH_CONCURRENCY }),
          Stream.runDrain
        )
      }).pipe(
        Effect.catchAll((error) => Effect.logWarning(`event log: pruning after snapshot ${newSeq} failed: ${error.message}`)),
        Effect.withSpan("eventLog.prune")
      )

    const writeSnapshot: Effect.Effect<{ readonly seq: number }, Fenced | LogUnavailable> = Effect.gen(function* () {
      const s = yield* Ref.get(status)
      if (s._tag !== "Open") return yield* yield* notOpen("snapshot")
      const seq = s.lastSeq
      if (seq === 0) return { seq }
      const key = snapshotKey(seq)
      const state = yield* SubscriptionRef.get(stateRef)
      const body = snapshotBody(seq, state)
      yield* retryTransient(store.put(key, body, ifAbsent)).pipe(
        // Someone already wrote the snapshot of this seq: a fold of the same segments, so the same state.
        Effect.catchTag("PreconditionFailed", () => Effect.void),
        Effect.mapError(unavailable("put", key))
      )
      yield* Ref.update(status, (current) => (current._tag === "Open" ? { ...current, sinceSnapshot: 0 } : current))
      yield* Effect.logDebug(`event log: snapshot ${key} written`)
      if (options.cache !== undefined) {
        // Only ever a shortcut for the next replay: a failure costs that replay a download, nothing else.
        yield* options.cache.write(cachedSnapshotBody(seq, state, yield* Ref.get(lastSegmentHash))).pipe(
          Effect.catchAll((error) => Effect.logWarning(`event log: the local snapshot copy was not updated: ${error.message}`))
        )
      }
      yield* prune(seq)
      return { seq }
    }).pipe(Effect.withSpan("eventLog.snapshot"))

    // -- one segment --

    /** Settles an in-doubt segment: folds it when it landed, forgets it when absent, fences when another writer owns it. */
    const settleInDoubt = (term: number, doubt: InDoubt) =>
      Effect.gen(function* () {
        const current = yield* readKey(store, segmentKey(doubt.seq))
        if (current === undefined) {
          yield* Ref.update(status, (s) => (s._tag === "Open" ? { ...s, inDoubt: undefined } : s))
          return Option.none<Fenced>()
        }
        if (bytesEqual(current, doubt.body)) {
          yield* Effect.logWarning(`event log: segment ${doubt.seq}, reported unavailable, had landed; folding it in`)
          yield* commit(doubt.seq, doubt.events, doubt.body)
          return Option.none<Fenced>()
        }
        return Option.some(yield* fenceTaken(term, doubt.seq, current))
      })

    const flush = (batch: ReadonlyArray<Pending>) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          let s = yield* Ref.get(status)
          if (s._tag === "Open" && s.inDoubt !== undefined) {
            const settled = yield* Effect.either(settleInDoubt(s.term, s.inDoubt))
            if (Either.isLeft(settled)) return yield* settleAll(batch, Effect.fail(settled.left))
            s = yield* Ref.get(status)
          }
          if (s._tag !== "Open") return yield* settleAll(batch, Effect.fail(yield* notOpen("append")))
          const seq = s.lastSeq + 1
          const events = batch.flatMap((item) => item.events)
          const body = segmentBody(seq, batch.flatMap((item) => item.encoded))
          const outcome = yield* Effect.either(putSegment(store, seq, body))
          if (Either.isLeft(outcome)) {
            if (outcome.left.inDoubt === true) {
              yield* Ref.update(status, (current) => (current._tag === "Open" ? { ...current, inDoubt: { seq, body, events } } : current))
            }
            yield* Effect.logWarning(`event log: ${outcome.left.message}`)
            return yield* settleAll(batch, Effect.fail(outcome.left))
          }
          if (outcome.right._tag === "Taken") {
            const error = yield* fenceTaken(s.term, seq, outcome.right.body)
            return yield* settleAll(batch, Effect.fail(error))
          }
          yield* commit(seq, events, body)
          yield* settleAll(batch, Effect.succeed({ seq }))
          const after = yield* Ref.get(status)
          if (after._tag === "Open" && after.sinceSnapshot >= cfg.snapshotEvery) {
            yield* writeSnapshot.pipe(Effect.catchAll((error) => Effect.logWarning(`event log: automatic snapshot failed: ${error.message}`)))
          }
        })
      ).pipe(Effect.withSpan("eventLog.flush", { attributes: { appends: batch.length } }))

    // -- the writer fiber: wait for work, hold the window open, take everything, write it --

    const writerRound = Effect.gen(function* () {
      yield* available.await
      if (cfg.windowMillis > 0) yield* Effect.raceFirst(Effect.sleep(Duration.millis(cfg.windowMillis)), full.await)
      // Close before taking: an append that lands after the take reopens the latch for the next round.
      yield* available.close
      yield* full.close
      const items = Array.from(yield* Queue.takeAll(queue))
      yield* Ref.update(queuedEvents, (n) => Math.max(0, n - items.reduce((sum, item) => sum + item.events.length, 0)))
      yield* Effect.forEach(chunkByEvents(items, cfg.maxBatch), flush, { discard: true }).pipe(
        Effect.onInterrupt(() =>
          settleAll(items, Effect.fail(new LogUnavailable({ operation: "append", key: "log/", reason: "the event log closed while writing", inDoubt: true })))
        )
      )
    })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Ref.update(status, (s): Status => (s._tag === "Fenced" ? s : { _tag: "Closed" }))
        const left = Array.from(yield* Queue.takeAll(queue))
        yield* settleAll(left, Effect.fail(new LogUnavailable({ operation: "append", key: "log/", reason: "the event log is closed" })))
      })
    )
    yield* Effect.forkScoped(
      writerRound.pipe(
        Effect.forever,
        Effect.catchAllCause((cause) => Effect.logError("event log: the writer failed; appends fail until the log is reopened", cause)),
        Effect.annotateLogs({ component: "eventLog" })
      )
    )

    // -- the interface --

    const open = (replica: string, term: number) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const before = yield* Ref.get(status)
          if (before._tag !== "Unopened") {
            return yield* new LogUnavailable({ operation: "open", key: "log/", reason: `open called on a log that is ${before._tag.toLowerCase()}` })
          }
          const replayed = yield* replayStore(store, options.cache)
          let state = replayed.state
          let seq = replayed.seq
          let lastBody: Uint8Array | undefined
          const fencedBy = (candidate: State) =>
            // Our own term and replica means an earlier open of ours whose LeaderElected was in doubt.
            candidate.term > term || (candidate.term === term && candidate.leader !== replica)
          if (fencedBy(state)) {
            return yield* yield* fence(term, seq + 1, `the log already has term ${state.term} (leader ${state.leader ?? "unknown"})`)
          }
          const elected = LeaderElected.make({ term, replica })
          // A log without an identity gets one in the segment that elects this leader: the first segment of
          // a new log, or the next one of a log written before identities existed.
          const identity = LogIdentity.make({ logId: yield* mintLogId, at: yield* Clock.currentTimeMillis })
          for (;;) {
            const next = seq + 1
            const events = state.logId === undefined ? [elected, identity] : [elected]
            const encoded: Array<ShardEventEncoded> = []
            for (const event of events) {
              const result = encodeEvent(event)
              if (Either.isLeft(result)) return yield* Effect.dieMessage(`event log: cannot encode ${event._tag}: ${parseProblem(result.left)}`)
              encoded.push(result.right)
            }
            const body = segmentBody(next, encoded)
            const outcome = yield* putSegment(store, next, body)
            if (outcome._tag === "Written") {
              if (state.logId === undefined) {
                yield* Effect.logInfo(seq === 0
                  ? `event log: a new log, identity ${identity.logId} (written into the notes of every VM it creates)`
                  : `event log: a log written before identities; it is ${identity.logId} from now on (written into the notes of every VM it creates)`)
              }
              state = fold(events, state, next)
              seq = next
              lastBody = body
              break
            }
            // A straggling write of the previous leader, or a newer leader: fold it in and decide.
            if (outcome.body === undefined) {
              return yield* yield* fence(term, next, `${segmentKey(next)} existed and then vanished`)
            }
            state = fold(yield* parseSegment(segmentKey(next), next, outcome.body), state, next)
            seq = next
            lastBody = outcome.body
            if (fencedBy(state)) {
              return yield* yield* fence(term, next, `${segmentKey(next)} carries term ${state.term} (leader ${state.leader ?? "unknown"})`)
            }
          }
          yield* SubscriptionRef.set(stateRef, state)
          yield* Ref.set(status, { _tag: "Open", term, lastSeq: seq, sinceSnapshot: seq - replayed.snapshotSeq, inDoubt: undefined })
          yield* Ref.set(lastSeqRef, seq)
          yield* Ref.set(lastSegmentHash, lastBody === undefined ? "" : sha256(lastBody))
          yield* Effect.logInfo(`event log: opened at seq ${seq} as ${replica}, term ${term} (log ${state.logId ?? "?"})`)
        })
      ).pipe(Effect.withSpan("eventLog.open", { attributes: { replica, term } }), Effect.annotateLogs({ component: "eventLog" }))

    const append = (events: ReadonlyArray<ShardEvent>) =>
      Effect.gen(function* () {
        const s = yield* Ref.get(status)
        if (s._tag !== "Open") return yield* yield* notOpen("append")
        if (events.length === 0) return { seq: s.lastSeq }
        const encoded: Array<ShardEventEncoded> = []
        for (const event of events) {
          const result = encodeEvent(event)
          if (Either.isLeft(result)) return yield* Effect.dieMessage(`event log: refusing to append an invalid ${event._tag}: ${parseProblem(result.left)}`)
          encoded.push(result.right)
        }
        const done = yield* Deferred.make<{ readonly seq: number }, Fenced | LogUnavailable>()
        yield* Queue.offer(queue, { events, encoded, done })
        const queued = yield* Ref.updateAndGet(queuedEvents, (n) => n + events.length)
        yield* available.open
        if (queued >= cfg.maxBatch) yield* full.open
        return yield* Deferred.await(done)
      })

    /**
     * The GET happens outside the lock: a store that hangs must not hold up the writer (whose queued
     * segment would then go out only once the lease is lost). What it found is judged under the lock: our own
     * segment, written meanwhile, has moved `lastSeq` past it or is the one in doubt.
     */
    const checkTail = () =>
      Effect.gen(function* () {
        const before = yield* Ref.get(status)
        if (before._tag === "Fenced") return yield* before.error
        if (before._tag !== "Open") return
        const next = before.lastSeq + 1
        const body = yield* readKey(store, segmentKey(next))
        if (body === undefined) return
        return yield* lock.withPermits(1)(
          Effect.gen(function* () {
            const s = yield* Ref.get(status)
            if (s._tag === "Fenced") return yield* s.error
            if (s._tag !== "Open" || s.lastSeq >= next) return
            if (s.inDoubt !== undefined) {
              const settled = yield* settleInDoubt(s.term, s.inDoubt)
              if (Option.isSome(settled)) return yield* settled.value
              return
            }
            return yield* yield* fenceTaken(s.term, next, body)
          })
        )
      }).pipe(Effect.withSpan("eventLog.checkTail"), Effect.annotateLogs({ component: "eventLog" }))

    return {
      open,
      append,
      state: SubscriptionRef.get(stateRef),
      seq: Ref.get(lastSeqRef),
      changes: stateRef.changes,
      snapshot: () => lock.withPermits(1)(writeSnapshot),
      checkTail
    } satisfies EventLogShape
  })

/** The event log as a layer over the (shard-scoped) object store; the writer stops with the layer's scope. */
export const EventLogStore = (options: EventLogOptions = {}): Layer.Layer<EventLog, never, ObjectStore> =>
  Layer.scoped(EventLog, Effect.flatMap(ObjectStore, (store) => makeEventLog(store, options)))
