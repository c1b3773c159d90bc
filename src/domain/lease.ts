/**
 * The shard lease record (`leader.json`) and the decision one lease tick makes, kept pure so the election
 * state machine is tested without a store, a clock or fibers. The record stays readable and writable by the
 * original Go server: same field names, RFC 3339 `lastUpdated`, Go zero time as "released", plus our `term`
 * (absent in Go records, read as 0; Go ignores it).
 *
 * Clock assumptions (why the freshness rule is what it is):
 * - Safety needs only that the monotonic clocks of all replicas run at the same rate, up to a drift far
 *   smaller than `margin` over one `leaderTimeout`. A leader fences itself `leaderTimeout − margin` after the
 *   start of its last successful write (its monotonic clock). A reader declares a lease dead only when it has
 *   itself watched the same version of the record (same etag) for `leaderTimeout` (its monotonic clock);
 *   that version was written no later than the reader first saw it, so the old leader has stepped down
 *   `margin` earlier. Wall clocks, synchronised or not, cannot make two leaders.
 * - Wall-clock age (`now − lastUpdated`, the original's rule) is deliberately not a way to expire a lease:
 *   a reader whose clock runs ahead by more than `margin` would see every renewal as stale, and no amount of
 *   watching fixes that — even "stale by my clock and unchanged across two of my polls" fires whenever the
 *   reader's polls happen to fall just before two consecutive renewals. A writer whose clock runs ahead (a
 *   future `lastUpdated`) therefore delays nothing either. The cost: a replica that starts next to a stale,
 *   unreleased record (every replica crashed) waits one `leaderTimeout` of watching before taking over.
 * - The wall clock is still written (`lastUpdated`, so Go replicas can judge our lease), read for the Go
 *   zero time that marks a released lease (taken over at once), and compared with fresh renewals to warn
 *   operators when clocks disagree by more than `margin` — Go replicas in the same shard do depend on it.
 */
import { Either, ParseResult, Schema } from "effect"

/** Go's `time.Time{}` as `encoding/json` writes it: the original writes it to release the lease. */
export const GO_ZERO_TIME = "0001-01-01T00:00:00Z"
export const GO_ZERO_MILLIS = Date.parse(GO_ZERO_TIME)

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/

/** Milliseconds since the epoch of an RFC 3339 timestamp (nanoseconds truncated), or undefined. */
export const parseRfc3339 = (text: string): number | undefined => {
  const m = RFC3339.exec(text)
  if (m === null) return undefined
  const [, year, month, day, hour, minute, second, fraction, zone] = m
  const millis = (fraction ?? "").padEnd(3, "0").slice(0, 3)
  const parsed = Date.parse(`${year}-${month}-${day}T${hour}:${minute}:${second}.${millis}${zone!.toUpperCase()}`)
  if (Number.isNaN(parsed)) return undefined
  // Date.parse rolls 2026-02-30 over to March; RFC 3339 does not allow such dates.
  const daysInMonth = new Date(Date.UTC(2000, Number(month), 0)).getUTCDate()
  const leapFeb = Number(month) === 2 && Number(day) === 29
  const y = Number(year)
  const isLeap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0
  if (Number(day) > daysInMonth || (leapFeb && !isLeap) || Number(hour) > 23 || Number(minute) > 59 || Number(second) > 59) {
    return undefined
  }
  return parsed
}

/** RFC 3339 in UTC with milliseconds; Go zero time exactly as Go writes it. */
export const formatRfc3339 = (millis: number): string | undefined => {
  if (millis === GO_ZERO_MILLIS) return GO_ZERO_TIME
  const date = new Date(millis)
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() < 0 || date.getUTCFullYear() > 9999) return undefined
  return date.toISOString()
}

/** `lastUpdated`: an RFC 3339 string on the wire, epoch milliseconds in memory. */
export const Rfc3339Millis = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const millis = parseRfc3339(text)
    return millis === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, text, `expected an RFC 3339 timestamp, got ${JSON.stringify(text)}`))
      : ParseResult.succeed(millis)
  },
  encode: (millis, _, ast) => {
    const text = formatRfc3339(millis)
    return text === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, millis, `timestamp ${millis} is outside years 0000–9999`))
      : ParseResult.succeed(text)
  }
})

export const LeaseRecord = Schema.Struct({
  leaderID: Schema.optionalWith(Schema.String, { default: () => "" }),
  leaderAddr: Schema.optionalWith(Schema.String, { default: () => "" }),
  term: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }),
  lastUpdated: Rfc3339Millis,
  /**
   * A random value each process (each lease) draws at start, so a replica tells an earlier run of its own
   * id (dead: the record stops changing) from a second live process started with the same `--id` (it
   * renews). Absent in Go records and in our records before it existed; Go ignores it.
   */
  incarnation: Schema.optional(Schema.String)
})
export type LeaseRecord = typeof LeaseRecord.Type

