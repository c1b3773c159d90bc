/**
 * Issue 29 end to end on the HTTP simulator, driven as an operator would: a config push changes a group's
 * user-data, and its instances roll — each replaced before it goes, one at a time, never below size, never
 * above size + 1 VMs; with a drain timeout, `nstance-admin watch` shows each `pending_deletion` and
 * `nstance-admin instance ack-drain` deletes at once; expiry replaces old instances the same way.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, HashMap } from "effect"
import { fold, liveInstances, type State } from "../../src/domain/shard/state.js"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { runCommand } from "../support/cli.js"
import { storeEvents } from "../support/simWorld.js"
import { adminConfigText, makeAdminWorld, nonTemplateVms } from "./harness.js"

type World = Effect.Effect.Success<ReturnType<typeof makeAdminWorld>>

/** The world's config with the group's user-data changed and the given drain settings. */
const changedConfig = (size: number, address: string, o: { readonly greeting: string; readonly drainTimeout?: string; readonly shard?: string }) =>
  adminConfigText(size, address)
    .replace("echo hello", `echo ${o.greeting}`)
    .replace(`"size": ${size} }`, `"size": ${size}${o.drainTimeout === undefined ? "" : `, "drain_timeout": "${o.drainTimeout}"`} }`)
    .replace(`"registration_timeout": "1m" }`, `"registration_timeout": "1m" }${o.shard === undefined ? "" : `,\n    ${o.shard}`}`)

const stateOf = (world: World): Effect.Effect<State> => Effect.map(storeEvents(world.store), (events) => fold(events))

const running = (world: World) => nonTemplateVms(world.sim).filter((vm) => vm.status === "running").length

/** Samples the simulator every 10 ms: the most VMs seen, and the fewest running ones. */
const sampleVms = (world: World) =>
  Effect.gen(function* () {
    const seen = { maxVms: 0, minRunning: Number.POSITIVE_INFINITY }
    const fiber = yield* Effect.sync(() => {
      seen.maxVms = Math.max(seen.maxVms, nonTemplateVms(world.sim).length)
      seen.minRunning = Math.min(seen.minRunning, running(world))
    }).pipe(Effect.zipRight(Effect.sleep("10 millis")), Effect.forever, Effect.forkScoped)
    return { seen, stop: Fiber.interrupt(fiber) }
  })

/** `nstance-admin watch --json` in-process until stopped: the events it printed, one JSON object per line. */
const watchJson = (world: World, options: { readonly interruptAfterMs: number; readonly until?: () => boolean }) =>
  Effect.promise(() => runCommand(adminCommand, "nstance-admin", ["watch", "--json", "--server", world.leader.address], { env: world.adminEnv, ...options })).pipe(
    Effect.map((result) => result.stdout.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line) as Record<string, unknown>))
  )

const push = (world: World, text: string) =>
  Effect.gen(function* () {
    yield* world.putConfig(text)
    const refreshed = yield* world.admin(["refresh", "--server", world.leader.address])
    expect(refreshed.status, refreshed.stderr).toBe(0)
  })

