/**
 * A corrupt event log: a garbage object at the next seq, or a corrupt snapshot whose segments were pruned.
 * The leader stops renewing the moment it finds it cannot write (even while idle: it looks at the next seq),
 * another replica can take over and meets the same object, every log line about it carries the cause in
 * both log formats, `/readyz` answers 503 naming the object, the admin endpoint names it instead of "no
 * leader", and once the object is quarantined a leader starts again.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Either, Layer, Logger, LogLevel, Option, Stream, SubscriptionRef } from "effect"
import { connectAdmin } from "../../src/admin/AdminClient.js"
import { formatLogger } from "../../src/cli/logging.js"
import { makeHealthServer } from "../../src/http/HealthServer.js"
import { InstanceRequested } from "../../src/domain/shard/events.js"
import { makeEventLog, replayStore, segmentKey, snapshotKey } from "../../src/layers/EventLogStore.js"
import { makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import { applyQuarantine, planQuarantine } from "../../src/layers/logQuarantine.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { EventLog, LogCorrupt } from "../../src/services/EventLog.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { buildReplica } from "../support/stackReplica.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { LatencyFast } from "../../src/sim/latency.js"
import { makeProxmoxApiSim } from "../../src/sim/ProxmoxApiSim.js"
import { credentialsFor, serve } from "../admin/harness.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { randomBytes } from "node:crypto"
import { configText, parseConfig, SHARD } from "../support/simWorld.js"

const encoder = new TextEncoder()
const GARBAGE = encoder.encode("{\"seq\": oops, this is not a segment")

const request = (n: number) =>
  InstanceRequested.make({ instanceId: `web${String(n).padStart(26, "0")}`, at: 1, tenant: "t", group: "g", kind: "web", specHash: "h", reason: "scale-up" })

describe("the event log meets a corrupt object", () => {
  it.scoped("an idle writer finds a garbage segment at its next seq: fenced, naming the key; a valid one of another writer is plain fencing", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const log = yield* makeEventLog(store, { batchWindow: 0 })
      yield* log.open("a", 1).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      yield* log.append([request(1)])
      const next = (yield* log.seq) + 1
      yield* log.checkTail!()
      yield* store.put(segmentKey(next), GARBAGE).pipe(Effect.orDie)
      // Plain fields only: an error failed inside a span is a Proxy that vitest's deep equality cannot walk.
      const fenced = plain(yield* Effect.flip(log.checkTail!()).pipe(Logger.withMinimumLogLevel(LogLevel.None)))
      expect(fenced).toMatchObject({ tag: "Fenced", corruptKey: segmentKey(next) })
      expect(fenced.message).toContain(`${segmentKey(next)} is not a valid segment`)
      expect(fenced.message).not.toContain("\n")
      // Every later append says the same, without writing.
      expect(plain(yield* Effect.flip(log.append([request(2)])))).toEqual(fenced)
      expect(yield* log.seq).toBe(next - 1)

      const other = makeMemoryStore()
      const b = yield* makeEventLog(other, { batchWindow: 0 })
      yield* b.open("b", 1).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      const theirs = yield* makeEventLog(other, { batchWindow: 0 })
      yield* theirs.open("c", 2).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      const fencedByLeader = plain(yield* Effect.flip(b.checkTail!()).pipe(Logger.withMinimumLogLevel(LogLevel.None)))
      expect(fencedByLeader).toMatchObject({ tag: "Fenced", corruptKey: undefined })
      expect(fencedByLeader.message).toContain("was written by another writer")
    }))

  it.scoped("a corrupt snapshot whose segments were pruned: one short line naming the snapshot, not a schema dump", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const log = yield* makeEventLog(store, { batchWindow: 0, snapshotEvery: 5, keepSegments: 0 })
      yield* log.open("a", 1).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      for (let i = 0; i < 12; i++) yield* log.append([request(i)])
      const snapshots = yield* store.list("snapshot/").pipe(Stream.runCollect, Effect.orDie)
      const keys = [...snapshots].map((m) => m.key).sort()
      const newest = keys.at(-1)!
      // The previous snapshot (and the segments behind it) gone too: nothing to fall back to.
      for (const key of keys.slice(0, -1)) yield* store.delete(key).pipe(Effect.orDie)
      const body = JSON.parse(new TextDecoder().decode((yield* store.get(newest).pipe(Effect.orDie)).body))
      body.state.instances[0].phase = "flying"
      const text = JSON.stringify(body.state)
      yield* store.put(newest, encoder.encode(JSON.stringify({ ...body, checksum: (yield* Effect.promise(() => sha256(text))) }))).pipe(Effect.orDie)

      const failed = yield* Effect.flip(replayStore(store)).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      expect(failed).toBeInstanceOf(LogCorrupt)
      expect(failed).toMatchObject({ key: newest })
      expect(failed.message).toMatch(/^event log corrupt at snapshot\/\d{16}\.json: snapshot unreadable \(at instances\[0\]\.phase: .*the segments before seq \d+ were pruned/)
      expect(failed.message.length).toBeLessThan(400)
      expect(failed.message).not.toMatch(/Expected \{|\n/)
      expect(snapshotKey(Number(newest.slice(9, 25)))).toBe(newest)
    }))
})

const plain = (error: { readonly _tag: string; readonly message: string; readonly corruptKey?: string }) =>
  ({ tag: error._tag, message: error.message, corruptKey: error.corruptKey })

const sha256 = async (text: string) => (await import("node:crypto")).createHash("sha256").update(text).digest("hex")

/** The test shard with no groups: an idle leader, which appends nothing. */
const idleConfig = () => configText({ size: 0 })

