import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Stream } from "effect"
import { nonceHash } from "../../src/domain/agent/nonce.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import type { FaultHandle } from "../../src/sim/faults.js"
import type { WatchEvent } from "../../src/rpc/AdminRpc.js"
import { adminConfigText, makeAdminWorld } from "./harness.js"
import { refused } from "../support/refused.js"

describe("Admin procedures on the leader", () => {
  it.scopedLive("WatchEvents streams what the leader records; RefreshConfig takes a pushed config at once", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const rpc = yield* world.client()
      const seen: Array<WatchEvent> = []
      const watching = yield* Stream.runForEach(rpc.WatchEvents(), (event) => Effect.sync(() => { seen.push(event) })).pipe(Effect.fork)
      yield* Effect.sleep("200 millis")
      // A pushed config (size 1) is not polled yet; RefreshConfig makes the leader take it now.
      yield* world.putConfig(adminConfigText(1, world.leader.address))
      expect(yield* rpc.RefreshConfig()).toMatchObject({ groups: 1, desiredVms: 1 })
      yield* world.waitUntil("the watch saw the instance run", Effect.sync(() => seen.some((e) => e.phase === "running")))
      const id = seen[0]?.instanceId ?? ""
      const phases = seen.filter((e) => e.instanceId === id).map((e) => e.phase)
      expect(phases[0]).toBe("requested")
      expect(phases.at(-1)).toBe("running")
      expect(seen.every((e, i) => i === 0 || e.seq >= (seen[i - 1]?.seq ?? 0))).toBe(true)
      const running = seen.find((e) => e.phase === "running")
      expect(running).toMatchObject({ tenant: "shop", group: "web" })
      expect(running?.vmid).toBeGreaterThan(0)
      yield* Fiber.interrupt(watching)
      // A config that does not validate is refused with its problems; the last good one stays.
      yield* world.putConfig("{ \"cluster\": { \"id\": \"acme\" } }")
      const rejected = yield* refused(rpc.RefreshConfig())
      expect(rejected._tag).toBe("ConfigRejected")
      expect((yield* rpc.Status()).desiredVms).toBe(1)
      // A watch belongs to the term: when the replica stops leading, the stream ends with NotLeader.
      const second = yield* Stream.runDrain(rpc.WatchEvents()).pipe(Effect.flip, Effect.fork)
      yield* Effect.sleep("100 millis")
      yield* world.depose
      const ended = yield* Fiber.join(second).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the watch did not end") }))
      expect(ended).toMatchObject({ _tag: "NotLeader" })
      expect(yield* refused(rpc.Status())).toMatchObject({ _tag: "NotLeader" })
    }), { timeout: 20_000 })

  it.scopedLive("MintNonce: a fresh nonce whose hash (only) the log records; refused for unknown instances", () =>
    Effect.gen(function* () {
      // Every ISO upload refused from the start: the instance cannot reach "cloning" (the clone needs its ISO),
      // so MintNonce is refused for it whatever the machine's speed; then uploads work again.
      let uploads: FaultHandle | undefined
      const world = yield* makeAdminWorld({
        size: 1, registration: true,
        beforeLead: (sim) => { uploads = sim.faults.http({ method: "POST", path: /\/storage\/[^/]+\/upload$/, status: 503, message: "upload refused (test)" }) }
      })
      const rpc = yield* world.client()
      yield* world.waitUntil("the instance is requested", Effect.map(rpc.ListInstances({}), (list) => list.length >= 1))
      const [early] = yield* rpc.ListInstances({})
      expect(yield* refused(rpc.MintNonce({ instanceId: early!.id }))).toMatchObject({ _tag: "NonceNotApplicable" })
      uploads?.remove()
      // Unregistered (no simulated agents here): its VM runs and waits for an agent.
      yield* world.waitUntil("a VM runs", Effect.map(rpc.ListInstances({}), (list) => list.some((i) => i.phase === "running")))
      const instance = (yield* rpc.ListInstances({})).find((i) => i.phase === "running")
      const minted = yield* rpc.MintNonce({ instanceId: instance!.id })
      expect(minted.instanceId).toBe(instance!.id)
      expect(minted.expiresAt).toBeGreaterThan(Date.now())
      const { state } = yield* replayStore(world.store).pipe(Effect.orDie)
      const recorded = Option.getOrUndefined(Option.map(Option.fromNullable([...state.instances].find(([id]) => id === instance!.id)), ([, i]) => i.nonceHash))
      expect(recorded).toBe(nonceHash(minted.nonce))
      // Never the token itself in the log.
      const keys = yield* world.store.list("log/").pipe(Stream.runCollect, Effect.orDie)
      for (const meta of Chunk.toReadonlyArray(keys)) {
        const body = new TextDecoder().decode((yield* world.store.get(meta.key).pipe(Effect.orDie)).body)
        expect(body).not.toContain(minted.nonce)
      }
      expect(yield* refused(rpc.MintNonce({ instanceId: "webzzzzzzzzzzzzzzzzzzzzzzzzzz" }))).toMatchObject({ _tag: "InstanceNotFound" })
      const status = yield* rpc.Status()
      expect(status.registration).toBe(true)
    }), { timeout: 30_000 })
})
