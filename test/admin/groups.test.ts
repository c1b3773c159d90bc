import { describe, expect, it } from "@effect/vitest"
import { CONFIG_KEY, GROUPS_KEY } from "../../src/domain/bucketKeys.js"
import { Effect, Either, Ref, SubscriptionRef } from "effect"
import { GroupWriteConflict, updateDynamicGroups } from "../../src/admin/groupsStore.js"
import { deleteDynamicGroup, encodeDynamicGroups, mergeDynamicGroups, parseDynamicGroups, upsertDynamicGroup } from "../../src/domain/dynamicGroups.js"
import { parseJsonc } from "../../src/domain/config/index.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { reloadConfig } from "../../src/shard/configWatch.js"
import { makeConfigHeld } from "../../src/shard/configHeld.js"
import { loadConfig } from "../../src/shard/shardConfig.js"
import { adminConfigText, makeAdminWorld } from "./harness.js"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { runCommand } from "../support/cli.js"

const configJson = () => Either.getOrThrow(parseJsonc(adminConfigText(2)))
const text = (body: Uint8Array) => new TextDecoder().decode(body)

/** A store whose reads let other fibers run before returning, so read-modify-write cycles really interleave. */
const interleavingStore = (base: ObjectStoreShape) => {
  let conflicts = 0
  const store: ObjectStoreShape = {
    ...base,
    get: (key) => base.get(key).pipe(Effect.tap(() => Effect.sleep("1 millis"))),
    put: (key, body, pre) => base.put(key, body, pre).pipe(Effect.tapErrorTag("PreconditionFailed", () => Effect.sync(() => { conflicts++ })))
  }
  return { store, conflicts: () => conflicts }
}

describe("dynamic groups document", () => {
  it("parses the original's format, treats null as empty, and writes it back canonically", () => {
    expect(parseDynamicGroups("null")).toEqual(Either.right({}))
    const doc = Either.getOrThrow(parseDynamicGroups(`// operators' groups\n{ "shop": { "api": { "template": "api", "size": 2, "vars": { "b": "2", "a": "1" } } } }`))
    expect(encodeDynamicGroups(doc)).toBe(`{\n  "shop": {\n    "api": {\n      "template": "api",\n      "size": 2,\n      "vars": {\n        "a": "1",\n        "b": "2"\n      }\n    }\n  }\n}\n`)
    expect(Either.isLeft(parseDynamicGroups(`{ "shop": { "api": { "templat": "api" } } }`))).toBe(true)
    expect(Either.isLeft(parseDynamicGroups(`{ "shop": [] }`))).toBe(true)
  })

  it("keeps the original's drain_timeout: a dynamic-only group takes it, a static group keeps its own", () => {
    const doc = Either.getOrThrow(parseDynamicGroups(`{ "shop": { "api": { "template": "api", "size": 1, "drain_timeout": "2m" }, "web": { "size": 4, "drain_timeout": "9m" } } }`))
    expect(encodeDynamicGroups(doc)).toContain(`"drain_timeout": "2m"`)
    const merged = mergeDynamicGroups(configJson(), doc) as { groups: Record<string, Record<string, Record<string, unknown>>> }
    expect(merged.groups["shop"]?.["api"]).toMatchObject({ template: "api", size: 1, drain_timeout: "2m" })
    expect(merged.groups["shop"]?.["web"]?.["drain_timeout"]).toBeUndefined()
    expect(merged.groups["shop"]?.["web"]?.["size"]).toBe(4)
  })

  it("a partial update never resets size; static groups keep their template and pool", () => {
    const json = configJson()
    const created = Either.getOrThrow(upsertDynamicGroup({}, json, "shop", "api", { template: "api", size: 3 }))
    const varsOnly = Either.getOrThrow(upsertDynamicGroup(created, json, "shop", "api", { vars: { tier: "gold" } }))
    expect(varsOnly["shop"]?.["api"]).toEqual({ template: "api", size: 3, vars: { tier: "gold" } })
    const resized = Either.getOrThrow(upsertDynamicGroup(varsOnly, json, "shop", "api", { size: 0 }))
    expect(resized["shop"]?.["api"]?.size).toBe(0)
    // The static group shop/web: size and vars may be overridden, not its template or pool.
    expect(Either.isLeft(upsertDynamicGroup({}, json, "shop", "web", { template: "api" }))).toBe(true)
    expect(Either.isLeft(upsertDynamicGroup({}, json, "shop", "web", { subnetPool: "edge" }))).toBe(true)
    expect(Either.isLeft(upsertDynamicGroup({}, json, "shop", "new", { size: 1 }))).toBe(true)
    const web = Either.getOrThrow(upsertDynamicGroup({}, json, "shop", "web", { size: 5 }))
    const merged = mergeDynamicGroups(json, web) as { groups: Record<string, Record<string, Record<string, unknown>>> }
    expect(merged.groups["shop"]?.["web"]).toEqual({ template: "web", size: 5 })
    // Deleting the dynamic entry of a static group leaves the static definition.
    const removed = deleteDynamicGroup(web, "shop", "web")
    expect(removed).toEqual({ groups: {}, existed: true })
    expect(deleteDynamicGroup({}, "shop", "web").existed).toBe(false)
  })
})

