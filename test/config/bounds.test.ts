/**
 * Issue 28: the validator bounds what it accepts, honours or warns about every key it reads, and treats
 * names such as `constructor` as ordinary names. Each case is one a hostile-operator sweep found accepted:
 * 10,000 groups, a GC interval of `1ms`, infrequent < frequent, one port for two endpoints, `cpu:1000000`,
 * `DiskSize: "99999999999T"`, a `StoragePool` with spaces, `request_timeout` read by nothing,
 * `cluster.leader_election` ignored, and prototype names refused as "template undefined" or dropped.
 */
import { describe, expect, it } from "@effect/vitest"
import { CONFIG_KEY, GROUPS_KEY } from "../../src/domain/bucketKeys.js"
import { Duration, Effect, Either } from "effect"
import { GroupChangeRefused, updateDynamicGroups } from "../../src/admin/groupsStore.js"
import { formatProblem, type ParsedShardConfig, parseShardConfig, vmSpecFor } from "../../src/domain/config/index.js"
import { parseDynamicGroups, upsertDynamicGroup } from "../../src/domain/dynamicGroups.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { loadConfig } from "../../src/shard/shardConfig.js"

type Json = Record<string, unknown>

const base = () => ({
  cluster: { id: "acme" } as Json,
  shard: {
    id: "pve-a",
    infra: { provider: "proxmox", region: "dc1", zone: "a" },
    bind: { health_addr: "0.0.0.0:8990", election_addr: "0.0.0.0:8991", registration_addr: "0.0.0.0:8992", operator_addr: "0.0.0.0:8993", agent_addr: "0.0.0.0:8994" } as Json,
    advertise: { health_addr: ":8990", election_addr: ":8991", registration_addr: "10.0.0.1:8992", operator_addr: "10.0.0.1:8993", agent_addr: "10.0.0.1:8994" },
    subnet_pools: { default: ["vmbr0"] }
  } as Json,
  defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian-13-template", Cores: 1, Memory: 512 } as Json } as Json,
  templates: { web: { kind: "web", subnet_pool: "default" } as Json } as Json,
  groups: { shop: { web: { template: "web", size: 2 } as Json } as Json } as Json
})

const ok = (config: unknown): ParsedShardConfig => {
  const parsed = parseShardConfig(typeof config === "string" ? config : JSON.stringify(config))
  if (Either.isLeft(parsed)) throw new Error(parsed.left.problems.map(formatProblem).join("\n"))
  return parsed.right
}
const problems = (config: unknown): ReadonlyArray<string> => {
  const parsed = parseShardConfig(typeof config === "string" ? config : JSON.stringify(config))
  return Either.isLeft(parsed) ? parsed.left.problems.map(formatProblem) : []
}
const warnings = (config: unknown) => ok(config).warnings.map(formatProblem)

