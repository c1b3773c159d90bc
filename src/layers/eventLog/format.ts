/**
 * The bytes of the event log's objects: segment bodies, store snapshots (with a checksum of their state) and the
 * local cached copy (which also names the hash of the segment it ends at), and their strict decoding. Pure: no
 * store, no effects.
 */
import { createHash } from "node:crypto"
import { Either, type ParseResult, Schema } from "effect"
import { ShardEvent, type ShardEventEncoded, strict } from "../../domain/shard/events.js"
import { decodeState, encodeState, type State } from "../../domain/shard/state.js"
import { shortParseProblem } from "../../domain/errorText.js"
import { LogCorrupt } from "../../services/EventLog.js"

const Segment = Schema.Struct({ seq: Schema.Int, events: Schema.Array(ShardEvent) })
const decodeSegment = Schema.decodeUnknownEither(Schema.parseJson(Segment), strict)

const SnapshotFile = Schema.Struct({ seq: Schema.Int, state: Schema.Unknown, checksum: Schema.String })
const decodeSnapshotFile = Schema.decodeUnknownEither(Schema.parseJson(SnapshotFile), strict)
/** The cached copy also names the hash of segment `seq`, so a copy of another log (or a rewritten one) is never trusted. */
const CachedSnapshotFile = Schema.Struct({ ...SnapshotFile.fields, segmentHash: Schema.String })
const decodeCachedSnapshotFile = Schema.decodeUnknownEither(Schema.parseJson(CachedSnapshotFile), strict)

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

export const sha256 = (text: string | Uint8Array) => createHash("sha256").update(text).digest("hex")

export const segmentBody = (seq: number, events: ReadonlyArray<ShardEventEncoded>) => encoder.encode(JSON.stringify({ seq, events }))

/**
 * A snapshot's text up to its closing brace: the store's copy and the local one share it, so a snapshot
 * serialises the state once.
 */
export const snapshotJson = (seq: number, state: State): string => {
  const stateJson = JSON.stringify(encodeState(state))
  return `{"seq":${seq},"state":${stateJson},"checksum":"${sha256(stateJson)}"`
}
export const snapshotBodyOf = (json: string) => encoder.encode(`${json}}`)
export const cachedSnapshotBodyOf = (json: string, segmentHash: string) => encoder.encode(`${json},"segmentHash":"${segmentHash}"}`)

// One short line: Schema's full message names the whole expected type (kilobytes for a segment).
export const parseProblem = (error: ParseResult.ParseError) => shortParseProblem(error)

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

/**
 * Whether `checksum` is the SHA-256 of the state's JSON. Bytes as the writer lays them out (`snapshotJson`: the
 * state's text between a known head and tail) are hashed where they lie: serialising the parsed state again
 * would hold a second string as large as the snapshot while its objects are held too. Any other layout is
 * checked the long way, by serialising the parsed state, so what verified before still verifies.
 */
const checksumHolds = (body: Uint8Array, text: string, head: string, tail: string, state: unknown, checksum: string): boolean =>
  (text.startsWith(head) && text.endsWith(tail) && text.length > head.length + tail.length &&
    // The writer's head and tail are ASCII, so their lengths in characters are their lengths in bytes (a
    // tail that is not hashes a wrong range, fails, and falls back to the long way).
    sha256(body.subarray(head.length, body.byteLength - tail.length)) === checksum) ||
  sha256(JSON.stringify(state)) === checksum

/** The parsed file of a store snapshot once its seq and checksum hold; its text is not kept (see `parseSnapshot`). */
const checkedSnapshotFile = (seq: number, body: Uint8Array): Either.Either<unknown, string> =>
  Either.flatMap(textOf(body), (text) => {
    const file = decodeSnapshotFile(text)
    if (Either.isLeft(file)) return Either.left(parseProblem(file.left))
    if (file.right.seq !== seq) return Either.left(`snapshot says seq ${file.right.seq}`)
    const { state, checksum } = file.right
    if (!checksumHolds(body, text, `{"seq":${seq},"state":`, `,"checksum":"${checksum}"}`, state, checksum)) return Either.left("checksum mismatch")
    return Either.right(state)
  })

/** A snapshot's state, or why it cannot be used. The text goes out of reach before the state is decoded. */
export const parseSnapshot = (seq: number, body: Uint8Array): Either.Either<State, string> =>
  Either.flatMap(checkedSnapshotFile(seq, body), (state) => Either.mapLeft(decodeState(state), parseProblem))

export interface CachedSnapshot {
  readonly seq: number
  readonly state: State
  readonly segmentHash: string
}

const checkedCachedFile = (body: Uint8Array): Either.Either<{ readonly seq: number; readonly state: unknown; readonly segmentHash: string }, string> =>
  Either.flatMap(textOf(body), (text) => {
    const file = decodeCachedSnapshotFile(text)
    if (Either.isLeft(file)) return Either.left(parseProblem(file.left))
    const { seq, state, checksum, segmentHash } = file.right
    if (seq < 1) return Either.left(`it says seq ${seq}`)
    const tail = `,"checksum":"${checksum}","segmentHash":"${segmentHash}"}`
    if (!checksumHolds(body, text, `{"seq":${seq},"state":`, tail, state, checksum)) return Either.left("checksum mismatch")
    return Either.right({ seq, state, segmentHash })
  })

/** The cached copy, checked like a store snapshot (format, checksum, state), or why it cannot be used. */
export const parseCachedSnapshot = (body: Uint8Array): Either.Either<CachedSnapshot, string> =>
  Either.flatMap(checkedCachedFile(body), ({ seq, state, segmentHash }) =>
    Either.map(Either.mapLeft(decodeState(state), parseProblem), (decoded) => ({ seq, state: decoded, segmentHash })))
