/**
 * What holding the shard lease costs: store calls and wall time per renewal (leader) and per poll
 * (follower) on the memory and file stores, and on S3 when `S3_TEST_BUCKET` and `AWS_*` are set. A leader
 * and a follower run on the real clock with a 20 ms interval for a few seconds; every store call is timed.
 */
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Logger, LogLevel, Scope } from "effect"
import { makeLeaderLeaseOn } from "../src/layers/LeaderLeaseStore.js"
import { makeFileStore } from "../src/layers/ObjectStoreFile.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../src/layers/ObjectStoreScoped.js"
import { makeS3Store } from "../src/layers/ObjectStoreS3.js"
import type { ObjectStoreShape } from "../src/services/ObjectStore.js"
import { percentile } from "./lib/stats.js"

interface Call {
  readonly op: "get" | "put"
  readonly start: number
  readonly ms: number
}

const timed = (base: ObjectStoreShape, calls: Array<Call>): ObjectStoreShape => {
  const time = <A, E>(op: "get" | "put", effect: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      const start = performance.now()
      return effect.pipe(Effect.ensuring(Effect.sync(() => calls.push({ op, start, ms: performance.now() - start }))))
    })
  return { ...base, get: (key) => time("get", base.get(key)), put: (key, body, pre) => time("put", base.put(key, body, pre)) }
}

const fmt = (n: number) => n.toFixed(2)

const measure = (name: string, store: ObjectStoreShape, seconds: number) =>
  Effect.gen(function* () {
    const leaderCalls: Array<Call> = []
    const followerCalls: Array<Call> = []
    const scope = yield* Scope.make()
    const options = { frequentInterval: "20 millis", leaderTimeout: "2 seconds", callTimeout: "1 second" } as const
    const leader = yield* makeLeaderLeaseOn(timed(store, leaderCalls), { id: "bench-leader", address: "l:1", ...options }).pipe(Scope.extend(scope))
    yield* Effect.sleep("100 millis")
    yield* makeLeaderLeaseOn(timed(store, followerCalls), { id: "bench-follower", address: "f:1", ...options }).pipe(Scope.extend(scope))
    const t0 = performance.now()
    const leaderBefore = leaderCalls.length
    const followerBefore = followerCalls.length
    yield* Effect.sleep(`${seconds} seconds`)
    const elapsed = (performance.now() - t0) / 1000
    const stillLeader = yield* leader.isLeader.get
    const steady = leaderCalls.slice(leaderBefore)
    const follow = followerCalls.slice(followerBefore)
    yield* Scope.close(scope, Exit.void)
    // A renewal is a get followed by a put; pair them in order.
    const renewals: Array<number> = []
    for (let i = 0; i + 1 < steady.length; i++) {
      const a = steady[i]!
      const b = steady[i + 1]!
      if (a.op === "get" && b.op === "put") {
        renewals.push(b.start + b.ms - a.start)
        i++
      }
    }
    renewals.sort((x, y) => x - y)
    const polls = follow.filter((c) => c.op === "get").map((c) => c.ms).sort((x, y) => x - y)
    const renewCalls = steady.length / Math.max(1, renewals.length)
    console.log(
      `${name.padEnd(8)} renewals ${String(renewals.length).padStart(5)} (${fmt(renewals.length / elapsed)}/s)  ` +
        `store calls/renewal ${fmt(renewCalls)}  renewal ms p50 ${fmt(percentile(renewals, 0.5))} p99 ${fmt(percentile(renewals, 0.99))} max ${fmt(renewals.at(-1) ?? NaN)}  ` +
        `| follower calls/poll ${fmt(follow.length / Math.max(1, polls.length))} poll ms p50 ${fmt(percentile(polls, 0.5))} p99 ${fmt(percentile(polls, 0.99))}  ` +
        `| leader held throughout: ${stillLeader}`
    )
  })

const main = Effect.gen(function* () {
  const seconds = Number(process.env["LEASE_BENCH_SECONDS"] ?? "3")
  console.log(`lease renewal cost: leader + follower, 20 ms interval, ${seconds} s per store (real clock)`)
  yield* measure("memory", makeMemoryStore(), seconds)
  const dir = mkdtempSync(join(tmpdir(), "nstance-lease-bench-"))
  yield* measure("file", makeFileStore({ directory: dir }), seconds).pipe(Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true }))))
  const { S3_TEST_BUCKET, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY } = process.env
  if (S3_TEST_BUCKET && AWS_ACCESS_KEY_ID && AWS_SECRET_ACCESS_KEY) {
    const raw = makeS3Store({
      bucket: S3_TEST_BUCKET,
      ...(AWS_ENDPOINT_URL ? { endpoint: AWS_ENDPOINT_URL } : {}),
      credentials: { accessKeyId: AWS_ACCESS_KEY_ID, secretAccessKey: AWS_SECRET_ACCESS_KEY }
    })
    const prefix = `lease-bench-${randomUUID()}/`
    yield* measure("s3", scopeStore(raw, prefix), seconds).pipe(Effect.ensuring(Effect.ignore(raw.delete(`${prefix}leader.json`))))
  } else {
    console.log("s3       skipped: set S3_TEST_BUCKET and AWS_* (eval \"$(bash scripts/s3-server.sh start)\")")
  }
})

Effect.runPromise(main.pipe(Logger.withMinimumLogLevel(LogLevel.Error))).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