describe("totals per shard (shard.limits)", () => {
  it("more groups than shard.limits.max_groups (default 1000) is refused naming the limit", () => {
    const c = base()
    c.groups = { shop: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`g${i}`, { template: "web", size: 0 }])) }
    expect(problems(c)).toEqual(["groups: 1001 groups (config.jsonc and groups.jsonc together) exceed shard.limits.max_groups (1000)"])
    c.shard["limits"] = { max_groups: 2000 }
    expect(ok(c).config.shard.limits).toEqual({ maxGroups: 2000, maxInstances: 5000 })
  })

  it("more desired VMs than shard.limits.max_instances (default 5000) is refused naming the limit", () => {
    const c = base()
    c.groups = { shop: { a: { template: "web", size: 3000 }, b: { template: "web", size: 2001 } } }
    expect(problems(c)).toEqual(["groups: 5001 desired VMs (the sum of every group's size) exceed shard.limits.max_instances (5000)"])
    c.shard["limits"] = { max_instances: 4 }
    c.groups = { shop: { a: { template: "web", size: 5 } } }
    expect(problems(c)).toEqual(["groups: 5 desired VMs (the sum of every group's size) exceed shard.limits.max_instances (4)"])
  })

  it("a limit that is not a whole number from 1 to 100000 is refused naming it", () => {
    const c = base()
    c.shard["limits"] = { max_groups: 0, max_instances: 1e9 }
    expect(problems(c)).toEqual([
      "shard.limits.max_groups: must be an integer from 1 to 100000 (got 0)",
      "shard.limits.max_instances: must be an integer from 1 to 100000 (got 1000000000)"
    ])
    c.shard["limits"] = { max_group: 5 }
    expect(problems(c)).toEqual(["shard.limits.max_group: unknown field; did you mean max_groups?"])
  })

  it.effect("a group set (groups.jsonc write) that would pass a limit is refused, nothing written", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const c = base()
      c.shard["limits"] = { max_groups: 2 }
      yield* store.put(CONFIG_KEY, new TextEncoder().encode(JSON.stringify(c)))
      const set = (key: string) =>
        updateDynamicGroups((groups, json) =>
          Either.map(Either.mapLeft(upsertDynamicGroup(groups, json, "shop", key, { template: "web", size: 1 }), (p) => [p]), (next) => ({ groups: next, result: key }))
        ).pipe(Effect.provideService(ObjectStore, store))
      expect((yield* set("api").pipe(Effect.orDie)).result).toBe("api")
      const refused = yield* set("db").pipe(Effect.flip)
      expect(refused).toBeInstanceOf(GroupChangeRefused)
      expect(refused.message).toBe("groups: 3 groups (config.jsonc and groups.jsonc together) exceed shard.limits.max_groups (2)")
      const doc = Either.getOrThrow(parseDynamicGroups(new TextDecoder().decode((yield* store.get(GROUPS_KEY).pipe(Effect.orDie)).body)))
      expect(Object.keys(doc["shop"] ?? {})).toEqual(["api"])
    }))
})

describe("every loop interval has a floor", () => {
  it.each([
    ["shard.garbage_collection", { interval: "1ms", registration_timeout: "5m" }, "shard.garbage_collection.interval: must be at least 1s (got \"1ms\")"],
    ["shard.leader_election", { frequent_interval: "10ms", leader_timeout: "15s" }, "shard.leader_election.frequent_interval: must be at least 1s (got \"10ms\")"],
    ["shard.leader_election", { infrequent_interval: "500ms", frequent_interval: "1s", leader_timeout: "15s" }, "shard.leader_election.infrequent_interval: must be at least 1s (got \"500ms\")"],
    ["shard.health_check_interval", "100ms", "shard.health_check_interval: must be at least 1s (got \"100ms\")"],
    ["shard.request_timeout", "50ms", "shard.request_timeout: must be at least 1s (got \"50ms\")"]
  ])("%s below its floor is refused naming the field", (path, value, message) => {
    const c = base()
    c.shard[path.split(".")[1] ?? ""] = value
    expect(problems(c)).toEqual([`${message}; a shorter interval floods PVE or the bucket with calls`])
  })

  it("an infrequent interval shorter than the frequent one is refused", () => {
    const c = base()
    c.shard["leader_election"] = { frequent_interval: "10s", infrequent_interval: "5s", leader_timeout: "30s" }
    expect(problems(c)).toEqual(["shard.leader_election.infrequent_interval: must be at least frequent_interval (10s)"])
  })

  it("the floors themselves are accepted", () => {
    const c = base()
    c.shard["garbage_collection"] = { interval: "1s", registration_timeout: "2s" }
    c.shard["leader_election"] = { frequent_interval: "1s", infrequent_interval: "1s", leader_timeout: "2s" }
    c.shard["health_check_interval"] = "1s"
    c.shard["request_timeout"] = "1s"
    expect(Duration.toMillis(ok(c).config.shard.garbageCollection.interval)).toBe(1000)
  })
})

