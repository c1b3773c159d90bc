import { createDecipheriv, randomBytes } from "node:crypto"
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Redacted } from "effect"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { makeSecretStore, openValue, sealValue } from "../../src/layers/SecretStoreObject.js"
import { runCommand } from "../support/cli.js"
import { shardSection } from "../support/shardConfigJson.js"

const keyA = new Uint8Array(randomBytes(32))
const keyB = new Uint8Array(randomBytes(32))
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8")
const value = (s: string) => Redacted.make(new Uint8Array(Buffer.from(s)))

describe("sealed values (the original's format)", () => {
  it("are nonce ‖ ciphertext ‖ tag with no associated data, so a plain AES-256-GCM reader opens them", () => {
    const sealed = sealValue(keyA, Buffer.from("hunter2"))
    expect(sealed.length).toBe(12 + 7 + 16)
    const decipher = createDecipheriv("aes-256-gcm", keyA, sealed.subarray(0, 12))
    decipher.setAuthTag(sealed.subarray(sealed.length - 16))
    expect(Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]).toString()).toBe("hunter2")
    expect(openValue(keyB, sealed)).toBeUndefined()
    const altered = new Uint8Array(sealed)
    altered[13] = altered[13]! ^ 1
    expect(openValue(keyA, altered)).toBeUndefined()
  })
})

describe("the object-storage secrets store", () => {
  it.effect("keeps values sealed at rest under cluster/secret/<tenant>/<name>", () =>
    Effect.gen(function* () {
      const objects = makeMemoryStore()
      const store = makeSecretStore(objects, { prefix: "secret/", keys: [keyA] })
      yield* store.put("acme", "db-password", value("s3cr3t-value"))
      const stored = yield* objects.get("cluster/secret/acme/db-password")
      expect(Buffer.from(stored.body).includes(Buffer.from("s3cr3t-value"))).toBe(false)
      expect(text(openValue(keyA, stored.body)!)).toBe("s3cr3t-value")
      const read = yield* store.get("acme", "db-password")
      expect(text(Redacted.value(read.value))).toBe("s3cr3t-value")
      expect(String(read.value)).not.toContain("s3cr3t")
      expect(yield* store.list()).toEqual([{ tenant: "acme", name: "db-password", version: stored.etag }])
    }))

  it.effect("a secret read with another tenant is not found; a tenant or name that climbs is refused", () =>
    Effect.gen(function* () {
      const store = makeSecretStore(makeMemoryStore(), { prefix: "secret/", keys: [keyA] })
      yield* store.put("acme", "db", value("x"))
      const other = yield* Effect.exit(store.get("globex", "db"))
      expect(other).toEqual(Exit.fail(expect.objectContaining({ _tag: "SecretNotFound", tenant: "globex", name: "db" })))
      const climb = yield* Effect.flip(store.get("globex", "../acme/db"))
      expect(climb._tag).toBe("InvalidSecretName")
      const badTenant = yield* Effect.flip(store.get("acme/..", "db"))
      expect(badTenant.message).toContain("secret tenant")
      expect(yield* store.list("globex")).toEqual([])
    }))

  it.effect("rotation: write with the first key, read with any; a value under a retired key does not open", () =>
    Effect.gen(function* () {
      const objects = makeMemoryStore()
      yield* makeSecretStore(objects, { prefix: "secret/", keys: [keyA] }).put("acme", "db", value("old"))
      const rotated = makeSecretStore(objects, { prefix: "secret/", keys: [keyB, keyA] })
      const before = yield* rotated.get("acme", "db")
      expect(before.sealedWithOldKey).toBe(true)
      yield* rotated.put("acme", "db", before.value)
      const after = yield* rotated.get("acme", "db")
      expect(after.sealedWithOldKey).toBe(false)
      expect(after.version).not.toBe(before.version)
      const retiredOnly = yield* Effect.flip(makeSecretStore(objects, { prefix: "secret/", keys: [keyA] }).get("acme", "db"))
      expect(retiredOnly._tag).toBe("SecretUndecryptable")
    }))
})