const LeaseRecordJson = Schema.parseJson(LeaseRecord)

/** Why `leader.json` could not be read as a lease record; the lease treats it as no live lease. */
export interface CorruptRecord {
  readonly reason: string
}

const utf8 = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

export const decodeLeaseRecord = (body: Uint8Array): Either.Either<LeaseRecord, CorruptRecord> => {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    return Either.left({ reason: "not UTF-8 text" })
  }
  return Schema.decodeUnknownEither(LeaseRecordJson)(text).pipe(
    Either.mapLeft((error) => ({
      reason: ParseResult.ArrayFormatter.formatErrorSync(error)
        .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
        .join("; ")
        .replace(/\s+/g, " ")
    }))
  )
}

/** JSON bytes of a record; our own records always encode (now is within years 0000–9999). */
export const encodeLeaseRecord = (record: LeaseRecord): Uint8Array => encoder.encode(Schema.encodeSync(LeaseRecordJson)(record))

/** Released by its holder (Go zero time), or otherwise before the Unix epoch: never a live lease. */
export const isReleased = (record: LeaseRecord) => record.lastUpdated < 0

// ---------------------------------------------------------------------------------------------------------
// One tick

export interface LeaseTimings {
  readonly frequentMillis: number
  readonly infrequentMillis: number
  readonly timeoutMillis: number
  readonly marginMillis: number
  /** Followers poll at the infrequent interval while they see a healthy leader renew. */
  readonly relaxFollowerPolling: boolean
}

export type LeaseRead =
  | { readonly _tag: "Absent" }
  | { readonly _tag: "Present"; readonly record: LeaseRecord; readonly etag: string }
  | { readonly _tag: "Corrupt"; readonly etag: string; readonly reason: string }

export interface Holder {
  readonly id: string
  readonly address: string
  readonly term: number
}

/** What this reader remembers about `leader.json` between ticks. */
export interface Observation {
  /** undefined: the record was absent. */
  readonly etag: string | undefined
  /** Monotonic time at which this reader first saw this version. */
  readonly firstSeenMono: number
  readonly holder: Holder | undefined
  /** This reader has seen the current holder (same id and term) write a new version. */
  readonly sawRenewal: boolean
  /** Highest term ever seen, so a deleted or corrupt record does not reset terms. */
  readonly highestTerm: number
}

export type Role = { readonly _tag: "Follower" } | { readonly _tag: "Leader"; readonly term: number }

export type WritePrecondition = { readonly _tag: "IfMatch"; readonly etag: string } | { readonly _tag: "IfAbsent" }

export type LeaseAction =
  | { readonly _tag: "Renew"; readonly term: number; readonly etag: string }
  | { readonly _tag: "Acquire"; readonly term: number; readonly precondition: WritePrecondition; readonly reason: string }
  | {
    readonly _tag: "Follow"
    readonly leader: Holder
    /** The leader renewed since our last poll. */
    readonly healthy: boolean
    /** Set when that renewal's timestamp and our clock disagree by more than the margin allows. */
    readonly clockLagMillis?: number
  }
  | { readonly _tag: "StepDown"; readonly reason: string }
  | { readonly _tag: "Nothing"; readonly reason: string }
  /**
   * `leader.json` names our id but another incarnation and has not changed yet while we watched: either an
   * earlier run of ours that died (taken over once it expires) or a second live process with our id.
   */
  | { readonly _tag: "WatchOwnId"; readonly holder: Holder; readonly incarnation: string }
  /** A second live process renews the lease under our id: this replica must stop, not take the lease from it. */
  | { readonly _tag: "DuplicateId"; readonly holder: Holder; readonly incarnation: string }

export interface TickInput {
  readonly self: string
  readonly role: Role
  readonly read: LeaseRead
  readonly nowWall: number
  readonly nowMono: number
  readonly previous: Observation | undefined
  readonly timings: LeaseTimings
  /** After resigning (or failed leader work) this replica lets others take the lease first. */
  readonly acquireHeldOff: boolean
  /** This process's incarnation (see `LeaseRecord.incarnation`); undefined: never tell runs of our id apart. */
  readonly incarnation?: string
}

const holderOf = (read: LeaseRead): Holder | undefined =>
  read._tag === "Present" ? { id: read.record.leaderID, address: read.record.leaderAddr, term: read.record.term } : undefined

const sameHolder = (a: Holder | undefined, b: Holder | undefined) =>
  a !== undefined && b !== undefined && a.id === b.id && a.term === b.term

