/**
 * `/leaderz` on the health endpoint: what a keepalived check asks so that a VIP sits on the shard leader
 * only. Replicas run the real lease on a memory store (renewals every 50 ms, fenced ~0.5 s after the last
 * one); the tests publish the terms by hand, as the leader scope does once a term has started.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Leadership } from "../../src/domain/leadership.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { faulty } from "../lease/harness.js"
import { awaitLeaderKnown, awaitLeading, get, publishTerm, startReplica } from "./harness.js"

const decodeLeadership = Schema.decodeUnknownSync(Schema.parseJson(Leadership))

/** `/leaderz` of a replica: its status and its body, decoded. */
const leaderz = (url: string, init?: RequestInit) =>
  Effect.map(get(`${url}/leaderz`, init), (answer) => ({ status: answer.status, contentType: answer.contentType, body: decodeLeadership(answer.body) }))

describe("/leaderz: 200 on the leader with its term started, 503 everywhere else", () => {
  it.scopedLive("a leader still starting and a standby answer 503 naming who leads; the leader answers 200 once its term has started", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const a = yield* startReplica(store, "replica-a")
      yield* awaitLeading(a.replica, true)
      // The lease is held, but the log is not replayed nor the cluster read: no VIP here yet.
      expect(yield* leaderz(a.url)).toEqual({
        status: 503,
        contentType: "application/json",
        body: {
          leading: false,
          shard: "pve-a",
          replica: "replica-a",
          role: "starting",
          reason: "leader of term 1, still starting (replaying the log, reading the cluster)",
          leader: { replica: "replica-a", term: 1, health: "127.0.0.1:8990" }
        }
      })

      yield* publishTerm(a.replica, 1, [], 0)
      expect(yield* leaderz(a.url)).toEqual({
        status: 200,
        contentType: "application/json",
        body: { leading: true, shard: "pve-a", replica: "replica-a", term: 1 }
      })

      const b = yield* startReplica(store, "replica-b")
      yield* awaitLeaderKnown(b.replica, "replica-a")
      // A standby is ready (/readyz 200) but is not where the VIP goes.
      expect((yield* get(`${b.url}/readyz`)).status).toBe(200)
      const standby = yield* leaderz(b.url)
      expect(standby.status).toBe(503)
      expect(standby.body).toEqual({
        leading: false,
        shard: "pve-a",
        replica: "replica-b",
        role: "standby",
        reason: "standby; replica-a leads (term 1)",
        leader: { replica: "replica-a", term: 1, health: "127.0.0.1:8990" }
      })

      // HEAD (a check that only wants the status) gets the same status; other methods are refused.
      expect((yield* get(`${a.url}/leaderz`, { method: "HEAD" })).status).toBe(200)
      expect((yield* get(`${b.url}/leaderz`, { method: "HEAD" })).status).toBe(503)
      expect((yield* get(`${a.url}/leaderz`, { method: "POST" })).status).toBe(405)
    }))

  it.scopedLive("it answers 503 the moment the lease is lost, while the term's work is still stopping; the new leader passes once its term has started", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const cut = faulty(base)
      const a = yield* startReplica(cut.store, "replica-a")
      yield* awaitLeading(a.replica, true)
      yield* publishTerm(a.replica, 1, [], 0)
      const b = yield* startReplica(base, "replica-b")
      yield* awaitLeaderKnown(b.replica, "replica-a")
      expect((yield* leaderz(a.url)).status).toBe(200)
      expect((yield* leaderz(b.url)).status).toBe(503)

      // a can no longer renew: it fences itself at leader_timeout − margin after its last renewal.
      cut.mode = "fail"
      yield* awaitLeading(a.replica, false)
      // No poll: the first request after the lease flag fell is refused, though term 1 is still published.
      const fenced = yield* leaderz(a.url)
      expect(fenced.status).toBe(503)
      expect(fenced.body).toMatchObject({ leading: false, replica: "replica-a", role: "fenced", leader: null })

      // b takes the free lease (term 2) and passes only once its term has started.
      yield* awaitLeading(b.replica, true)
      expect(yield* leaderz(b.url)).toMatchObject({ status: 503, body: { role: "starting", leader: { replica: "replica-b", term: 2 } } })
      yield* publishTerm(b.replica, 2, [], 0)
      expect(yield* leaderz(b.url)).toMatchObject({ status: 200, body: { leading: true, replica: "replica-b", term: 2 } })

      // a reaches the store again: still 503, now naming the new leader.
      cut.mode = "ok"
      yield* awaitLeaderKnown(a.replica, "replica-b")
      expect(yield* leaderz(a.url)).toMatchObject({ status: 503, body: { leading: false, leader: { replica: "replica-b", term: 2 } } })
    }))

  it.scopedLive("a resign, or the end of the term's work with the lease still held, turns 200 into 503 at once", () =>
    Effect.gen(function* () {
      const a = yield* startReplica(makeMemoryStore(), "replica-a")
      yield* awaitLeading(a.replica, true)
      // The term's work ends (its scope closes) while the lease is still held: no longer a started term.
      yield* Effect.scoped(Effect.gen(function* () {
        yield* publishTerm(a.replica, 1, [], 0)
        expect((yield* leaderz(a.url)).status).toBe(200)
      }))
      expect(yield* leaderz(a.url)).toMatchObject({ status: 503, body: { role: "starting" } })

      yield* publishTerm(a.replica, 1, [], 0)
      expect((yield* leaderz(a.url)).status).toBe(200)
      yield* a.replica.lease.resign
      expect(yield* leaderz(a.url)).toMatchObject({ status: 503, body: { leading: false, replica: "replica-a", role: "fenced" } })
    }))
})