describe("instances that roll (issue 29)", () => {
  it.scopedLive("a user-data change replaces a group of 3 one at a time: never fewer than 3 running, at most 4 VMs", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 3 })
      yield* world.waitUntil("3 running", Effect.sync(() => running(world) === 3), "15 seconds")
      const before = liveInstances(yield* stateOf(world)).map((i) => i.id)
      const oldHash = liveInstances(yield* stateOf(world))[0]!.infraHash
      const sampler = yield* sampleVms(world)
      yield* push(world, changedConfig(3, world.leader.address, { greeting: "hello again", shard: `"default_drain_timeout": "0s"` }))
      yield* world.waitUntil("all 3 rotated", Effect.map(stateOf(world), (state) => {
        const live = liveInstances(state)
        return live.length === 3 && live.every((i) => !before.includes(i.id) && i.phase === "running") && HashMap.size(state.instances) === 3
      }), "40 seconds")
      yield* sampler.stop
      expect(sampler.seen.maxVms).toBeLessThanOrEqual(4)
      expect(sampler.seen.minRunning).toBeGreaterThanOrEqual(3)
      const state = yield* stateOf(world)
      const hashes = new Set(liveInstances(state).map((i) => i.infraHash))
      expect(hashes.size).toBe(1)
      expect(hashes.has(oldHash)).toBe(false)
      // One at a time, replacement first: each old instance is retired for drift; its delete comes after a
      // replacement started, and the next retirement only after the previous one's VM was deleted.
      const events = yield* storeEvents(world.store)
      const retirements = events.filter((e) => e._tag === "RetirementRequested")
      expect(retirements.map((e) => e._tag === "RetirementRequested" && e.reason)).toEqual(["config-drift", "config-drift", "config-drift"])
      expect(new Set(retirements.map((e) => e._tag === "RetirementRequested" && e.instanceId))).toEqual(new Set(before))
      for (const [k, retired] of retirements.entries()) {
        const id = retired._tag === "RetirementRequested" ? retired.instanceId : ""
        const deleteAt = events.findIndex((e) => e._tag === "DeleteRequested" && e.instanceId === id)
        expect(events[deleteAt]).toMatchObject({ reason: "retired" })
        const replacementStarted = events.findIndex((e, i) => i > events.indexOf(retired) && e._tag === "Started" && !before.includes(e.instanceId))
        expect(replacementStarted).toBeGreaterThan(-1)
        expect(replacementStarted).toBeLessThan(deleteAt)
        const next = retirements[k + 1]
        if (next !== undefined) {
          const vmDeleted = events.findIndex((e) => e._tag === "VmDeleted" && e.instanceId === id)
          expect(vmDeleted).toBeGreaterThan(-1)
          expect(vmDeleted).toBeLessThan(events.indexOf(next))
        }
      }
    }), { timeout: 50_000 })

  it.scopedLive("with a drain timeout, watch shows pending_deletion with reason and delete_at; ack-drain deletes at once", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 2 })
      yield* world.waitUntil("2 running", Effect.sync(() => running(world) === 2), "15 seconds")
      const before = liveInstances(yield* stateOf(world)).map((i) => i.id)
      let done = false
      // `nstance-admin watch --json` runs in-process until the test is done; started before the push, it sees every drain begin.
      const watcher = yield* watchJson(world, { interruptAfterMs: 45_000, until: () => done }).pipe(Effect.fork)
      yield* Effect.sleep("500 millis")
      yield* push(world, changedConfig(2, world.leader.address, { greeting: "hello again", drainTimeout: "1h" }))

      const draining = (state: State) => liveInstances(state).filter((i) => i.drain !== undefined)
      for (const round of [1, 2]) {
        yield* world.waitUntil(`drain ${round} announced`, Effect.map(stateOf(world), (state) => draining(state).length === 1), "20 seconds")
        const state = yield* stateOf(world)
        const [pending] = draining(state)
        expect(before).toContain(pending!.id)
        expect(pending!.retirement?.reason).toBe("config-drift")
        expect(pending!.drain!.deleteAt - pending!.drain!.startedAt).toBe(3_600_000)
        // The drain waits: the old VM still runs beside its replacement, and no other instance retires meanwhile.
        expect(nonTemplateVms(world.sim).length).toBe(3)
        expect(liveInstances(state).filter((i) => i.retirement !== undefined)).toHaveLength(1)
        // `groups` says how far the rollout is: old instances left, and the one being replaced.
        const groups = yield* world.admin(["groups", "--json", "--server", world.leader.address])
        expect(JSON.parse(groups.stdout)).toEqual([expect.objectContaining({ group: "web", outdated: 3 - round, retiring: 1 })])
        // Acknowledging an instance that is not draining says why, and changes nothing.
        const other = liveInstances(state).find((i) => i.drain === undefined)!
        const refused = yield* world.admin(["instance", "ack-drain", other.id, "--server", world.leader.address])
        expect(refused.status).not.toBe(0)
        expect(refused.stderr).toContain(`instance ${other.id} is not draining`)
        // A watcher that connects now first hears of the drain under way.
        const late = yield* watchJson(world, { interruptAfterMs: 1_500 })
        expect(late.find((l) => l["status"] === "pending_deletion")).toMatchObject({ instanceId: pending!.id, reason: "config-drift", deleteAt: pending!.drain!.deleteAt })
        const acked = yield* world.admin(["instance", "ack-drain", pending!.id, "--server", world.leader.address])
        expect(acked.status, acked.stderr).toBe(0)
        expect(acked.stdout).toContain(`${pending!.id}: drain acknowledged`)
        yield* world.waitUntil(`drained instance ${round} gone`, Effect.map(stateOf(world), (s) => !HashMap.has(s.instances, pending!.id)), "15 seconds")
      }
      yield* world.waitUntil("2 new instances running", Effect.map(stateOf(world), (state) => {
        const live = liveInstances(state)
        return live.length === 2 && live.every((i) => !before.includes(i.id) && i.phase === "running")
      }), "20 seconds")
      done = true
      const lines = yield* Fiber.join(watcher)
      const pendingLines = lines.filter((l) => l["status"] === "pending_deletion")
      expect(new Set(pendingLines.map((l) => l["instanceId"]))).toEqual(new Set(before))
      for (const line of pendingLines) {
        expect(line).toMatchObject({ reason: "config-drift", tenant: "shop", group: "web" })
        expect(typeof line["deleteAt"]).toBe("number")
      }
      const events = yield* storeEvents(world.store)
      expect(events.filter((e) => e._tag === "DeleteRequested" && before.includes(e.instanceId)).map((e) => e._tag === "DeleteRequested" && e.reason)).toEqual(["drain-acked", "drain-acked"])
    }), { timeout: 60_000 })

  it.scopedLive("expiry: instances past eligible_age are replaced one at a time, never below size, at most size + 1 VMs", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 2 })
      yield* world.waitUntil("2 running", Effect.sync(() => running(world) === 2), "15 seconds")
      const before = liveInstances(yield* stateOf(world)).map((i) => i.id)
      const sampler = yield* sampleVms(world)
      // Same user-data, so no drift: only age retires them.
      yield* push(world, changedConfig(2, world.leader.address, { greeting: "hello", shard: `"default_drain_timeout": "0s", "expiry": { "eligible_age": "3s" }` }))
      yield* world.waitUntil("both original instances expired and replaced", Effect.map(stateOf(world), (state) => {
        const live = liveInstances(state)
        return before.every((id) => !HashMap.has(state.instances, id)) && live.length === 2 && live.every((i) => i.phase === "running")
      }), "40 seconds")
      yield* sampler.stop
      expect(sampler.seen.maxVms).toBeLessThanOrEqual(3)
      expect(sampler.seen.minRunning).toBeGreaterThanOrEqual(2)
      const events = yield* storeEvents(world.store)
      const expired = events.filter((e) => e._tag === "RetirementRequested" && before.includes(e.instanceId))
      expect(expired.map((e) => e._tag === "RetirementRequested" && e.reason)).toEqual(["eligible-expiry", "eligible-expiry"])
      // The oldest first.
      expect(expired.map((e) => e._tag === "RetirementRequested" && e.instanceId)).toEqual([...before].sort())
    }), { timeout: 50_000 })
})