const readyz = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}/readyz`)
    return { status: response.status, body: (await response.text()).trim() }
  })

const until = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, within: Duration.DurationInput = "4 seconds") =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(within))
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`${what}: not within ${Duration.format(Duration.decode(within))}`)
      yield* Effect.sleep("20 millis")
    }
  })

describe("a garbage segment at the next seq, with two replicas (lease, leader, health and admin endpoints)", () => {
  it.scopedLive("the leader stops renewing at once, the other takes over and meets the same key, readyz and status name it, logs carry the cause; quarantine repairs it", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const text = idleConfig()
      const shardStore: ObjectStoreShape = store
      const pve = yield* makeProxmoxApiSim({ nodes: 1, seed: 1, latency: LatencyFast })
      const textLines: Array<string> = []
      const jsonLines: Array<string> = []
      const loggers = Logger.replace(Logger.defaultLogger, Logger.zip(
        Logger.map(formatLogger("text"), (line) => { textLines.push(line) }),
        Logger.map(formatLogger("json"), (line) => { jsonLines.push(line) })
      ))

      const replica = (id: string) =>
        Effect.gen(function* () {
          const config = yield* SubscriptionRef.make(parseConfig(text))
          const lease = yield* makeLeaderLeaseOn(shardStore, { id, address: `127.0.0.1:${id.length}`, frequentInterval: "50 millis", infrequentInterval: "50 millis", leaderTimeout: "600 millis" }).pipe(Effect.orDie)
          const handle = yield* buildReplica({
            id, advertiseHost: "127.0.0.1", config, lease, store: shardStore,
            leader: { pve: Layer.succeedContext(pve), loop: { eventLog: { batchWindow: "5 millis" }, tailCheck: "50 millis" } }
          })
          const address = yield* makeHealthServer(handle, { host: "127.0.0.1", port: 0 })
          if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("no TCP address")
          return { id, handle, lease, url: `http://127.0.0.1:${address.port}` }
        }).pipe(Effect.provide(loggers), Logger.withMinimumLogLevel(LogLevel.Info))

      const a = yield* replica("a")
      yield* until("a leads with its term started", Effect.map(a.handle.currentTerm, Option.isSome))
      expect(yield* readyz(a.url)).toMatchObject({ status: 200 })
      const b = yield* replica("b")
      yield* until("b follows a", Effect.map(b.lease.currentLeader, (l) => Option.exists(l, (x) => x.id === "a")))

      const term = Option.getOrThrow(yield* a.handle.currentTerm)
      const key = segmentKey((yield* Context.get(term.context, EventLog).seq) + 1)
      const writtenAt = Date.now()
      yield* store.put(key, GARBAGE).pipe(Effect.orDie)

      // No zombie: a, idle, stops leading within a few tail checks (50 ms apart), long before its lease would lapse.
      yield* until("a stops leading", Effect.map(SubscriptionRef.get(a.lease.isLeader), (leading) => !leading), "2 seconds")
      expect(Date.now() - writtenAt).toBeLessThan(1_000)
      const aReady = yield* readyz(a.url)
      expect(aReady.status).toBe(503)
      expect(aReady.body).toContain(`event log corrupt at ${key}`)

      // b takes over, replays, meets the same object: its term ends too, and it says so.
      yield* until("b has led and met the key", Effect.map(b.handle.logProblem, (p) => Option.exists(p, (x) => x.key === key)))
      const bReady = yield* readyz(b.url)
      expect(bReady.status).toBe(503)
      expect(bReady.body).toMatch(new RegExp(`^not ready: event log corrupt at ${key.replace(/[./]/g, "\\$&")}: .*not a segment|^not ready: event log corrupt at ${key.replace(/[./]/g, "\\$&")}: `))

      // Every line about the failed terms carries the cause, in both formats.
      const failedText = textLines.filter((line) => line.includes("leader work of term"))
      expect(failedText.length).toBeGreaterThanOrEqual(2)
      for (const line of failedText) expect(line).toContain(key)
      for (const line of textLines.filter((l) => l.includes("lost leadership"))) expect(line).toContain(key)
      const failedJson = jsonLines.map((line) => JSON.parse(line) as { message: unknown; reason?: string }).filter((r) => String(r.message).includes("leader work of term"))
      expect(failedJson.length).toBeGreaterThanOrEqual(2)
      for (const record of failedJson) {
        expect(String(record.message)).toContain(key)
        expect(record.reason).toContain(key)
      }
      for (const line of [...textLines, ...jsonLines]) expect(line.length).toBeLessThan(10_000)

      // The admin endpoint names the object instead of "no leader is known".
      const pki = yield* makeClusterPki(store, { clusterId: "acme", encryptionKey: new Uint8Array(randomBytes(32)) }).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.None))
      const admin = yield* serve(a.handle, shardStore, { _tag: "Store", key: CONFIG_KEY, shard: SHARD }, pki)
      const { rpc } = yield* connectAdmin(admin.address, credentialsFor(pki))
      const refused = yield* Effect.flip(rpc.Status())
      expect(refused).toMatchObject({ _tag: "AdminUnavailable" })
      expect(refused.message).toContain(`event log corrupt at ${key}`)

      // The repair: the garbage is moved aside (kept under quarantine/), and a leader starts again.
      const plan = yield* planQuarantine(shardStore, key)
      yield* applyQuarantine(shardStore, plan)
      expect(Either.isRight(yield* Effect.either(shardStore.get(plan.movedTo)))).toBe(true)
      yield* until("a replica leads again", Effect.map(Effect.all([a.handle.currentTerm, b.handle.currentTerm]), ([x, y]) => Option.isSome(x) || Option.isSome(y)), "6 seconds")
      const leader = Option.isSome(yield* a.handle.currentTerm) ? a : b
      expect(yield* readyz(leader.url)).toMatchObject({ status: 200 })
      expect(Option.isNone(yield* leader.handle.logProblem)).toBe(true)
    }), 20_000)
})
