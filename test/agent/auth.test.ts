/**
 * The agent channel authenticates by the connection's client certificate: an agent's, from the cluster CA,
 * valid now, about the instance the request names, and the instance's newest (a renewal supersedes the
 * certificate it was asked with). What is refused at the TLS handshake never reaches a handler.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, MetricLabel, Redacted } from "effect"
import { WebSocket } from "ws"
import { endpointRefusals } from "../../src/http/listener.js"
import { type AgentEndpoint, rawChannel, startAgentEndpoint } from "./harness.js"
import { refused } from "../support/refused.js"

const register = (endpoint: AgentEndpoint, instanceId: string, tenant = "acme") =>
  Effect.flatMap(endpoint.awaitRegistration(instanceId, tenant), (nonce) => endpoint.client.register({ nonce: nonce.jwt }))

const certificateRefusals = Metric.value(
  Metric.taggedWithLabels(endpointRefusals, [MetricLabel.make("endpoint", "agent"), MetricLabel.make("reason", "certificate")])
).pipe(Effect.map((state) => state.count))

/** Opens a WebSocket to the channel with the TLS options given; resolves how it ended: "open" or the error's text. */
const handshake = (url: string, tls: { readonly ca: string; readonly cert?: string; readonly key?: string }) =>
  Effect.promise(() =>
    new Promise<string>((resolve) => {
      const socket = new WebSocket(url, { ...tls, minVersion: "TLSv1.3" })
      socket.once("open", () => {
        socket.close()
        resolve("open")
      })
      socket.once("error", (error) => resolve(error.message))
    }))

describe("the agent channel: identity from the client certificate", () => {
  it.scopedLive("a registered agent reports and renews over one channel; the renewed certificate supersedes the old one", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const identity = yield* register(endpoint, "vmx02aaaa", "acme")
      expect(identity.agentUrl).toBe(endpoint.agentUrl)
      yield* endpoint.client.reportHealth(identity)
      yield* endpoint.client.reportHealth(identity, "unhealthy")

      const renewed = yield* endpoint.client.renew(identity)
      expect(renewed.publicKeyPem).not.toBe(identity.publicKeyPem)
      const verified = yield* endpoint.pki.verifyClientCertificate(renewed.certificatePem)
      expect(verified).toMatchObject({ instanceId: "vmx02aaaa", tenant: "acme", role: "agent", publicKeyPem: renewed.publicKeyPem })
      yield* endpoint.client.reportHealth(renewed, "healthy")

      // The old certificate (say, a copy taken before the renewal) is refused from now on, for both procedures.
      const before = yield* certificateRefusals
      const stale = yield* rawChannel(endpoint.agentUrl, identity)
      expect(yield* refused(stale.ReportHealth({ instanceId: "vmx02aaaa" }))).toMatchObject({ _tag: "InvalidCertificate", reason: "Superseded" })
      expect(yield* refused(stale.RenewCertificate({ instanceId: "vmx02aaaa", publicKeyPem: identity.publicKeyPem }))).toMatchObject({
        _tag: "InvalidCertificate",
        reason: "Superseded"
      })
      expect((yield* certificateRefusals) - before).toBe(2)

      expect((yield* endpoint.backend.healthReports).map((h) => [h.instanceId, h.status])).toEqual([
        ["vmx02aaaa", "healthy"],
        ["vmx02aaaa", "unhealthy"],
        ["vmx02aaaa", "healthy"]
      ])
      expect(yield* endpoint.backend.renewals).toHaveLength(1)
      expect((yield* endpoint.backend.renewals)[0]).toMatchObject({ instanceId: "vmx02aaaa", certificateSerial: verified.serial })
    }))

  it.scopedLive("a request about another instance is InvalidCertificate{OtherInstance}, and nothing is recorded for it", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const mallory = yield* register(endpoint, "vmx02mall")
      yield* register(endpoint, "vmx02vict")
      const channel = yield* rawChannel(endpoint.agentUrl, mallory)
      expect(yield* refused(channel.ReportHealth({ instanceId: "vmx02vict" }))).toMatchObject({ _tag: "InvalidCertificate", reason: "OtherInstance" })
      expect(yield* refused(channel.RenewCertificate({ instanceId: "vmx02vict", publicKeyPem: mallory.publicKeyPem }))).toMatchObject({
        _tag: "InvalidCertificate",
        reason: "OtherInstance"
      })
      expect(yield* endpoint.backend.healthReports).toEqual([])
      expect(yield* endpoint.backend.renewals).toEqual([])
      // Her own reports still go through on the same connection.
      expect(yield* channel.ReportHealth({ instanceId: "vmx02mall" })).toEqual({ ok: true })
    }))

  it.scopedLive("no client certificate, or one from another CA, is refused at the TLS handshake and counted", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const other = yield* startAgentEndpoint()
      const foreign = yield* register(other, "vmx02forn")
      const before = yield* certificateRefusals
      expect(yield* handshake(endpoint.agentUrl, { ca: endpoint.pki.caPem })).not.toBe("open")
      expect(yield* handshake(endpoint.agentUrl, { ca: endpoint.pki.caPem, cert: foreign.certificatePem, key: Redacted.value(foreign.privateKeyPem) })).not.toBe("open")
      // The product's client says so as a transport error, naming the endpoint.
      const error = yield* refused(endpoint.client.reportHealth({ ...foreign, caPem: endpoint.pki.caPem, agentUrl: endpoint.agentUrl }))
      expect(error._tag).toBe("AgentTransportError")
      expect(error.message).toContain(endpoint.agentUrl)
      yield* Effect.sleep("100 millis")
      expect((yield* certificateRefusals) - before).toBeGreaterThanOrEqual(2)
      // An agent of this CA still gets through.
      const own = yield* register(endpoint, "vmx02ownn")
      expect(yield* handshake(endpoint.agentUrl, { ca: endpoint.pki.caPem, cert: own.certificatePem, key: Redacted.value(own.privateKeyPem) })).toBe("open")
    }))

  it.scopedLive("an instance the shard forgot gets UnknownInstance for health and renewal", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const agent = yield* register(endpoint, "vmx02gone")
      yield* endpoint.backend.forget("vmx02gone")
      expect(yield* refused(endpoint.client.reportHealth(agent))).toMatchObject({ _tag: "UnknownInstance", instanceId: "vmx02gone" })
      expect(yield* refused(endpoint.client.renew(agent))).toMatchObject({ _tag: "UnknownInstance" })
    }))
})
