import { X509Certificate as NodeX509 } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, HashMap, Logger, LogLevel, Option, Redacted } from "effect"
import { makeAgentClient, tlsTransport } from "../../src/agent/AgentClient.js"
import { closedPort } from "../support/net.js"
import { skewedClock } from "../support/virtualClock.js"
import { CLUSTER, SHARD, startAgentEndpoint } from "./harness.js"
import { refused } from "../support/refused.js"

describe("RegisterAgent over HTTP", () => {
  it.scopedLive("registers: a certificate with CN = instance ID and O = tenant, signed by the CA; IPs recorded", () =>
    Effect.gen(function* () {
      const { pki, backend, client, awaitRegistration } = yield* startAgentEndpoint()
      const nonce = yield* awaitRegistration("vmx01aaaa", "acme corp")
      const identity = yield* client.register({
        nonce: nonce.jwt,
        ips: { ipv4: "10.0.0.7", ipv6: "fd00::7" },
        hostname: "web-1.internal"
      })
      expect(identity.instanceId).toBe("vmx01aaaa")
      expect(identity.caPem).toBe(pki.caPem)
      expect(identity.renewAfterSeconds).toBe(2400)

      const verified = yield* pki.verifyClientCertificate(identity.certificatePem)
      expect(verified).toMatchObject({ instanceId: "vmx01aaaa", tenant: "acme corp" })
      expect(verified.publicKeyPem).toBe(identity.publicKeyPem)
      expect(verified.notAfter.getTime() - Date.now()).toBeGreaterThan(59 * 60_000)

      // Independent check with Node's X.509: issuer, signature, subject and clientAuth usage.
      const cert = new NodeX509(identity.certificatePem)
      const ca = new NodeX509(pki.caPem)
      expect(cert.checkIssued(ca)).toBe(true)
      expect(cert.verify(ca.publicKey)).toBe(true)
      expect(cert.subject.split("\n")).toEqual(expect.arrayContaining(["CN=vmx01aaaa", "O=acme corp"]))
      expect(cert.keyUsage).toContain("1.3.6.1.5.5.7.3.2")
      expect(cert.ca).toBe(false)

      const [registered] = yield* backend.registrations
      expect(registered).toMatchObject({
        instanceId: "vmx01aaaa",
        ips: { ipv4: "10.0.0.7", ipv6: "fd00::7" },
        hostname: "web-1.internal",
        nonceHash: nonce.hash
      })
      expect(registered!.certificateSerial).toBe(verified.serial)
    }))

  it.scopedLive("a replayed nonce is NonceReused; of two concurrent registrations exactly one wins", () =>
    Effect.gen(function* () {
      const { backend, client, awaitRegistration } = yield* startAgentEndpoint()
      const nonce = yield* awaitRegistration("vmx01bbbb")
      yield* client.register({ nonce: nonce.jwt })
      expect(yield* refused(client.register({ nonce: nonce.jwt }))).toMatchObject({ _tag: "NonceReused", instanceId: "vmx01bbbb" })

      const racing = yield* awaitRegistration("vmx01cccc")
      const results = yield* Effect.all([client.register({ nonce: racing.jwt }), client.register({ nonce: racing.jwt })], {
        concurrency: 2,
        mode: "either"
      })
      expect(results.filter((r) => r._tag === "Right")).toHaveLength(1)
      expect(results.find((r) => r._tag === "Left")?.left).toMatchObject({ _tag: "NonceReused" })
      expect((yield* backend.registrations).map((r) => r.instanceId)).toEqual(["vmx01bbbb", "vmx01cccc"])
    }))

  it.scopedLive("a superseded nonce is NonceReused; an instance the shard does not know is UnknownInstance", () =>
    Effect.gen(function* () {
      const { pki, client, awaitRegistration } = yield* startAgentEndpoint()
      const old = yield* awaitRegistration("vmx01dddd")
      yield* awaitRegistration("vmx01dddd") // the saga re-minted: only the newest nonce may register
      expect((yield* refused(client.register({ nonce: old.jwt })))._tag).toBe("NonceReused")

      const stray = yield* pki.mintNonce({ instanceId: "vmx01eeee", cluster: CLUSTER, shard: SHARD, tenant: "t", group: "g", ttl: "1 minute" })
      expect(yield* refused(client.register({ nonce: stray.jwt }))).toMatchObject({ _tag: "UnknownInstance", instanceId: "vmx01eeee" })
    }))

  it.scopedLive("each bad nonce is an InvalidNonce with its own reason, and burns nothing", () =>
    Effect.gen(function* () {
      const { pki, backend, client, awaitRegistration, signOwn } = yield* startAgentEndpoint()
      const nonce = yield* awaitRegistration("vmx01ffff")
      const base = { sub: "vmx01ffff", cluster: CLUSTER, shard: SHARD, tenant: "acme", group: "web", jti: "0123456789abcdefghij" }
      const now = Math.floor(Date.now() / 1000)

      const stranger = yield* startAgentEndpoint()
      const forged = yield* stranger.pki.mintNonce({ instanceId: "vmx01ffff", cluster: CLUSTER, shard: SHARD, tenant: "acme", group: "web", ttl: "10 minutes" })
      const expired = yield* pki.mintNonce({ instanceId: "vmx01ffff", cluster: CLUSTER, shard: SHARD, tenant: "acme", group: "web", ttl: "10 minutes" })
        // An hour in the past on the wall: the nonce is minted already expired.
        .pipe(Effect.withClock(skewedClock(Clock.make(), { wall: -3_600_000 })))
      const wrongKind = yield* signOwn({ ...base, kind: "operator", iat: now, exp: now + 600 })
      const otherShard = yield* pki.mintNonce({ instanceId: "vmx01ffff", cluster: CLUSTER, shard: "s2", tenant: "acme", group: "web", ttl: "10 minutes" })
      const otherCluster = yield* pki.mintNonce({ instanceId: "vmx01ffff", cluster: "c9", shard: SHARD, tenant: "acme", group: "web", ttl: "10 minutes" })

      const cases = [
        [Redacted.value(forged.jwt), "BadSignature"],
        [Redacted.value(expired.jwt), "Expired"],
        [wrongKind, "WrongKind"],
        [Redacted.value(otherShard.jwt), "WrongShard"],
        [Redacted.value(otherCluster.jwt), "WrongShard"],
        ["not-a-jwt", "Malformed"]
      ] as const
      for (const [token, reason] of cases) {
        const error = yield* refused(client.register({ nonce: token }))
        expect(error, reason).toMatchObject({ _tag: "InvalidNonce", reason })
        expect(error.message).not.toContain(token)
      }
      expect(yield* backend.registrations).toEqual([])
      // The real nonce still works afterwards.
      expect((yield* client.register({ nonce: nonce.jwt })).instanceId).toBe("vmx01ffff")
    }))

  it.scopedLive("a replica that does not lead answers every procedure with NotLeader{leaderAddr}", () =>
    Effect.gen(function* () {
      const { agentPort, backend, client, port, awaitRegistration, pki } = yield* startAgentEndpoint()
      const identity = yield* client.register({ nonce: (yield* awaitRegistration("vmx01gggg")).jwt })
      const pending = yield* awaitRegistration("vmx01hhhh")
      // A redirect to the endpoint the client already talks to is not followed: the error reaches the caller.
      yield* backend.setLeaderRedirect(Option.some(`127.0.0.1:${port}`))
      expect(yield* refused(client.register({ nonce: pending.jwt }))).toMatchObject({ _tag: "NotLeader", leaderAddr: `127.0.0.1:${port}` })
      // The agent channel names the leader's agent_addr.
      yield* backend.setLeaderRedirect(Option.some(`127.0.0.1:${agentPort}`))
      const expected = { _tag: "NotLeader", leaderAddr: `127.0.0.1:${agentPort}` }
      expect(yield* refused(client.reportHealth(identity))).toMatchObject(expected)
      expect(yield* refused(client.renew(identity))).toMatchObject(expected)
      // Another address is followed once: here nothing listens there.
      const elsewhere = yield* Effect.promise(closedPort)
      yield* backend.setLeaderRedirect(Option.some(`127.0.0.1:${elsewhere}`))
      const followed = yield* refused(client.register({ nonce: pending.jwt }))
      expect(followed._tag).toBe("AgentTransportError")
      expect(followed.message).toContain(`https://127.0.0.1:${elsewhere}/agent`)
      expect(client.url).toBe(`https://127.0.0.1:${elsewhere}/agent`)
      yield* backend.setLeaderRedirect(Option.none())
      // The redirects burned nothing: the same nonce registers once leadership is back.
      const back = yield* makeAgentClient(`https://127.0.0.1:${port}/agent`, tlsTransport(pki.caPem))
      expect((yield* back.register({ nonce: pending.jwt })).instanceId).toBe("vmx01hhhh")
    }))

  it.scopedLive("the nonce appears nowhere in what the backend recorded, nor in the server's logs; its hash does", () => {
    const logs: Array<string> = []
    const capture = Logger.make(({ message, annotations }) => {
      logs.push(JSON.stringify({ message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) }))
    })
    return Effect.gen(function* () {
      const { backend, client, awaitRegistration } = yield* startAgentEndpoint()
      const tokens: Array<string> = []
      const hashes: Array<string> = []
      for (const id of ["vmx01kkk1", "vmx01kkk2", "vmx01kkk3"]) {
        const nonce = yield* awaitRegistration(id)
        tokens.push(Redacted.value(nonce.jwt))
        hashes.push(nonce.hash)
        const identity = yield* client.register({ nonce: nonce.jwt, ips: { ipv4: "10.1.0.1" }, hostname: id })
        yield* client.reportHealth(identity, "degraded")
        yield* client.renew(identity)
        yield* Effect.exit(client.register({ nonce: nonce.jwt })) // a replay, refused
      }
      const recorded = JSON.stringify({
        registrations: yield* backend.registrations,
        health: yield* backend.healthReports,
        renewals: yield* backend.renewals
      })
      const everything = recorded + logs.join("\n")
      for (const token of tokens) {
        for (const part of token.split(".")) expect(everything).not.toContain(part.slice(0, 24))
      }
      for (const hash of hashes) {
        expect(recorded).toContain(hash)
        expect(logs.join("\n")).toContain(hash)
      }
      expect(logs.some((line) => line.includes("agent registered"))).toBe(true)
      expect((yield* backend.healthReports).map((h) => h.status)).toEqual(["degraded", "degraded", "degraded"])
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Logger.withMinimumLogLevel(LogLevel.Debug))
  })

  it.scopedLive("the server keeps serving after a burst of refused registrations", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      for (let i = 0; i < 20; i++) yield* Effect.exit(endpoint.client.register({ nonce: `bad${i}` }))
      const exit = yield* Effect.exit(endpoint.client.register({ nonce: (yield* endpoint.awaitRegistration("vmx01llll")).jwt }))
      expect(Exit.isSuccess(exit)).toBe(true)
    }))
})
