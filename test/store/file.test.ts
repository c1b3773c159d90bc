import { mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Schedule, Stream } from "effect"
import { build } from "esbuild"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { runProcess } from "../support/spawn.js"
import { storeContract } from "./contract.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-file-store-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const store = makeFileStore({ directory: join(dir, "bucket") })
storeContract("file", () => store)

const enc = new TextEncoder()
const dec = new TextDecoder()

describe("file store specifics", () => {
  it.effect("objects are written 0600 and directories 0700: the bucket holds sealed keys and the event log", () =>
    Effect.gen(function* () {
      const root = join(dir, "modes")
      const s = makeFileStore({ directory: root })
      yield* s.put("pki/acme/ca.key", new TextEncoder().encode("sealed")).pipe(Effect.orDie)
      expect(statSync(join(root, "pki", "acme", "ca.key")).mode & 0o777).toBe(0o600)
      for (const directory of [root, join(root, "pki"), join(root, "pki", "acme")]) expect(statSync(directory).mode & 0o777).toBe(0o700)
    }))

  it.live("objects are plain files under the directory; temp and lock files never show up in list", () =>
    Effect.gen(function* () {
      const root = join(dir, "plain")
      const s = makeFileStore({ directory: root })
      yield* s.put("shard/a/config.jsonc", enc.encode("{}"))
      yield* s.put("shard/a/lease", enc.encode("x"))
      expect(readdirSync(join(root, "shard", "a")).sort()).toEqual(["config.jsonc", "lease"])
      const keys = Chunk.toReadonlyArray(yield* Stream.runCollect(s.list(""))).map((m) => m.key)
      expect(keys).toEqual(["shard/a/config.jsonc", "shard/a/lease"])
      expect(yield* Effect.flip(s.put(".nstance-store/locks/x", enc.encode("x")))).toMatchObject({ _tag: "InvalidKey" })
      expect(yield* Effect.flip(s.put("dir/", enc.encode("x")))).toMatchObject({ _tag: "InvalidKey" })
    }))

  it.live("list order is key order even where a directory name sorts differently from its keys", () =>
    Effect.gen(function* () {
      const s = makeFileStore({ directory: join(dir, "order") })
      for (const key of ["a/b", "a-c", "a.d", "a0", "ab/c", "a/a/z"]) yield* s.put(key, enc.encode(key))
      const keys = Chunk.toReadonlyArray(yield* Stream.runCollect(s.list(""))).map((m) => m.key)
      expect(keys).toEqual(["a-c", "a.d", "a/a/z", "a/b", "a0", "ab/c"])
      const after = Chunk.toReadonlyArray(yield* Stream.runCollect(s.list("a", "a/a/z"))).map((m) => m.key)
      expect(after).toEqual(["a/b", "a0", "ab/c"])
    }))

  it.live("writing a key that collides with another object's path is InvalidKey; reading it is NotFound", () =>
    Effect.gen(function* () {
      const s = makeFileStore({ directory: join(dir, "collide") })
      yield* s.put("a", enc.encode("file"))
      expect(yield* Effect.flip(s.put("a/b", enc.encode("x")))).toMatchObject({ _tag: "InvalidKey", key: "a/b" })
      expect(yield* Effect.flip(s.get("a/b"))).toMatchObject({ _tag: "NotFound" })
      yield* s.put("d/e", enc.encode("x"))
      expect(yield* Effect.flip(s.get("d"))).toMatchObject({ _tag: "NotFound" })
      expect(yield* Effect.flip(s.put("d", enc.encode("x")))).toMatchObject({ _tag: "InvalidKey", key: "d" })
    }))

  it.live("a file replaced or rewritten behind the store's back gets its new etag: the remembered etags follow the file, not the path", () =>
    Effect.gen(function* () {
      const root = join(dir, "etags")
      const s = makeFileStore({ directory: root })
      const first = yield* s.put("shard/a/leader.json", enc.encode("aaaa"))
      expect((yield* s.head("shard/a/leader.json")).etag).toBe(first.etag)
      // Another file renamed over it (same size): a new inode.
      const path = join(root, "shard", "a", "leader.json")
      writeFileSync(`${path}.new`, "bbbb")
      renameSync(`${path}.new`, path)
      const replaced = yield* s.head("shard/a/leader.json")
      expect(replaced.etag).not.toBe(first.etag)
      expect(yield* Effect.flip(s.put("shard/a/leader.json", enc.encode("cccc"), { _tag: "IfMatch", etag: first.etag }))).toMatchObject({ _tag: "PreconditionFailed" })
      // Our own write, then the same file rewritten in place (same size, same inode).
      const ours = yield* s.put("shard/a/leader.json", enc.encode("dddd"), { _tag: "IfMatch", etag: replaced.etag })
      writeFileSync(path, "eeee")
      expect((yield* s.head("shard/a/leader.json")).etag).toBe((yield* s.get("shard/a/leader.json")).etag)
      expect(yield* Effect.flip(s.put("shard/a/leader.json", enc.encode("ffff"), { _tag: "IfMatch", etag: ours.etag }))).toMatchObject({ _tag: "PreconditionFailed" })
      // Renewals in a row compare against what the store itself wrote; no temp or lock file is left behind.
      let etag = (yield* s.head("shard/a/leader.json")).etag
      for (let i = 0; i < 5; i++) etag = (yield* s.put("shard/a/leader.json", enc.encode(`renewal ${i}`), { _tag: "IfMatch", etag })).etag
      expect(dec.decode((yield* s.get("shard/a/leader.json")).body)).toBe("renewal 4")
      expect(readdirSync(join(root, ".nstance-store", "tmp"))).toEqual([])
      expect(readdirSync(join(root, ".nstance-store", "locks"))).toEqual([])
    }))

  it.live("a lock left by a dead process is broken and the write proceeds", () =>
    Effect.gen(function* () {
      const root = join(dir, "stale")
      const s = makeFileStore({ directory: root })
      const v1 = yield* s.put("k", enc.encode("v1"))
      // pid 2^22+1 is above Linux's pid_max default range, so no process has it.
      const { createHash } = yield* Effect.promise(() => import("node:crypto"))
      writeFileSync(join(root, ".nstance-store", "locks", `${createHash("sha256").update("k").digest("hex")}.lock`), "4194305 dead")
      yield* s.put("k", enc.encode("v2"), { _tag: "IfMatch", etag: v1.etag })
      expect(dec.decode((yield* s.get("k")).body)).toBe("v2")
    }))
})