describe("groups.jsonc writes (If-Match)", () => {
  it.live("concurrent updates never lose one: each lost race re-reads and re-applies", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      yield* base.put(CONFIG_KEY, new TextEncoder().encode(adminConfigText(1)))
      const { store, conflicts } = interleavingStore(base)
      const writers = 12
      const results = yield* Effect.all(
        Array.from({ length: writers }, (_, i) =>
          updateDynamicGroups((groups, json) =>
            Either.map(
              Either.mapLeft(upsertDynamicGroup(groups, json, "shop", "web", { vars: { [`w${i}`]: String(i) } }), (p) => [p]),
              (next) => ({ groups: next, result: i })
            )).pipe(Effect.provideService(ObjectStore, store))),
        { concurrency: "unbounded" }
      ).pipe(Effect.orDie)
      expect(results).toHaveLength(writers)
      // The races were real, and none of them lost an update.
      expect(conflicts()).toBeGreaterThan(0)
      const doc = Either.getOrThrow(parseDynamicGroups(text((yield* base.get(GROUPS_KEY).pipe(Effect.orDie)).body)))
      expect(Object.keys(doc["shop"]?.["web"]?.vars ?? {}).sort()).toEqual(Array.from({ length: writers }, (_, i) => `w${i}`).sort())
      // The merged config the servers load has them all, and the static size is untouched.
      const loaded = yield* loadConfig({ _tag: "Store", key: CONFIG_KEY }).pipe(Effect.provideService(ObjectStore, base), Effect.orDie)
      expect(loaded.config.groups["shop"]?.["web"]?.size).toBe(1)
      expect(Object.keys(loaded.config.groups["shop"]?.["web"]?.vars ?? {})).toHaveLength(writers)
    }), { timeout: 10_000 })

  it.live("a writer that keeps losing gives up with GroupConflict, having written nothing", () =>
    Effect.gen(function* () {
      const base = makeMemoryStore()
      yield* base.put(CONFIG_KEY, new TextEncoder().encode(adminConfigText(1)))
      // Someone else writes groups.jsonc between every read and write of ours.
      let rival = 0
      const store: ObjectStoreShape = {
        ...base,
        put: (key, body, pre) =>
          key === GROUPS_KEY
            ? base.put(key, new TextEncoder().encode(`{ "shop": { "r${++rival}": { "template": "api" } } }`)).pipe(Effect.zipRight(base.put(key, body, pre)))
            : base.put(key, body, pre)
      }
      const exit = yield* updateDynamicGroups((groups, json) =>
        Either.map(Either.mapLeft(upsertDynamicGroup(groups, json, "shop", "api", { template: "api", size: 1 }), (p) => [p]), (next) => ({ groups: next, result: 0 }))
      ).pipe(Effect.provideService(ObjectStore, store), Effect.flip)
      expect(exit).toBeInstanceOf(GroupWriteConflict)
      const doc = Either.getOrThrow(parseDynamicGroups(text((yield* base.get(GROUPS_KEY).pipe(Effect.orDie)).body)))
      expect(doc["shop"]?.["api"]).toBeUndefined()
    }))

  it.effect("an invalid dynamic document is never read as \"no dynamic groups\": a reload keeps the last good config, naming the object", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const source = { _tag: "Store", key: CONFIG_KEY } as const
      const put = (key: string, body: string) => store.put(key, new TextEncoder().encode(body)).pipe(Effect.orDie)
      yield* put(CONFIG_KEY, adminConfigText(1))
      yield* put(GROUPS_KEY, `{ "shop": { "api": { "template": "api", "size": 2 } } }`)
      const ref = yield* SubscriptionRef.make(yield* loadConfig(source).pipe(Effect.provideService(ObjectStore, store), Effect.orDie))
      const held = yield* makeConfigHeld("pve-a")
      const reload = reloadConfig(source, ref, "test", held).pipe(Effect.provideService(ObjectStore, store), Effect.either)
      const sizes = Effect.map(SubscriptionRef.get(ref), (c) => Object.values(c.config.groups).flatMap((g) => Object.values(g)).map((g) => `${g.tenant}/${g.name}=${g.size}`).sort())
      expect(yield* sizes).toEqual(["shop/api=2", "shop/web=1"])

      // An entry that no longer validates: the whole last good config stays, and the entry is named.
      yield* put(GROUPS_KEY, `{ "shop": { "api": { "template": "missing", "size": 2 } } }`)
      const invalid = yield* reload
      expect(Either.isLeft(invalid) && invalid.left._tag).toBe("ConfigUnavailable")
      expect(yield* sizes).toEqual(["shop/api=2", "shop/web=1"])
      expect(yield* Ref.get(held.objects)).toEqual([{
        object: GROUPS_KEY,
        problem: `groups.shop.api.template: unknown template "missing" (templates: web, api) (dynamic group shop/api of groups.jsonc)`
      }])

      // Garbage: the same.
      yield* put(GROUPS_KEY, "{ not json")
      expect(Either.isLeft(yield* reload)).toBe(true)
      expect(yield* sizes).toEqual(["shop/api=2", "shop/web=1"])
      expect((yield* Ref.get(held.objects)).map((h) => h.object)).toEqual([GROUPS_KEY])
      expect((yield* Ref.get(held.objects))[0]?.problem).toMatch(/^line 1, column 3: /)
      // A replica starting now has no last good config: it waits, as for an invalid config.jsonc.
      const fresh = yield* loadConfig(source).pipe(Effect.provideService(ObjectStore, store), Effect.flip)
      expect(fresh._tag === "ConfigUnavailable" && fresh.rejected.map((r) => r.object)).toEqual([GROUPS_KEY])

      // Fixed by hand: a reload takes it and nothing is held any more.
      yield* put(GROUPS_KEY, `{ "shop": { "api": { "template": "api", "size": 3 } } }`)
      expect(Either.isRight(yield* reload)).toBe(true)
      expect(yield* sizes).toEqual(["shop/api=3", "shop/web=1"])
      expect(yield* Ref.get(held.objects)).toEqual([])

      // config.jsonc is held the same way; both at once are both named.
      yield* put(CONFIG_KEY, adminConfigText(1).replace(`"interval": "1s"`, `"interval": "1ms"`))
      yield* put(GROUPS_KEY, "[]")
      expect(Either.isLeft(yield* reload)).toBe(true)
      expect(yield* sizes).toEqual(["shop/api=3", "shop/web=1"])
      expect(yield* Ref.get(held.objects)).toEqual([
        { object: CONFIG_KEY, problem: `shard.garbage_collection.interval: must be at least 1s (got "1ms"); a shorter interval floods PVE or the bucket with calls` },
        { object: GROUPS_KEY, problem: "must be null or a map of tenant → group key → group (got [])" }
      ])
    }))
})

