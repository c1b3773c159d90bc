/**
 * The local copy of the newest snapshot (`--cachedir`): written with every store snapshot, used on replay
 * only when it is at least as new as the store's and the store still holds the segment it ends at with the
 * same bytes; a copy of another log or a corrupt file is ignored and replay stays exact.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { InstanceRequested, type ShardEvent } from "../../src/domain/shard/events.js"
import { encodeState, type State } from "../../src/domain/shard/state.js"
import {
  type EventLogOptions,
  fileSnapshotCache,
  makeEventLog,
  replayStore,
  segmentKey,
  type SnapshotCache,
  snapshotKey
} from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"

const view = (state: State) => JSON.parse(JSON.stringify(encodeState(state)))

const requested = (instanceId: string): ShardEvent =>
  InstanceRequested.make({ instanceId, at: 1, tenant: "t", group: "web", kind: "web", specHash: "h", reason: "scale-up" })

const memoryCache = () => {
  let bytes = Option.none<Uint8Array>()
  const cache: SnapshotCache = {
    read: () => Effect.sync(() => bytes),
    write: (next) => Effect.sync(() => { bytes = Option.some(next) })
  }
  return { cache, bytes: () => bytes }
}

/** The store with every GET recorded. */
const countingGets = (base: ObjectStoreShape) => {
  const gets: Array<string> = []
  const store: ObjectStoreShape = { ...base, get: (key) => Effect.suspend(() => (gets.push(key), base.get(key))) }
  return { store, gets, segments: () => gets.filter((key) => key.startsWith("log/")), snapshots: () => gets.filter((key) => key.startsWith("snapshot/")) }
}

/**
 * Writes a log: LeaderElected at seq 1, then one segment per id, an explicit snapshot (store and cache)
 * after `snapshotAfter` of them. Returns the final state.
 */
const writeLog = (store: ObjectStoreShape, ids: ReadonlyArray<string>, snapshotAfter: ReadonlyArray<number>, options: EventLogOptions = {}) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const log = yield* makeEventLog(store, { batchWindow: 0, snapshotEvery: 1_000_000, ...options }).pipe(Scope.extend(scope))
    yield* log.open("r1", 1)
    for (const [index, id] of ids.entries()) {
      yield* log.append([requested(id)])
      if (snapshotAfter.includes(index + 1)) yield* log.snapshot()
    }
    const state = yield* log.state
    yield* Scope.close(scope, Exit.void)
    return state
  })

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

const directories: Array<string> = []
afterAll(() => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true })
})

