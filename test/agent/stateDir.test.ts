/**
 * The agent's state directory against a neighbour who can plant files: links are never followed for
 * reading or writing, and a directory anyone else may write to, or that is itself a link, is refused.
 */
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { loadIdentity, saveIdentity, type StoredIdentity } from "../../src/agent/stateDir.js"

const root = mkdtempSync(join(tmpdir(), "nstance-state-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const stored: StoredIdentity = {
  url: "https://10.0.0.1:8992/agent",
  renewAt: 1_000,
  identity: {
    instanceId: "vmx01state",
    certificatePem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    caPem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
    publicKeyPem: "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n",
    privateKeyPem: Redacted.make("-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n"),
    renewAfterSeconds: 100,
    agentUrl: "wss://10.0.0.1:8994/agent"
  }
}

const fresh = (name: string) => {
  const dir = join(root, name)
  mkdirSync(dir, { mode: 0o700 })
  return dir
}

describe("the agent's state directory", () => {
  it.effect("a link planted where the key's staging file goes is removed, not written through; the key lands in the directory", () =>
    Effect.gen(function* () {
      const dir = fresh("planted")
      const elsewhere = join(root, "stolen-key")
      writeFileSync(elsewhere, "untouched")
      symlinkSync(elsewhere, join(dir, "agent.key.new"))
      yield* saveIdentity(dir, stored)
      expect(readFileSync(elsewhere, "utf8")).toBe("untouched")
      expect(lstatSync(join(dir, "agent.key")).isSymbolicLink()).toBe(false)
      expect(lstatSync(join(dir, "agent.key")).mode & 0o777).toBe(0o600)
      expect(readFileSync(join(dir, "agent.key"), "utf8")).toContain("SECRET")
      const loaded = yield* loadIdentity(dir)
      expect(Option.map(loaded, (s) => s.identity.instanceId)).toEqual(Option.some("vmx01state"))
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("an identity.json that is a link is refused, not read through", () =>
    Effect.gen(function* () {
      const dir = fresh("linked-identity")
      const elsewhere = join(root, "foreign-identity.json")
      writeFileSync(elsewhere, "{}")
      symlinkSync(elsewhere, join(dir, "identity.json"))
      const error = yield* Effect.flip(loadIdentity(dir))
      expect(error.message).toBe(`${join(dir, "identity.json")} is a symbolic link; refusing to read through it`)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("a directory others may write to, or one that is a link, is refused with what to do", () =>
    Effect.gen(function* () {
      const open = fresh("world-writable")
      chmodSync(open, 0o777)
      const error = yield* Effect.flip(saveIdentity(open, stored))
      expect(error.message).toBe(`${open} is writable by group or others (mode 777); make it 0700 (chmod 700 ${open})`)
      const real = fresh("real")
      const link = join(root, "link-to-real")
      symlinkSync(real, link)
      const linked = yield* Effect.flip(saveIdentity(link, stored))
      expect(linked.message).toBe(`${link} is a symbolic link; give the state directory itself`)
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
