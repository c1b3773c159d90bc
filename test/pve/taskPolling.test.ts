/**
 * waitTask's polling tracks how long a task is expected to take: sparse while the task is far from its usual
 * end, tight around it, backing off past it — so once a task type has been seen on a node, a finished task is
 * noticed within one short gap, and a long one still costs few polls.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, TestClock } from "effect"
import { taskPollSchedule } from "../../src/layers/pveCalls.js"
import { ProxmoxApi } from "../../src/services/ProxmoxApi.js"
import type { LatencyModel } from "../../src/sim/latency.js"
import { ProxmoxApiSim, SimHandle } from "../../src/sim/ProxmoxApiSim.js"

/** Real PVE durations, no jitter: task times are exact. */
const Exact: LatencyModel = { name: "exact", timeScale: 1, requestMs: [0, 0], jitter: 0 }

describe("task poll gaps", () => {
  const polling = taskPollSchedule({ initial: "150 millis", factor: 1.6, max: "2500 millis" })
  const window = { fromMs: 9_000, toMs: 11_000 }

  it("halve the time left before the expected window, stay tight inside it, grow past it; always within bounds", () => {
    expect(polling.delayMs(0, window)).toBe(2_500)
    expect(polling.delayMs(6_000, window)).toBe(1_500)
    expect(polling.delayMs(8_900, window)).toBe(150)
    expect(polling.delayMs(10_000, window)).toBeCloseTo(333.33)
    expect(polling.delayMs(11_100, window)).toBe(150)
    expect(polling.delayMs(13_000, window)).toBeCloseTo(1_200)
    expect(polling.delayMs(60_000, window)).toBe(2_500)
  })

  it("back off exponentially without an expectation, but no further than 40% of the longest gap", () => {
    expect(polling.delayMs(0, undefined)).toBe(150)
    expect(polling.delayMs(1_000, undefined)).toBeCloseTo(600)
    expect(polling.delayMs(30_000, undefined)).toBe(1_000)
  })
})

describe("waitTask learns task durations", () => {
  it.effect("the second clone on a node is noticed within one short gap of its end, with fewer polls than the first", () =>
    Effect.gen(function* () {
      const pve = yield* ProxmoxApi
      const { model } = yield* SimHandle
      const cloneAndWait = (newid: number) =>
        Effect.gen(function* () {
          const upid = yield* pve.clone("pve1", 9000, { newid, name: `learn-${newid}`, full: true, storage: "local-lvm" })
          const task = model.tasks.get(upid)!
          let endedAt: number | undefined
          void task.done.then(() => { endedAt = model.time.now() })
          const polls = () => model.requests.filter((r) => r.path.includes(encodeURIComponent(upid))).length
          const wait = yield* Effect.fork(pve.waitTask("pve1", upid))
          for (let i = 0; i < 400 && Option.isNone(yield* Fiber.poll(wait)); i++) yield* TestClock.adjust("50 millis")
          yield* Fiber.join(wait)
          return { lagMs: model.time.now() - endedAt!, polls: polls() }
        })
      const first = yield* cloneAndWait(20001)
      const second = yield* cloneAndWait(20002)
      // The first wait had no expectation: gaps of up to 1 s. The second knows the clone's length: its end is
      // seen within one gap of the expected window (a sixth of ±10 %), plus the test clock's 50 ms step.
      expect(first.lagMs).toBeLessThanOrEqual(1_050)
      expect(second.lagMs).toBeLessThanOrEqual(400)
      expect(second.polls).toBeLessThan(first.polls)
    }).pipe(Effect.provide(ProxmoxApiSim({ latency: Exact }))))
})
