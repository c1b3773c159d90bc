import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { Deferred, Effect, Fiber, Layer, Logger, Option } from "effect"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { runDaemon } from "../../src/shard/daemon.js"
import { EXAMPLE_CONFIG } from "../../src/shard/embedded.js"
import { CONFIG_KEY } from "../../src/shard/leaderWork.js"
import { PveSimulator } from "../../src/sim/server.js"

const PREFIX = "shard/pve-a/"

/** Runs the daemon on a memory store and the simulator until a log line satisfies `until`. */
const runUntil = (configText: string | undefined, until: (lines: ReadonlyArray<string>) => boolean) =>
  Effect.gen(function* () {
    const store = makeMemoryStore()
    if (configText !== undefined) {
      yield* scopeStore(store, PREFIX).put(CONFIG_KEY, new TextEncoder().encode(configText))
    }
    const sim = yield* PveSimulator({ nodes: 3, http: true })
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
      proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret },
      reconcileInterval: "200 millis"
    }).pipe(Effect.scoped, Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Effect.fork)
    yield* Deferred.await(done).pipe(Effect.timeout("30 seconds"))
    yield* Fiber.interrupt(fiber)
    const lease = yield* scopeStore(store, PREFIX).get("leader.json").pipe(Effect.option)
    return {
      lines,
      lease: Option.match(lease, {
        onNone: () => undefined,
        onSome: (object) => JSON.parse(new TextDecoder().decode(object.body)) as Record<string, unknown>
      })
    }
  })

describe("shard daemon (simulator + memory store)", () => {
  it.scopedLive("acquires the lease, plans every group on the simulated cluster, and resigns on shutdown", () =>
    Effect.gen(function* () {
      const { lines, lease } = yield* runUntil(readFileSync(EXAMPLE_CONFIG, "utf8"), (seen) =>
        seen.some((line) => line.startsWith("desired VMs:")))
      expect(lines).toContain("lease: acquired term 1")
      expect(lines).toContain("nodes: 3 online (pve1, pve2, pve3)")
      expect(lines.filter((line) => line.includes("template problem"))).toEqual([])
      expect(lines.some((line) => /^storefront\/web: 3 VM\(s\) → /.test(line))).toBe(true)
      expect(lines.some((line) => /^desired VMs: \d+; creating VMs is not part of this build/.test(line))).toBe(true)
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
})
