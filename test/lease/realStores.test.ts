/**
 * The lease on real stores with the real clock: the file store in a temp directory, and S3 on the shared
 * loopback server (Ceph RGW; the suite fails when it cannot be reached). Short timings; the leader timeout is long enough
 * that a takeover within it can only have come from the released record, not from expiry.
 */
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, SubscriptionRef } from "effect"
import { LEADER_KEY } from "../../src/domain/bucketKeys.js"
import { decodeLeaseRecord } from "../../src/domain/lease.js"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { makeS3Store } from "../../src/layers/ObjectStoreS3.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { S3_START_TIMEOUT_MS, type S3TestEnv, s3TestEnv, skipWithout } from "../store/s3Env.js"
import { collectLogs, leaders, ms, type Replica, startReplica } from "./harness.js"

const timings = { frequentInterval: "300 millis", leaderTimeout: "10 seconds", callTimeout: "2 seconds" } as const

const scenario = (store: ObjectStoreShape) =>
  Effect.gen(function* () {
    const replicas: Array<Replica> = [yield* startReplica(store, "a", timings), yield* startReplica(store, "b", timings)]
    // Until someone acquires: at most one; afterwards for 2 s of renewals: exactly one, always the same.
    let first: string | undefined
    for (let i = 0; i < 100 && first === undefined; i++) {
      const now = yield* leaders(replicas)
      expect(now.length).toBeLessThanOrEqual(1)
      first = now[0]
      if (first === undefined) yield* Effect.sleep(ms(50))
    }
    expect(first).toBeDefined()
    for (let i = 0; i < 40; i++) {
      expect(yield* leaders(replicas)).toEqual([first])
      yield* Effect.sleep(ms(50))
    }
    const leader = replicas.find((r) => r.id === first)!
    const standby = replicas.find((r) => r.id !== first)!
    yield* leader.lease.resign
    expect(yield* SubscriptionRef.get(leader.lease.isLeader)).toBe(false)
    let tookOver = false
    // Well under the 10 s timeout: only the released record explains a takeover this early.
    for (let i = 0; i < 100 && !tookOver; i++) {
      tookOver = yield* SubscriptionRef.get(standby.lease.isLeader)
      expect(yield* leaders(replicas)).toHaveLength(tookOver ? 1 : 0)
      if (!tookOver) yield* Effect.sleep(ms(50))
    }
    expect(tookOver).toBe(true)
    const record = decodeLeaseRecord((yield* store.get(LEADER_KEY)).body)
    expect(record).toMatchObject(Either.right({ leaderID: standby.id, term: 2 }))
    for (const r of replicas) yield* r.stop
  }).pipe(Effect.provide(collectLogs().layer))

describe("LeaderLease on the file store (real clock)", () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-lease-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it.live("two leases: exactly one leader; resign → the other takes over at its next tick", () =>
    scenario(makeFileStore({ directory: join(dir, "bucket") })))
})

// Skipped only off CI on a machine without Ceph; a server that does not start fails the beforeAll (s3Env.ts).
describe.skipIf(skipWithout("s3"))("LeaderLease on the real S3 server (real clock)", () => {
  let env: S3TestEnv
  beforeAll(async () => {
    env = await s3TestEnv()
  }, S3_START_TIMEOUT_MS)

  it.live("two leases: exactly one leader; resign → the other takes over at its next tick", () => {
    const raw = makeS3Store({
      bucket: env.bucket,
      endpoint: env.endpoint,
      region: env.region,
      forcePathStyle: true,
      credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey }
    })
    const prefix = `lease-test-${randomUUID()}/`
    return scenario(scopeStore(raw, prefix)).pipe(Effect.ensuring(Effect.ignore(raw.delete(`${prefix}leader.json`))))
  })
})
