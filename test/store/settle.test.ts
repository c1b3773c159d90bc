import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { settleAmbiguousPut } from "../../src/layers/storeSettle.js"
import { ifAbsent, ifMatch, type Precondition } from "../../src/services/ObjectStore.js"

const enc = new TextEncoder()
const mine = enc.encode("mine")

describe("settleAmbiguousPut: what a re-read after an unknown outcome means", () => {
  it.effect.each([
    ["IfAbsent, our bytes are there", ifAbsent, { body: mine, etag: "e2" }, "success e2"],
    ["IfAbsent, other bytes are there", ifAbsent, { body: enc.encode("theirs"), etag: "e2" }, "PreconditionFailed"],
    ["IfAbsent, still absent: did not apply, may retry", ifAbsent, undefined, "StoreUnavailable"],
    ["IfMatch, our bytes under a new etag", ifMatch("e1"), { body: mine, etag: "e2" }, "success e2"],
    ["IfMatch, other bytes under a new etag", ifMatch("e1"), { body: enc.encode("theirs"), etag: "e2" }, "PreconditionFailed"],
    ["IfMatch, etag unchanged: did not apply, may retry", ifMatch("e1"), { body: enc.encode("old"), etag: "e1" }, "StoreUnavailable"],
    ["IfMatch, etag unchanged and bytes equal: still not ours", ifMatch("e1"), { body: mine, etag: "e1" }, "StoreUnavailable"],
    ["IfMatch, key gone", ifMatch("e1"), undefined, "PreconditionFailed"]
  ] as const)("%s", ([, precondition, current, expected]) =>
    Effect.gen(function* () {
      const result = yield* Effect.either(settleAmbiguousPut("k", mine, precondition as Precondition, Effect.succeed(current), "HTTP 500"))
      expect(Either.isRight(result) ? `success ${result.right.etag}` : result.left._tag).toBe(expected)
    }))
})
