/**
 * The sagas' tables and the policies behind the leader's loops, checked by themselves: every phase has its
 * create step and span, a record lacking what its phase has is refused by name (not stepped with an
 * undefined node or VMID), a delete's stage follows its cleanup flags, the group backoff schedule gives
 * exactly the delays of the formula it replaced, and the periodic loop reads its interval, sleeps, then runs.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Data, Duration, Effect, Either, Exit, Fiber, Logger, LogLevel, Option, TestClock } from "effect"
import { CloneRequested, Cloned, DeleteRequested, InstanceRequested, IsoDeleted, IsoUploaded, IsoUploadRequested, NodeChosen, TemplateResolved, VmDeleted, VmStopped } from "../../src/domain/shard/events.js"
import { deleteStageOf, inPhase, isAtRest, SAGA_OF_PHASE } from "../../src/domain/shard/sagaView.js"
import { fold, getInstance, type Instance, Phase } from "../../src/domain/shard/state.js"
import { CREATE_STEPS } from "../../src/shard/createSaga.js"
import { DELETE_STEPS } from "../../src/shard/deleteSaga.js"
import { everyInterval } from "../../src/shard/loop.js"
import { type GroupBackoff, nextGroupBackoff } from "../../src/shard/reconcile.js"

const ID = "web06eadcewvhrp3b1ztjxey4tn4c"
const at = 1_700_000_000_000

const requested = InstanceRequested.make({ instanceId: ID, at, tenant: "shop", group: "web", kind: "web", specHash: "h", reason: "scale-up" })
const upToClone = [
  requested,
  NodeChosen.make({ instanceId: ID, at, node: "pve1" }),
  TemplateResolved.make({ instanceId: ID, at, templateVmid: 9000, templateNode: "pve1" }),
  IsoUploadRequested.make({ instanceId: ID, at, node: "pve1", storage: "local", volid: "local:iso/nstance-x.iso" }),
  IsoUploaded.make({ instanceId: ID, at, volid: "local:iso/nstance-x.iso" }),
  CloneRequested.make({ instanceId: ID, at, vmid: 101, node: "pve1", templateVmid: 9000, templateNode: "pve1" })
]

const instanceAfter = (events: Parameters<typeof fold>[0]): Instance => Option.getOrThrow(getInstance(fold(events), ID))

describe("create saga table", () => {
  it("has a step for every phase, spanned by the work of that phase; at rest and deleting have nothing to do", () => {
    for (const phase of Phase.literals) {
      const work = SAGA_OF_PHASE[phase]
      expect(CREATE_STEPS[phase].name).toBe(`createSaga.${work === "delete" ? "none" : work}`)
    }
    expect(Phase.literals.filter(isAtRest)).toEqual(["running", "registered"])
  })
})

describe("phase records", () => {
  it("gives each phase its record when the fold recorded what the phase has", () => {
    const cloned = instanceAfter([...upToClone, Cloned.make({ instanceId: ID, at, vmid: 101, node: "pve2" })])
    expect(cloned.phase).toBe("cloned")
    const record = inPhase(cloned)
    expect(Either.isRight(record) && record.right).toBe(cloned)
    expect(Either.isRight(inPhase(instanceAfter([requested])))).toBe(true)
  })

  it("refuses a record that lacks a field of its phase, naming it", () => {
    const cloned = instanceAfter([...upToClone, Cloned.make({ instanceId: ID, at, vmid: 101, node: "pve2" })])
    const broken: Instance = { ...cloned, node: undefined, vmid: undefined }
    const record = inPhase(broken)
    if (Either.isRight(record)) return expect.fail("an incomplete record was accepted")
    expect(record.left.missing).toEqual(["node", "vmid"])
    expect(record.left.message).toContain(`record of ${ID} in phase cloned lacks node, vmid`)
  })
})

describe("delete stages", () => {
  const deleting = [...upToClone, Cloned.make({ instanceId: ID, at, vmid: 101, node: "pve2" }), DeleteRequested.make({ instanceId: ID, at, reason: "scale-down" })]

  it("follows the cleanup recorded so far", () => {
    expect(deleteStageOf(instanceAfter(deleting))).toEqual({ step: "stop", vmid: 101 })
    const stopped = [...deleting, VmStopped.make({ instanceId: ID, at })]
    expect(deleteStageOf(instanceAfter(stopped))).toEqual({ step: "delete-iso", volid: "local:iso/nstance-x.iso", node: "pve2" })
    const isoGone = [...stopped, IsoDeleted.make({ instanceId: ID, at, volid: "local:iso/nstance-x.iso" })]
    expect(deleteStageOf(instanceAfter(isoGone))).toEqual({ step: "delete-vm", vmid: 101 })
    expect(deleteStageOf(instanceAfter([...isoGone, VmDeleted.make({ instanceId: ID, at, vmid: 101 })]))).toEqual({ step: "forget", vmid: 101 })
  })

  it("has no VM to stop or delete before the clone", () => {
    const early = [requested, NodeChosen.make({ instanceId: ID, at, node: "pve1" }), DeleteRequested.make({ instanceId: ID, at, reason: "compensation" })]
    expect(deleteStageOf(instanceAfter(early))).toEqual({ step: "stop", vmid: undefined })
    const cleaned = [...early, VmStopped.make({ instanceId: ID, at }), IsoDeleted.make({ instanceId: ID, at, volid: "" })]
    expect(deleteStageOf(instanceAfter(cleaned))).toEqual({ step: "forget", vmid: undefined })
  })

  it("has a step for every stage", () => {
    expect(Object.fromEntries(Object.entries(DELETE_STEPS).map(([stage, step]) => [stage, step.name]))).toEqual({
      stop: "deleteSaga.stop",
      "delete-iso": "deleteSaga.delete-iso",
      "delete-vm": "deleteSaga.delete-vm",
      forget: "deleteSaga.forget"
    })
  })
})

describe("group create backoff", () => {
  /** The hand-written formula the schedule replaced. */
  const formerDelayMs = (failures: number) => Math.min(5 * 60_000, 2_000 * 2 ** (failures - 1))

  it.effect("waits exactly as the former formula after each compensation (1..20, and far beyond)", () =>
    Effect.gen(function* () {
      let backoff: GroupBackoff | undefined
      for (let failures = 1; failures <= 1_100; failures++) {
        // Compensations seen at different times: the delay counts from each one.
        const now = at + failures * 7_919
        backoff = yield* nextGroupBackoff(backoff, now)
        expect(backoff.lastFailureAt).toBe(now)
        expect({ failures, delay: backoff.notBefore - now }).toEqual({ failures, delay: formerDelayMs(failures) })
      }
    }))

  it.effect("starts again from 2 s once the group's backoff is dropped", () =>
    Effect.gen(function* () {
      const first = yield* nextGroupBackoff(undefined, at)
      const second = yield* nextGroupBackoff(first, at)
      expect([first.notBefore - at, second.notBefore - at]).toEqual([2_000, 4_000])
      expect((yield* nextGroupBackoff(undefined, at)).notBefore - at).toBe(2_000)
    }))
})

