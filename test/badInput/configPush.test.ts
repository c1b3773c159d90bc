/**
 * Issue 16, classes 3 and 4: `config push` runs `--validate`'s validation (an explicit `--force` skips
 * only that), always the server's identifier rules for `--shard`/`--prefix`, and never pushes a config
 * whose `shard.id` is not `--shard`; and a server refuses to start on a config of another shard.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { loadConfig, ShardMismatch } from "../../src/shard/shardConfig.js"
import { admin, filesUnder, lines, scratch, server, TOKEN } from "./support.js"

const dir = scratch("push")
const bucket = join(dir, "bucket")
const EXAMPLE = "examples/single-cluster.jsonc" // shard.id "pve-a"
const MANY = "test/fixtures/bad-config/many-problems.jsonc"
const manyExpected = lines(readFileSync("test/fixtures/bad-config/many-problems.expected", "utf8"))
const notAConfig = join(dir, "not-a-config.jsonc")
writeFileSync(notAConfig, '{ "groups": {} }\n')

const push = (file: string, shard: string, ...extra: ReadonlyArray<string>) =>
  admin(["config", "push", file, "--storage", "file", "--bucket", bucket, "--shard", shard, ...extra])

const IDENTIFIER_RULE = "must contain only lowercase alphanumeric characters and hyphens, with no leading/trailing/consecutive hyphens"

describe("config push refuses what no server would load (exit 1, nothing uploaded)", () => {
  const rows: ReadonlyArray<readonly [string, string, string, ReadonlyArray<string>, ReadonlyArray<string>]> = [
    ["a config with validation errors", MANY, "pve-a", [], [...manyExpected.map((line) => `✗ ${line}`), `✗ ${MANY}: ${manyExpected.length} problems; nothing uploaded (see nstance-server --validate)`]],
    ["text that is not a shard config", notAConfig, "pve-a", [], [
      "✗ cluster: is required",
      "✗ shard: is required",
      "✗ templates: is required",
      `✗ ${notAConfig}: 3 problems; nothing uploaded (see nstance-server --validate)`
    ]],
    ["a config of another shard", EXAMPLE, "pve-c", [], [
      `✗ shard.id: "pve-a" does not match --shard "pve-c"; a server of shard pve-c would refuse it`,
      `✗ ${EXAMPLE}: 1 problem; nothing uploaded (see nstance-server --validate)`
    ]],
    ["a config of another shard, even with --force", EXAMPLE, "pve-c", ["--force"], [
      `✗ shard.id: "pve-a" does not match --shard "pve-c"; a server of shard pve-c would refuse it`,
      `✗ ${EXAMPLE}: 1 problem; nothing uploaded`
    ]],
    ["a --shard no server accepts", EXAMPLE, "PVE A", [], [`✗ --shard "PVE A" ${IDENTIFIER_RULE}`]],
    ["a --shard no server accepts, even with --force", notAConfig, "PVE A", ["--force"], [`✗ --shard "PVE A" ${IDENTIFIER_RULE}`]],
    ["a --prefix that escapes", EXAMPLE, "pve-a", ["--prefix", "../x/"], [`✗ --prefix must not contain '.' or '..' segments (got "../x/")`]],
    ["a --prefix with an empty segment", EXAMPLE, "pve-a", ["--prefix", "a//b/"], [`✗ --prefix must not contain empty segments ('//') (got "a//b/")`]]
  ]
  it.each(rows)("%s", async (_name, file, shard, extra, expected) => {
    const result = await push(file, shard, ...extra)
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(lines(result.stderr)).toEqual(expected)
    expect(filesUnder(bucket)).toEqual([])
  })
})

describe("config push uploads a valid config, and --force an invalid one", () => {
  it("a valid config of the shard goes up", async () => {
    const result = await push(EXAMPLE, "pve-a")
    expect(result.stderr).toBe("")
    expect(result.status).toBe(0)
    expect(readFileSync(join(bucket, "shard", "pve-a", "config.jsonc"), "utf8")).toBe(readFileSync(EXAMPLE, "utf8"))
  })

  it("--force skips the validation (but not the syntax, bounds or identifier rules)", async () => {
    const result = await push(notAConfig, "forced", "--force")
    expect(result.stderr).toBe("")
    expect(result.status).toBe(0)
    expect(readFileSync(join(bucket, "shard", "forced", "config.jsonc"), "utf8")).toBe('{ "groups": {} }\n')
  })
})

describe("config push and the dynamic groups beside it (issue 28)", () => {
  it("a groups.jsonc that does not parse does not stop a valid push, and is said", async () => {
    mkdirSync(join(bucket, "shard", "pve-g"), { recursive: true })
    writeFileSync(join(bucket, "shard", "pve-g", "groups.jsonc"), "{ not json")
    const config = join(dir, "pve-g.jsonc")
    writeFileSync(config, readFileSync(EXAMPLE, "utf8").replace(`"id": "pve-a"`, `"id": "pve-g"`))
    const result = await push(config, "pve-g")
    expect(result.status).toBe(0)
    expect(lines(result.stderr)).toEqual([
      `⚠ shard/pve-g/groups.jsonc does not parse (line 1, column 3: invalid symbol); the servers keep their last good config in force until it is fixed`
    ])
    expect(readFileSync(join(bucket, "shard", "pve-g", "config.jsonc"), "utf8")).toBe(readFileSync(config, "utf8"))
  })

  it("a push that keeps every dynamic group valid goes up without a word about them", async () => {
    mkdirSync(join(bucket, "shard", "pve-h"), { recursive: true })
    writeFileSync(join(bucket, "shard", "pve-h", "groups.jsonc"), `{ "storefront": { "web": { "size": 5 }, "extra": { "template": "web", "size": 1 } } }`)
    const config = join(dir, "pve-h.jsonc")
    writeFileSync(config, readFileSync(EXAMPLE, "utf8").replace(`"id": "pve-a"`, `"id": "pve-h"`))
    const result = await push(config, "pve-h")
    expect(result.stderr).toBe("")
    expect(result.status).toBe(0)
  })
})

describe("a server refuses to start on a config of another shard", () => {
  it("loaded from the bucket: one line, exit 1, never joins the election", async () => {
    const serverBucket = join(dir, "server-bucket")
    mkdirSync(join(serverBucket, "shard", "pve-c"), { recursive: true })
    copyFileSync(EXAMPLE, join(serverBucket, "shard", "pve-c", "config.jsonc"))
    const before = filesUnder(serverBucket)
    const result = await server(["--storage", "file", "--bucket", serverBucket, "--shard", "pve-c", "--id", "r1"], TOKEN, { interruptAfterMs: 20_000 })
    expect(result.status).toBe(1)
    expect(result.stderr).toBe(
      `✗ --shard "pve-c" does not match shard.id "pve-a" in shard/pve-c/config.jsonc; refusing to act for another shard (push the right config, or fix --shard)\n`
    )
    // No lease was written: the replica never took part in pve-a's (or pve-c's) election.
    expect(filesUnder(serverBucket).filter((file) => !file.startsWith(".nstance-store"))).toEqual(before)
  })

  it("loaded from --config FILE: the start check names the file", async () => {
    const result = await server(["--storage", "file", "--bucket", join(dir, "unused"), "--shard", "pve-c", "--id", "r1", "--config", EXAMPLE], TOKEN)
    expect(result.status).toBe(1)
    expect(result.stderr).toBe(`✗ --shard "pve-c" does not match shard.id "pve-a" in ${EXAMPLE}\n`)
    expect(filesUnder(join(dir, "unused"))).toEqual([])
  })

  it.effect("loadConfig fails with ShardMismatch, not a retryable ConfigUnavailable", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* store.put(CONFIG_KEY, new TextEncoder().encode(readFileSync(EXAMPLE, "utf8")))
      const loaded = yield* loadConfig({ _tag: "Store", key: CONFIG_KEY, shard: "pve-c" }).pipe(Effect.provideService(ObjectStore, store), Effect.either)
      expect(Either.isLeft(loaded) && loaded.left).toBeInstanceOf(ShardMismatch)
      const matching = yield* loadConfig({ _tag: "Store", key: CONFIG_KEY, shard: "pve-a" }).pipe(Effect.provideService(ObjectStore, store))
      expect(matching.config.shard.id).toBe("pve-a")
    }))
})
