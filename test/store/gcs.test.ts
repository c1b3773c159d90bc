import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeGcsStore } from "../../src/layers/ObjectStoreGcs.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { ifAbsent, ifMatch } from "../../src/services/ObjectStore.js"
import { storeContract } from "./contract.js"
import { type GcsFake, startGcsFake } from "./gcsFake.js"

let fake: GcsFake
let store: ObjectStoreShape
beforeAll(async () => {
  fake = await startGcsFake()
  store = makeGcsStore({ bucket: fake.bucket, apiEndpoint: fake.url, projectId: "nstance-test", pageSize: 400, retries: 3 })
})
afterAll(() => fake.close())

storeContract("gcs (loopback fake)", () => store)

const enc = new TextEncoder()
const dec = new TextDecoder()

describe("GCS specifics", () => {
  it.live("etags are generations and preconditions travel as ifGenerationMatch (0 = must not exist)", () =>
    Effect.gen(function* () {
      fake.log.length = 0
      const created = yield* store.put("gen/a", enc.encode("1"), ifAbsent)
      expect(created.etag).toMatch(/^\d+$/)
      const replaced = yield* store.put("gen/a", enc.encode("2"), ifMatch(created.etag))
      expect(BigInt(replaced.etag)).toBeGreaterThan(BigInt(created.etag))
      expect(fake.log.some((line) => line.includes("uploadType=multipart") && line.includes("ifGenerationMatch=0"))).toBe(true)
      expect(fake.log.some((line) => line.includes(`ifGenerationMatch=${created.etag}`))).toBe(true)
      const notANumber = yield* Effect.flip(store.put("gen/a", enc.encode("3"), ifMatch("d41d8cd98f00b204")))
      expect(notANumber._tag).toBe("PreconditionFailed")
    }))

  it.live("an upload applied by the server but answered with 503 is settled by re-reading, not retried blindly", () =>
    Effect.gen(function* () {
      const base = yield* store.put("ambiguous/a", enc.encode("base"))
      fake.failAfterApplying(1)
      const won = yield* store.put("ambiguous/a", enc.encode("mine"), ifMatch(base.etag))
      const got = yield* store.get("ambiguous/a")
      expect(dec.decode(got.body)).toBe("mine")
      expect(won.etag).toBe(got.etag)
      fake.failAfterApplying(1)
      const created = yield* store.put("ambiguous/b", enc.encode("new"), ifAbsent)
      expect(created.etag).toBe((yield* store.head("ambiguous/b")).etag)
    }))

  it.live("a missing bucket is AccessDenied saying so", () =>
    Effect.gen(function* () {
      const other = makeGcsStore({ bucket: "no-such-bucket", apiEndpoint: fake.url, projectId: "nstance-test" })
      const error = yield* Effect.flip(other.put("x", enc.encode("x"), ifAbsent))
      expect(error.message).toContain(`bucket "no-such-bucket" does not exist`)
    }))
})