class Fenced extends Data.TaggedError("Fenced")<{ readonly message: string }> {}
class Flaky extends Data.TaggedError("Flaky")<{ readonly message: string }> {}

describe("everyInterval", () => {
  it.effect("reads the interval, sleeps it, then runs the pass; the first pass one interval after the start", () =>
    Effect.gen(function* () {
      const trace: Array<string> = []
      let seconds = 10
      const interval = Effect.sync(() => {
        trace.push(`read ${seconds}s`)
        return Duration.seconds(seconds)
      })
      const pass = Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => trace.push(`pass @${now / 1000}s`)))
      const loop = yield* Effect.fork(everyInterval("test", interval, pass))
      yield* TestClock.adjust("9 seconds")
      expect(trace).toEqual(["read 10s"])
      yield* TestClock.adjust("1 second")
      expect(trace).toEqual(["read 10s", "pass @10s", "read 10s"])
      // A new interval counts from the next wait on.
      seconds = 3
      yield* TestClock.adjust("10 seconds")
      expect(trace).toEqual(["read 10s", "pass @10s", "read 10s", "pass @20s", "read 3s"])
      yield* TestClock.adjust("3 seconds")
      expect(trace.slice(5)).toEqual(["pass @23s", "read 3s"])
      yield* Fiber.interrupt(loop)
    }))

  it.effect("logs a failed pass and goes on; Fenced ends the loop", () =>
    Effect.gen(function* () {
      const outcomes: Array<Fenced | Flaky | undefined> = [new Flaky({ message: "PVE is down" }), undefined, new Fenced({ message: "term 3 is over" })]
      let runs = 0
      const pass = Effect.suspend(() => {
        const outcome = outcomes[runs++]
        return outcome === undefined ? Effect.void : Effect.fail(outcome)
      })
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === LogLevel.Warning) warnings.push(String(message))
      })
      const loop = yield* Effect.fork(everyInterval("test", Effect.succeed("1 second"), pass).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
      yield* TestClock.adjust("5 seconds")
      const exit = yield* Fiber.await(loop)
      expect(runs).toBe(3)
      expect(warnings).toEqual(["test pass failed: PVE is down"])
      expect(exit).toStrictEqual(Exit.fail(new Fenced({ message: "term 3 is over" })))
    }))
})
