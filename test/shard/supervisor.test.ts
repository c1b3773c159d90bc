/**
 * Several shards in one process (`--shard a,b`): each runs as its own daemon fiber, both lead their own
 * shard on one bucket, and a shard that keeps failing (a config of another shard) is restarted with backoff
 * while the other leads and creates its VMs. With one shard a fatal start error still ends the run.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, HashMap, Layer, Logger, Option, Schedule, SubscriptionRef } from "effect"
import { applyEdits, modify } from "jsonc-parser"
import { serverCommand } from "../../src/cli/server.js"
import { makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { runShards, type SupervisedShard } from "../../src/app/supervisor.js"
import { CONFIG_KEY, LEADER_KEY } from "../../src/domain/bucketKeys.js"
import { PveSimulator, type RunningSimulator } from "../../src/sim/server.js"
import { runCommand } from "../support/cli.js"

const TOKEN = { PROXMOX_TOKEN_ID: "nstance@pve!nstance-token", PROXMOX_TOKEN_SECRET: "secret" }

const directories: Array<string> = []
afterAll(() => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true })
})

/** A one-VM shard config whose `shard.id` is `id`. */
const configText = (id: string) => `{
  "cluster": { "id": "acme", "leader_election": { "frequent_interval": "5s", "infrequent_interval": "30s", "leader_timeout": "15s" } },
  "shard": {
    "id": "${id}",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z", "options": { "insecure_tls": false, "cloud_init_iso_storage": "local" } },
    "bind": { "health_addr": "0.0.0.0:8990", "election_addr": "0.0.0.0:8991", "registration_addr": "0.0.0.0:8992", "operator_addr": "0.0.0.0:8993", "agent_addr": "0.0.0.0:8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "10.0.0.100:8992", "operator_addr": "10.0.0.100:8993", "agent_addr": "10.0.0.100:8994" },
    "subnet_pools": { "nodes": ["vmbr0"] },
    "garbage_collection": { "interval": "2m", "registration_timeout": "5m" },
    "request_timeout": "30s",
    "create_rate_limit": "100ms",
    "health_check_interval": "1m"
  },
  "defaults": { "args": { "StoragePool": "local-lvm", "TemplateName": "debian-13-template" } },
  "templates": { "web": { "kind": "web", "instance_type": "cpu:1,memory:1024,disk:10", "subnet_pool": "nodes" } },
  "groups": { "site": { "web": { "template": "web", "size": 1 } } }
}
`

const enc = new TextEncoder()
const dec = new TextDecoder()

interface Line {
  readonly shard: string | undefined
  readonly text: string
  readonly level: string
}

const shardSettings = (sim: RunningSimulator, store: ObjectStoreShape, shard: string): SupervisedShard => ({
  shard,
  settings: {
    id: "test-replica",
    advertiseHost: "127.0.0.1",
    prefix: `shard/${shard}/`,
    store: Layer.succeed(ObjectStore, store),
    config: { _tag: "Store", key: CONFIG_KEY, shard },
    proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret }
  }
})

/** Runs shards a and b (configs as given) on one memory store, each on its own simulated cluster, until `until` holds. */
const runTwo = (configs: Readonly<Record<string, string>>, until: (lines: ReadonlyArray<Line>) => boolean) =>
  Effect.gen(function* () {
    const store = makeMemoryStore()
    for (const [shard, text] of Object.entries(configs)) yield* scopeStore(store, `shard/${shard}/`).put(CONFIG_KEY, enc.encode(text))
    const sims = { a: yield* PveSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 }), b: yield* PveSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 }) }
    const lines: Array<Line> = []
    const done = yield* Deferred.make<void>()
    const capture = Logger.make(({ annotations, logLevel, message }) => {
      const shard = HashMap.get(annotations, "shard").pipe(Option.map(String), Option.getOrUndefined)
      lines.push({ shard, level: logLevel.label, text: Array.isArray(message) ? message.join(" ") : String(message) })
      if (until(lines)) Deferred.unsafeDone(done, Effect.void)
    })
    const fiber = yield* runShards((["a", "b"] as const).map((shard) => shardSettings(sims[shard], store, shard)), { restart: Schedule.spaced("100 millis") }).pipe(
      Effect.scoped,
      Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
      Effect.fork
    )
    yield* Deferred.await(done).pipe(
      Effect.timeoutFail({
        duration: "20 seconds",
        onTimeout: () => new Error(`the awaited log lines did not come within 20 s; logged:\n${lines.map((line) => `[${line.shard}] ${line.text}`).join("\n")}`)
      })
    )
    yield* Fiber.interrupt(fiber)
    const lease = (shard: string) =>
      scopeStore(store, `shard/${shard}/`).get(LEADER_KEY).pipe(
        Effect.option,
        Effect.map(Option.map((object) => JSON.parse(dec.decode(object.body)) as Record<string, unknown>)),
        Effect.map(Option.getOrUndefined)
      )
    const vmsOf = (sim: RunningSimulator) =>
      [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1").map((vm) => ({ tags: vm.config.get("tags"), status: vm.status }))
    return { lines, vms: { a: vmsOf(sims.a), b: vmsOf(sims.b) }, leaseA: yield* lease("a"), leaseB: yield* lease("b") }
  })

