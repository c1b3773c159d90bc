/**
 * The event log on a real S3 server (Ceph RGW from scripts/s3-server.sh, which `.ci/run` starts):
 * fencing when two leaders race for the same sequence numbers (RGW answers some losers with 500, which the
 * store settles by re-reading), exact replay, and snapshots with a corrupt newest one and pruning. Real
 * time, real network; each test uses its own key prefix.
 */
import { randomUUID } from "node:crypto"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { replayStore, snapshotKey } from "../../src/layers/EventLogStore.js"
import { makeS3Store } from "../../src/layers/ObjectStoreS3.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { S3_START_TIMEOUT_MS, type S3TestEnv, s3TestEnv, skipWithout } from "../store/s3Env.js"
import { counted, keysUnder, requested, startLog, view } from "./logSupport.js"

let env: S3TestEnv | undefined

const freshStore = (): ObjectStoreShape => {
  if (env === undefined) throw new Error("no S3 server (see the failed beforeAll of this suite)")
  const store = makeS3Store({
    bucket: env.bucket,
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey }
  })
  return scopeStore(store, `eventlog-${randomUUID().slice(0, 8)}/`)
}

describe.skipIf(skipWithout("s3"))("EventLog on a real S3 server (Ceph RGW)", () => {
  beforeAll(async () => {
    env = await s3TestEnv()
  }, S3_START_TIMEOUT_MS)

  it.live("two leaders racing: exactly one wins each seq, the loser is fenced and writes nothing more", () =>
    Effect.gen(function* () {
      const store = freshStore()
      const ca = counted(store)
      const cb = counted(store)
      const a = yield* startLog(ca.store, { batchWindow: 0 })
      const b = yield* startLog(cb.store, { batchWindow: 0 })
      yield* a.log.open("ra", 1)
      yield* b.log.open("rb", 2)
      const acked = { a: [] as Array<string>, b: [] as Array<string> }
      let putsAtFence: number | undefined
      const writer = (name: "a" | "b") =>
        Effect.forEach(
          Array.from({ length: 10 }, (_, i) => `${name}${name}${name}${i}`),
          (id) =>
            (name === "a" ? a : b).log.append([requested(id)]).pipe(
              Effect.tap(() => Effect.sync(() => acked[name].push(id))),
              Effect.catchTag("Fenced", () => Effect.sync(() => void (putsAtFence ??= ca.puts.length)))
            ),
          { discard: true }
        )
      yield* Effect.all([writer("a"), writer("b")], { concurrency: 2 })
      expect(acked.b).toHaveLength(10)
      // a's first append after b's LeaderElected finds its seq taken: fenced, and no write after that.
      expect(putsAtFence).toBeDefined()
      expect(yield* Effect.flip(a.log.append([requested("late")]))).toMatchObject({ _tag: "Fenced", term: 1 })
      expect(ca.puts.length).toBe(putsAtFence)
      const replayed = yield* replayStore(store)
      expect(replayed.state.term).toBe(2)
      expect(new Set(Array.from(replayed.state.instances).map(([id]) => id))).toEqual(new Set([...acked.a, ...acked.b]))
      expect(view(replayed.state)).toEqual(view(yield* b.log.state))
      yield* Effect.all([a.close, b.close])
    }))

  it.live("replay after reopening is exact; a corrupt newest snapshot falls back to the one before", () =>
    Effect.gen(function* () {
      const store = freshStore()
      const first = yield* startLog(store, { batchWindow: 0, snapshotEvery: 1_000_000 })
      yield* first.log.open("r1", 1)
      for (let i = 0; i < 3; i++) yield* first.log.append([requested(`abc${i}`)])
      const older = yield* first.log.snapshot()
      for (let i = 3; i < 6; i++) yield* first.log.append([requested(`abc${i}`)])
      const newer = yield* first.log.snapshot()
      yield* first.log.append([requested("abc6")])
      const expected = view(yield* first.log.state)
      yield* first.close

      const good = (yield* store.get(snapshotKey(newer.seq))).body
      yield* store.put(snapshotKey(newer.seq), good.slice(0, Math.floor(good.byteLength / 2)))
      const fallback = yield* replayStore(store)
      expect(view(fallback.state)).toEqual(expected)
      expect(fallback.snapshotSeq).toBe(older.seq)

      // A new leader continues the same log.
      const second = yield* startLog(store, { batchWindow: 0 })
      yield* second.log.open("r2", 2)
      expect(view(yield* second.log.state)).toMatchObject({ term: 2, instances: expected.instances })
      yield* second.close

    }))

  it.live("automatic snapshots prune old segments and replay stays exact", () =>
    Effect.gen(function* () {
      const store = freshStore()
      const { log, close } = yield* startLog(store, { batchWindow: 0, snapshotEvery: 5, keepSegments: 2 })
      yield* log.open("r1", 1)
      for (let i = 0; i < 16; i++) yield* log.append([requested(`abd${String(i).padStart(2, "0")}`)])
      const expected = view(yield* log.state)
      yield* close
      const segments = yield* keysUnder(store, "log/")
      expect(segments.length).toBeLessThan(17)
      const replayed = yield* replayStore(store)
      expect(replayed.snapshotSeq).toBeGreaterThan(0)
      expect(view(replayed.state)).toEqual(expected)

    }))
})