describe("cluster.leader_election", () => {
  it("is honoured where the original's examples put it", () => {
    const c = base()
    c.cluster["leader_election"] = { frequent_interval: "2s", infrequent_interval: "20s", leader_timeout: "10s" }
    const { config, warnings } = ok(c)
    expect(warnings).toEqual([])
    expect(Duration.toMillis(config.shard.leaderElection.frequentInterval)).toBe(2000)
    expect(Duration.toMillis(config.shard.leaderElection.infrequentInterval)).toBe(20_000)
    expect(Duration.toMillis(config.shard.leaderElection.leaderTimeout)).toBe(10_000)
  })

  it("is overridden field by field by shard.leader_election, and a different value is said", () => {
    const c = base()
    c.cluster["leader_election"] = { frequent_interval: "2s", leader_timeout: "10s" }
    c.shard["leader_election"] = { leader_timeout: "20s" }
    const { config, warnings } = ok(c)
    expect(Duration.toMillis(config.shard.leaderElection.frequentInterval)).toBe(2000)
    expect(Duration.toMillis(config.shard.leaderElection.leaderTimeout)).toBe(20_000)
    expect(warnings.map(formatProblem)).toEqual([
      `cluster.leader_election.leader_timeout: differs from shard.leader_election.leader_timeout ("10s" vs "20s"); this build runs one election per shard and uses the shard's`
    ])
  })

  it("a rule between fields is judged on the values in force, reported where each was written", () => {
    const c = base()
    c.cluster["leader_election"] = { frequent_interval: "20s" }
    c.shard["leader_election"] = { leader_timeout: "15s" }
    expect(problems(c)).toEqual(["shard.leader_election.leader_timeout: must be greater than frequent_interval, or the lease expires between renewals"])
  })
})

describe("accepted keys are used, or said to be ignored", () => {
  it("request_timeout is read (the PVE request timeout)", () => {
    const c = base()
    c.shard["request_timeout"] = "45s"
    expect(Duration.toMillis(ok(c).config.shard.requestTimeout)).toBe(45_000)
    expect(warnings(c)).toEqual([])
  })

  it("deleted_record_retention, leader_election.enabled: false and a template's arch get one warning each; vars none (templates use them)", () => {
    const c = base()
    c.shard["garbage_collection"] = { interval: "1m", registration_timeout: "5m", deleted_record_retention: "1h" }
    c.shard["leader_election"] = { enabled: false }
    c.templates = { web: { kind: "web", subnet_pool: "default", arch: "arm64", vars: { a: "1" } } }
    c.defaults["vars"] = { b: "2" }
    c.groups = { shop: { web: { template: "web", size: 1, vars: { c: "3" } } } }
    expect(warnings(c)).toEqual([
      "shard.garbage_collection.deleted_record_retention: not used by this build (a deleted instance leaves the shard's state once its VM is gone); ignored",
      "shard.leader_election.enabled: not used by this build: the shard election always runs (a single replica simply wins it); ignored",
      "templates.web.arch: not used by the Proxmox provider (the template VM decides the architecture); ignored"
    ])
  })

  it("user-data from an http(s) URL is accepted; any other URL is refused where it is written", () => {
    const c = base()
    c.templates = { web: { kind: "web", subnet_pool: "default", userdata: { source: "url", encoding: "gzip", content: "https://example.com/u?token=x" } } }
    expect(problems(c)).toEqual([])
    c.templates = { web: { kind: "web", subnet_pool: "default", userdata: { source: "url", content: "ftp://example.com/u" } } }
    expect(problems(c)).toEqual(["templates.web.userdata.content: must be an http:// or https:// URL (got ftp:)"])
  })
})

describe("settings that could only fail later are refused now, naming the field", () => {
  it.each([
    ["operator_addr on health_addr", { operator_addr: "0.0.0.0:8990" }, [`shard.bind.operator_addr: must differ from health_addr (both "0.0.0.0:8990")`]],
    ["a host on a wildcard's port", { health_addr: "127.0.0.1:8993" }, [`shard.bind.operator_addr: must differ from health_addr ("127.0.0.1:8993" and "0.0.0.0:8993" both bind port 8993)`]],
    ["registration and agent on one address", { agent_addr: "0.0.0.0:8992" }, [`shard.bind.agent_addr: must differ from registration_addr (both "0.0.0.0:8992")`]]
  ])("%s", (_name, bind, expected) => {
    const c = base()
    c.shard["bind"] = { ...(c.shard["bind"] as Json), ...bind }
    expect(problems(c)).toEqual(expected)
  })

  it("different hosts on one port, or one host on different ports, are fine", () => {
    const c = base()
    c.shard["bind"] = { health_addr: "10.0.0.1:8990", election_addr: "10.0.0.2:8990", registration_addr: ":8992", operator_addr: ":8993", agent_addr: ":8994" }
    expect(problems(c)).toEqual([])
  })

  it.each([
    [{ instance_type: "cpu:1000000" }, "groups.shop.web.instance_type: cpu must be at most 1024 (got 1000000)"],
    [{ instance_type: "cpu:2,memory:99999999" }, "groups.shop.web.instance_type: memory must be at most 16777216 MiB (16 TiB; got 99999999)"],
    [{ args: { DiskSize: "99999999999T" } }, "groups.shop.web.args.DiskSize: must be at most 1048576 GiB (1 PiB; got 99999999999T)"],
    [{ args: { Cores: 1000000 } }, "groups.shop.web.args.Cores: must be at most 1024 (got 1000000)"],
    [{ args: { StoragePool: "local lvm, ceph" } }, `groups.shop.web.args.StoragePool: must be a PVE storage ID such as "local-lvm" (letters, digits, '-', '_', '.')`]
  ])("%j", (group, message) => {
    const c = base()
    c.groups = { shop: { web: { template: "web", size: 1, ...group } } }
    expect(problems(c)).toEqual([message])
  })
})