const runningIn = (lines: ReadonlyArray<Line>, shard: string) => lines.some((line) => line.shard === shard && / running as VM \d+ on pve\d$/.test(line.text))

describe("several shards in one process", () => {
  it.scopedLive("both shards lead on one bucket, each creating its VM, and both resign on shutdown", () =>
    Effect.gen(function* () {
      const { lines, vms, leaseA, leaseB } = yield* runTwo({ a: configText("a"), b: configText("b") }, (seen) => runningIn(seen, "a") && runningIn(seen, "b"))
      // Each cluster holds its own shard's VM and nothing of the other's.
      for (const shard of ["a", "b"] as const) {
        expect(lines).toContainEqual({ shard, level: "INFO", text: "lease: acquired term 1" })
        expect(vms[shard]).toEqual([{ tags: `nstance;acme;${shard}`, status: "running" }])
      }
      // The same --id in both shards' elections; resigned on the way out (Go zero time).
      for (const lease of [leaseA, leaseB]) {
        expect(lease?.["leaderID"]).toBe("test-replica")
        expect(lease?.["lastUpdated"]).toBe("0001-01-01T00:00:00Z")
      }
      // Every line of the shards' work says which shard it is about.
      expect(lines.filter((line) => line.text.includes("requested for")).every((line) => line.shard !== undefined)).toBe(true)
    }))

  it.scopedLive("a shard whose config names another shard keeps failing and is restarted, while the other leads", () =>
    Effect.gen(function* () {
      const stopped = (seen: ReadonlyArray<Line>) => seen.filter((line) => line.shard === "b" && line.level === "ERROR" && line.text.startsWith("shard b stopped"))
      const { lines, vms, leaseA, leaseB } = yield* runTwo({ a: configText("a"), b: configText("c") }, (seen) => runningIn(seen, "a") && stopped(seen).length >= 3)
      expect(stopped(lines)[0]?.text).toBe(
        `shard b stopped: --shard "b" does not match shard.id "c" in shard/b/config.jsonc; refusing to act for another shard (push the right config, or fix --shard); ` +
          "the other shards keep running, restarting it after a backoff"
      )
      expect(leaseA?.["leaderID"]).toBe("test-replica")
      // b never joined any election, and nothing was created for it (or for c).
      expect(leaseB).toBeUndefined()
      expect(vms.a.map((vm) => vm.tags)).toEqual(["nstance;acme;a"])
      expect(vms.b).toEqual([])
    }))

  it.scopedLive("a duplicate --id is not restarted: it ends every shard, the others resigning", () =>
    Effect.gen(function* () {
      // Renew every second, so the duplicate is seen within two ticks.
      const fast = (text: string) => applyEdits(text, modify(text, ["shard", "leader_election"], { frequent_interval: "1s", infrequent_interval: "5s", leader_timeout: "3s" }, {}))
      const store = makeMemoryStore()
      for (const shard of ["a", "b"]) yield* scopeStore(store, `shard/${shard}/`).put(CONFIG_KEY, enc.encode(fast(configText(shard))))
      // Another live process with our id already leads shard b.
      const other = yield* makeLeaderLeaseOn(scopeStore(store, "shard/b/"), { id: "test-replica", address: "10.0.0.9:8991", frequentInterval: "1 second", leaderTimeout: "3 seconds" })
      yield* SubscriptionRef.get(other.isLeader).pipe(Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (leads) => leads }))
      const sim = yield* PveSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
      const error = yield* Effect.flip(runShards(["a", "b"].map((shard) => shardSettings(sim, store, shard)), { restart: Schedule.spaced("100 millis") }).pipe(
        Effect.scoped,
        Effect.provide(Logger.remove(Logger.defaultLogger)),
        Effect.timeoutFail({ duration: "8 seconds", onTimeout: () => new Error("the duplicate --id did not end the run") })
      ))
      expect(error).toMatchObject({ _tag: "DuplicateReplica", id: "test-replica", key: "shard/b/leader.json", term: 1, address: "10.0.0.9:8991" })
      // Shard a ran as usual and resigned on the way out; shard b's lease is still the other process's.
      const record = (shard: string) => Effect.map(scopeStore(store, `shard/${shard}/`).get(LEADER_KEY), (o) => JSON.parse(dec.decode(o.body)) as Record<string, unknown>)
      expect(yield* record("a")).toMatchObject({ leaderID: "test-replica", lastUpdated: "0001-01-01T00:00:00Z" })
      expect(yield* SubscriptionRef.get(other.isLeader)).toBe(true)
      expect((yield* record("b"))["lastUpdated"]).not.toBe("0001-01-01T00:00:00Z")
    }), { timeout: 20_000 })

  it.scopedLive("with one shard a config of another shard still ends the run with ShardMismatch", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* scopeStore(store, "shard/a/").put(CONFIG_KEY, enc.encode(configText("c")))
      const sim = yield* PveSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
      const error = yield* Effect.flip(runShards([shardSettings(sim, store, "a")]).pipe(Effect.scoped, Effect.provide(Logger.remove(Logger.defaultLogger))))
      expect(error).toMatchObject({ _tag: "ShardMismatch", shard: "a", configShard: "c", key: "shard/a/config.jsonc" })
    }))
})

