import { generateKeyPairSync, randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import type { AgentIdentity } from "../../src/agent/AgentClient.js"
import { healthStatement, renewStatement, signStatement } from "../../src/domain/agent/signedRequest.js"
import { type AgentEndpoint, startAgentEndpoint } from "./harness.js"
import { refused } from "../support/refused.js"

const register = (endpoint: AgentEndpoint, instanceId: string, tenant = "acme") =>
  Effect.flatMap(endpoint.awaitRegistration(instanceId, tenant), (nonce) => endpoint.client.register({ nonce: nonce.jwt }))

/** A ReportHealth payload signed by hand: `certificatePem` presented, `signer` signing. */
const healthRequest = (certificatePem: string, signer: AgentIdentity, signedAt = Date.now()) => ({
  certificatePem,
  status: "healthy",
  signedAt,
  signature: signStatement(Redacted.value(signer.privateKeyPem), healthStatement({ certificatePem, status: "healthy", signedAt }))
})

describe("ReportHealth and RenewCertificate: signed with the certified key", () => {
  it.scopedLive("a registered agent reports health, renews to a new key, and keeps reporting with the new certificate", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const identity = yield* register(endpoint, "vmx02aaaa", "acme")
      yield* endpoint.client.reportHealth(identity)
      yield* endpoint.client.reportHealth(identity, "unhealthy")

      const renewed = yield* endpoint.client.renew(identity)
      expect(renewed.publicKeyPem).not.toBe(identity.publicKeyPem)
      expect(renewed.certificatePem).not.toBe(identity.certificatePem)
      const verified = yield* endpoint.pki.verifyClientCertificate(renewed.certificatePem)
      expect(verified).toMatchObject({ instanceId: "vmx02aaaa", tenant: "acme", publicKeyPem: renewed.publicKeyPem })
      yield* endpoint.client.reportHealth(renewed, "healthy")

      expect((yield* endpoint.backend.healthReports).map((h) => [h.instanceId, h.status])).toEqual([
        ["vmx02aaaa", "healthy"],
        ["vmx02aaaa", "unhealthy"],
        ["vmx02aaaa", "healthy"]
      ])
      expect((yield* endpoint.backend.renewals)[0]).toMatchObject({ instanceId: "vmx02aaaa", certificateSerial: verified.serial })
    }))

  it.scopedLive("health with another instance's certificate, or a bad signature, is InvalidCertificate{BadSignature}", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const mallory = yield* register(endpoint, "vmx02mall")
      const victim = yield* register(endpoint, "vmx02vict")

      // Mallory presents the victim's (public) certificate, signing with her own key.
      const impersonation = yield* refused(endpoint.raw.ReportHealth(healthRequest(victim.certificatePem, mallory)))
      expect(impersonation).toMatchObject({ _tag: "InvalidCertificate", reason: "BadSignature" })

      const garbage = { ...healthRequest(victim.certificatePem, victim), signature: randomBytes(64).toString("base64url") }
      expect(yield* refused(endpoint.raw.ReportHealth(garbage))).toMatchObject({ _tag: "InvalidCertificate", reason: "BadSignature" })

      // A valid signature over a different status does not carry over.
      const signed = healthRequest(victim.certificatePem, victim)
      expect(yield* refused(endpoint.raw.ReportHealth({ ...signed, status: "degraded" }))).toMatchObject({ reason: "BadSignature" })

      // Renewal for the victim's identity signed by Mallory: refused, no certificate handed out.
      const { publicKey } = generateKeyPairSync("ed25519")
      const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }) as string
      const signedAt = Date.now()
      const stolenRenewal = yield* refused(endpoint.raw.RenewCertificate({
        certificatePem: victim.certificatePem,
        publicKeyPem,
        signedAt,
        signature: signStatement(Redacted.value(mallory.privateKeyPem), renewStatement({ certificatePem: victim.certificatePem, publicKeyPem, signedAt }))
      }))
      expect(stolenRenewal).toMatchObject({ _tag: "InvalidCertificate", reason: "BadSignature" })

      expect(yield* endpoint.backend.healthReports).toEqual([])
      expect(yield* endpoint.backend.renewals).toEqual([])
      // The victim itself is unaffected.
      yield* endpoint.client.reportHealth(victim)
    }))

  it.scopedLive("certificates from another CA, the CA certificate itself, or garbage are refused with their reason", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const other = yield* startAgentEndpoint()
      const foreign = yield* register(other, "vmx02forn")
      expect(yield* refused(endpoint.raw.ReportHealth(healthRequest(foreign.certificatePem, foreign)))).toMatchObject({
        _tag: "InvalidCertificate",
        reason: "UntrustedIssuer"
      })
      const own = yield* register(endpoint, "vmx02ownn")
      expect(yield* refused(endpoint.raw.ReportHealth(healthRequest(endpoint.pki.caPem, own)))).toMatchObject({
        _tag: "InvalidCertificate",
        reason: "NotClientCertificate"
      })
      const notACert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
      expect(yield* refused(endpoint.raw.ReportHealth(healthRequest(notACert, own)))).toMatchObject({
        _tag: "InvalidCertificate",
        reason: "Malformed"
      })
    }))

  it.scopedLive("a replayed or stale signed request is InvalidCertificate{StaleSignature}", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const agent = yield* register(endpoint, "vmx02repl")
      const request = healthRequest(agent.certificatePem, agent)
      expect(yield* endpoint.raw.ReportHealth(request)).toEqual({ ok: true })
      expect(yield* refused(endpoint.raw.ReportHealth(request))).toMatchObject({ reason: "StaleSignature" })
      const old = healthRequest(agent.certificatePem, agent, Date.now() - 10 * 60_000)
      expect(yield* refused(endpoint.raw.ReportHealth(old))).toMatchObject({ reason: "StaleSignature" })
      const future = healthRequest(agent.certificatePem, agent, Date.now() + 10 * 60_000)
      expect(yield* refused(endpoint.raw.ReportHealth(future))).toMatchObject({ reason: "StaleSignature" })
      expect((yield* endpoint.backend.healthReports)).toHaveLength(1)
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
