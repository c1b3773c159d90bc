import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Option, Stream, TestClock } from "effect"
import { LeaderElected, LogIdentity, NodeChosen, type ShardEvent } from "../../src/domain/shard/events.js"
import { fold, getInstance } from "../../src/domain/shard/state.js"
import { replayStore, segmentKey, snapshotKey } from "../../src/layers/EventLogStore.js"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import type { EventLogShape } from "../../src/services/EventLog.js"
import { counted, enc, keysUnder, requested, segmentPuts, startLog, view } from "./logSupport.js"
import { type ObjectStoreShape, StoreUnavailable } from "../../src/services/ObjectStore.js"

/** Runs appends concurrently, lets the batch window pass on the test clock, and collects the outcomes. */
const appendConcurrently = (log: EventLogShape, batches: ReadonlyArray<ReadonlyArray<ShardEvent>>, window = 20) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(Effect.forEach(batches, (events) => Effect.either(log.append(events)), { concurrency: "unbounded" }))
    yield* Effect.yieldNow()
    yield* TestClock.adjust(`${window} millis`)
    return yield* Fiber.join(fiber)
  })

const directories: Array<string> = []
afterAll(() => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true })
})

const backends: ReadonlyArray<readonly [string, () => ObjectStoreShape]> = [
  ["memory", () => makeMemoryStore()],
  [
    "file",
    () => {
      const directory = mkdtempSync(join(tmpdir(), "nstance-eventlog-"))
      directories.push(directory)
      return makeFileStore({ directory })
    }
  ]
]

