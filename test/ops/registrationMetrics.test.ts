/** The registrations counter moves once per registration the log records, never for a refused one. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref, Stream } from "effect"
import { makeInstanceIdGenerator } from "../../src/domain/instanceId.js"
import { type ShardEvent, InstanceRequested, NonceIssued, Started } from "../../src/domain/shard/events.js"
import { fold } from "../../src/domain/shard/state.js"
import { makePrometheusScrape } from "../../src/metrics/prometheus.js"
import { EventLog, type EventLogShape } from "../../src/services/EventLog.js"
import { makeAgentBackendShard } from "../../src/shard/AgentBackendShard.js"
import { parsePrometheus, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"

describe.skipIf(skipWithout("prometheus-parser"))("/metrics: registrations", () => {
  it.scoped("one per recorded registration; a reused nonce does not count", () =>
    Effect.gen(function* () {
      const instanceId = makeInstanceIdGenerator()("web")
      const at = 1_700_000_000_000
      const events = yield* Ref.make<ReadonlyArray<ShardEvent>>([
        InstanceRequested.make({ instanceId, at, tenant: "t", group: "web", kind: "web", specHash: "h", reason: "scale-up" }),
        NonceIssued.make({ instanceId, at, nonceHash: "ab".repeat(32) }),
        Started.make({ instanceId, at })
      ])
      const log: EventLogShape = {
        open: () => Effect.void,
        append: (more) => Effect.map(Ref.updateAndGet(events, (now) => [...now, ...more]), (all) => ({ seq: all.length })),
        state: Effect.map(Ref.get(events), fold),
        seq: Effect.map(Ref.get(events), (all) => all.length),
        changes: Stream.empty,
        snapshot: () => Effect.map(Ref.get(events), (all) => ({ seq: all.length }))
      }
      const backend = yield* makeAgentBackendShard(new Map()).pipe(Effect.provideService(EventLog, log))
      const scrape = yield* makePrometheusScrape
      const registrations = Effect.map(Effect.flatMap(scrape.text, (text) => Effect.promise(() => parsePrometheus(text))), (families) => total(families, "nstance_registrations_total"))
      const before = yield* registrations
      const registration = { instanceId, ips: { ipv4: "10.0.0.5" }, nonceHash: "ab".repeat(32), certificateSerial: "01", certificateNotAfter: new Date(at + 86_400_000) }
      yield* backend.recordRegistered(registration)
      expect((yield* registrations) - before).toBe(1)
      const again = yield* Effect.flip(backend.recordRegistered(registration))
      expect(again._tag).toBe("NonceReused")
      expect((yield* registrations) - before).toBe(1)
    }))
})
