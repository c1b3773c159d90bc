import { generateKeyPairSync } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { httpsRequest } from "../support/tls.js"
import { Effect, Redacted } from "effect"
import { PAYLOAD_LIMITS } from "../../src/rpc/AgentRpc.js"
import { type AgentEndpoint, rawChannel, startAgentEndpoint } from "./harness.js"
import { refused } from "../support/refused.js"

const edPublicKey = () => generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string

/** The endpoint still registers a fresh instance (nothing above broke it); that agent's identity. */
const stillServes = (endpoint: AgentEndpoint, instanceId: string) =>
  Effect.gen(function* () {
    const nonce = yield* endpoint.awaitRegistration(instanceId)
    const identity = yield* endpoint.client.register({ nonce: nonce.jwt })
    expect(identity.instanceId).toBe(instanceId)
    return identity
  })

/** A POST over TLS trusting the endpoint's CA; a connection the server drops fails with its error's message. */
const post = (endpoint: { readonly url: string; readonly pki: { readonly caPem: string } }, body: string | ReadonlyArray<Uint8Array>, headers: Record<string, string> = {}, url = endpoint.url) =>
  Effect.tryPromise({
    try: () => httpsRequest(url, { body, headers, ca: endpoint.pki.caPem }),
    catch: (error) => (error instanceof Error ? error.message : String(error))
  })