describe.each(backends)("EventLog on the %s store", (_name, make) => {
  it.effect("20 concurrent appends share at most 2 segment PUTs, and each resumes only once durable", () =>
    Effect.gen(function* () {
      const c = counted(make())
      const { log, close } = yield* startLog(c.store)
      yield* log.open("r1", 1)
      const before = segmentPuts(c)
      const ids = Array.from({ length: 20 }, (_, i) => `web${String(i).padStart(26, "0")}`)
      const results = yield* appendConcurrently(log, ids.map((id) => [requested(id)]))
      expect(results.every(Either.isRight)).toBe(true)
      expect(segmentPuts(c) - before).toBeGreaterThanOrEqual(1)
      expect(segmentPuts(c) - before).toBeLessThanOrEqual(2)
      const state = yield* log.state
      for (const id of ids) expect(Option.isSome(getInstance(state, id))).toBe(true)
      // Every acknowledged seq is durable: replaying the store finds all 20.
      const replayed = yield* replayStore(c.store)
      expect(view(replayed.state)).toEqual(view(state))
      expect(replayed.seq).toBe(yield* log.seq)
      yield* close
    }))

  it.effect("flushes as soon as maxBatch events are queued, without waiting for the window", () =>
    Effect.gen(function* () {
      const c = counted(make())
      const { log, close } = yield* startLog(c.store, { batchWindow: "1 hour", maxBatch: 5 })
      yield* log.open("r1", 1)
      const before = segmentPuts(c)
      const ids = Array.from({ length: 10 }, (_, i) => `abc${i}`)
      const results = yield* Effect.forEach(ids, (id) => log.append([requested(id)]), { concurrency: "unbounded" })
      expect(new Set(results.map((r) => r.seq)).size).toBe(segmentPuts(c) - before)
      expect(segmentPuts(c) - before).toBeLessThanOrEqual(3)
      yield* close
    }))

  it.effect("replay after reopening gives the same state, and the new term is appended after it", () =>
    Effect.gen(function* () {
      const store = make()
      const first = yield* startLog(store, { batchWindow: 0 })
      yield* first.log.open("r1", 1)
      for (let i = 0; i < 5; i++) {
        yield* first.log.append([requested(`abc${i}`), NodeChosen.make({ instanceId: `abc${i}`, at: 2, node: `pve${i}` })])
      }
      const stateBefore = yield* first.log.state
      const seqBefore = yield* first.log.seq
      expect(seqBefore).toBe(6)
      yield* first.close

      const second = yield* startLog(store, { batchWindow: 0 })
      yield* second.log.open("r2", 2)
      expect(yield* second.log.seq).toBe(seqBefore + 1)
      expect(view(yield* second.log.state)).toEqual(view(fold([LeaderElected.make({ term: 2, replica: "r2" })], stateBefore)))
      const offline = yield* replayStore(store)
      expect(view(offline.state)).toEqual(view(yield* second.log.state))
      expect(offline.lastEvents.at(-1)).toEqual({ seq: 7, event: LeaderElected.make({ term: 2, replica: "r2" }) })
      yield* second.close
    }))

  it.effect("opening with a term the log already has is fenced; so is an append before open", () =>
    Effect.gen(function* () {
      const store = make()
      const a = yield* startLog(store, { batchWindow: 0 })
      expect(yield* Effect.flip(a.log.append([requested("abc0")]))).toMatchObject({ _tag: "LogUnavailable" })
      yield* a.log.open("r1", 3)
      const b = yield* startLog(store, { batchWindow: 0 })
      expect(yield* Effect.flip(b.log.open("r2", 3))).toMatchObject({ _tag: "Fenced", term: 3 })
      expect(yield* Effect.flip(b.log.append([requested("abc0")]))).toMatchObject({ _tag: "Fenced" })
      const c = yield* startLog(store, { batchWindow: 0 })
      expect(yield* Effect.flip(c.log.open("r3", 2))).toMatchObject({ _tag: "Fenced", term: 2 })
      yield* Effect.all([a.close, b.close, c.close])
    }))

  it.effect("two writers racing (terms 1 and 2): one segment per seq, the loser is fenced and writes nothing more", () =>
    Effect.gen(function* () {
      const store = make()
      const ca = counted(store)
      const cb = counted(store)
      const a = yield* startLog(ca.store, { batchWindow: 0 })
      const b = yield* startLog(cb.store, { batchWindow: 0 })
      const opened = yield* Effect.all([Effect.either(a.log.open("ra", 1)), Effect.either(b.log.open("rb", 2))], { concurrency: 2 })
      expect(Either.isRight(opened[1])).toBe(true)

      // Both keep appending, one event per append, interleaved.
      const ackedA: Array<string> = []
      const ackedB: Array<string> = []
      let putsAtFence: number | undefined
      const writer = (name: "a" | "b") =>
        Effect.forEach(
          Array.from({ length: 15 }, (_, i) => `${name}${name}${name}${i}`),
          (id) =>
            (name === "a" ? a : b).log.append([requested(id)]).pipe(
              Effect.tap(() => Effect.sync(() => (name === "a" ? ackedA : ackedB).push(id))),
              Effect.catchTag("Fenced", () => Effect.sync(() => void (putsAtFence ??= ca.puts.length))),
              Effect.zipLeft(Effect.yieldNow())
            ),
          { discard: true }
        )
      yield* Effect.all([writer("a"), writer("b")], { concurrency: 2 })

      // b won every seq it wrote; a is fenced: further appends and snapshots fail without writing.
      expect(ackedB).toHaveLength(15)
      expect(Either.isLeft(opened[0]) || putsAtFence !== undefined).toBe(true)
      const fencedAt = putsAtFence ?? ca.puts.length
      expect(yield* Effect.flip(a.log.append([requested("late")]))).toMatchObject({ _tag: "Fenced", term: 1 })
      expect(yield* Effect.flip(a.log.snapshot())).toMatchObject({ _tag: "Fenced" })
      expect(ca.puts.length).toBe(fencedAt)

      // The log holds exactly the acknowledged events of both, in contiguous segments.
      const replayed = yield* replayStore(store)
      expect(replayed.state.term).toBe(2)
      expect(replayed.state.leader).toBe("rb")
      const ids = new Set(Array.from(replayed.state.instances).map(([id]) => id))
      expect(ids).toEqual(new Set([...ackedA, ...ackedB]))
      expect(view(replayed.state)).toEqual(view(yield* b.log.state))
      yield* Effect.all([a.close, b.close])
    }))

  it.effect("a new leader whose LeaderElected collides with the old leader's last write folds it in and takes the next seq", () =>
    Effect.gen(function* () {
      const store = make()
      const a = yield* startLog(store, { batchWindow: 0 })
      yield* a.log.open("ra", 1)
      let injected = false
      // Just before b's first segment write, a (not yet aware of b) appends at the same seq.
      const racing: ObjectStoreShape = {
        ...store,
        put: (key, body, pre) =>
          Effect.suspend(() => {
            if (injected || !key.startsWith("log/")) return store.put(key, body, pre)
            injected = true
            return a.log.append([requested("abc0")]).pipe(Effect.orDie, Effect.zipRight(store.put(key, body, pre)))
          })
      }
      const b = yield* startLog(racing, { batchWindow: 0 })
      yield* b.log.open("rb", 2)
      expect(yield* b.log.seq).toBe(3)
      const state = yield* b.log.state
      expect(state).toMatchObject({ term: 2, leader: "rb" })
      expect(Option.isSome(getInstance(state, "abc0"))).toBe(true)
      expect(yield* Effect.flip(a.log.append([requested("abc1")]))).toMatchObject({ _tag: "Fenced", term: 1, seq: 3 })
      expect(view((yield* replayStore(store)).state)).toEqual(view(state))
      yield* Effect.all([a.close, b.close])
    }))

  it.effect("a corrupt or half-written newest snapshot is skipped for the previous one", () =>
    Effect.gen(function* () {
      const store = make()
      const { log, close } = yield* startLog(store, { batchWindow: 0, snapshotEvery: 1_000_000 })
      yield* log.open("r1", 1)
      for (let i = 0; i < 3; i++) yield* log.append([requested(`abc${i}`)])
      const first = yield* log.snapshot()
      for (let i = 3; i < 6; i++) yield* log.append([requested(`abc${i}`)])
      const second = yield* log.snapshot()
      yield* log.append([requested("abc6")])
      const expected = view(yield* log.state)
      yield* close
      expect(yield* keysUnder(store, "snapshot/")).toEqual([snapshotKey(first.seq), snapshotKey(second.seq)])

      const good = (yield* store.get(snapshotKey(second.seq))).body
      // Half-written: the first half of the bytes.
      yield* store.put(snapshotKey(second.seq), good.slice(0, Math.floor(good.byteLength / 2)))
      const replayedHalf = yield* replayStore(store)
      expect(view(replayedHalf.state)).toEqual(expected)
      expect(replayedHalf.snapshotSeq).toBe(first.seq)
      // Valid JSON whose state does not match its checksum.
      const tampered = new TextDecoder().decode(good).replace('"term":1', '"term":9')
      yield* store.put(snapshotKey(second.seq), enc.encode(tampered))
      const replayedTampered = yield* replayStore(store)
      expect(view(replayedTampered.state)).toEqual(expected)
      expect(replayedTampered.snapshotSeq).toBe(first.seq)
      // Intact, it is used.
      yield* store.put(snapshotKey(second.seq), good)
      expect((yield* replayStore(store)).snapshotSeq).toBe(second.seq)
    }))

  it.effect("automatic snapshots prune old segments and snapshots, and replay stays exact", () =>
    Effect.gen(function* () {
      const store = make()
      const { log, close } = yield* startLog(store, { batchWindow: 0, snapshotEvery: 5, keepSegments: 2 })
      yield* log.open("r1", 1)
      // A new log gets its identity in its first segment, next to LeaderElected.
      const logId = (yield* log.state).logId
      expect(logId).toMatch(/^log[0-9a-z]{26}$/)
      const events: Array<ShardEvent> = [LeaderElected.make({ term: 1, replica: "r1" }), LogIdentity.make({ logId: logId!, at: 0 })]
      for (let i = 0; i < 40; i++) {
        const event = i % 2 === 0 ? requested(`abc${i}`) : NodeChosen.make({ instanceId: `abc${i - 1}`, at: 3, node: "pve1" })
        events.push(event)
        yield* log.append([event])
      }
      yield* close
      const segments = yield* keysUnder(store, "log/")
      const snapshots = yield* keysUnder(store, "snapshot/")
      expect(segments.length).toBeLessThan(41)
      expect(snapshots.length).toBeLessThanOrEqual(2)
      expect(segments.at(-1)).toBe(segmentKey(41))
      const replayed = yield* replayStore(store)
      expect(replayed.seq).toBe(41)
      expect(view(replayed.state)).toEqual(view(fold(events)))
      // The previous snapshot still replays exactly: the segments after it were kept.
      const newest = snapshots.at(-1)!
      yield* store.delete(newest)
      expect(view((yield* replayStore(store)).state)).toEqual(view(fold(events)))
    }))

  it.effect("a segment with an unknown event tag fails replay and open with LogCorrupt naming the key", () =>
    Effect.gen(function* () {
      const store = make()
      const { log, close } = yield* startLog(store, { batchWindow: 0 })
      yield* log.open("r1", 1)
      yield* close
      yield* store.put(segmentKey(2), enc.encode(JSON.stringify({ seq: 2, events: [{ _tag: "InstanceTeleported", v: 1, instanceId: "x" }] })))
      expect(yield* Effect.flip(replayStore(store))).toMatchObject({ _tag: "LogCorrupt", key: segmentKey(2) })
      const next = yield* startLog(store, { batchWindow: 0 })
      const error = yield* Effect.flip(next.log.open("r2", 2))
      expect(error).toMatchObject({ _tag: "LogCorrupt", key: segmentKey(2) })
      expect(error.message).toContain(segmentKey(2))
      yield* next.close
    }))

  it.effect("a hole in the sequence or an unknown version fails replay with LogCorrupt", () =>
    Effect.gen(function* () {
      const store = make()
      const { log, close } = yield* startLog(store, { batchWindow: 0 })
      yield* log.open("r1", 1)
      yield* close
      yield* store.put(segmentKey(3), enc.encode(JSON.stringify({ seq: 3, events: [] })))
      expect(yield* Effect.flip(replayStore(store))).toMatchObject({ _tag: "LogCorrupt", key: segmentKey(2) })
      yield* store.put(segmentKey(2), enc.encode(JSON.stringify({ seq: 2, events: [{ _tag: "LeaderElected", v: 2, term: 2, replica: "x" }] })))
      expect(yield* Effect.flip(replayStore(store))).toMatchObject({ _tag: "LogCorrupt", key: segmentKey(2) })
    }))
})

