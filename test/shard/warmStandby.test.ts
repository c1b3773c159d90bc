/**
 * A warm standby (`eventLog/follower.ts`): while another replica leads, it folds the segments as they appear, and
 * the term it wins replays only what came after — yet still every segment up to its own `LeaderElected`, and
 * never a state the store does not vouch for.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Either, Exit, Layer, Option, Scope, Stream, SubscriptionRef } from "effect"
import { encodeEvent, LeaderElected, VmidsSeen } from "../../src/domain/shard/events.js"
import { makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import { EventLog } from "../../src/services/EventLog.js"
import { LatencyFast } from "../../src/sim/latency.js"
import { makeProxmoxApiSim } from "../../src/sim/ProxmoxApiSim.js"
import { buildReplica } from "../support/stackReplica.js"
import { configText, parseConfig } from "../support/simWorld.js"
import { replayStore, segmentKey } from "../../src/layers/EventLogStore.js"
import { makeLogFollower } from "../../src/layers/eventLog/follower.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { enc, keysUnder, requested, startLog, view } from "./logSupport.js"

/** A view of `base` that records every key read and written through it. */
const watched = (base: ObjectStoreShape) => {
  const gets: Array<string> = []
  const puts: Array<string> = []
  const store: ObjectStoreShape = {
    ...base,
    get: (key) => Effect.suspend(() => (gets.push(key), base.get(key))),
    put: (key, body, pre) => Effect.suspend(() => (puts.push(key), base.put(key, body, pre)))
  }
  return { store, gets, puts }
}

const id = (n: number, prefix = "web") => `${prefix}${String(n).padStart(29 - prefix.length, "0")}`
const segmentSeqs = (keys: ReadonlyArray<string>) =>
  keys.flatMap((key) => {
    const m = /^log\/(\d{16})\.json$/.exec(key)
    return m === null ? [] : [Number(m[1])]
  })

describe("warm standby", () => {
  it.effect("follows the leader's appends, reads only the tail when it takes over, and folds what came after its last look", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const leader = yield* startLog(base, { batchWindow: 0, snapshotEvery: 1_000_000 })
      yield* leader.log.open("a", 1)
      for (let i = 0; i < 30; i++) yield* leader.log.append([requested(id(i))])
      const standbyView = watched(base)
      const follower = yield* makeLogFollower(standbyView.store)
      yield* follower.follow()
      expect(yield* follower.seq).toBe(31)

      for (let i = 30; i < 35; i++) yield* leader.log.append([requested(id(i))])
      standbyView.gets.length = 0
      yield* follower.follow()
      expect(yield* follower.seq).toBe(36)
      // Only the segment it ended on (is it still this log?) and the new ones.
      expect(Math.min(...segmentSeqs(standbyView.gets))).toBe(31)
      // Nothing new: one read of the next key.
      standbyView.gets.length = 0
      yield* follower.follow()
      expect(standbyView.gets).toEqual([segmentKey(37)])

      // Two segments the standby never looked at: the leader wrote them just before it died.
      yield* leader.log.append([requested(id(35))])
      yield* leader.log.append([requested(id(36))])
      const newView = watched(base)
      const standby = yield* startLog(newView.store, { batchWindow: 0, snapshotEvery: 1_000_000, follower })
      yield* standby.log.open("b", 2)
      expect(segmentSeqs(newView.gets).sort((a, b) => a - b)).toEqual([36, 37, 38])
      expect(yield* standby.log.seq).toBe(39)
      // The same state a replay of the whole log gives, including the two segments after the last look.
      const cold = yield* replayStore(base)
      expect(view(yield* standby.log.state)).toEqual(view(cold.state))
      expect((yield* standby.log.state).term).toBe(2)
      // The old leader is fenced; the follower's state was handed over, not kept as a second copy.
      const late = yield* Effect.either(leader.log.append([requested(id(99))]))
      expect(Either.isLeft(late) && late.left._tag).toBe("Fenced")
      expect(yield* follower.seq).toBe(0)
      // Standing by never wrote anything.
      expect(standbyView.puts).toEqual([])
      yield* standby.close
      yield* leader.close
    }))

  it.effect("a followed state the store no longer holds (the log was rewritten) is not used: the term replays the whole log", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const first = yield* startLog(base, { batchWindow: 0, snapshotEvery: 1_000_000 })
      yield* first.log.open("a", 1)
      for (let i = 0; i < 10; i++) yield* first.log.append([requested(id(i))])
      yield* first.close
      const follower = yield* makeLogFollower(base)
      yield* follower.follow()
      expect(yield* follower.seq).toBe(11)

      // Another log in its place (a restore of another bucket's copy), as long as the first.
      for (const key of yield* keysUnder(base, "")) yield* base.delete(key)
      const second = yield* startLog(base, { batchWindow: 0, snapshotEvery: 1_000_000 })
      yield* second.log.open("c", 1)
      for (let i = 0; i < 10; i++) yield* second.log.append([requested(id(i, "db"))])
      yield* second.close

      const newView = watched(base)
      const standby = yield* startLog(newView.store, { batchWindow: 0, follower })
      yield* standby.log.open("b", 2)
      expect(segmentSeqs(newView.gets)).toContain(1)
      const state = yield* standby.log.state
      expect(view(state)).toEqual(view((yield* replayStore(base)).state))
      expect([...state.instances].map(([key]) => key).every((key) => key.startsWith("db"))).toBe(true)
      yield* standby.close
    }))

  it.effect("a followed state older than the store's newest snapshot is not used (the segments after it may be pruned)", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const leader = yield* startLog(base, { batchWindow: 0, snapshotEvery: 5, keepSegments: 2 })
      yield* leader.log.open("a", 1)
      yield* leader.log.append([requested(id(0))])
      const follower = yield* makeLogFollower(base)
      yield* follower.follow()
      expect(yield* follower.seq).toBe(2)
      for (let i = 1; i < 20; i++) yield* leader.log.append([requested(id(i))])
      // Pruned behind the snapshots: segment 3 is gone, though the standby's last one may not be.
      expect(yield* Effect.map(base.head(segmentKey(3)), () => true).pipe(Effect.catchTag("NotFound", () => Effect.succeed(false)))).toBe(false)

      const standby = yield* startLog(base, { batchWindow: 0, snapshotEvery: 1_000_000, follower })
      yield* standby.log.open("b", 2)
      expect(view(yield* standby.log.state)).toEqual(view((yield* replayStore(base)).state))
      expect((yield* standby.log.state).instances.pipe((m) => [...m].length)).toBe(20)
      yield* standby.close
      yield* leader.close
    }))

  it.effect("a log that does not replay stops the following (no replay at every look); the term still meets it and names it", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const leader = yield* startLog(base, { batchWindow: 0, snapshotEvery: 1_000_000 })
      yield* leader.log.open("a", 1)
      yield* leader.log.append([requested(id(0))])
      yield* leader.close
      const encoded = encodeEvent(LeaderElected.make({ term: 9, replica: "x" }))
      if (Either.isLeft(encoded)) return yield* Effect.dieMessage("cannot encode")
      yield* base.put(segmentKey(4), enc.encode(JSON.stringify({ seq: 4, events: [encoded.right] })))
      const standbyView = watched(base)
      const follower = yield* makeLogFollower(standbyView.store)
      yield* follower.follow()
      expect(yield* follower.seq).toBe(0)
      standbyView.gets.length = 0
      yield* follower.follow()
      expect(standbyView.gets).toEqual([])
      const standby = yield* startLog(base, { batchWindow: 0, follower })
      const opened = yield* Effect.either(standby.log.open("b", 2))
      expect(Either.isLeft(opened) && opened.left._tag).toBe("LogCorrupt")
      expect(yield* Stream.runCount(base.list("log/"))).toBe(3)
      yield* standby.close
    }))
})