describe("payload limits and formats", () => {
  it.scopedLive("a field over its limit is PayloadTooLarge naming the field and limit", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const nonce = yield* endpoint.awaitRegistration("vmx03aaaa")
      const jwt = Redacted.value(nonce.jwt)
      const cases = [
        [{ nonce: jwt, publicKeyPem: "-----BEGIN PUBLIC KEY-----\n" + "A".repeat(5000) + "\n-----END PUBLIC KEY-----\n" }, "publicKeyPem", 4096],
        [{ nonce: "a".repeat(3000), publicKeyPem: edPublicKey() }, "nonce", 2048],
        [{ nonce: jwt, publicKeyPem: edPublicKey(), hostname: "a".repeat(300) }, "hostname", 253]
      ] as const
      for (const [payload, field, maxLength] of cases) {
        expect(yield* refused(endpoint.raw.RegisterAgent(payload))).toMatchObject({ _tag: "PayloadTooLarge", field, maxLength })
      }
      // On the agent channel too, checked before anything else.
      const agent = yield* stillServes(endpoint, "vmx03bbbb")
      const channel = yield* rawChannel(endpoint.agentUrl, agent)
      expect(PAYLOAD_LIMITS.instanceId).toBe(128)
      expect(yield* refused(channel.ReportHealth({ instanceId: "v".repeat(129) }))).toMatchObject({ _tag: "PayloadTooLarge", field: "instanceId" })
      // A message over the channel's limit (16 KiB) closes that connection; the agent's next one is served.
      const huge = yield* refused(channel.RenewCertificate({ instanceId: "vmx03bbbb", publicKeyPem: "A".repeat(20_000) }))
      expect(huge._tag).not.toBe("InvalidPayload")
      yield* endpoint.client.reportHealth(agent)
      // The oversized attempts did not burn the nonce either.
      expect((yield* endpoint.client.register({ nonce: nonce.jwt })).instanceId).toBe("vmx03aaaa")
    }))

  it.scopedLive("a request body over the limit is HTTP 413 — a typed PayloadTooLarge{body} through the client", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint({ maxRequestBytes: 16 * 1024 })
      const nonce = yield* endpoint.awaitRegistration("vmx03cccc")
      const viaClient = yield* refused(endpoint.client.register({ nonce: nonce.jwt, hostname: "a".repeat(100_000) }))
      expect(viaClient).toMatchObject({ _tag: "PayloadTooLarge", field: "body", maxLength: 16 * 1024 })

      const big = yield* post(endpoint, "x".repeat(1024 * 1024)).pipe(Effect.orDie)
      expect(big.status).toBe(413)
      expect(JSON.parse(big.text)).toMatchObject({ _tag: "PayloadTooLarge", field: "body", maxLength: 16 * 1024 })

      // Without Content-Length (chunked), the read stops at the limit and the connection is dropped.
      const chunk = new TextEncoder().encode("y".repeat(8 * 1024))
      const chunked = yield* post(endpoint, Array.from({ length: 8 }, () => chunk)).pipe(
        Effect.map((r) => r.status),
        Effect.catchAll((message) => Effect.succeed(message))
      )
      expect(chunked === 413 || /socket hang up|ECONNRESET|EPIPE/.test(String(chunked))).toBe(true)
      yield* stillServes(endpoint, "vmx03cccc")
    }))

  it.scopedLive("malformed fields are InvalidPayload naming the field and what was expected, never the value", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const nonce = yield* endpoint.awaitRegistration("vmx03dddd")
      const jwt = Redacted.value(nonce.jwt)
      const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }) as string
      const cases = [
        [{ privateIpv4: "999.1.1.1" }, "privateIpv4", /IPv4/],
        [{ privateIpv4: "fd00::1" }, "privateIpv4", /IPv4/],
        [{ privateIpv6: "10.0.0.1" }, "privateIpv6", /IPv6/],
        [{ hostname: "-bad-.example" }, "hostname", /DNS name/],
        [{ hostname: "a b" }, "hostname", /DNS name/],
        [{ publicKeyPem: "hello" }, "publicKeyPem", /PEM public key/],
        [{ publicKeyPem: rsa }, "publicKeyPem", /Ed25519/]
      ] as const
      for (const [override, field, reason] of cases) {
        const error = yield* refused(endpoint.raw.RegisterAgent({ nonce: jwt, publicKeyPem: edPublicKey(), ...override }))
        expect(error, field).toMatchObject({ _tag: "InvalidPayload", field })
        if (error._tag === "InvalidPayload") {
          expect(error.reason).toMatch(reason)
          for (const value of Object.values(override)) expect(error.reason).not.toContain(value)
        }
      }
      expect(yield* endpoint.backend.registrations).toEqual([])
      const agent = yield* stillServes(endpoint, "vmx03dddd")
      const channel = yield* rawChannel(endpoint.agentUrl, agent)
      expect(yield* refused(channel.ReportHealth({ instanceId: "vmx03dddd", status: "fine" }))).toMatchObject({ _tag: "InvalidPayload", field: "status" })
      expect(yield* refused(channel.ReportHealth({ instanceId: "../etc" }))).toMatchObject({ _tag: "InvalidPayload", field: "instanceId" })
      expect(yield* refused(channel.RenewCertificate({ instanceId: "vmx03dddd", publicKeyPem: rsa }))).toMatchObject({ _tag: "InvalidPayload", field: "publicKeyPem" })
      expect(yield* endpoint.backend.healthReports).toEqual([])
    }))

  it.scopedLive("bodies that are not RPC messages get an error response, and the server keeps serving", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const notJson = yield* post(endpoint, "this is not json\n").pipe(Effect.orDie)
      expect(notJson.text).toMatch(/Defect/)
      const wrongTypes = yield* post(
        endpoint,
        JSON.stringify({ _tag: "Request", id: "1", tag: "RegisterAgent", payload: { nonce: 5 }, headers: [] }) + "\n"
      ).pipe(Effect.orDie)
      expect(wrongTypes.text).toMatch(/Defect|Expected string/)
      const unknownProcedure = yield* post(
        endpoint,
        JSON.stringify({ _tag: "Request", id: "2", tag: "DropTables", payload: {}, headers: [] }) + "\n"
      ).pipe(Effect.orDie)
      expect(unknownProcedure.text).toMatch(/Unknown request tag/)
      expect((yield* post(endpoint, "{}", {}, endpoint.url.replace("/agent", "/elsewhere")).pipe(Effect.orDie)).status).toBe(404)
      yield* stillServes(endpoint, "vmx03eeee")
    }))
})
