import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore } from "../../src/services/ObjectStore.js"
import { runDaemon } from "../../src/app/daemon.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { PveSimulator } from "../../src/sim/server.js"
import { closedPort } from "../support/net.js"
import { exampleConfigWithHealth, get, pollUntil, withGroupSize } from "./harness.js"
import { parsePrometheus, samples, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"

const PREFIX = "shard/pve-a/"
const VMS = 7

describe.skipIf(skipWithout("prometheus-parser"))("the daemon's /metrics (simulator + memory store)", () => {
  it.scopedLive("while the leader creates the VMs of 5 groups, /metrics parses and its counters match what the cluster saw", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const store = makeMemoryStore()
      // The example's five groups, two of them trimmed to one VM: 7 VMs, every template and tenant still in play.
      const config = withGroupSize(withGroupSize(exampleConfigWithHealth(`127.0.0.1:${port}`, "20ms"), "storefront", "web", 1), "analytics", "workers", 1)
      yield* scopeStore(store, PREFIX).put(CONFIG_KEY, new TextEncoder().encode(config))
      const sim = yield* PveSimulator({ nodes: 3, http: true, sharedStorage: true, nodeMemoryGiB: 128 })
      yield* runDaemon({
        id: "test-replica",
        advertiseHost: "127.0.0.1",
        prefix: PREFIX,
        store: Layer.succeed(ObjectStore, store),
        config: { _tag: "Store", key: CONFIG_KEY },
        // Tasks on the fast simulator end in milliseconds: poll them that often.
        proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, taskPoll: { initial: "5 millis", max: "50 millis" } }
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)), Effect.forkScoped)

      const url = `http://127.0.0.1:${port}`
      // The endpoint is up before the election; ready once the leader's term has started.
      yield* pollUntil(get(`${url}/readyz`).pipe(Effect.orElseSucceed(() => ({ status: 0, body: "", contentType: "" }))), (answer) => answer.status === 200)
      const runningInCluster = Effect.sync(() => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1" && vm.status === "running").length)
      // Waiting is cheap (the simulator's model); each scrape after that goes through the real parser.
      yield* pollUntil(runningInCluster, (running) => running === VMS, 25)
      const shard = { shard: "pve-a", replica: "test-replica" }
      const families = yield* pollUntil(
        get(`${url}/metrics`).pipe(Effect.flatMap((answer) => Effect.promise(() => parsePrometheus(answer.body)))),
        (now) => total(now, "nstance_instances", { ...shard, phase: "running" }) === VMS && total(now, "nstance_reconcile_backlog", shard) === 0
      )
      expect(yield* runningInCluster).toBe(VMS)

      expect(total(families, "nstance_lease_state", { ...shard, state: "leader" })).toBe(1)
      expect(total(families, "nstance_lease_term", shard)).toBe(1)
      expect(total(families, "nstance_event_log_seq", shard)).toBeGreaterThan(0)
      expect(total(families, "nstance_instances_started_total", { shard: "pve-a" })).toBe(VMS)
      expect(total(families, "nstance_saga_step_seconds_count", { saga: "create", step: "start", outcome: "ok" })).toBe(VMS)
      expect(total(families, "nstance_saga_step_seconds_count", { saga: "create", step: "place", outcome: "ok" })).toBe(VMS)

      // PVE calls: per endpoint, what the daemon counted is what the simulator answered.
      const requests = sim.model.requests.filter((r) => r.endpoint !== undefined)
      const byEndpoint = new Map<string, number>()
      for (const r of requests) byEndpoint.set(r.endpoint!, (byEndpoint.get(r.endpoint!) ?? 0) + 1)
      expect(total(families, "nstance_pve_calls_total", { endpoint: "POST /nodes/{node}/qemu/{vmid}/clone", outcome: "ok" })).toBe(VMS)
      expect(total(families, "nstance_pve_calls_total", { endpoint: "POST /nodes/{node}/qemu/{vmid}/status/start", outcome: "ok" })).toBe(VMS)
      for (const endpoint of ["POST /nodes/{node}/qemu/{vmid}/clone", "POST /nodes/{node}/qemu/{vmid}/status/start", "POST /nodes/{node}/storage/{storage}/upload"]) {
        expect({ endpoint, counted: total(families, "nstance_pve_calls_total", { endpoint }) }).toEqual({ endpoint, counted: byEndpoint.get(endpoint) ?? 0 })
      }
      const counted = samples(families, "nstance_pve_calls_total").reduce((sum, s) => sum + s.value, 0)
      expect(counted).toBeGreaterThan(0)
      expect(counted).toBeLessThanOrEqual(requests.length)
    }), { timeout: 40_000 })
})