describe("UpsertGroup over the wire", () => {
  it.scopedLive("prototype names: a group called constructor with vars constructor and toString is kept; a var named __proto__ is refused by name", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const rpc = yield* world.client()
      const created = yield* rpc.UpsertGroup({ tenant: "shop", group: "constructor", template: "api", size: 0, vars: { constructor: "c", toString: "t" } })
      expect(created.group).toMatchObject({ tenant: "shop", group: "constructor", template: "api", source: "dynamic", vars: { constructor: "c", toString: "t" } })
      const listed = (yield* rpc.ListGroups()).find((g) => g.group === "constructor")
      expect(listed?.vars).toEqual({ constructor: "c", toString: "t" })
      // JSON.parse makes `__proto__` an own key, as the wire does: never silently dropped.
      const wire: object = JSON.parse(`{ "__proto__": "x", "tier": "gold" }`)
      const refused = yield* rpc.UpsertGroup({ tenant: "shop", group: "constructor", vars: wire }).pipe(Effect.flip)
      expect(refused).toMatchObject({ _tag: "InvalidPayload", field: "vars", reason: `"__proto__" cannot be a variable name` })
      const cli = yield* Effect.promise(() =>
        runCommand(adminCommand, "nstance-admin", ["group", "set", "shop/constructor", "--vars", "__proto__=x", "--server", world.leader.address], {
          env: world.adminEnv
        }))
      expect(cli.status).toBe(1)
      expect(cli.stderr).toContain(`"__proto__" cannot be a variable name`)
      // Nothing of either refused write reached groups.jsonc.
      const doc = Either.getOrThrow(parseDynamicGroups(text((yield* world.store.get(GROUPS_KEY).pipe(Effect.orDie)).body)))
      expect(doc["shop"]?.["constructor"]?.vars).toEqual({ constructor: "c", toString: "t" })
    }), { timeout: 10_000 })


  it.scopedLive("concurrent UpsertGroups through the endpoint lose nothing; the reconcile follows without a restart", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const rpc = yield* world.client()
      const created = yield* rpc.UpsertGroup({ tenant: "shop", group: "api", template: "api", size: 0 })
      expect(created.group).toMatchObject({ tenant: "shop", group: "api", template: "api", kind: "api", size: 0, source: "dynamic" })
      yield* Effect.all(Array.from({ length: 8 }, (_, i) => rpc.UpsertGroup({ tenant: "shop", group: "api", vars: { [`k${i}`]: `v${i}` } })), { concurrency: "unbounded" })
      const groups = yield* rpc.ListGroups()
      const api = groups.find((g) => g.group === "api")
      expect(Object.keys(api?.vars ?? {}).sort()).toEqual(["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"])
      // No size in any of them: still 0.
      expect(api?.size).toBe(0)
      // Now a size: the leader's reconcile creates the VM, no restart, no config push.
      const scaled = yield* rpc.UpsertGroup({ tenant: "shop", group: "api", size: 1 })
      expect(scaled.group.size).toBe(1)
      yield* world.waitUntil("the dynamic group's VM runs", Effect.map(rpc.ListInstances({ tenant: "shop", group: "api" }), (list) => list.length === 1 && list[0]?.phase === "running"))
      const [vm] = [...world.sim.model.vms.values()].filter((v) => v.config.get("template") !== "1")
      expect(vm?.status).toBe("running")
      // Deleting the dynamic group: its VM goes (the group is no longer desired).
      expect(yield* rpc.DeleteGroup({ tenant: "shop", group: "api" })).toEqual({ deleted: true, staticRemains: false })
      yield* world.waitUntil("the VM of the deleted group is gone", Effect.map(rpc.ListInstances({}), (list) => list.length === 0), "10 seconds")
      expect(yield* rpc.DeleteGroup({ tenant: "shop", group: "api" })).toEqual({ deleted: false, staticRemains: false })
    }), { timeout: 20_000 })
})
