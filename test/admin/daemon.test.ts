/**
 * End to end: the shard daemon (`runDaemon`) on a memory store and the HTTP Proxmox simulator, with an admin
 * token, and `nstance-admin` run in-process against its operator address — what an operator sees is what
 * the cluster has, `group set` scales and the VMs follow, `instance delete` removes one VM and its ISO.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Logger, Redacted } from "effect"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { serverCommand } from "../../src/cli/server.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { runDaemon } from "../../src/app/daemon.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { PveSimulator, type RunningSimulator } from "../../src/sim/server.js"
import { runCommand } from "../support/cli.js"
import { closedPort } from "../support/net.js"
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { adminConfigText, CLUSTER, TOKEN, writeCaFile } from "./harness.js"
import { randomBytes } from "node:crypto"
import { pkiObjectKeys } from "../../src/domain/bucketKeys.js"

const PREFIX = "shard/pve-a/"

const adminWith = (caFile: string) => (address: string, args: ReadonlyArray<string>) =>
  Effect.promise(() => runCommand(adminCommand, "nstance-admin", [...args, "--server", address], { env: { NSTANCE_ADMIN_TOKEN: Redacted.value(TOKEN), NSTANCE_CA_FILE: caFile } }))

const vms = (sim: RunningSimulator) => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")
const isos = (sim: RunningSimulator) => [...sim.model.volumes.values()].filter((v) => v.content === "iso").map((v) => v.volid)

const waitUntil = (what: string, check: () => boolean, timeout: Duration.DurationInput = "12 seconds") =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`${what}: not reached within ${Duration.format(Duration.decode(timeout))}`)
      yield* Effect.sleep("50 millis")
    }
  })

describe("nstance-admin against the daemon on the HTTP simulator", () => {
  it.scopedLive("status, instances and groups show the truth; group set scales and the VMs follow; instance delete removes one VM and its ISO", () =>
    Effect.gen(function* () {
      const [operator, health] = [yield* Effect.promise(closedPort), yield* Effect.promise(closedPort)]
      const address = `127.0.0.1:${operator}`
      const store = makeMemoryStore()
      yield* scopeStore(store, PREFIX).put(CONFIG_KEY, new TextEncoder().encode(adminConfigText(1, address, { operator: address, health: `127.0.0.1:${health}` })))
      const sim = yield* PveSimulator({ nodes: 3, http: true, sharedStorage: true, nodeMemoryGiB: 128 })
      const daemon = yield* runDaemon({
        id: "replica-1",
        advertiseHost: "127.0.0.1",
        prefix: PREFIX,
        store: Layer.succeed(ObjectStore, store),
        config: { _tag: "Store", key: CONFIG_KEY, shard: "pve-a" },
        proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret },
        adminToken: TOKEN,
        // The cluster PKI: the operator endpoint's TLS certificate comes from it.
        encryptionKey: new Uint8Array(randomBytes(32))
      }).pipe(Effect.scoped, Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)), Effect.forkScoped)

      yield* waitUntil("the first VM runs", () => vms(sim).some((vm) => vm.status === "running"))
      // The CA is public: an operator copies it from the bucket.
      const ca = yield* store.get(pkiObjectKeys(CLUSTER).caCert).pipe(Effect.orDie)
      const admin = adminWith(yield* writeCaFile(new TextDecoder().decode(ca.body)))
      const [first] = vms(sim)
      const instanceId = first?.config.get("name") ?? ""
      const status = JSON.parse((yield* admin(address, ["status", "--json"])).stdout)
      expect(status).toMatchObject({ cluster: "acme", shard: "pve-a", leader: "replica-1", groups: 1, desiredVms: 1 })
      expect(status.instances).toBe(1)
      const instances = JSON.parse((yield* admin(address, ["instances", "--json"])).stdout)
      expect(instances.map((i: { id: string; vmid: number; node: string }) => [i.id, i.vmid, i.node])).toEqual([[instanceId, first?.vmid, first?.node]])
      const groups = JSON.parse((yield* admin(address, ["groups", "--json"])).stdout)
      expect(groups).toMatchObject([{ tenant: "shop", group: "web", size: 1, live: 1, source: "static" }])

      // Scale the static group to 3 through groups.jsonc: the leader creates two more, no restart.
      const set = yield* admin(address, ["group", "set", "shop/web", "--size", "3"])
      expect(set.status).toBe(0)
      yield* waitUntil("three VMs run", () => vms(sim).filter((vm) => vm.status === "running").length === 3)
      const scaled = JSON.parse((yield* admin(address, ["groups", "--json"])).stdout)
      expect(scaled).toMatchObject([{ group: "web", size: 3, live: 3, source: "static+dynamic" }])

      // Delete the first instance: its VM and its ISO go; a replacement keeps the group at 3.
      expect(isos(sim).some((volid) => volid.includes(instanceId))).toBe(true)
      const deleted = yield* admin(address, ["instance", "delete", instanceId])
      expect(deleted.status).toBe(0)
      yield* waitUntil("the deleted VM and its ISO are gone", () =>
        !vms(sim).some((vm) => vm.config.get("name") === instanceId) && !isos(sim).some((volid) => volid.includes(instanceId)))
      yield* waitUntil("a replacement runs", () => vms(sim).filter((vm) => vm.status === "running").length === 3)
      const after = JSON.parse((yield* admin(address, ["instances", "--json"])).stdout) as Array<{ id: string }>
      expect(after.map((i) => i.id)).not.toContain(instanceId)
      yield* Fiber.interrupt(daemon)
    }), { timeout: 40_000 })

  it.scopedLive("nstance-server --validate with no file validates the bucket's config (with its dynamic groups)", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "nstance-validate-"))
      mkdirSync(join(dir, "shard", "pve-a"), { recursive: true })
      writeFileSync(join(dir, "shard", "pve-a", "config.jsonc"), adminConfigText(2))
      const validate = (args: ReadonlyArray<string>) => Effect.promise(() => runCommand(serverCommand, "nstance-server", args))
      const ok = yield* validate(["--validate", "--storage", "file", "--bucket", dir, "--shard", "pve-a"])
      expect(ok.status).toBe(0)
      expect(ok.stdout).toBe("✓ Remote shard configuration is valid (shard/pve-a/config.jsonc): 1 groups, 2 desired VMs\n")
      // A flag after it, or nothing at all, both mean "the bucket's".
      const last = yield* validate(["--storage", "file", "--bucket", dir, "--shard", "pve-a", "--validate"])
      expect(last.stdout).toBe(ok.stdout)
      writeFileSync(join(dir, "shard", "pve-a", "groups.jsonc"), `{ "shop": { "api": { "template": "api", "size": 4 } } }\n`)
      const withDynamic = yield* validate(["--validate", "--storage", "file", "--bucket", dir, "--shard", "pve-a"])
      expect(withDynamic.stdout).toBe("✓ Remote shard configuration is valid (shard/pve-a/config.jsonc): 2 groups, 6 desired VMs\n")
      writeFileSync(join(dir, "shard", "pve-a", "config.jsonc"), "{ \"cluster\": {} }")
      const bad = yield* validate(["--validate", "--storage", "file", "--bucket", dir, "--shard", "pve-a"])
      expect(bad.status).toBe(1)
      expect(bad.stderr.split("\n").filter((l) => l !== "").at(-1)).toBe("✗ shard/pve-a/config.jsonc: remote shard configuration is not valid")
      const missing = yield* validate(["--validate", "--storage", "file"])
      expect(missing.stderr).toBe("✗ --validate without a file reads the bucket: missing --bucket, --shard\n")
      // A file still means the file.
      writeFileSync(join(dir, "local.jsonc"), adminConfigText(1))
      const local = yield* validate(["--validate", join(dir, "local.jsonc")])
      expect(local.stdout).toContain("✓ Configuration is valid")
    }))
})