describe("nstance-server --shard a,b (flag checks and the command end to end)", () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-supervisor-"))
  directories.push(dir)
  const server = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = TOKEN, interruptAfterMs?: number) =>
    runCommand(serverCommand, "nstance-server", args, {
      env: { PROXMOX_API_URL: undefined, ...env },
      ...(interruptAfterMs === undefined ? {} : { interruptAfterMs })
    })
  const start = ["--storage", "file", "--bucket", join(dir, "bucket"), "--id", "r1"]
  const envDir = join(dir, "pve")
  const connection = (url: string) => `# ${url}\nexport PROXMOX_API_URL="${url}"\nPROXMOX_TOKEN_ID='nstance@pve!nstance-token'\nPROXMOX_TOKEN_SECRET=secret\n`
  const files: Record<string, readonly [string, number]> = {
    a: [connection("https://PVE-a.example:8006/api2/json"), 0o600],
    b: [connection("https://pve-b.example:8006/api2/json"), 0o600],
    // The same cluster as a's, spelt differently (the host's case, a trailing slash).
    same: [connection("https://pve-a.example:8006/api2/json/"), 0o400],
    open: [connection("https://pve-o.example:8006/api2/json"), 0o644],
    typo: ["PROXMOX_API_URL=https://pve-t.example:8006/api2/json\nPROXMOX_TOKEN_SECRT=x\nnot a line\n", 0o600],
    nourl: ["PROXMOX_TOKEN_ID=nstance@pve!t\nPROXMOX_TOKEN_SECRET=s\n", 0o600]
  }
  mkdirSync(envDir, { recursive: true })
  for (const [shard, [text, mode]] of Object.entries(files)) {
    writeFileSync(join(envDir, `${shard}.env`), text)
    chmodSync(join(envDir, `${shard}.env`), mode)
  }

  it.each([
    ["a shard given twice", ["--shard", "a,b,a", "--proxmox-env-dir", envDir], [`✗ --shard "a,b,a" names "a" more than once; give each shard once`]],
    ["a shard ID that breaks the rules", ["--shard", "a,B,"], [
      `✗ --shard "B" must contain only lowercase alphanumeric characters and hyphens, with no leading/trailing/consecutive hyphens`,
      `✗ --shard "" cannot be empty`
    ]],
    ["--prefix with several shards", ["--shard", "a,b", "--prefix", "x/", "--proxmox-env-dir", envDir], [
      "✗ --prefix cannot be used with several shards: each shard keeps its objects under its own shard/{shard}/"
    ]],
    ["--config with several shards (the file is not even read)", ["--shard", "a,b", "--config", join(dir, "missing.jsonc"), "--proxmox-env-dir", envDir], [
      "✗ --config cannot be used with several shards: each shard reads its own shard/{shard}/config.jsonc from the bucket"
    ]],
    ["several shards on the environment's one connection", ["--shard", "a,b"], [
      `✗ --shard "a,b" runs 2 shards, and each shard is its own PVE cluster: give --proxmox-env-dir DIR with one DIR/<shard>.env per shard ` +
        "(PROXMOX_API_URL, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET)"
    ]],
    ["a shard without its connection file", ["--shard", "a,b,nofile", "--proxmox-env-dir", envDir], [
      `✗ --proxmox-env-dir ${join(envDir, "nofile.env")}: no such file`
    ]],
    ["a connection file others can read", ["--shard", "a,open", "--proxmox-env-dir", envDir], [
      `✗ --proxmox-env-dir ${join(envDir, "open.env")}: mode 0644 lets others read a PVE connection file, which holds a secret; make it 0600 (chmod 600 ${join(envDir, "open.env")})`
    ]],
    ["bad lines in a connection file, and no URL", ["--shard", "a,typo", "--proxmox-env-dir", envDir], [
      `✗ ${join(envDir, "typo.env")}: line 2: PROXMOX_TOKEN_SECRT is not one of PROXMOX_API_URL, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET`,
      `✗ ${join(envDir, "typo.env")}: line 3: not a KEY=VALUE line`
    ]],
    ["a file without PROXMOX_API_URL", ["--shard", "a,nourl", "--proxmox-env-dir", envDir], [
      `✗ ${join(envDir, "nourl.env")}: PROXMOX_API_URL is not set; each shard's file names its own cluster's API`
    ]],
    ["two shards on one PVE cluster", ["--shard", "a,b,same", "--proxmox-env-dir", envDir], [
      `✗ shards "a", "same" all name the PVE API at https://pve-a.example:8006; one PVE cluster is one shard (their VMIDs would collide)`
    ]]
  ] as ReadonlyArray<readonly [string, ReadonlyArray<string>, ReadonlyArray<string>]>)("refuses %s in one line each (exit 1)", async (_label, args, expected) => {
    const result = await server([...start, ...args])
    expect(result.stderr.trimEnd().split("\n")).toEqual(expected)
    expect(result.status).toBe(1)
  })

  it.scopedLive("runs each shard on its own cluster from --proxmox-env-dir: each writes and resigns its own lease and creates only on its cluster", () =>
    Effect.gen(function* () {
      const sims = { a: yield* PveSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 }), b: yield* PveSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 }) }
      const bucket = join(dir, "run")
      const runEnv = join(dir, "run-env")
      mkdirSync(runEnv, { recursive: true })
      for (const shard of ["a", "b"] as const) {
        mkdirSync(join(bucket, "shard", shard), { recursive: true })
        writeFileSync(join(bucket, "shard", shard, "config.jsonc"), configText(shard))
        const sim = sims[shard]
        writeFileSync(join(runEnv, `${shard}.env`), `PROXMOX_API_URL=${sim.url}\nPROXMOX_TOKEN_ID=${sim.tokenId}\nPROXMOX_TOKEN_SECRET=${sim.tokenSecret}\n`, { mode: 0o600 })
      }
      const result = yield* Effect.promise(() =>
        server(
          ["--storage", "file", "--bucket", bucket, "--shard", "a,b", "--id", "r1", "--cachedir", join(dir, "cache"), "--log-format", "json", "--proxmox-env-dir", runEnv],
          // The environment's connection is not used by either shard.
          { PROXMOX_API_URL: "http://127.0.0.1:9/api2/json", PROXMOX_TOKEN_ID: "nobody@pve!none", PROXMOX_TOKEN_SECRET: "wrong" },
          6_000
        ))
      for (const shard of ["a", "b"] as const) {
        const tags = [...sims[shard].model.vms.values()].filter((vm) => vm.config.get("template") !== "1").map((vm) => vm.config.get("tags"))
        expect(tags).toEqual([`nstance;acme;${shard}`])
      }
      expect(result.status).toBe(0)
      const logged = result.stdout.trimEnd().split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { message: unknown; annotations: Record<string, unknown> })
      for (const shard of ["a", "b"]) {
        expect(logged.some((line) => line.annotations["shard"] === shard && line.message === "lease: acquired term 1")).toBe(true)
        const lease = JSON.parse(readFileSync(join(bucket, "shard", shard, "leader.json"), "utf8")) as Record<string, unknown>
        expect(lease).toMatchObject({ leaderID: "r1", lastUpdated: "0001-01-01T00:00:00Z" })
      }
    }))
})
