/**
 * Health reports over the real agent channel of a replica backed by the shard (`makeAgentBackendReplica`):
 * the report path checks leadership once, in the backend, and still never lets a replica that does not lead
 * take a report as the leader's.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, Redacted, Ref } from "effect"
import { makeAgentClient, tlsTransport } from "../../src/agent/AgentClient.js"
import { allInstances } from "../../src/domain/shard/state.js"
import { rawChannel } from "../agent/harness.js"
import { registrationHarness } from "./registrationHarness.js"
import { refused } from "../support/refused.js"

describe("health reports on a shard replica's agent channel", () => {
  it.scopedLive("the leader records them; deposed, the same replica answers NotLeader naming the leader's agent address", () =>
    Effect.gen(function* () {
      // No guest registers by itself: the test registers with the nonce a guest read.
      const h = yield* registrationHarness({ size: 1, mute: () => true })
      const leader = yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("the guest booted", Effect.map(h.state, (state) =>
        h.agents.nonces.length >= 1 && allInstances(state).every((i) => i.phase === "running") ? [] : ["not yet"]), "10 seconds")
      const client = yield* makeAgentClient(`https://127.0.0.1:${h.port}/agent`, tlsTransport(h.pki.caPem))
      const identity = yield* client.register({ nonce: Redacted.make(h.agents.nonces[0]!) })
      const channel = yield* rawChannel(identity.agentUrl, identity)
      expect(yield* channel.ReportHealth({ instanceId: identity.instanceId })).toEqual({ ok: true })

      yield* Fiber.interrupt(leader)
      yield* Ref.set(h.leaderInfo, Option.some({ id: "replica-3", address: "127.0.0.3:8991", term: 2 }))
      expect(yield* refused(channel.ReportHealth({ instanceId: identity.instanceId }))).toMatchObject({
        _tag: "NotLeader",
        leaderAddr: yield* h.handle.leaderAddress("agent")
      })
      expect(yield* h.handle.currentTerm).toEqual(Option.none())
    }), { timeout: 15_000 })
})
