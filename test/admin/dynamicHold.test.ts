/**
 * Issue 28, bad case 1, end to end: the shard daemon (`runDaemon`) on the HTTP Proxmox simulator with static
 * and dynamic groups. A `groups.jsonc` that turns to garbage, or a config push that makes one of its entries
 * invalid (the static group it overrides renamed), used to be read as "no dynamic groups" and scaled them all
 * to zero. Now the last good config stays in force as a whole — no VM is deleted and nothing else is scaled —
 * and the replica says so: an error line naming the object, `/readyz`'s reason, `nstance_config_stale`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Logger } from "effect"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { CONFIG_KEY, GROUPS_KEY } from "../../src/domain/bucketKeys.js"
import { makeFileStore } from "../../src/layers/ObjectStoreFile.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { runDaemon } from "../../src/app/daemon.js"
import { PveSimulator, type RunningSimulator } from "../../src/sim/server.js"
import { runCommand } from "../support/cli.js"
import { closedPort } from "../support/net.js"
import { adminConfigText } from "./harness.js"

const PREFIX = "shard/pve-a/"
const DELETE_VM = "DELETE /nodes/{node}/qemu/{vmid}"
const CLONE = "POST /nodes/{node}/qemu/{vmid}/clone"

const vms = (sim: RunningSimulator) => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")
const running = (sim: RunningSimulator) => vms(sim).filter((vm) => vm.status === "running").map((vm) => vm.config.get("name") ?? "").sort()
const calls = (sim: RunningSimulator, endpoint: string) => sim.model.requests.filter((r) => r.endpoint === endpoint).length

const waitUntil = (what: string, check: () => boolean | Promise<boolean>, timeout: Duration.DurationInput = "8 seconds") =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    while (!(yield* Effect.promise(async () => check()))) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`${what}: not reached within ${Duration.format(Duration.decode(timeout))}`)
      yield* Effect.sleep("50 millis")
    }
  })

const get = (url: string) => Effect.promise(async () => {
  const response = await fetch(url)
  return { status: response.status, body: await response.text() }
})

/** The value of a series in Prometheus text, by name and the labels given (undefined when absent). */
const sample = (text: string, name: string, labels: Readonly<Record<string, string>>): number | undefined => {
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const have = new Map([...(match[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([key, value]) => have.get(key) === value)) return Number(match[3])
  }
  return undefined
}

/** The daemon on `store` (memory or file) and the simulator, its log lines kept; the config puts /readyz on `healthPort`. */
const startDaemon = (store: ObjectStoreShape, healthPort: number) =>
  Effect.gen(function* () {
    const sim = yield* PveSimulator({ nodes: 3, http: true, sharedStorage: true, nodeMemoryGiB: 128 })
    const logs: Array<string> = []
    const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ logLevel, message }) => {
      logs.push(`${logLevel.label} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
    }))
    yield* runDaemon({
      id: "replica-1",
      advertiseHost: "127.0.0.1",
      prefix: PREFIX,
      store: Layer.succeed(ObjectStore, store),
      config: { _tag: "Store", key: CONFIG_KEY, shard: "pve-a" },
      proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, taskPoll: { initial: "5 millis", max: "50 millis" } },
      configPoll: "100 millis"
    }).pipe(Effect.scoped, Effect.provide(capture), Effect.forkScoped)
    return { sim, logs, url: `http://127.0.0.1:${healthPort}` }
  })

/**
 * One static group `shop/web` (size 1) bound to the health port, as `adminConfigText` writes it, with the ISOs
 * on the simulator's shared cephfs: the leader's preflight then finds nothing, and /readyz says only what
 * these tests look at.
 */
const configWithHealth = (health: string) =>
  adminConfigText(1, "127.0.0.1:8993", { health }).replace(`"cloud_init_iso_storage": "local"`, `"cloud_init_iso_storage": "cephfs"`)

describe("a broken groups.jsonc keeps the last good config (daemon on the simulator)", () => {
  it.scopedLive("garbage written to groups.jsonc: no VM deleted; the error is logged, /readyz and nstance_config_stale name it; a good version is taken again", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const shard = scopeStore(store, PREFIX)
      const put = (key: string, text: string) => shard.put(key, new TextEncoder().encode(text)).pipe(Effect.orDie)
      const port = yield* Effect.promise(closedPort)
      yield* put(CONFIG_KEY, configWithHealth(`127.0.0.1:${port}`))
      yield* put(GROUPS_KEY, `{ "shop": { "api": { "template": "api", "size": 2 } } }\n`)
      const { sim, logs, url } = yield* startDaemon(store, port)
      yield* waitUntil("the static and the two dynamic VMs run", () => running(sim).length === 3)
      const before = running(sim)

      // Truncated by a bad write: the replica says so everywhere an operator looks, and keeps its config.
      yield* put(GROUPS_KEY, `{ "shop": { "api": `)
      yield* waitUntil("/readyz names groups.jsonc", async () => (await fetch(`${url}/readyz`).then((r) => r.text())).includes("groups.jsonc"))
      const ready = yield* get(`${url}/readyz`)
      expect(ready.status).toBe(200)
      expect(ready.body).toMatch(/^ready: leader of term 1; groups\.jsonc invalid, the last good config stays in force: line 1, column \d+: unexpected end of file; [^\n]+\n$/)
      const metrics = (yield* get(`${url}/metrics`)).body
      expect(sample(metrics, "nstance_config_stale", { shard: "pve-a", object: "groups.jsonc" })).toBe(1)
      expect(sample(metrics, "nstance_config_stale", { shard: "pve-a", object: "config.jsonc" })).toBe(0)
      expect(sample(metrics, "nstance_config_rejected_total", { shard: "pve-a", object: "groups.jsonc" })).toBeGreaterThanOrEqual(1)
      expect(logs.filter((line) => line.startsWith("ERROR groups.jsonc not used, the last good config stays in force: line 1, column "))).toHaveLength(1)

      // Well past the reconcile debounce and a GC pass: nothing deleted, nothing scaled.
      yield* Effect.sleep("1500 millis")
      expect(running(sim)).toEqual(before)
      expect(calls(sim, DELETE_VM)).toBe(0)

      // A good version is acted on at once, and the replica stops naming the object.
      yield* put(GROUPS_KEY, `{ "shop": { "api": { "template": "api", "size": 3 } } }\n`)
      yield* waitUntil("the fourth VM runs", () => running(sim).length === 4)
      yield* waitUntil("/readyz is plain again", async () => (await fetch(`${url}/readyz`).then((r) => r.text())) === "ready: leader of term 1\n")
      expect(sample((yield* get(`${url}/metrics`)).body, "nstance_config_stale", { shard: "pve-a", object: "groups.jsonc" })).toBe(0)
      expect(logs.some((line) => line === "INFO groups.jsonc valid again; the stored config is in force")).toBe(true)
      expect(calls(sim, DELETE_VM)).toBe(0)
    }), { timeout: 20_000 })

  it.scopedLive("a push renaming the static group a dynamic entry overrides is refused naming the entry; forced, it is held and no VM of another group is deleted", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "nstance-hold-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const store = makeFileStore({ directory: dir })
      const shard = scopeStore(store, PREFIX)
      const port = yield* Effect.promise(closedPort)
      const config = configWithHealth(`127.0.0.1:${port}`)
      yield* shard.put(CONFIG_KEY, new TextEncoder().encode(config)).pipe(Effect.orDie)
      // shop/web resized to 2 by its dynamic entry; shop/api only dynamic.
      yield* shard.put(GROUPS_KEY, new TextEncoder().encode(`{ "shop": { "api": { "template": "api", "size": 1 }, "web": { "size": 2 } } }\n`)).pipe(Effect.orDie)
      const { sim, url } = yield* startDaemon(store, port)
      yield* waitUntil("shop/web's two VMs and shop/api's one run", () => running(sim).length === 3)
      const before = running(sim)
      const clones = calls(sim, CLONE)

      const renamed = join(dir, "renamed.jsonc")
      writeFileSync(renamed, config.replace(`"groups": { "shop": { "web":`, `"groups": { "shop": { "www":`))
      const push = (...extra: ReadonlyArray<string>) =>
        Effect.promise(() => runCommand(adminCommand, "nstance-admin", ["config", "push", renamed, "--storage", "file", "--bucket", dir, "--shard", "pve-a", ...extra]))
      const refused = yield* push()
      expect(refused.status).toBe(1)
      expect(refused.stdout).toBe("")
      expect(refused.stderr.trimEnd().split("\n")).toEqual([
        "✗ groups.shop.web.template: is required (dynamic group shop/web of groups.jsonc)",
        `✗ ${renamed}: would make dynamic group shop/web of shard/pve-a/groups.jsonc invalid; nothing uploaded ` +
          "(change or delete it first with nstance-admin group set/delete, or push with --force: the servers then keep their last good config in force until it is fixed)"
      ])
      const stored = yield* shard.get(CONFIG_KEY).pipe(Effect.orDie)
      expect(new TextDecoder().decode(stored.body)).toBe(config)

      const forced = yield* push("--force")
      expect(forced.status).toBe(0)
      expect(forced.stderr.trimEnd().split("\n")).toEqual([
        "⚠ groups.shop.web.template: is required (dynamic group shop/web of groups.jsonc)",
        `⚠ ${renamed}: makes dynamic group shop/web of shard/pve-a/groups.jsonc invalid; pushed anyway (--force): the servers keep their last good config in force until it is fixed`
      ])
      yield* waitUntil("/readyz names the entry", async () => (await fetch(`${url}/readyz`).then((r) => r.text())).includes("shop/web"))
      expect((yield* get(`${url}/readyz`)).body).toBe(
        "ready: leader of term 1; groups.jsonc invalid, the last good config stays in force: " +
          "groups.shop.web.template: is required (dynamic group shop/web of groups.jsonc)\n"
      )
      yield* Effect.sleep("1500 millis")
      // Neither shop/web (renamed away) nor shop/api (unrelated) lost a VM, and no shop/www VM was made.
      expect(running(sim)).toEqual(before)
      expect(calls(sim, DELETE_VM)).toBe(0)
      expect(calls(sim, CLONE)).toBe(clones)
    }), { timeout: 20_000 })
})
