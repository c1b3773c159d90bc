import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeS3Store } from "../../src/layers/ObjectStoreS3.js"
import { randomUUID } from "node:crypto"
import { ifAbsent, ifMatch } from "../../src/services/ObjectStore.js"
import { startDropProxy } from "./dropProxy.js"
import { storeContract } from "./contract.js"
import { closedPort, S3_START_TIMEOUT_MS, type S3TestEnv, s3TestEnv, skipWithout } from "./s3Env.js"

// Set by the suite's beforeAll; without a reachable server that hook fails the suite, saying why.
let env: S3TestEnv | undefined

const options = (overrides: Partial<Parameters<typeof makeS3Store>[0]> = {}) => {
  if (env === undefined) throw new Error("no S3 server (see the failed beforeAll of this suite)")
  return {
    bucket: env.bucket,
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    ...overrides
  }
}

describe.skipIf(skipWithout("s3"))("S3 on a real server", () => {
  let store: ReturnType<typeof makeS3Store> | undefined
  beforeAll(async () => {
    env = await s3TestEnv()
    store = makeS3Store(options())
  }, S3_START_TIMEOUT_MS)
  storeContract("s3 (real server)", () => store ?? makeS3Store(options()))

  it.live("wrong credentials fail once with AccessDenied naming the rejection", () =>
    Effect.gen(function* () {
      const bad = makeS3Store(options({ credentials: { accessKeyId: "nobody", secretAccessKey: "wrong-secret-0000000000" } }))
      const error = yield* Effect.flip(bad.put("probe/x", new Uint8Array([1]), ifAbsent))
      expect(error._tag).toBe("AccessDenied")
      expect(error.message).toMatch(/credentials rejected \((InvalidAccessKeyId|SignatureDoesNotMatch)\)/)
    }))

  it.live("a wrong secret for a known access key is also AccessDenied", () =>
    Effect.gen(function* () {
      const real = options()
      const bad = makeS3Store(options({ credentials: { accessKeyId: real.credentials.accessKeyId, secretAccessKey: "not-the-secret-0000000" } }))
      const error = yield* Effect.flip(bad.get("probe/x"))
      expect(error._tag).toBe("AccessDenied")
      expect(error.message).toContain("credentials rejected (SignatureDoesNotMatch)")
    }))

  it.live("a missing bucket is AccessDenied saying the bucket does not exist", () =>
    Effect.gen(function* () {
      const bad = makeS3Store(options({ bucket: "nstance-no-such-bucket" }))
      const attempts: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>> = [
        bad.get("x"), bad.put("x", new Uint8Array([1])), bad.put("x", new Uint8Array([1]), ifAbsent)
      ]
      for (const attempt of attempts) {
        const error = yield* Effect.flip(attempt)
        expect(error._tag).toBe("AccessDenied")
        expect(error.message).toContain(`bucket "nstance-no-such-bucket" does not exist`)
      }
    }))

  it.live.each([["a reset connection", "reset"], ["a 500", 500]] as const)(
    "a conditional write the server applied but answered with %s is settled by re-reading, not retried into a 412",
    ([, how]) =>
      Effect.gen(function* () {
        const proxy = yield* Effect.acquireRelease(Effect.promise(() => startDropProxy(options().endpoint)), (p) => Effect.promise(() => p.close()))
        const store = makeS3Store(options({ endpoint: proxy.url }))
        const key = `ambiguous-${randomUUID()}`
        proxy.loseNextPuts(1, how)
        const created = yield* store.put(key, new TextEncoder().encode("created"), ifAbsent)
        expect(proxy.applied).toEqual([200])
        expect(created.etag).toBe((yield* store.head(key)).etag)

        proxy.loseNextPuts(1, how)
        const replaced = yield* store.put(key, new TextEncoder().encode("replaced"), ifMatch(created.etag))
        const got = yield* store.get(key)
        expect(new TextDecoder().decode(got.body)).toBe("replaced")
        expect(replaced.etag).toBe(got.etag)

        // A lost answer to a write that did not apply (412 upstream) stays a PreconditionFailed.
        proxy.loseNextPuts(1, how)
        const lost = yield* Effect.flip(store.put(key, new TextEncoder().encode("late"), ifMatch(created.etag)))
        expect(lost._tag).toBe("PreconditionFailed")
        expect(proxy.applied).toEqual([200, 200, 412])
        yield* store.delete(key)
      }).pipe(Effect.scoped)
  )
})

describe("S3 layer against an unreachable endpoint", () => {
  it.live("a closed loopback port is StoreUnavailable after bounded retries", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(() => closedPort())
      const store = makeS3Store({
        bucket: "b",
        endpoint: `http://127.0.0.1:${port}`,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId: "a", secretAccessKey: "b" },
        retries: 2
      })
      const error = yield* Effect.flip(store.put("k", new Uint8Array([1]), ifAbsent))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.message).toContain("ECONNREFUSED")
    }))
})