describe("EventLog writes of unknown outcome (memory store)", () => {
  /** A store whose next `failures` segment PUTs apply but then report StoreUnavailable (a lost answer). */
  const lossy = (base: ObjectStoreShape) => {
    const self = { failures: 0, puts: 0 }
    const store: ObjectStoreShape = {
      ...base,
      put: (key, body, pre) =>
        Effect.suspend(() => {
          self.puts++
          if (!key.startsWith("log/") || self.failures === 0) return base.put(key, body, pre)
          self.failures--
          return base.put(key, body, pre).pipe(
            Effect.ignore,
            Effect.zipRight(Effect.fail(new StoreUnavailable({ operation: "put", key, reason: "injected: answer lost" })))
          )
        })
    }
    return { self, store }
  }

  it.effect("our own write that landed is recognised by its bytes when the retry finds the key taken", () =>
    Effect.gen(function* () {
      const { self, store } = lossy(makeMemoryStore())
      const { log, close } = yield* startLog(store, { batchWindow: 0 })
      yield* log.open("r1", 1)
      self.failures = 1
      const fiber = yield* Effect.fork(log.append([requested("abc0")]))
      yield* Effect.yieldNow()
      // The first retry waits 100 ms jittered (transientBackoff): at most 120 ms.
      yield* TestClock.adjust("120 millis")
      expect(yield* Fiber.join(fiber)).toEqual({ seq: 2 })
      expect(Option.isSome(getInstance(yield* log.state, "abc0"))).toBe(true)
      // Not fenced: the next append goes on at seq 3.
      const next = yield* Effect.fork(log.append([requested("abc1")]))
      expect(yield* Fiber.join(next)).toEqual({ seq: 3 })
      yield* close
    }))

  it.effect("a write still unknown after the retries fails as in doubt and is settled before the next write", () =>
    Effect.gen(function* () {
      const { self, store } = lossy(makeMemoryStore())
      const { log, close } = yield* startLog(store, { batchWindow: 0 })
      yield* log.open("r1", 1)
      // The first attempt lands; it and every retry lose their answer.
      self.failures = 4
      const fiber = yield* Effect.fork(Effect.flip(log.append([requested("abc0")])))
      yield* Effect.yieldNow()
      for (let i = 0; i < 10; i++) yield* TestClock.adjust("200 millis")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "LogUnavailable", inDoubt: true, key: segmentKey(2) })
      expect(Option.isNone(getInstance(yield* log.state, "abc0"))).toBe(true)
      // The next write first reads seq 2 back, finds our bytes, folds them in, and goes on at seq 3.
      expect(yield* log.append([requested("abc1")])).toEqual({ seq: 3 })
      const state = yield* log.state
      expect(Option.isSome(getInstance(state, "abc0"))).toBe(true)
      expect(Option.isSome(getInstance(state, "abc1"))).toBe(true)
      expect(view((yield* replayStore(store)).state)).toEqual(view(state))
      yield* close
    }))

  it.effect("pending appends fail when the log closes, and changes streams every new state", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const { log, close } = yield* startLog(store, { batchWindow: "1 hour" })
      yield* log.open("r1", 1)
      const seen = yield* Effect.fork(log.changes.pipe(Stream.take(2), Stream.runCollect))
      yield* Effect.yieldNow()
      const pending = yield* Effect.fork(log.append([requested("abc0")]))
      yield* Effect.yieldNow()
      yield* TestClock.adjust("1 hour")
      expect(yield* Fiber.join(pending)).toEqual({ seq: 2 })
      const states = Chunk.toReadonlyArray(yield* Fiber.join(seen))
      expect(Option.isSome(getInstance(states[1]!, "abc0"))).toBe(true)
      const stuck = yield* Effect.fork(Effect.flip(log.append([requested("abc1")])))
      yield* Effect.yieldNow()
      yield* close
      expect(yield* Fiber.join(stuck)).toMatchObject({ _tag: "LogUnavailable" })
    }))
})
