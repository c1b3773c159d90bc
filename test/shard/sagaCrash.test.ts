/**
 * A leader that dies after any saga step: the leader scope is interrupted right around its k-th segment
 * write — after the write landed (`after`: the intent or result is durable, nothing that follows happened)
 * or instead of it (`before`: the step's side effect happened, its record did not) — and a new term on the
 * same store and cluster finishes the work. Judged on the simulator: exactly one VM per instance name, no
 * VM, disk or ISO leaked.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import { crashingStore, crashLeader, makeHarness } from "./leaderHarness.js"

/**
 * Segment writes of one leader term that creates one VM from an empty log. Decisions and results that have
 * no PVE call between them share a write: LeaderElected | VmidsSeen (the templates' VMIDs) |
 * InstanceRequested | NodeChosen + TemplateResolved | IsoUploadRequested | IsoUploaded + CloneRequested |
 * Cloned | Configured + Resized + StartRequested | Started.
 */
const SEGMENTS: ReadonlyArray<ReadonlyArray<string>> = [
  ["LeaderElected"], ["VmidsSeen"], ["InstanceRequested"], ["NodeChosen", "TemplateResolved"], ["IsoUploadRequested"],
  ["IsoUploaded", "CloneRequested"], ["Cloned"], ["Configured", "Resized", "StartRequested"], ["Started"]
]
const CREATE_SEGMENTS = SEGMENTS.length
const CREATE_EVENTS = SEGMENTS.flat()

describe("crash after every saga step, then a new term (HTTP simulator)", () => {
  it.scopedLive("reference: one create writes these segments, in this order", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 1, gcInterval: "30s" })
      yield* h.leader(1)
      yield* h.waitUntil("1 running", h.convergence(1))
      const events = yield* h.events
      expect(events.map((e) => e._tag)).toEqual(CREATE_EVENTS)
      expect(new Set(events.map((e) => e.seq)).size).toBe(CREATE_SEGMENTS)
      const bySegment = new Map<number, Array<string>>()
      for (const e of events) bySegment.set(e.seq, [...(bySegment.get(e.seq) ?? []), e._tag])
      expect([...bySegment.values()]).toEqual(SEGMENTS)
    }))

  for (const mode of ["after", "before"] as const) {
    for (let k = 2; k <= CREATE_SEGMENTS; k++) {
      it.scopedLive(`create: crash ${mode} segment ${k} (${SEGMENTS[k - 1]!.join(" + ")}) → one VM, nothing leaked`, () =>
        Effect.gen(function* () {
          const h = yield* makeHarness({ size: 1, gcInterval: "30s" })
          const crashing = yield* crashingStore(h.store, k, mode)
          const first = yield* h.leader(1, { store: crashing.store })
          yield* crashLeader(first, crashing.crashed)
          yield* h.leader(2)
          yield* h.waitUntil("1 running after the restart", h.convergence(1))
          const events = yield* h.events
          // The restart resumed the instance of term 1 when it was on record, rather than making another.
          const requested = events.filter((e) => e._tag === "InstanceRequested")
          expect(requested).toHaveLength(1)
          expect(allInstances(yield* h.state).map((i) => i.id)).toEqual(requested.map((e) => "instanceId" in e ? e.instanceId : ""))
          expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
          expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
        }))
    }
  }
})