/** Folds one read into what the reader remembers; a new etag restarts the observation clock. */
export const observe = (previous: Observation | undefined, read: LeaseRead, nowMono: number): Observation => {
  const etag = read._tag === "Absent" ? undefined : read.etag
  const holder = holderOf(read)
  const highestTerm = Math.max(previous?.highestTerm ?? 0, holder?.term ?? 0)
  if (previous !== undefined && previous.etag === etag) return { ...previous, holder, highestTerm }
  return {
    etag,
    firstSeenMono: nowMono,
    holder,
    sawRenewal: previous !== undefined && previous.etag !== undefined && sameHolder(previous.holder, holder)
      ? true
      : false,
    highestTerm
  }
}

/**
 * Whether someone else's record no longer protects a leader: released, or watched unchanged for the
 * timeout by this reader (see the module header). `observation` must already include this read.
 */
export const isExpired = (record: LeaseRecord, observation: Observation, nowMono: number, timings: LeaseTimings) =>
  isReleased(record) || nowMono - observation.firstSeenMono >= timings.timeoutMillis

const describe = (h: Holder) => `${h.id === "" ? "(no id)" : h.id} (term ${h.term})`

/** The whole election rule for one tick: what to do given what was read. */
export const decideTick = (input: TickInput): { readonly action: LeaseAction; readonly observation: Observation } => {
  const { self, role, read, nowWall, nowMono, timings } = input
  const observation = observe(input.previous, read, nowMono)
  const nextTerm = observation.highestTerm + 1
  const done = (action: LeaseAction) => ({ action, observation })

  if (role._tag === "Leader") {
    if (read._tag === "Absent") return done({ _tag: "StepDown", reason: "leader.json was deleted" })
    if (read._tag === "Corrupt") return done({ _tag: "StepDown", reason: `leader.json is corrupt: ${read.reason}` })
    const holder = holderOf(read)!
    if (holder.id !== self) return done({ _tag: "StepDown", reason: `lease taken over by ${describe(holder)}` })
    if (holder.term !== role.term) {
      return done({ _tag: "StepDown", reason: `lease rewritten with term ${holder.term} by another process using id ${self}` })
    }
    if (isReleased(read.record)) return done({ _tag: "StepDown", reason: "lease was released by another process" })
    return done({ _tag: "Renew", term: role.term, etag: read.etag })
  }

  const acquire = (precondition: WritePrecondition, reason: string) =>
    input.acquireHeldOff
      ? done({ _tag: "Nothing", reason: `would acquire (${reason}) but holding off after resigning` })
      : done({ _tag: "Acquire", term: nextTerm, precondition, reason })

  if (read._tag === "Absent") return acquire({ _tag: "IfAbsent" }, "no lease record")
  if (read._tag === "Corrupt") return acquire({ _tag: "IfMatch", etag: read.etag }, `leader.json is corrupt: ${read.reason}`)
  const holder = holderOf(read)!
  const ifMatch: WritePrecondition = { _tag: "IfMatch", etag: read.etag }
  // Our own record while we are not leader: leadership we fenced ourselves out of (our incarnation), or a
  // record of a build that wrote none. The leader scope is not running here, so this is a fresh acquisition.
  const theirs = read.record.incarnation
  if (holder.id === self && !isReleased(read.record) && (theirs === undefined || input.incarnation === undefined || theirs === input.incarnation)) {
    return acquire(ifMatch, `record of ${describe(holder)} is ours from an earlier run`)
  }
  // Our id written by another process. Taking it at once would make two leaders if that process lives (the
  // two would then take the lease from each other for ever); it is judged like any other holder instead: a
  // renewal seen means a live duplicate, and this replica refuses to run; a record that stays unchanged for
  // the timeout is an earlier run of ours that died, taken over as usual.
  if (holder.id === self && !isReleased(read.record) && theirs !== undefined) {
    if (observation.sawRenewal) return done({ _tag: "DuplicateId", holder, incarnation: theirs })
    if (!isExpired(read.record, observation, nowMono, timings)) return done({ _tag: "WatchOwnId", holder, incarnation: theirs })
  }
  if (isExpired(read.record, observation, nowMono, timings)) {
    return acquire(ifMatch, isReleased(read.record) ? `${describe(holder)} released the lease` : `lease of ${describe(holder)} expired`)
  }
  // A version that changed since our last poll was written within one poll interval (plus call
  // latency): its lag outside [−margin, interval + margin] says the two wall clocks disagree.
  const healthy = observation.firstSeenMono === nowMono && observation.sawRenewal
  const lag = nowWall - read.record.lastUpdated
  const skewed = healthy && (lag < -timings.marginMillis || lag > timings.frequentMillis + timings.marginMillis)
  return done({ _tag: "Follow", leader: holder, healthy, ...(skewed ? { clockLagMillis: lag } : {}) })
}

/** Delay until the next tick: leaders and watchful followers poll frequently. */
export const nextDelayMillis = (action: LeaseAction, timings: LeaseTimings) =>
  timings.relaxFollowerPolling && action._tag === "Follow" && action.healthy ? timings.infrequentMillis : timings.frequentMillis
