/**
 * Counters fed from the shard's own work, read as a Prometheus server would: GC deletions by kind, VMs the
 * create saga brought to running, saga step histograms. The simulated world runs under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import { makePrometheusScrape } from "../../src/metrics/prometheus.js"
import { makeWorld, SHARD } from "../support/simWorld.js"
import { parsePrometheus, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"

describe.skipIf(skipWithout("prometheus-parser"))("/metrics: what the leader did (simulated world)", () => {
  it.scoped("a VM deleted behind our back: one GC deletion of kind vm-replaced, and one more VM started for its replacement", () =>
    Effect.gen(function* () {
      const scrape = yield* makePrometheusScrape
      const read = Effect.flatMap(scrape.text, (text) => Effect.promise(() => parsePrometheus(text)))
      const w = yield* makeWorld({ size: 2, graces: { orphan: "1 second", vmLoss: "1 second" } })
      const before = yield* read
      yield* w.leader(1)
      yield* w.advanceUntil("2 running", w.convergence(2))
      const converged = yield* read
      const shard = { shard: SHARD }
      const delta = (now: typeof before, name: string, labels: Readonly<Record<string, string>>) => total(now, name, labels) - total(before, name, labels)
      expect(delta(converged, "nstance_instances_started_total", shard)).toBe(2)
      expect(delta(converged, "nstance_gc_deletions_total", shard)).toBe(0)
      expect(delta(converged, "nstance_saga_step_seconds_count", { saga: "create", step: "start", outcome: "ok" })).toBe(2)

      const [victim] = allInstances(yield* w.state)
      w.model.vms.delete(victim!.vmid!)
      for (const [key, volume] of w.model.volumes) if (volume.vmid === victim!.vmid) w.model.volumes.delete(key)
      yield* w.advanceUntil("replaced", Effect.map(w.state, (state) => (allInstances(state).some((i) => i.id === victim!.id) ? ["victim still in the log"] : [])))
      yield* w.advanceUntil("2 running again", w.convergence(2))

      const after = yield* read
      expect(delta(after, "nstance_gc_deletions_total", { ...shard, kind: "vm-replaced" })).toBe(1)
      expect(delta(after, "nstance_gc_deletions_total", shard)).toBe(1)
      expect(delta(after, "nstance_instances_started_total", shard)).toBe(3)
      expect(delta(after, "nstance_saga_step_seconds_count", { saga: "delete", outcome: "ok" })).toBeGreaterThan(0)
      // PVE calls of the in-process simulator are counted too (the transport shares pveCalls.ts).
      expect(delta(after, "nstance_pve_calls_total", { endpoint: "POST /nodes/{node}/qemu/{vmid}/clone", outcome: "ok" })).toBe(3)
    }))
})
