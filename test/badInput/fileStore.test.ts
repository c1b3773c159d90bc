/**
 * Issue 16, class 6 (and the bucket that is a file): the file store never follows a symbolic link to a
 * directory inside its bucket — a push to `shard/pve-x/` where `shard/pve-x` links elsewhere is refused,
 * and nothing lands outside the bucket — and a bucket path that is a regular file is named as such.
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { admin, filesUnder, scratch } from "./support.js"

const dir = scratch("filestore")
const EXAMPLE = "examples/single-cluster.jsonc"

describe("symbolic links to directories inside the bucket are not followed", () => {
  const bucket = join(dir, "bucket")
  const outside = join(dir, "outside")
  mkdirSync(join(bucket, "shard"), { recursive: true })
  mkdirSync(outside)
  symlinkSync(outside, join(bucket, "shard", "pve-a"))
  writeFileSync(join(outside, "config.jsonc"), "{}")
  const store = makeFileStore({ directory: bucket })
  const refusal = `invalid object key "shard/pve-a/config.jsonc": shard/pve-a/ in the bucket is a symbolic link; the file store does not follow links out of its directory`

  it("config push through the link: one line, exit 1, nothing written outside", async () => {
    const result = await admin(["config", "push", EXAMPLE, "--storage", "file", "--bucket", bucket, "--shard", "pve-a"])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`✗ ${refusal}\n`)
    expect(filesUnder(outside)).toEqual(["config.jsonc"])
  })

  it("config pull through the link: refused, the outside file is not read", async () => {
    const result = await admin(["config", "pull", "--storage", "file", "--bucket", bucket, "--shard", "pve-a"])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`✗ ${refusal}\n`)
  })

  // Each row: operation, the key it touches.
  const operations: ReadonlyArray<readonly [string, (key: string) => Effect.Effect<unknown, { readonly _tag: string }>]> = [
    ["get", (key) => store.get(key)],
    ["head", (key) => store.head(key)],
    ["put", (key) => store.put(key, new TextEncoder().encode("x"))],
    ["delete", (key) => store.delete(key)]
  ]
  it.each(operations)("%s below the link fails with InvalidKey", async (_name, operation) => {
    for (const key of ["shard/pve-a/config.jsonc", "shard/pve-a/deeper/leader.json"]) {
      const error = await Effect.runPromise(Effect.flip(operation(key)))
      expect(error._tag).toBe("InvalidKey")
    }
    expect(filesUnder(outside)).toEqual(["config.jsonc"])
  })

  it("list does not walk into the link", async () => {
    const keys = await Effect.runPromise(Stream.runCollect(store.list("")).pipe(Effect.map((chunk) => [...chunk].map((meta) => meta.key))))
    expect(keys).toEqual([])
  })

  it("a bucket that is itself a link is the operator's choice and works", async () => {
    const linked = join(dir, "linked-bucket")
    symlinkSync(outside, linked)
    const viaLink = makeFileStore({ directory: linked })
    const object = await Effect.runPromise(viaLink.get("config.jsonc"))
    expect(new TextDecoder().decode(object.body)).toBe("{}")
  })
})

describe("a bucket path that is a regular file", () => {
  it("is named as the bucket, not blamed on an object key", async () => {
    const file = join(dir, "not-a-directory")
    writeFileSync(file, "x")
    const result = await admin(["config", "push", EXAMPLE, "--storage", "file", "--bucket", file, "--shard", "pve-a"])
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(`✗ object store refused open ${file}: not a directory (--storage file needs a directory as --bucket)\n`)
    const put = await Effect.runPromise(Effect.flip(makeFileStore({ directory: file }).put("a/b", new Uint8Array([1]))))
    expect(put.message).toBe(`object store refused put a/b: the bucket ${file} is not a directory (--storage file needs a directory as --bucket)`)
  })
})
