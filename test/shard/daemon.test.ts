import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { Deferred, Effect, Fiber, Layer, Logger, Option } from "effect"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { REGISTRATION_OFF_WARNING, runDaemon } from "../../src/app/daemon.js"
import { CONFIG_KEY, LEADER_KEY, pkiObjectKeys } from "../../src/domain/bucketKeys.js"
import { randomBytes } from "node:crypto"
import { EXAMPLE_CONFIG } from "../../src/app/embedded.js"
import { PveSimulator } from "../../src/sim/server.js"

const PREFIX = "shard/pve-a/"

/** Runs the daemon on a memory store and the simulator until a log line satisfies `until`. */
const runUntil = (configText: string | undefined, until: (lines: ReadonlyArray<string>) => boolean, store = makeMemoryStore()) =>
  Effect.gen(function* () {
    if (configText !== undefined) {
      yield* scopeStore(store, PREFIX).put(CONFIG_KEY, new TextEncoder().encode(configText))
    }
    const sim = yield* PveSimulator({ nodes: 3, http: true, sharedStorage: true, nodeMemoryGiB: 128 })
    const lines: Array<string> = []
    const done = yield* Deferred.make<void>()
    const capture = Logger.make(({ message }) => {
      lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      if (until(lines)) Deferred.unsafeDone(done, Effect.void)
    })
    const fiber = yield* runDaemon({
      id: "test-replica",
      advertiseHost: "127.0.0.1",
      prefix: PREFIX,
      store: Layer.succeed(ObjectStore, store),
      config: { _tag: "Store", key: CONFIG_KEY },
      proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret }
    }).pipe(Effect.scoped, Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Effect.fork)
    // Well inside vitest's test timeout, so a daemon that never logs the line fails here, showing what it did log.
    yield* Deferred.await(done).pipe(
      Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error(`the awaited log line did not come within 15 s; logged:\n${lines.join("\n")}`) })
    )
    yield* Fiber.interrupt(fiber)
    const lease = yield* scopeStore(store, PREFIX).get(LEADER_KEY).pipe(Effect.option)
    return {
      lines,
      vms: [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1").map((vm) => ({ name: vm.config.get("name"), tags: vm.config.get("tags"), status: vm.status })),
      lease: Option.match(lease, {
        onNone: () => undefined,
        onSome: (object) => JSON.parse(new TextDecoder().decode(object.body)) as Record<string, unknown>
      })
    }
  })

describe("shard daemon (simulator + memory store)", () => {
  it.scopedLive("acquires the lease, creates the groups' VMs on the simulated cluster, and resigns on shutdown", () =>
    Effect.gen(function* () {
      const { lines, lease, vms } = yield* runUntil(readFileSync(EXAMPLE_CONFIG, "utf8"), (seen) =>
        seen.some((line) => / running as VM \d+ on pve\d$/.test(line)))
      expect(lines).toContain("lease: acquired term 1")
      // No encryption key: registration is off, said once, and nothing else changes.
      expect(lines.filter((line) => line === REGISTRATION_OFF_WARNING)).toHaveLength(1)
      expect(lines).toContain("cluster read: 0 VMs carry this shard's tags, 0 adopted")
      // Every group of the example is requested: 12 VMs in 5 groups.
      expect(lines.filter((line) => / requested for [a-z-]+\/[a-z-]+ \(scale-up\)$/.test(line))).toHaveLength(12)
      const running = lines.map((line) => / ?([a-z]{3}[0-9a-z]{26}): running as VM (\d+) on (pve\d)$/.exec(line)).find((match) => match !== null)
      expect(running).toBeDefined()
      // The VM it names exists in the cluster, named by its instance ID, tagged for this shard and running.
      expect(vms).toContainEqual({ name: running![1], tags: "nstance;acme-prod;pve-a", status: "running" })
      // Resigned on the way out: Go zero time, so a standby takes over at its next tick.
      expect(lease?.["leaderID"]).toBe("test-replica")
      expect(lease?.["lastUpdated"]).toBe("0001-01-01T00:00:00Z")
    }))

  it.scopedLive("waits for a missing config and says where it looked, without crashing", () =>
    Effect.gen(function* () {
      const { lines, lease } = yield* runUntil(undefined, (seen) => seen.filter((line) => line.includes("no shard config")).length >= 2)
      expect(lines[0]).toBe(`no shard config at ${CONFIG_KEY}; upload one with nstance-admin config push`)
      expect(lines.some((line) => line.includes("acquired"))).toBe(false)
      // It never joined the election: a replica without a config must not hold the lease.
      expect(lease).toBeUndefined()
    }))

  it.scopedLive("with an encryption key but half a PKI in the bucket, refuses to start with a clear error", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* scopeStore(store, PREFIX).put(CONFIG_KEY, new TextEncoder().encode(readFileSync(EXAMPLE_CONFIG, "utf8")))
      // Only the CA certificate, at the bucket root where the PKI lives.
      yield* store.put(pkiObjectKeys("acme-prod").caCert, new TextEncoder().encode("-----BEGIN CERTIFICATE-----\n"))
      const sim = yield* PveSimulator({ nodes: 3, http: true })
      const exit = yield* runDaemon({
        id: "test-replica",
        prefix: PREFIX,
        store: Layer.succeed(ObjectStore, store),
        config: { _tag: "Store", key: CONFIG_KEY },
        proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret },
        encryptionKey: new Uint8Array(randomBytes(32))
      }).pipe(Effect.scoped, Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)), Effect.timeout("10 seconds"), Effect.exit)
      expect(exit._tag).toBe("Failure")
      expect(JSON.stringify(exit)).toContain("PkiIncomplete")
      // It never joined the election.
      expect(Option.isNone(yield* scopeStore(store, PREFIX).get(LEADER_KEY).pipe(Effect.option))).toBe(true)
    }), { timeout: 15_000 })
})
