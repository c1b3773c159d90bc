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

const snapshotJson = (seq: number, state: State) => {
  const stateJson = JSON.stringify(encodeState(state))
  return `{"seq":${seq},"state":${stateJson},"checksum":"${sha256(stateJson)}"`
}
export const snapshotBody = (seq: number, state: State) => encoder.encode(`${snapshotJson(seq, state)}}`)
export const cachedSnapshotBody = (seq: number, state: State, segmentHash: string) =>
  encoder.encode(`${snapshotJson(seq, state)},"segmentHash":"${segmentHash}"}`)

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

/** A snapshot's state, or why it cannot be used. */
export const parseSnapshot = (seq: number, body: Uint8Array): Either.Either<State, string> =>
  Either.flatMap(textOf(body), (text) => {
    const file = decodeSnapshotFile(text)
    if (Either.isLeft(file)) return Either.left(parseProblem(file.left))
    if (file.right.seq !== seq) return Either.left(`snapshot says seq ${file.right.seq}`)
    if (sha256(JSON.stringify(file.right.state)) !== file.right.checksum) return Either.left("checksum mismatch")
    return Either.mapLeft(decodeState(file.right.state), parseProblem)
  })

export interface CachedSnapshot {
  readonly seq: number
  readonly state: State
  readonly segmentHash: string
}

/** The cached copy, checked like a store snapshot (format, checksum, state), or why it cannot be used. */
export const parseCachedSnapshot = (body: Uint8Array): Either.Either<CachedSnapshot, string> =>
  Either.flatMap(textOf(body), (text) => {
    const file = decodeCachedSnapshotFile(text)
    if (Either.isLeft(file)) return Either.left(parseProblem(file.left))
    if (file.right.seq < 1) return Either.left(`it says seq ${file.right.seq}`)
    if (sha256(JSON.stringify(file.right.state)) !== file.right.checksum) return Either.left("checksum mismatch")
    const { seq, segmentHash } = file.right
    return Either.map(Either.mapLeft(decodeState(file.right.state), parseProblem), (state) => ({ seq, state, segmentHash }))
  })
