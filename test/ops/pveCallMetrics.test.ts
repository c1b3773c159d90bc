import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { seen, setup } from "../pve/support.js"
import { startReplica } from "./harness.js"
import { family, type Family, scrape, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"

const CALLS = "nstance_pve_calls_total"
const SECONDS_COUNT = "nstance_pve_call_seconds_count"
const RETRIES = "nstance_pve_call_retries_total"

/** What happened between two scrapes: the increase of one counter's series. */
const increase = (before: ReadonlyArray<Family>, after: ReadonlyArray<Family>, name: string, labels: Readonly<Record<string, string>>) =>
  total(after, name, labels) - total(before, name, labels)

describe.skipIf(skipWithout("prometheus-parser"))("/metrics: PVE calls by endpoint and outcome, through the real HTTP client", () => {
  it.scopedLive("counts every request the simulator saw — successes, answers that failed, and retried attempts (also as retries) — under its endpoint template", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      const { url } = yield* startReplica(makeMemoryStore(), "replica-a")
      const before = yield* scrape(url)
      const seenBefore = { version: seen(sim, "GET /version"), status: seen(sim, "GET /nodes/{node}/qemu/{vmid}/status/current"), resources: seen(sim, "GET /cluster/resources") }

      for (let i = 0; i < 5; i++) yield* api.version()
      // A VM that does not exist: PVE answers, and the call fails as notFound (no retry).
      for (let i = 0; i < 3; i++) yield* Effect.flip(api.vmStatus("pve1", 4242))
      // Two transient failures, then success: three requests, each counted with its own outcome.
      sim.faults.http({ method: "GET", path: "/cluster/resources", status: 500, times: 2 })
      yield* api.nodeResources()

      const after = yield* scrape(url)
      expect(family(after, "nstance_pve_calls")?.type).toBe("counter")
      expect(family(after, "nstance_pve_call_seconds")?.type).toBe("histogram")
      expect(family(after, "nstance_pve_call_retries")?.type).toBe("counter")

      const version = { endpoint: "GET /version" }
      expect(seen(sim, "GET /version") - seenBefore.version).toBe(5)
      expect(increase(before, after, CALLS, { ...version, outcome: "ok" })).toBe(5)
      expect(increase(before, after, CALLS, version)).toBe(5)
      expect(increase(before, after, SECONDS_COUNT, version)).toBe(5)
      expect(increase(before, after, RETRIES, version)).toBe(0)

      const status = { endpoint: "GET /nodes/{node}/qemu/{vmid}/status/current" }
      expect(seen(sim, status.endpoint) - seenBefore.status).toBe(3)
      expect(increase(before, after, CALLS, { ...status, outcome: "notFound" })).toBe(3)
      expect(increase(before, after, CALLS, status)).toBe(3)
      // notFound is not retried.
      expect(increase(before, after, RETRIES, status)).toBe(0)

      const resources = { endpoint: "GET /cluster/resources" }
      expect(seen(sim, resources.endpoint) - seenBefore.resources).toBe(3)
      expect(increase(before, after, CALLS, { ...resources, outcome: "transient" })).toBe(2)
      expect(increase(before, after, CALLS, { ...resources, outcome: "ok" })).toBe(1)
      expect(increase(before, after, SECONDS_COUNT, resources)).toBe(3)
      // Attempts 2 and 3 were retries of the transient 500s.
      expect(increase(before, after, RETRIES, resources)).toBe(2)
    }))

  it.scopedLive("task polls are counted like any other request", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      const { url } = yield* startReplica(makeMemoryStore(), "replica-a")
      const template = [...sim.model.vms.values()].find((vm) => vm.config.get("template") === "1")
      if (template === undefined) throw new Error("the simulator has no template")
      const polls = { endpoint: "GET /nodes/{node}/tasks/{upid}/status" }
      const before = yield* scrape(url)
      const seenBefore = seen(sim, polls.endpoint)
      const upid = yield* api.clone(template.node, template.vmid, { newid: 4321, name: "metrics-probe" })
      yield* api.waitTask(template.node, upid)
      const after = yield* scrape(url)
      const polled = seen(sim, polls.endpoint) - seenBefore
      expect(polled).toBeGreaterThan(0)
      expect(increase(before, after, CALLS, polls)).toBe(polled)
      expect(increase(before, after, CALLS, { endpoint: "POST /nodes/{node}/qemu/{vmid}/clone", outcome: "ok" })).toBe(1)
    }))
})
