import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Schema } from "effect"
import {
  decideTick,
  decodeLeaseRecord,
  encodeLeaseRecord,
  GO_ZERO_MILLIS,
  GO_ZERO_TIME,
  type LeaseRead,
  type LeaseRecord,
  LeaseRecord as LeaseRecordSchema,
  type LeaseTimings,
  nextDelayMillis,
  type Observation,
  observe,
  parseRfc3339,
  type Role
} from "../../src/domain/lease.js"

const enc = new TextEncoder()
const dec = new TextDecoder()
const timings: LeaseTimings = { frequentMillis: 5_000, infrequentMillis: 30_000, timeoutMillis: 15_000, marginMillis: 3_000, relaxFollowerPolling: false }
const T0 = Date.parse("2026-03-02T10:15:00Z")

describe("leader.json record", () => {
  it("reads the original Go server's record: no term (0), nanosecond timestamps", () => {
    const body = enc.encode(`{"leaderID":"server-b","leaderAddr":"10.0.1.7:8991","lastUpdated":"2026-03-02T10:15:04.123456789Z"}`)
    expect(decodeLeaseRecord(body)).toEqual(
      Either.right({ leaderID: "server-b", leaderAddr: "10.0.1.7:8991", term: 0, lastUpdated: Date.parse("2026-03-02T10:15:04.123Z") })
    )
  })

  it("reads a Go released record (zero time, ids omitted)", () => {
    const decoded = decodeLeaseRecord(enc.encode(`{"lastUpdated":"${GO_ZERO_TIME}"}`))
    expect(decoded).toEqual(Either.right({ leaderID: "", leaderAddr: "", term: 0, lastUpdated: GO_ZERO_MILLIS }))
  })

  it("writes the Go field names, RFC 3339 UTC, our term, and the Go zero time exactly", () => {
    const json = JSON.parse(dec.decode(encodeLeaseRecord({ leaderID: "a", leaderAddr: "h:1", term: 4, lastUpdated: T0 + 5 })))
    expect(json).toEqual({ leaderID: "a", leaderAddr: "h:1", term: 4, lastUpdated: "2026-03-02T10:15:00.005Z" })
    const released = JSON.parse(dec.decode(encodeLeaseRecord({ leaderID: "a", leaderAddr: "h:1", term: 4, lastUpdated: GO_ZERO_MILLIS })))
    expect(released.lastUpdated).toBe(GO_ZERO_TIME)
  })

  it.each([
    ["not JSON", "leader", /JSON/],
    ["not UTF-8", "\xff\xfe", /UTF-8/],
    ["lastUpdated missing", `{"leaderID":"a"}`, /lastUpdated/],
    ["lastUpdated not RFC 3339", `{"leaderID":"a","lastUpdated":"yesterday"}`, /RFC 3339/],
    ["impossible date", `{"leaderID":"a","lastUpdated":"2026-02-30T00:00:00Z"}`, /RFC 3339/],
    ["term negative", `{"leaderID":"a","term":-1,"lastUpdated":"${GO_ZERO_TIME}"}`, /term/],
    ["leaderID a number", `{"leaderID":7,"lastUpdated":"${GO_ZERO_TIME}"}`, /leaderID/]
  ])("a corrupt record (%s) is a one-line reason naming the problem", (_, text, pattern) => {
    const body = text === "\xff\xfe" ? new Uint8Array([0xff, 0xfe]) : enc.encode(text)
    const decoded = decodeLeaseRecord(body)
    expect(Either.isLeft(decoded)).toBe(true)
    const reason = Either.isLeft(decoded) ? decoded.left.reason : ""
    expect(reason).toMatch(pattern)
    expect(reason).not.toContain("\n")
  })

  it("accepts RFC 3339 offsets and rejects what Go would not write", () => {
    expect(parseRfc3339("2026-03-02T12:15:00+02:00")).toBe(T0)
    expect(parseRfc3339("2024-02-29T00:00:00Z")).toBe(Date.parse("2024-02-29T00:00:00Z"))
    expect(parseRfc3339("2026-02-29T00:00:00Z")).toBeUndefined()
    expect(parseRfc3339("2026-03-02 10:15:00Z")).toBeUndefined()
    expect(parseRfc3339("2026-03-02T10:15:00")).toBeUndefined()
  })

  it.prop("encode → decode is the identity for records of years 1970–9999 (ms precision)", [
    FastCheck.record({
      leaderID: FastCheck.string(),
      leaderAddr: FastCheck.string(),
      term: FastCheck.nat(),
      lastUpdated: FastCheck.integer({ min: 0, max: Date.parse("9999-12-31T23:59:59.999Z") })
    })
  ], ([record]) => {
    expect(decodeLeaseRecord(encodeLeaseRecord(record))).toEqual(Either.right(record))
    expect(Schema.is(LeaseRecordSchema)(record)).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------------------

const rec = (leaderID: string, term: number, lastUpdated: number): LeaseRecord => ({ leaderID, leaderAddr: `${leaderID}:1`, term, lastUpdated })
const present = (record: LeaseRecord, etag: string): LeaseRead => ({ _tag: "Present", record, etag })
const follower: Role = { _tag: "Follower" }
const leader = (term: number): Role => ({ _tag: "Leader", term })

const tick = (role: Role, read: LeaseRead, opts: { previous?: Observation; wall?: number; mono?: number; heldOff?: boolean; self?: string } = {}) =>
  decideTick({
    self: opts.self ?? "me",
    role,
    read,
    nowWall: opts.wall ?? T0,
    nowMono: opts.mono ?? 1_000_000,
    previous: opts.previous,
    timings,
    acquireHeldOff: opts.heldOff ?? false
  })

describe("decideTick: one election step", () => {
  it("table of single-tick decisions", () => {
    const cases: ReadonlyArray<[string, ReturnType<typeof tick>["action"]["_tag"], ReturnType<typeof tick>]> = [
      ["follower, no record → acquire (create-only)", "Acquire", tick(follower, { _tag: "Absent" })],
      ["follower, corrupt record → acquire with If-Match", "Acquire", tick(follower, { _tag: "Corrupt", etag: "e", reason: "x" })],
      ["follower, fresh record of another → follow", "Follow", tick(follower, present(rec("b", 3, T0 - 1_000), "e"))],
      ["follower, released record → acquire at once", "Acquire", tick(follower, present(rec("b", 3, GO_ZERO_MILLIS), "e"))],
      ["follower, our own fresh record (restart) → acquire", "Acquire", tick(follower, present(rec("me", 3, T0), "e"))],
      ["follower held off after resign → nothing", "Nothing", tick(follower, { _tag: "Absent" }, { heldOff: true })],
      ["leader, our record, our term → renew", "Renew", tick(leader(3), present(rec("me", 3, T0), "e"))],
      ["leader, record of another → step down", "StepDown", tick(leader(3), present(rec("b", 4, T0), "e"))],
      ["leader, our id but another term → step down", "StepDown", tick(leader(3), present(rec("me", 4, T0), "e"))],
      ["leader, record deleted → step down", "StepDown", tick(leader(3), { _tag: "Absent" })],
      ["leader, record corrupt → step down", "StepDown", tick(leader(3), { _tag: "Corrupt", etag: "e", reason: "x" })]
    ]
    for (const [name, expected, { action }] of cases) expect({ name, tag: action._tag }).toEqual({ name, tag: expected })
  })

  it("acquisition writes the previous term + 1 with the right precondition", () => {
    expect(tick(follower, present(rec("b", 3, GO_ZERO_MILLIS), "e1")).action).toMatchObject({ term: 4, precondition: { _tag: "IfMatch", etag: "e1" } })
    expect(tick(follower, present(rec("me", 9, T0), "e2")).action).toMatchObject({ term: 10, precondition: { _tag: "IfMatch", etag: "e2" } })
    expect(tick(follower, { _tag: "Absent" }).action).toMatchObject({ term: 1, precondition: { _tag: "IfAbsent" } })
    // A deleted record does not reset the term: the highest term seen carries over.
    const seen = observe(undefined, present(rec("b", 7, T0), "e"), 0)
    expect(tick(follower, { _tag: "Absent" }, { previous: seen }).action).toMatchObject({ term: 8 })
  })

  /** Runs a follower over a sequence of reads, one per poll interval; returns the tick index of the first Acquire. */
  const firstAcquire = (reads: ReadonlyArray<{ read: LeaseRead; wall: number }>) => {
    let previous: Observation | undefined
    for (const [i, { read, wall }] of reads.entries()) {
      const { action, observation } = tick(follower, read, { previous, wall, mono: i * timings.frequentMillis })
      previous = observation
      if (action._tag === "Acquire") return i
    }
    return undefined
  }
  const I = timings.frequentMillis

  it("a record unchanged for the timeout by the reader's own watch expires, whatever its timestamp says", () => {
    const future = T0 + 365 * 86_400_000
    const reads = Array.from({ length: 10 }, (_, i) => ({ read: present(rec("b", 1, future), "same"), wall: T0 + i * I }))
    expect(firstAcquire(reads)).toBe(timings.timeoutMillis / I)
  })

  it("a record already stale by the wall clock still needs a full timeout of watching (no wall-clock expiry)", () => {
    const old = T0 - 3_600_000
    const reads = Array.from({ length: 10 }, (_, i) => ({ read: present(rec("b", 1, old), "same"), wall: T0 + i * I }))
    expect(firstAcquire(reads)).toBe(timings.timeoutMillis / I)
  })

  it("a reader an hour ahead whose polls fall just before two renewals still does not take over", () => {
    const skew = 3_600_000
    // The leader renews every interval but the reader saw the same version twice (renewal landed right after).
    const reads = [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7].map((v, i) => ({ read: present(rec("b", 1, T0 + v * I), `v${v}`), wall: T0 + i * I + skew }))
    expect(firstAcquire(reads)).toBeUndefined()
  })

  it("a follower warns about clock skew only from a fresh renewal that is off by more than the margin", () => {
    const seen = observe(undefined, present(rec("b", 1, T0), "v1"), 0)
    const follow = (wall: number) =>
      decideTick({ self: "me", role: follower, read: present(rec("b", 1, T0 + I), "v2"), nowWall: wall, nowMono: I, previous: seen, timings, acquireHeldOff: false }).action
    expect(follow(T0 + I + 100)).not.toHaveProperty("clockLagMillis")
    expect(follow(T0 + I + 3_600_000)).toMatchObject({ _tag: "Follow", clockLagMillis: 3_600_000 })
    expect(follow(T0 + I - 3_600_000)).toMatchObject({ _tag: "Follow", clockLagMillis: -3_600_000 })
  })

  it("a reader whose clock runs an hour ahead never takes a lease it sees being renewed", () => {
    const skew = 3_600_000
    // The leader renews every interval; the reader's wall clock says every version is an hour old.
    const reads = Array.from({ length: 200 }, (_, i) => ({ read: present(rec("b", 1, T0 + i * I), `v${i}`), wall: T0 + i * I + skew }))
    expect(firstAcquire(reads)).toBeUndefined()
  })

  it("...but once the renewals stop it takes over after the timeout of its own watch", () => {
    const skew = 3_600_000
    const reads = Array.from({ length: 20 }, (_, i) => {
      const version = Math.min(i, 5)
      return { read: present(rec("b", 1, T0 + version * I), `v${version}`), wall: T0 + i * I + skew }
    })
    expect(firstAcquire(reads)).toBe(5 + timings.timeoutMillis / I)
  })

  it("followers relax polling only while they just saw a renewal, when enabled", () => {
    const relaxed = { ...timings, relaxFollowerPolling: true }
    const seen = observe(undefined, present(rec("b", 1, T0), "v1"), 0)
    const { action } = decideTick({
      self: "me", role: follower, read: present(rec("b", 1, T0 + I), "v2"), nowWall: T0 + I, nowMono: I, previous: seen, timings: relaxed, acquireHeldOff: false
    })
    expect(action).toMatchObject({ _tag: "Follow", healthy: true })
    expect(nextDelayMillis(action, relaxed)).toBe(relaxed.infrequentMillis)
    expect(nextDelayMillis(action, timings)).toBe(timings.frequentMillis)
    const { action: stale } = decideTick({
      self: "me", role: follower, read: present(rec("b", 1, T0 + I), "v2"), nowWall: T0 + 2 * I, nowMono: 2 * I,
      previous: observe(seen, present(rec("b", 1, T0 + I), "v2"), I), timings: relaxed, acquireHeldOff: false
    })
    expect(nextDelayMillis(stale, relaxed)).toBe(relaxed.frequentMillis)
  })
})

describe("decideTick: two processes with one id (incarnations)", () => {
  const ours = (incarnation: string | undefined, lastUpdated = T0): LeaseRecord => ({ ...rec("me", 3, lastUpdated), ...(incarnation === undefined ? {} : { incarnation }) })
  const step = (read: LeaseRead, previous: Observation | undefined, mono: number) =>
    decideTick({ self: "me", role: follower, read, nowWall: T0, nowMono: mono, previous, timings, acquireHeldOff: false, incarnation: "mine" })

  it("the record round-trips its incarnation; Go records have none", () => {
    expect(decodeLeaseRecord(encodeLeaseRecord(ours("x1")))).toEqual(Either.right(ours("x1")))
    expect(JSON.parse(dec.decode(encodeLeaseRecord(ours(undefined))))).not.toHaveProperty("incarnation")
  })

  it("our id in another incarnation is watched, not taken: a renewal means a live duplicate", () => {
    const first = step(present(ours("theirs"), "v1"), undefined, 0)
    expect(first.action).toMatchObject({ _tag: "WatchOwnId", incarnation: "theirs", holder: { id: "me", term: 3 } })
    const renewed = step(present(ours("theirs", T0 + 5_000), "v2"), first.observation, 5_000)
    expect(renewed.action).toMatchObject({ _tag: "DuplicateId", incarnation: "theirs", holder: { id: "me", term: 3 } })
  })

  it("our id in another incarnation that stays unchanged for the timeout is an earlier run: taken over", () => {
    let previous: Observation | undefined
    const tags: Array<string> = []
    for (let mono = 0; mono <= timings.timeoutMillis; mono += timings.frequentMillis) {
      const { action, observation } = step(present(ours("theirs"), "v1"), previous, mono)
      previous = observation
      tags.push(action._tag)
    }
    expect(tags).toEqual(["WatchOwnId", "WatchOwnId", "WatchOwnId", "Acquire"])
  })

  it("our own incarnation (fenced ourselves out), no incarnation (an older build) or a released record: acquired at once", () => {
    expect(step(present(ours("mine"), "v1"), undefined, 0).action._tag).toBe("Acquire")
    expect(step(present(ours(undefined), "v1"), undefined, 0).action._tag).toBe("Acquire")
    expect(step(present(ours("theirs", GO_ZERO_MILLIS), "v1"), undefined, 0).action._tag).toBe("Acquire")
  })
})