const until = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, within: Duration.DurationInput = "5 seconds") =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(within))
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`${what}: not within ${Duration.format(Duration.decode(within))}`)
      yield* Effect.sleep("20 millis")
    }
  })

describe("warm standby, two replicas as the daemon builds them (lease, leader loop)", () => {
  it.scopedLive("the standby follows the leader's log; when the leader resigns it replays only the tail, and it never wrote while standing by", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const pve = yield* makeProxmoxApiSim({ nodes: 1, seed: 1, latency: LatencyFast })
      const replica = (id: string, store: ObjectStoreShape) =>
        Effect.gen(function* () {
          const config = yield* SubscriptionRef.make(parseConfig(configText({ size: 0 })))
          const lease = yield* makeLeaderLeaseOn(store, { id, address: `127.0.0.1:${id.length}`, frequentInterval: "50 millis", infrequentInterval: "50 millis", leaderTimeout: "600 millis" }).pipe(Effect.orDie)
          const handle = yield* buildReplica({
            id, config, lease, store,
            leader: { pve: Layer.succeedContext(pve), loop: { eventLog: { batchWindow: "1 millis" }, tailCheck: "50 millis", followLog: true, followEvery: "30 millis" } }
          })
          return { handle, lease }
        })
      const aScope = yield* Scope.make()
      const a = yield* replica("a", base).pipe(Scope.extend(aScope))
      yield* until("a leads with its term started", Effect.map(a.handle.currentTerm, Option.isSome))
      const standbyView = watched(base)
      const b = yield* replica("b", standbyView.store)
      yield* until("b follows a", Effect.map(b.lease.currentLeader, (l) => Option.exists(l, (x) => x.id === "a")))

      // The leader's log grows by 30 segments while b stands by.
      const aLog = Context.get(Option.getOrThrow(yield* a.handle.currentTerm).context, EventLog)
      for (let i = 1; i <= 30; i++) yield* aLog.append([VmidsSeen.make({ highest: 50_000 + i })])
      const followedTo = yield* aLog.seq
      // Caught up: b looks for the segment after the leader's last one.
      yield* until("b has followed the log to its end", Effect.sync(() => standbyView.gets.includes(segmentKey(followedTo + 1))))
      expect(standbyView.puts.filter((key) => !key.endsWith("leader.json"))).toEqual([])

      standbyView.gets.length = 0
      yield* Scope.close(aScope, Exit.void)
      yield* until("b leads with its term started", Effect.map(b.handle.currentTerm, Option.isSome), "6 seconds")
      const bLog = Context.get(Option.getOrThrow(yield* b.handle.currentTerm).context, EventLog)
      // Its term read the segment it had followed to (is it still this log?) and nothing older.
      const read = segmentSeqs(standbyView.gets)
      expect(read.length).toBeGreaterThan(0)
      expect(Math.min(...read)).toBeGreaterThanOrEqual(followedTo)
      const state = yield* bLog.state
      expect(state.vmidHighWater).toBeGreaterThanOrEqual(50_030)
      expect(state.leader).toBe("b")
      expect(view(state)).toEqual(view((yield* replayStore(base)).state))
    }), 20_000)
})
