import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, TestClock } from "effect"
import { retryTransient, settleAmbiguousPut } from "../../src/layers/storeSettle.js"
import { ifAbsent, ifMatch, type Precondition, StoreUnavailable } from "../../src/services/ObjectStore.js"

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

describe("retryTransient: one loop owns the retries", () => {
  const failing = (counter: { attempts: number }) =>
    Effect.suspend(() => {
      counter.attempts++
      return Effect.fail(new StoreUnavailable({ operation: "get", key: "k", reason: "injected" }))
    })

  it.effect("a loop around a store that does not retry retries within its own bound", () =>
    Effect.gen(function* () {
      const counter = { attempts: 0 }
      const fiber = yield* Effect.fork(Effect.either(retryTransient("get", "k", 3)(failing(counter))))
      yield* TestClock.adjust("10 seconds")
      expect(Either.isLeft(yield* Fiber.join(fiber))).toBe(true)
      expect(counter.attempts).toBe(4)
    }))

  it.effect("a loop around a store that retries itself passes its failures through: attempts do not multiply", () =>
    Effect.gen(function* () {
      const counter = { attempts: 0 }
      const store = retryTransient("get", "k", 5)(failing(counter))
      const fiber = yield* Effect.fork(Effect.either(retryTransient("get", "k", 3)(store)))
      yield* TestClock.adjust("10 seconds")
      expect(Either.isLeft(yield* Fiber.join(fiber))).toBe(true)
      expect(counter.attempts).toBe(6)
    }))
})