describe("prototype names in config maps", () => {
  it("constructor, toString, hasOwnProperty and valueof are ordinary names of tenants, groups, templates and vars", () => {
    const c = base()
    c.templates = { constructor: { kind: "ctr", subnet_pool: "default" }, toString: { kind: "tos", subnet_pool: "default" } }
    c.groups = {
      constructor: { hasownproperty: { template: "constructor", size: 1, vars: { constructor: "x", toString: "y" } } },
      valueof: { tostring: { template: "toString", size: 2 } }
    }
    const { config } = ok(c)
    expect(Object.keys(config.groups).sort()).toEqual(["constructor", "valueof"])
    expect(config.groups["constructor"]?.["hasownproperty"]).toMatchObject({ template: "constructor", size: 1, vars: { constructor: "x", toString: "y" } })
    expect(Either.getOrThrow(vmSpecFor(config, "valueof", "tostring"))).toMatchObject({ cores: 1, memoryMiB: 512, bridge: "vmbr0" })
    // Lookups of names the config does not have find nothing inherited.
    expect(config.templates["hasOwnProperty"]).toBeUndefined()
    expect(config.groups["toString"]).toBeUndefined()
  })

  it("a group naming a template called toString that does not exist gets one clear problem (not \"template undefined\")", () => {
    const c = base()
    c.groups = { shop: { web: { template: "toString", size: 1 } } }
    expect(problems(c)).toEqual([`groups.shop.web.template: unknown template "toString" (templates: web)`])
  })

  it("__proto__ is refused wherever it is written, with its line and column", () => {
    const text = `{\n  "cluster": { "id": "acme" },\n  "groups": { "__proto__": { "web": { "template": "web" } } }\n}`
    expect(problems(text)).toEqual([`line 3, column 15: "__proto__" cannot be used as a name (JavaScript reserves it)`])
    expect(parseDynamicGroups(`{ "shop": { "web": { "template": "web", "vars": { "__proto__": "x" } } } }`)).toEqual(
      Either.left(`line 1, column 51: "__proto__" cannot be used as a name (JavaScript reserves it)`)
    )
  })

  it("a dynamic group called constructor is created, not refused as a static group with template undefined", () => {
    const json = JSON.parse(JSON.stringify(base()))
    const created = Either.getOrThrow(upsertDynamicGroup({}, json, "shop", "constructor", { template: "web", size: 1, vars: { toString: "v" } }))
    expect(created["shop"]?.["constructor"]).toEqual({ template: "web", size: 1, vars: { toString: "v" } })
    // Without a template it is a new group, and says so.
    expect(upsertDynamicGroup({}, json, "shop", "constructor", { size: 1 })).toEqual(Either.left("group shop/constructor does not exist yet: a new group needs a template"))
  })

  it.effect("a dynamic document with prototype names loads into the merged config", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* store.put(CONFIG_KEY, new TextEncoder().encode(JSON.stringify(base())))
      yield* store.put(GROUPS_KEY, new TextEncoder().encode(`{ "constructor": { "tostring": { "template": "web", "size": 1, "vars": { "hasOwnProperty": "1" } } } }`))
      const loaded = yield* loadConfig({ _tag: "Store", key: CONFIG_KEY }).pipe(Effect.provideService(ObjectStore, store), Effect.orDie)
      expect(loaded.config.groups["constructor"]?.["tostring"]).toMatchObject({ size: 1, vars: { hasOwnProperty: "1" } })
    }))
})