describe("the cached snapshot copy", () => {
  it.effect("is written with every store snapshot and, newer than the store's, saves reading segments", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const { cache, bytes } = memoryCache()
      // Segments 2..11; snapshots after 3 and 6 appends (seq 4 and 7).
      const expected = yield* writeLog(base, ids("abc", 10), [3, 6], { cache })
      const copy = JSON.parse(new TextDecoder().decode(Option.getOrThrow(bytes()))) as Record<string, unknown>
      expect(copy["seq"]).toBe(7)
      expect(typeof copy["segmentHash"]).toBe("string")
      // The store snapshot has no segmentHash: the copy's extra field stays local.
      expect(new TextDecoder().decode((yield* base.get(snapshotKey(7))).body)).not.toContain("segmentHash")

      // The store's snapshot at 7 is gone (say, lost): without the copy replay starts at 4.
      yield* base.delete(snapshotKey(7))
      const plain = countingGets(base)
      const withoutCache = yield* replayStore(plain.store)
      expect(withoutCache).toMatchObject({ snapshotSeq: 4, snapshotSource: "store", seq: 11 })
      expect(plain.segments()).toEqual(ids("", 7).map((_, i) => segmentKey(5 + i)))

      const cached = countingGets(base)
      const withCache = yield* replayStore(cached.store, cache)
      expect(withCache).toMatchObject({ snapshotSeq: 7, snapshotSource: "cache", seq: 11 })
      // Segment 7 once (to check the copy belongs to this log), then only the tail after it.
      expect(cached.segments()).toEqual([7, 8, 9, 10, 11].map(segmentKey))
      expect(cached.snapshots()).toEqual([])
      expect(view(withCache.state)).toEqual(view(expected))
      expect(view(withCache.state)).toEqual(view(withoutCache.state))
    }))

  it.effect("as new as the store's snapshot, it spares the snapshot download; a new leader opens from it", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      const { cache } = memoryCache()
      yield* writeLog(base, ids("abc", 5), [3], { cache })
      const counted = countingGets(base)
      const scope = yield* Scope.make()
      const log = yield* makeEventLog(counted.store, { batchWindow: 0, cache }).pipe(Scope.extend(scope))
      yield* log.open("r2", 2)
      expect(counted.snapshots()).toEqual([])
      expect(counted.segments()).toEqual([4, 5, 6].map(segmentKey))
      expect(yield* log.seq).toBe(7)
      expect(view(yield* log.state)).toEqual(view((yield* replayStore(base)).state))
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("from another log (segment hash mismatch) is ignored, and replay is exact", () =>
    Effect.gen(function* () {
      const other = makeMemoryStore()
      const { cache } = memoryCache()
      yield* writeLog(other, ids("abc", 8), [3, 6], { cache })

      const base = makeMemoryStore()
      // Same shape, other events: segment 7 exists here too, with other bytes; the only snapshot is at 4.
      const expected = yield* writeLog(base, ids("xyz", 10), [3])
      const withCache = yield* replayStore(base, cache)
      expect(withCache).toMatchObject({ snapshotSeq: 4, snapshotSource: "store", seq: 11 })
      expect(view(withCache.state)).toEqual(view(expected))
      expect(view(withCache.state)).toEqual(view((yield* replayStore(base)).state))

      // A log that never got that far (no segment 7 at all) ignores it too.
      const short = makeMemoryStore()
      const shortState = yield* writeLog(short, ids("xyz", 3), [])
      expect(yield* replayStore(short, cache)).toMatchObject({ snapshotSeq: 0, snapshotSource: "none", seq: 4 })
      expect(view((yield* replayStore(short, cache)).state)).toEqual(view(shortState))
    }))

  it.effect("in a file: written atomically as {dir}/snapshot.json; a corrupt file is ignored", () =>
    Effect.gen(function* () {
      const root = mkdtempSync(join(tmpdir(), "nstance-snapshot-cache-"))
      directories.push(root)
      const dir = join(root, "cache", "pve-a")
      const cache = fileSnapshotCache(dir)
      expect(yield* cache.read()).toEqual(Option.none())
      const base = makeMemoryStore()
      const expected = yield* writeLog(base, ids("abc", 6), [3, 6], { cache })
      yield* base.delete(snapshotKey(7))
      const file = join(dir, "snapshot.json")
      const good = readFileSync(file)
      expect(JSON.parse(good.toString("utf8"))).toMatchObject({ seq: 7 })
      const fromFile = yield* replayStore(base, cache)
      expect(fromFile).toMatchObject({ snapshotSeq: 7, snapshotSource: "cache" })
      expect(view(fromFile.state)).toEqual(view(expected))

      const corruptions: ReadonlyArray<readonly [string, Uint8Array]> = [
        ["half-written", good.subarray(0, Math.floor(good.byteLength / 2))],
        ["not UTF-8", Uint8Array.from([0xff, 0xfe, 0x00])],
        ["a checksum mismatch", Buffer.from(good.toString("utf8").replace('"term":1', '"term":9'))],
        ["a store snapshot without segmentHash", (yield* base.get(snapshotKey(4))).body]
      ]
      for (const [, bytes] of corruptions) {
        writeFileSync(file, bytes)
        const replayed = yield* replayStore(base, cache)
        expect(replayed).toMatchObject({ snapshotSeq: 4, snapshotSource: "store", seq: 7 })
        expect(view(replayed.state)).toEqual(view(expected))
      }
      // An unreadable cache (a directory where the file should be) is ignored as well.
      rmSync(file)
      mkdirSync(file)
      expect((yield* replayStore(base, cache)).snapshotSource).toBe("store")
    }))
})
