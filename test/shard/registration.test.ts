/**
 * Agent registration end to end on the HTTP simulator: the leader mints a nonce into every VM's cloud-init
 * ISO (only its hash in the log), serves the agent endpoint, and the simulator's guests read the ISO back,
 * register over real HTTP with their simulated IPs and report health. A guest that never registers is
 * replaced after `registration_timeout`, one that stops reporting health after the grace — and the nonce
 * token never reaches the event log or any object-store write.
 */
import { describe, expect, it } from "@effect/vitest"
import { generateKeyPairSync } from "node:crypto"
import { type AddressInfo, createServer, type Server } from "node:net"
import { Duration, Effect, Fiber, HashMap, Option, Redacted, Ref, SubscriptionRef } from "effect"
import { makeAgentClient, tlsTransport } from "../../src/agent/AgentClient.js"
import { nonceHash } from "../../src/domain/agent/nonce.js"
import { allInstances } from "../../src/domain/shard/state.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { simulatedIp } from "../../src/sim/agent.js"
import { rawChannel, rawClient } from "../agent/harness.js"
import type { ParsedShardConfig } from "../../src/domain/config/index.js"
import { nonTemplateVms } from "./leaderHarness.js"
import { address, registeredProblems, registrationHarness } from "./registrationHarness.js"
import { refused } from "../support/refused.js"

