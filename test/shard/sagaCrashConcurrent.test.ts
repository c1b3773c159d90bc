/**
 * Three creates at once, and the leader dies around one of its segment writes: with group commit a segment
 * carries events of several sagas, and on realistic PVE durations the three sagas drift apart (two clones
 * share a node's storage), so one crash point lands at different steps of different instances. For every
 * segment of an uninterrupted run, a crash after it and a crash instead of it: a new term converges to
 * three VMs, one per instance, one clone each, nothing leaked.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { LatencyRealistic } from "../../src/sim/latency.js"
import { makeWorld } from "../support/simWorld.js"

const options = { size: 3, gcInterval: "30s", latency: LatencyRealistic } as const

/** Segment writes of one uninterrupted term that creates the three VMs (the same every run: one seed, virtual time). */
const referenceSegments = Effect.scoped(Effect.gen(function* () {
  const w = yield* makeWorld(options)
  yield* w.leader(1)
  yield* w.advanceUntil("3 running", w.convergence(3))
  const events = yield* w.events
  // Some segment holds events of more than one instance, and instances are at different steps in one.
  const instancesPerSegment = new Map<number, Set<string>>()
  for (const e of events) if ("instanceId" in e) instancesPerSegment.set(e.seq, (instancesPerSegment.get(e.seq) ?? new Set()).add(e.instanceId))
  expect([...instancesPerSegment.values()].some((ids) => ids.size > 1)).toBe(true)
  return new Set(events.map((e) => e.seq)).size
}))

const crashAt = (segment: number, mode: "after" | "before") =>
  Effect.scoped(Effect.gen(function* () {
    const w = yield* makeWorld(options)
    yield* w.crashLeader(1, { segment, mode })
    yield* w.leader(2)
    yield* w.advanceUntil(`3 running after a crash ${mode} segment ${segment}`, w.convergence(3))
    const events = yield* w.events
    expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
    expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
    expect(w.model.requests.filter((r) => r.endpoint === "POST /nodes/{node}/qemu/{vmid}/clone" && r.status === 200)).toHaveLength(3)
  }))

/** The reference run once per file: its segment count decides the crash points of every test below. */
let reference: number | undefined
const segmentCount = Effect.suspend(() =>
  reference !== undefined ? Effect.succeed(reference) : Effect.tap(referenceSegments, (n) => Effect.sync(() => { reference = n })))

/** Crash points in chunks of this many segments, so that each test stays short on a busy machine. */
const CHUNK = 4
const FIRST = 3 // the first segment with an instance in it

describe("crash during concurrent creates, then a new term (simulated world)", () => {
  it.effect("reference: the three sagas share segments and drift apart", () =>
    Effect.map(segmentCount, (n) => expect(n).toBeGreaterThanOrEqual(12)))

  for (const mode of ["after", "before"] as const) {
    for (let chunk = 0; chunk < 4; chunk++) {
      const from = FIRST + chunk * CHUNK
      const last = chunk === 3 ? "the last" : String(from + CHUNK - 1)
      it.effect(`three creates at once: crash ${mode} each of segments ${from}…${last} → three VMs, nothing leaked`, () =>
        Effect.gen(function* () {
          const segments = yield* segmentCount
          const to = chunk === 3 ? segments : Math.min(segments, from + CHUNK - 1)
          for (let k = from; k <= to; k++) yield* crashAt(k, mode)
        }))
    }
  }
})