/**
 * fileRacer.ts (and the store code it imports from src/) bundled into one plain ES module, so each racer
 * is a bare `node racer.mjs`: ~0.1 s of CPU to start instead of ~1.5 s for `node --import tsx`, which with
 * six racers on two cores is what made this test slow. The code under test is the same source.
 */
const racerBundle = join(dir, "fileRacer.mjs")
beforeAll(async () => {
  await build({
    entryPoints: [join(import.meta.dirname, "fileRacer.ts")],
    outfile: racerBundle,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    mainFields: ["module", "main"],
    logLevel: "warning"
  })
})

/** One racer as a real OS process, started asynchronously; resolves to the line it printed. */
const racer = async (args: ReadonlyArray<string>) => {
  const { status, signal, stdout, stderr } = await runProcess(process.execPath, [racerBundle, ...args], { timeoutMs: 60_000 })
  if (status !== 0) throw new Error(`racer exited ${status ?? signal}: ${stderr}`)
  return stdout.trim()
}

describe("file store across OS processes", () => {
  it.live.each([["IfAbsent", "absent"], ["IfMatch", "match"]] as const)("6 node processes racing with %s: exactly one wins", ([, mode]) =>
    Effect.gen(function* () {
      const raceDir = mkdtempSync(join(dir, `race-${mode}-`))
      const s = makeFileStore({ directory: join(raceDir, "store") })
      const base = mode === "match" ? (yield* s.put("lease", enc.encode("base"))).etag : ""
      const children = Promise.all(Array.from({ length: 6 }, (_, i) => racer([raceDir, "lease", mode, `process-${i}`, base])))
      children.catch(() => {}) // a racer that dies early fails the test below, not as an unhandled rejection
      // Release them together only once every child has loaded (which takes seconds on a busy machine).
      const allReady = Effect.sync(() => readdirSync(raceDir).filter((name) => name.startsWith("ready-")).length >= 6)
      yield* allReady.pipe(Effect.repeat({ until: (ready) => ready, schedule: Schedule.spaced("20 millis") }), Effect.timeout("20 seconds"))
      writeFileSync(join(raceDir, "go"), "")
      const outcomes = yield* Effect.promise(() => children)
      const winners = outcomes.flatMap((line, i) => (line.startsWith("won ") ? [{ i, etag: line.slice(4) }] : []))
      expect(outcomes.filter((line) => line !== "lost" && !line.startsWith("won "))).toEqual([])
      expect(winners).toHaveLength(1)
      const got = yield* s.get("lease")
      expect(dec.decode(got.body)).toBe(`process-${winners[0]!.i}`)
      expect(got.etag).toBe(winners[0]!.etag)
    }))
})