describe("agent registration (HTTP simulator, real agent endpoint)", () => {
  it.scopedLive("every VM registers with its simulated IPs; the log has Registered events and nonce hashes", () =>
    Effect.gen(function* () {
      const h = yield* registrationHarness({ size: 3 })
      yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("all registered", registeredProblems(h, 3), "12 seconds")
      const state = yield* h.state
      const vms = nonTemplateVms(h.sim)
      for (const instance of allInstances(state)) {
        const vm = vms.find((v) => v.config.get("name") === instance.id)!
        const ip = simulatedIp(vm.node, vm.vmid)
        expect(ip).toMatch(/^10\.20\.[1-3]\.\d+$/)
        expect(instance).toMatchObject({ phase: "registered", ips: [ip], hostname: instance.id })
        expect(instance.nonceHash).toMatch(/^[0-9a-f]{64}$/)
        expect(instance.startedAt).toBeDefined()
      }
      const events = yield* h.events
      const registered = events.filter((e) => e._tag === "Registered")
      expect(registered).toHaveLength(3)
      for (const e of registered) expect((e as { ips: ReadonlyArray<string> }).ips[0]).toMatch(/^10\.20\.[1-3]\.\d+$/)
      // Every nonce a guest read is one whose hash the log holds.
      const hashes = new Set(events.filter((e) => e._tag === "NonceIssued").map((e) => (e as { nonceHash: string }).nonceHash))
      expect(h.agents.nonces.length).toBeGreaterThanOrEqual(3)
      for (const nonce of h.agents.nonces) expect(hashes.has(nonceHash(nonce))).toBe(true)
      // The endpoint's fibers log the registration (the replica serves it, on the term's backend).
      expect(h.endpointLogs.some((line) => / registered \(10\.20\.\d\.\d+\) as /.test(line))).toBe(true)
    }), { timeout: 15_000 })

  it.scopedLive("a VM whose guest never registers is replaced after registration_timeout", () =>
    Effect.gen(function* () {
      let first = true
      const h = yield* registrationHarness({
        size: 2,
        registrationTimeout: "2s",
        mute: () => {
          const mute = first
          first = false
          return mute
        }
      })
      yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("the muted VM replaced and the group registered", Effect.gen(function* () {
        const events = yield* h.events
        const muted = h.agents.muted[0]
        if (muted === undefined) return ["no guest muted yet"]
        const deleted = events.some((e) => e._tag === "DeleteRequested" && e.instanceId === muted && e.reason === "not-ready")
        const gone = events.some((e) => e._tag === "InstanceGone" && e.instanceId === muted)
        return [...(deleted ? [] : [`${muted} not replaced yet`]), ...(gone ? [] : [`${muted} not gone yet`]), ...(yield* registeredProblems(h, 2))]
      }), "13 seconds")
      expect(h.logs.some((line) => line.includes("has not registered within 2s of its start; replacing it"))).toBe(true)
    }), { timeout: 20_000 })

  it.scopedLive("a crashed VM stops reporting health: after the grace it is retired, replaced first, then deleted without a drain", () =>
    Effect.gen(function* () {
      // The GC's own stopped-VM check waits a minute here, so it is the missing health reports that count.
      const h = yield* registrationHarness({ size: 2, graces: { health: "1500 millis", vmLoss: "1 minute" } })
      yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("all registered", registeredProblems(h, 2), "8 seconds")
      const victim = allInstances(yield* h.state)[0]!
      h.sim.model.crashVm(victim.vmid!)
      yield* h.waitUntil("the crashed VM replaced", Effect.gen(function* () {
        const events = yield* h.events
        const deleted = events.some((e) => e._tag === "DeleteRequested" && e.instanceId === victim.id && e.reason === "retired")
        const gone = events.some((e) => e._tag === "InstanceGone" && e.instanceId === victim.id)
        return [...(deleted ? [] : ["not replaced yet"]), ...(gone ? [] : ["not gone yet"]), ...(yield* registeredProblems(h, 2))]
      }), "8 seconds")
      const events = yield* h.events
      const retired = events.find((e) => e._tag === "RetirementRequested" && e.instanceId === victim.id)
      expect(retired).toMatchObject({ reason: "unhealthy" })
      // Replacement first: a new instance registered before the crashed one's delete was requested, with no drain between.
      const deleteSeq = events.find((e) => e._tag === "DeleteRequested" && e.instanceId === victim.id)!.seq
      const replacement = events.find((e) => e._tag === "InstanceRequested" && e.seq >= retired!.seq)
      if (replacement?._tag !== "InstanceRequested") return expect.fail("no instance requested after the retirement")
      expect(replacement.reason).toBe("replacement")
      const registeredAt = events.find((e) => e._tag === "Registered" && e.instanceId === replacement.instanceId)!.seq
      expect(registeredAt).toBeLessThanOrEqual(deleteSeq)
      expect(events.some((e) => e._tag === "DrainStarted" && e.instanceId === victim.id)).toBe(false)
      expect(h.logs.some((line) => line.includes(`${victim.id}: VM ${victim.vmid} stopped reporting health`))).toBe(true)
    }), { timeout: 20_000 })

  it.scopedLive("the nonce token never appears in an event or any object-store write; only its hash does", () =>
    Effect.gen(function* () {
      const h = yield* registrationHarness({ size: 2 })
      const writes: Array<string> = []
      const recording: ObjectStoreShape = {
        ...h.store,
        put: (key, body, pre) => Effect.suspend(() => {
          writes.push(`${key}\n${new TextDecoder().decode(body)}`)
          return h.store.put(key, body, pre)
        })
      }
      yield* h.leader(1, { store: recording, handle: h.handle })
      yield* h.waitUntil("all registered", registeredProblems(h, 2), "10 seconds")
      const nonces = h.agents.nonces
      expect(nonces.length).toBeGreaterThanOrEqual(2)
      expect(writes.length).toBeGreaterThan(0)
      const events = JSON.stringify(yield* h.events)
      const logs = [...h.logs, ...h.endpointLogs].join("\n")
      for (const nonce of nonces) {
        // The token and its signature part (the part no hash or claim could contain by chance).
        const signature = nonce.split(".")[2]!
        for (const text of [events, logs, ...writes]) {
          expect(text.includes(nonce)).toBe(false)
          expect(text.includes(signature)).toBe(false)
        }
        expect(events.includes(nonceHash(nonce))).toBe(true)
      }
    }), { timeout: 15_000 })

  it.scopedLive("an endpoint that cannot bind is logged as an error and stops neither the replica nor the leadership", () =>
    Effect.gen(function* () {
      // Another process holds the registration port.
      const squatter = yield* Effect.acquireRelease(
        Effect.async<Server>((resume) => {
          // It drops every connection, so agents get an error (and retry) rather than a hanging request.
          const server = createServer((socket) => socket.destroy())
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => void server.close())
      )
      const port = (squatter.address() as AddressInfo).port
      const h = yield* registrationHarness({ size: 2, registrationAddr: `127.0.0.1:${port}` })
      const fiber = yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("the group created", h.convergence(2), "10 seconds")
      expect(h.endpointLogs.some((line) => line.includes(`agent endpoint: cannot serve on 127.0.0.1:${port}`))).toBe(true)
      expect(fiber.unsafePoll()).toBeNull()
    }), { timeout: 15_000 })

  it.scopedLive("over the agent channel, a renewal recorded in the leader's log supersedes the old certificate", () =>
    Effect.gen(function* () {
      const h = yield* registrationHarness({ size: 1, mute: () => true })
      yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("the guest booted", Effect.map(h.state, (state) =>
        h.agents.nonces.length >= 1 && allInstances(state).every((i) => i.phase === "running") ? [] : ["not yet"]), "10 seconds")
      const client = yield* makeAgentClient(`https://127.0.0.1:${h.port}/agent`, tlsTransport(h.pki.caPem))
      const identity = yield* client.register({ nonce: Redacted.make(h.agents.nonces[0]!) })
      expect(identity.agentUrl).toBe(`wss://127.0.0.1:${h.agentPort}/agent`)
      yield* client.reportHealth(identity)
      const renewed = yield* client.renew(identity)
      yield* client.reportHealth(renewed)
      const serial = (yield* h.pki.verifyClientCertificate(renewed.certificatePem)).serial
      const events = yield* h.events
      expect(events.filter((e) => e._tag === "CertificateRenewed")).toMatchObject([{ instanceId: identity.instanceId, certificateSerial: serial }])
      expect(allInstances(yield* h.state)[0]).toMatchObject({ phase: "registered", certificateSerial: serial })
      // A copy of the old certificate is refused from now on.
      const stale = yield* rawChannel(identity.agentUrl, identity)
      expect(yield* refused(stale.ReportHealth({ instanceId: identity.instanceId }))).toMatchObject({ _tag: "InvalidCertificate", reason: "Superseded" })
    }), { timeout: 15_000 })

  it.scopedLive("a standby answers NotLeader with the leader's registration address; the client follows it and registers", () =>
    Effect.gen(function* () {
      // No guest registers by itself: the test registers with the nonces the guests read.
      const h = yield* registrationHarness({ size: 2, mute: () => true })
      // The standby binds a port of its own; the shared config advertises registration_addr with a wildcard
      // host, which a replica fills in with the leader's host from leader.json.
      const parsed = yield* SubscriptionRef.get(h.config)
      const standbyConfig = yield* SubscriptionRef.make<ParsedShardConfig>({
        ...parsed,
        config: {
          ...parsed.config,
          shard: {
            ...parsed.config.shard,
            bind: { ...parsed.config.shard.bind, registration: address("127.0.0.1", 0), agent: address("127.0.0.1", 0) },
            advertise: {
              ...parsed.config.shard.advertise,
              registration: { host: "", port: h.port, text: `:${h.port}` },
              agent: { host: "", port: h.agentPort, text: `:${h.agentPort}` }
            }
          }
        }
      })
      const standby = yield* h.replica("replica-2", standbyConfig)
      const standbyUrl = `https://127.0.0.1:${yield* standby.listening}/agent`
      const leaderUrl = `https://127.0.0.1:${h.port}/agent`
      const leader = yield* h.leader(1, { handle: h.handle })
      yield* h.waitUntil("both guests booted", Effect.gen(function* () {
        const state = yield* h.state
        return h.agents.nonces.length >= 2 && allInstances(state).every((i) => i.phase === "running") ? [] : ["not yet"]
      }), "10 seconds")
      const [first, second] = h.agents.nonces as [string, string]
      const publicKeyPem = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString()

      const raw = yield* rawClient(standbyUrl, h.pki.caPem)
      expect(yield* refused(raw.RegisterAgent({ nonce: first, publicKeyPem }))).toMatchObject({
        _tag: "NotLeader",
        leaderAddr: `127.0.0.1:${h.port}`
      })
      // certificates.agent.ttl is read from the config at every issue: a push applies without a restart.
      yield* SubscriptionRef.update(h.config, (c) => ({ ...c, config: { ...c.config, certificates: { ...c.config.certificates, agentTtl: Duration.hours(2) } } }))
      // The product's client follows the redirect once and stays with the leader afterwards.
      const client = yield* makeAgentClient(standbyUrl, tlsTransport(h.pki.caPem))
      const identity = yield* client.register({ nonce: Redacted.make(first), ips: { ipv4: "10.9.0.1" } })
      expect(client.url).toBe(leaderUrl)
      expect(identity.renewAfterSeconds).toBe(4800)
      yield* client.reportHealth(identity)
      yield* h.waitUntil("registered through the standby", Effect.map(h.state, (state) =>
        allInstances(state).some((i) => i.id === identity.instanceId && i.phase === "registered" && i.ips?.[0] === "10.9.0.1") ? [] : ["not yet"]))

      // A deposed leader (its term ended, another replica leads now) answers NotLeader as well.
      yield* Fiber.interrupt(leader)
      yield* Ref.set(h.leaderInfo, Option.some({ id: "replica-3", address: "127.0.0.3:8991", term: 2 }))
      expect(yield* refused(raw.RegisterAgent({ nonce: second, publicKeyPem }))).toMatchObject({ _tag: "NotLeader", leaderAddr: "127.0.0.3:" + h.port })
      const atOldLeader = yield* rawClient(leaderUrl, h.pki.caPem)
      expect(yield* refused(atOldLeader.RegisterAgent({ nonce: second, publicKeyPem }))).toMatchObject({ _tag: "NotLeader" })
      expect(HashMap.size((yield* h.state).instances)).toBe(2)
    }), { timeout: 15_000 })
})