describe("nstance-admin secret", () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-secret-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const bucket = join(dir, "bucket")
  const config = {
    cluster: { id: "acme", secrets: { provider: "object-storage", encryption_key: { provider: "env", source: "TEST_SECRETS_KEY" }, old_encryption_keys: [{ provider: "env", source: "TEST_OLD_KEY" }] } },
    shard: shardSection(),
    templates: {}
  }
  mkdirSync(join(bucket, "shard", "pve-a"), { recursive: true })
  writeFileSync(join(bucket, "shard", "pve-a", "config.jsonc"), JSON.stringify(config))
  const env = { TEST_SECRETS_KEY: Buffer.from(keyB).toString("hex"), TEST_OLD_KEY: Buffer.from(keyA).toString("hex") }
  const where = ["--storage", "file", "--bucket", bucket, "--shard", "pve-a"]
  const admin = (args: ReadonlyArray<string>, extraEnv: Record<string, string | undefined> = {}) =>
    runCommand(adminCommand, "nstance-admin", args, { env: { ...env, ...extraEnv } })

  it("put, get, list, reseal and delete; the value appears only on get's stdout", async () => {
    const file = join(dir, "value")
    writeFileSync(file, "pa55word\n", { mode: 0o600 })
    const put = await admin(["secret", "put", ...where, "--tenant", "acme", "--from-file", file, "db-password"])
    expect(put.stderr).toBe("")
    expect(put.status).toBe(0)
    expect(put.stdout).toMatch(/^sealed secret db-password of tenant acme \(9 bytes, version \w+\)/)
    const sealed = readFileSync(join(bucket, "cluster", "secret", "acme", "db-password"))
    expect(sealed.includes(Buffer.from("pa55word"))).toBe(false)
    expect(text(openValue(keyB, sealed)!)).toBe("pa55word\n")

    const got = await admin(["secret", "get", ...where, "--tenant", "acme", "db-password"])
    expect(got.status).toBe(0)
    expect(Buffer.from(got.stdoutBytes).toString()).toBe("pa55word\n")

    const other = await admin(["secret", "get", ...where, "--tenant", "globex", "db-password"])
    expect(other.status).toBe(1)
    expect(other.stderr).toContain("no secret db-password in tenant globex")

    // A value sealed under the old key before the rotation: read, then resealed under the current one.
    writeFileSync(join(bucket, "cluster", "secret", "acme", "legacy"), sealValue(keyA, Buffer.from("from-before")))
    const list = await admin(["secret", "list", ...where])
    expect(list.stdout.trim().split("\n").map((line) => line.split("  ")[0])).toEqual(["acme/db-password", "acme/legacy"])
    const reseal = await admin(["secret", "reseal", ...where])
    expect(reseal.stdout).toContain("resealed 1 of 2 secrets")
    expect(text(openValue(keyB, readFileSync(join(bucket, "cluster", "secret", "acme", "legacy")))!)).toBe("from-before")

    for (const result of [put, list, reseal]) expect(result.stdout + result.stderr).not.toContain("pa55word")
    const removed = await admin(["secret", "delete", ...where, "--tenant", "acme", "db-password"])
    expect(removed.status).toBe(0)
    expect(readdirSync(join(bucket, "cluster", "secret", "acme"))).toEqual(["legacy"])
  })

  it("refuses a value file others may read, a missing key naming its field, and a name that climbs", async () => {
    const loose = join(dir, "loose")
    writeFileSync(loose, "x")
    chmodSync(loose, 0o644)
    const open = await admin(["secret", "put", ...where, "--tenant", "acme", "--from-file", loose, "a"])
    expect(open.status).toBe(1)
    expect(open.stderr).toContain("lets others read a secret")
    const noKey = await admin(["secret", "list", ...where], { TEST_SECRETS_KEY: undefined })
    expect(noKey.status).toBe(1)
    expect(noKey.stderr.trim()).toBe("✗ cluster.secrets.encryption_key: environment variable TEST_SECRETS_KEY is not set")
    const climb = await admin(["secret", "get", ...where, "--tenant", "acme", "../globex/db"])
    expect(climb.status).toBe(1)
    expect(climb.stderr).toContain(`NAME "../globex/db" must be a secret name`)
  })
})
