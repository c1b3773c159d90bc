import { describe, expect, it } from "@effect/vitest"
import { shardPrefix } from "../../src/domain/bucketKeys.js"
import { Chunk, Effect, Stream } from "effect"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { storeContract } from "./contract.js"

const memory = makeMemoryStore()
storeContract("memory", () => memory)

describe("scopeStore", () => {
  const enc = new TextEncoder()

  it("shardPrefix defaults to shard/{shard}/ and honours an override", () => {
    expect(shardPrefix("eu-1")).toBe("shard/eu-1/")
    expect(shardPrefix("eu-1", "custom/")).toBe("custom/")
    expect(shardPrefix("eu-1", "")).toBe("")
  })

  it.effect("prepends the prefix on writes and strips it from list and head", () =>
    Effect.gen(function* () {
      const raw = makeMemoryStore()
      const scoped = scopeStore(raw, shardPrefix("a"))
      yield* scoped.put("config.jsonc", enc.encode("{}"))
      yield* scoped.put("groups/web.json", enc.encode("{}"))
      yield* raw.put("shard/b/config.jsonc", enc.encode("{}"))
      yield* raw.put("shard/ab/config.jsonc", enc.encode("{}"))
      expect((yield* raw.head("shard/a/config.jsonc")).size).toBe(2)
      expect((yield* scoped.head("groups/web.json")).key).toBe("groups/web.json")
      const keys = Chunk.toReadonlyArray(yield* Stream.runCollect(scoped.list(""))).map((m) => m.key)
      expect(keys).toEqual(["config.jsonc", "groups/web.json"])
      const after = Chunk.toReadonlyArray(yield* Stream.runCollect(scoped.list("", "config.jsonc"))).map((m) => m.key)
      expect(after).toEqual(["groups/web.json"])
      yield* scoped.delete("config.jsonc")
      expect(yield* Effect.flip(raw.get("shard/a/config.jsonc"))).toMatchObject({ _tag: "NotFound", key: "shard/a/config.jsonc" })
      expect((yield* raw.get("shard/b/config.jsonc")).body.byteLength).toBe(2)
    }))

  it.effect.each(["/x/", "../", "a//"])("an invalid prefix %j fails every call instead of writing elsewhere", (prefix) =>
    Effect.gen(function* () {
      const raw = makeMemoryStore()
      const scoped = scopeStore(raw, prefix)
      expect(yield* Effect.flip(scoped.put("k", enc.encode("x")))).toMatchObject({ _tag: "InvalidKey" })
      expect(yield* Effect.flip(scoped.get("k"))).toMatchObject({ _tag: "InvalidKey" })
      expect(Chunk.size(yield* Stream.runCollect(raw.list("")))).toBe(0)
    }))
})
