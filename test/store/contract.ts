/**
 * The one behaviour every object store must have, registered against each layer (memory, file, S3 on a
 * real server, GCS on a fake). Leader election is only as correct as the weakest layer here.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Stream } from "effect"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ifAbsent, ifMatch, type ObjectStoreShape, PreconditionFailed } from "../../src/services/ObjectStore.js"

export interface ContractOptions {
  /** Keys written by the pagination test (default 1,100: more than one S3 page of 1,000). */
  readonly listKeys?: number
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const pad = (n: number) => n.toString().padStart(5, "0")

const collect = <A, E>(stream: Stream.Stream<A, E>) => Stream.runCollect(stream).pipe(Effect.map(Chunk.toReadonlyArray))

/**
 * Registers the contract tests for the store `getStore()` returns (called lazily, inside tests, so that a
 * store started in `beforeAll` works). Every test writes under a fresh random prefix, removed afterwards.
 */
export const storeContract = (name: string, getStore: () => ObjectStoreShape, options: ContractOptions = {}) =>
  describe(`ObjectStore contract: ${name}`, () => {
    const runPrefix = `contract-${randomUUID()}/`
    const store = () => scopeStore(getStore(), runPrefix)

    afterAll(async () => {
      const raw = getStore()
      await Effect.runPromise(
        raw.list(runPrefix).pipe(
          Stream.mapEffect((meta) => raw.delete(meta.key), { concurrency: 16 }),
          Stream.runDrain,
          Effect.ignore
        )
      )
    })

    it.live("round trip: put returns the etag that get and head report", () =>
      Effect.gen(function* () {
        const s = store()
        const { etag } = yield* s.put("rt/a.json", enc.encode('{"a":1}'))
        const got = yield* s.get("rt/a.json")
        expect(dec.decode(got.body)).toBe('{"a":1}')
        expect(got.etag).toBe(etag)
        expect(etag).not.toMatch(/^"|"$/)
        const meta = yield* s.head("rt/a.json")
        expect(meta).toEqual({ key: "rt/a.json", size: 7, etag })
        const second = yield* s.put("rt/a.json", enc.encode('{"a":2}'))
        expect(second.etag).not.toBe(etag)
        expect(dec.decode((yield* s.get("rt/a.json")).body)).toBe('{"a":2}')
      }))

    it.live.each([
      ["all 256 byte values", Uint8Array.from({ length: 512 }, (_, i) => i % 256)],
      ["an empty body", new Uint8Array()],
      ["1 MiB of random bytes", new Uint8Array(randomBytes(1024 * 1024))]
    ] as const)("binary bodies survive unchanged: %s", ([label, body]) =>
      Effect.gen(function* () {
        const s = store()
        const key = `bin/${label.replace(/\W+/g, "-")}`
        const { etag } = yield* s.put(key, body)
        const got = yield* s.get(key)
        expect(got.body.byteLength).toBe(body.byteLength)
        expect(Buffer.from(got.body).equals(Buffer.from(body))).toBe(true)
        expect(got.etag).toBe(etag)
        expect((yield* s.head(key)).size).toBe(body.byteLength)
      }))

    it.live("IfAbsent creates once; a second create fails with PreconditionFailed and changes nothing", () =>
      Effect.gen(function* () {
        const s = store()
        const { etag } = yield* s.put("create/x", enc.encode("first"), ifAbsent)
        const error = yield* Effect.flip(s.put("create/x", enc.encode("second"), ifAbsent))
        expect(error).toBeInstanceOf(PreconditionFailed)
        expect(error._tag === "PreconditionFailed" && error.precondition._tag).toBe("IfAbsent")
        const got = yield* s.get("create/x")
        expect(dec.decode(got.body)).toBe("first")
        expect(got.etag).toBe(etag)
      }))

    it.live("IfMatch replaces with the current etag and refuses a stale one or a missing key", () =>
      Effect.gen(function* () {
        const s = store()
        const v1 = yield* s.put("replace/x", enc.encode("v1"))
        const v2 = yield* s.put("replace/x", enc.encode("v2"), ifMatch(v1.etag))
        expect(v2.etag).not.toBe(v1.etag)
        const stale = yield* Effect.flip(s.put("replace/x", enc.encode("v3"), ifMatch(v1.etag)))
        expect(stale).toBeInstanceOf(PreconditionFailed)
        expect(stale.message).toContain("replace/x")
        const got = yield* s.get("replace/x")
        expect(dec.decode(got.body)).toBe("v2")
        expect(got.etag).toBe(v2.etag)
        const v3 = yield* s.put("replace/x", enc.encode("v3"), ifMatch(got.etag))
        expect((yield* s.head("replace/x")).etag).toBe(v3.etag)
        const missing = yield* Effect.flip(s.put("replace/never-written", enc.encode("v"), ifMatch(v3.etag)))
        expect(missing).toBeInstanceOf(PreconditionFailed)
        expect(yield* Effect.flip(s.get("replace/never-written"))).toMatchObject({ _tag: "NotFound" })
      }))

    it.live("20 concurrent IfAbsent writers: exactly one wins and its body is what is stored", () =>
      Effect.gen(function* () {
        const s = store()
        const results = yield* Effect.all(
          Array.from({ length: 20 }, (_, i) => Effect.either(s.put("race/absent", enc.encode(`writer-${i}`), ifAbsent))),
          { concurrency: "unbounded" }
        )
        const winners = results.flatMap((r, i) => (Either.isRight(r) ? [{ i, etag: r.right.etag }] : []))
        expect(winners).toHaveLength(1)
        for (const r of results) if (Either.isLeft(r)) expect(r.left._tag).toBe("PreconditionFailed")
        const got = yield* s.get("race/absent")
        expect(dec.decode(got.body)).toBe(`writer-${winners[0]!.i}`)
        expect(got.etag).toBe(winners[0]!.etag)
      }))

    it.live("20 concurrent IfMatch writers from one etag: exactly one wins and its body is what is stored", () =>
      Effect.gen(function* () {
        const s = store()
        const base = yield* s.put("race/match", enc.encode("base"))
        const results = yield* Effect.all(
          Array.from({ length: 20 }, (_, i) => Effect.either(s.put("race/match", enc.encode(`writer-${i}`), ifMatch(base.etag)))),
          { concurrency: "unbounded" }
        )
        const winners = results.flatMap((r, i) => (Either.isRight(r) ? [{ i, etag: r.right.etag }] : []))
        expect(winners).toHaveLength(1)
        for (const r of results) if (Either.isLeft(r)) expect(r.left._tag).toBe("PreconditionFailed")
        const got = yield* s.get("race/match")
        expect(dec.decode(got.body)).toBe(`writer-${winners[0]!.i}`)
        expect(got.etag).toBe(winners[0]!.etag)
      }))

    it.live("list pages through more than 1,000 keys in order, honouring prefix and startAfter", () =>
      Effect.gen(function* () {
        const s = store()
        const n = options.listKeys ?? 1100
        const keys = Array.from({ length: n }, (_, i) => `list/k${pad(i)}`)
        yield* Effect.forEach(keys, (key, i) => s.put(key, enc.encode(String(i))), { concurrency: 16, discard: true })
        // Neighbours that share a textual prefix must not leak into the listing.
        yield* s.put("list-other/k", enc.encode("x"))
        yield* s.put("lis", enc.encode("x"))

        const all = yield* collect(s.list("list/"))
        expect(all.map((m) => m.key)).toEqual(keys)
        expect(all[7]).toMatchObject({ key: "list/k00007", size: 1 })
        expect(all[7]!.etag).toBe((yield* s.head("list/k00007")).etag)

        const after = yield* collect(s.list("list/", keys[499]))
        expect(after.map((m) => m.key)).toEqual(keys.slice(500))

        const lastPage = yield* collect(s.list("list/", keys[n - 2]))
        expect(lastPage.map((m) => m.key)).toEqual([keys[n - 1]])
        expect(yield* collect(s.list("list/", keys[n - 1]))).toEqual([])

        const narrow = yield* collect(s.list("list/k0100"))
        expect(narrow.map((m) => m.key)).toEqual(keys.slice(1000, 1010).filter((k) => k.startsWith("list/k0100")))

        const everything = (yield* collect(s.list(""))).map((m) => m.key)
        expect(everything).toEqual([...everything].sort())
        expect(everything).toContain("lis")
        expect(everything).toContain("list-other/k")
        expect(yield* collect(s.list("nothing-here/"))).toEqual([])
      }), 240_000)

    it.live("get and head of a missing key fail with NotFound naming the key", () =>
      Effect.gen(function* () {
        const s = store()
        const got = yield* Effect.flip(s.get("missing/key.json"))
        expect(got).toMatchObject({ _tag: "NotFound" })
        expect(got.message).toContain("missing/key.json")
        const head = yield* Effect.flip(s.head("missing/key.json"))
        expect(head).toMatchObject({ _tag: "NotFound" })
      }))

    it.live("deleting a missing key succeeds; deleting a present key removes it", () =>
      Effect.gen(function* () {
        const s = store()
        yield* s.delete("del/never")
        yield* s.put("del/x", enc.encode("x"))
        yield* s.delete("del/x")
        expect(yield* Effect.flip(s.get("del/x"))).toMatchObject({ _tag: "NotFound" })
        yield* s.delete("del/x")
        expect(yield* collect(s.list("del/"))).toEqual([])
        // The key can be created again afterwards, also conditionally.
        yield* s.put("del/x", enc.encode("again"), ifAbsent)
      }))

    it.live.each(["", "..", "a/../b", "/abs", "a//b", "./a"])("key %j is refused with InvalidKey by every operation", (key) =>
      Effect.gen(function* () {
        const raw = getStore()
        const attempts: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>> = [
          raw.get(key), raw.head(key), raw.put(key, enc.encode("x")), raw.put(key, enc.encode("x"), ifAbsent), raw.delete(key)
        ]
        for (const attempt of attempts) {
          const error = yield* Effect.flip(attempt)
          expect(error).toMatchObject({ _tag: "InvalidKey", key })
        }
        if (key !== "") expect(yield* Effect.flip(collect(raw.list(key)))).toMatchObject({ _tag: "InvalidKey" })
      }))
  })
