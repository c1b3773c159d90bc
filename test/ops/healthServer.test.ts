import { describe, expect, it } from "@effect/vitest"
import { createServer } from "node:net"
import { Effect, Exit, Logger, LogLevel } from "effect"
import { InstanceRequested, NodeChosen, Started, DeleteRequested } from "../../src/domain/shard/events.js"
import { makeInstanceIdGenerator } from "../../src/domain/instanceId.js"
import { serveHealth } from "../../src/http/HealthServer.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { faulty } from "../lease/harness.js"
import { awaitLeaderKnown, awaitLeading, exampleConfigWithHealth, fastElectionConfig, get, pollUntil, publishTerm, startReplica } from "./harness.js"
import { family, samples, scrape, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"

const generate = makeInstanceIdGenerator()
const newId = () => generate("web")

/** Four instances: two running, one placed (a create in flight), one being deleted. */
const events = (() => {
  const [a, b, c, d] = [newId(), newId(), newId(), newId()]
  const at = 1_700_000_000_000
  const requested = (instanceId: string) => InstanceRequested.make({ instanceId, at, tenant: "t", group: "web", kind: "web", specHash: "h", reason: "scale-up" })
  return [
    requested(a), requested(b), requested(c), requested(d),
    NodeChosen.make({ instanceId: c, at, node: "pve1" }),
    Started.make({ instanceId: a, at }), Started.make({ instanceId: b, at }),
    DeleteRequested.make({ instanceId: d, at, reason: "scale-down" })
  ]
})()

describe("health endpoint: /healthz, /readyz, /metrics on every replica", () => {
  it.scopedLive("a leader is ready once its term has started, a standby following it is ready, both are live", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const a = yield* startReplica(store, "replica-a")
      yield* awaitLeading(a.replica, true)
      // Leading, but the term's services are not published yet (log replay, cluster read).
      const starting = yield* get(`${a.url}/readyz`)
      expect(starting.status).toBe(503)
      expect(starting.body).toMatch(/^not ready: leader of term 1, still starting/)

      yield* publishTerm(a.replica, 1, events, 42)
      const ready = yield* get(`${a.url}/readyz`)
      expect(ready).toMatchObject({ status: 200, body: "ready: leader of term 1\n" })

      const b = yield* startReplica(store, "replica-b")
      yield* awaitLeaderKnown(b.replica, "replica-a")
      const standby = yield* get(`${b.url}/readyz`)
      expect(standby).toMatchObject({ status: 200, body: "ready: standby; replica-a leads (term 1)\n" })

      for (const url of [a.url, b.url]) expect(yield* get(`${url}/healthz`)).toMatchObject({ status: 200, body: "ok\n" })
      // Anything else is refused, and says what is served.
      expect((yield* get(`${a.url}/nope`)).status).toBe(404)
      expect((yield* get(`${a.url}/readyz`, { method: "POST" })).status).toBe(405)
    }))

  it.scopedLive.skipIf(skipWithout("prometheus-parser"))("/metrics is Prometheus text that a real parser reads: lease state and term, log seq, instances by phase, backlog", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const a = yield* startReplica(store, "replica-a")
      yield* awaitLeading(a.replica, true)
      yield* publishTerm(a.replica, 1, events, 42)
      const b = yield* startReplica(store, "replica-b")
      yield* awaitLeaderKnown(b.replica, "replica-a")

      const scraped = yield* get(`${a.url}/metrics`)
      expect(scraped.status).toBe(200)
      expect(scraped.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
      // Scraping the standby sets its gauges too; the leader's stay as they are (labelled by replica).
      yield* get(`${b.url}/metrics`)
      const families = yield* scrape(a.url)

      const leader = { shard: "pve-a", replica: "replica-a" }
      const standby = { shard: "pve-a", replica: "replica-b" }
      expect(family(families, "nstance_lease_state")?.type).toBe("gauge")
      expect(total(families, "nstance_lease_state", { ...leader, state: "leader" })).toBe(1)
      expect(total(families, "nstance_lease_state", leader)).toBe(1)
      expect(total(families, "nstance_lease_state", { ...standby, state: "standby" })).toBe(1)
      expect(total(families, "nstance_lease_term", leader)).toBe(1)
      expect(total(families, "nstance_lease_term", standby)).toBe(1)
      expect(total(families, "nstance_event_log_seq", leader)).toBe(42)
      expect(total(families, "nstance_event_log_seq", standby)).toBe(0)
      expect(total(families, "nstance_instances", { ...leader, phase: "running" })).toBe(2)
      expect(total(families, "nstance_instances", { ...leader, phase: "placed" })).toBe(1)
      expect(total(families, "nstance_instances", { ...leader, phase: "deleting" })).toBe(1)
      expect(total(families, "nstance_instances", leader)).toBe(4)
      // Every phase is a series, so a phase that empties drops to 0 instead of keeping its last value.
      expect(samples(families, "nstance_instances", leader)).toHaveLength(12)
      expect(total(families, "nstance_instances", standby)).toBe(0)
      expect(total(families, "nstance_reconcile_backlog", leader)).toBe(2)
      expect(total(families, "nstance_reconcile_backlog", standby)).toBe(0)
    }))

  it.scopedLive.skipIf(skipWithout("prometheus-parser"))("a leader cut off from the store fences itself: not ready, still live", () =>
    Effect.gen(function* () {
      const store = faulty(makeMemoryStore())
      const a = yield* startReplica(store.store, "replica-a")
      yield* awaitLeading(a.replica, true)
      yield* publishTerm(a.replica, 1, events, 7)
      expect((yield* get(`${a.url}/readyz`)).status).toBe(200)

      store.mode = "fail"
      yield* awaitLeading(a.replica, false)
      // Its term is still published while its work is being stopped: nothing it does is durable any more.
      const fenced = yield* get(`${a.url}/readyz`)
      expect(fenced.status).toBe(503)
      expect(fenced.body).toMatch(/^not ready: fenced: /)
      expect(yield* get(`${a.url}/healthz`)).toMatchObject({ status: 200, body: "ok\n" })
      const families = yield* scrape(a.url)
      expect(total(families, "nstance_lease_state", { replica: "replica-a", state: "fenced" })).toBe(1)
      expect(total(families, "nstance_lease_state", { replica: "replica-a", state: "leader" })).toBe(0)
    }))

  it.scopedLive("a standby whose lease loop cannot reach the store is not ready, and ready again once it can", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const a = yield* startReplica(base, "replica-a", fastElectionConfig())
      yield* awaitLeading(a.replica, true)
      const cut = faulty(base)
      const b = yield* startReplica(cut.store, "replica-b", fastElectionConfig())
      yield* awaitLeaderKnown(b.replica, "replica-a")
      expect((yield* get(`${b.url}/readyz`)).status).toBe(200)
      cut.mode = "fail"
      // Stale after twice the longer of the leader timeout and the poll interval (here 600 ms).
      const down = yield* pollUntil(get(`${b.url}/readyz`), (answer) => answer.status !== 200)
      expect(down.status).toBe(503)
      expect(down.body).toMatch(/^not ready: lease: /)
      cut.mode = "ok"
      const back = yield* pollUntil(get(`${b.url}/readyz`), (answer) => answer.status === 200)
      expect(back.body).toBe("ready: standby; replica-a leads (term 1)\n")
    }))

  it.scopedLive("a port in use is logged as an error and does not fail the replica", () =>
    Effect.gen(function* () {
      const blocker = createServer()
      const port = yield* Effect.acquireRelease(
        Effect.async<number>((resume) => {
          blocker.listen(0, "127.0.0.1", () => {
            const address = blocker.address()
            resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
          })
        }),
        () => Effect.async<void>((resume) => { blocker.close(() => resume(Effect.void)) })
      )
      const errors: Array<LogLevel.LogLevel> = []
      const a = yield* startReplica(makeMemoryStore(), "replica-a", exampleConfigWithHealth(`127.0.0.1:${port}`))
      const exit = yield* serveHealth(a.replica).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ logLevel }) => { errors.push(logLevel) }))),
        Effect.exit
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(errors.filter((level) => level === LogLevel.Error)).toHaveLength(1)
    }))
})
