/**
 * `certificates.agent.ttl` (hours, a JSON number, as in the original) sets the lifetime of the agents'
 * client certificates: parsed and validated with the shard config, and what the agent endpoint issues.
 */
import { X509Certificate } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import { formatProblem, type ParsedShardConfig, parseShardConfig } from "../../src/domain/config/index.js"
import { configText } from "../shard/leaderHarness.js"
import { startAgentEndpoint } from "./harness.js"

/** The simulation tests' config with a `certificates` block in front of `defaults`. */
const withCertificates = (certificates: string | undefined): string => {
  const text = configText({ size: 1 })
  return certificates === undefined ? text : text.replace(`"defaults": {`, `"certificates": ${certificates},\n  "defaults": {`)
}

const parsed = (certificates: string | undefined): ParsedShardConfig => {
  const result = parseShardConfig(withCertificates(certificates))
  if (Either.isLeft(result)) throw new Error(result.left.problems.map(formatProblem).join("\n"))
  return result.right
}

const problems = (certificates: string): ReadonlyArray<string> => {
  const result = parseShardConfig(withCertificates(certificates))
  return Either.isLeft(result) ? result.left.problems.map(formatProblem) : []
}

const hours = (config: ParsedShardConfig) => Duration.toHours(config.config.certificates.agentTtl)

describe("certificates.agent.ttl", () => {
  it("is hours: 24 without an agent entry, the original's 8760 for an entry without ttl (or 0), else as written", () => {
    expect(hours(parsed(undefined))).toBe(24)
    expect(hours(parsed(`{ "agent": { "kind": "client" } }`))).toBe(8760)
    expect(hours(parsed(`{ "agent": { "kind": "client", "ttl": 0 } }`))).toBe(8760)
    expect(hours(parsed(`{ "agent": { "kind": "client", "ttl": 2 } }`))).toBe(2)
  })

  it("the agent entry's subject fields and the ca entry are warnings; other entries are file templates", () => {
    const config = parsed(`{ "agent": { "kind": "client", "ttl": 48, "cn": "x" }, "ca": { "ttl": 87600 }, "web.server": { "kind": "server" } }`)
    expect(hours(config)).toBe(48)
    expect(config.warnings.map(formatProblem)).toEqual([
      "certificates.agent.cn: not used by this build; ignored",
      "certificates.ca: not used by this build (the CA and operator certificates are made by nstance-admin and the servers); ignored"
    ])
  })

  it.each([
    [`"24h"`, `certificates.agent.ttl: must be a whole number of hours, e.g. 24 (got "24h")`],
    ["-1", "certificates.agent.ttl: must be a whole number of hours, e.g. 24 (got -1)"],
    ["1.5", "certificates.agent.ttl: must be a whole number of hours, e.g. 24 (got 1.5)"],
    ["87601", "certificates.agent.ttl: must be at most 87600 hours (got 87601)"]
  ])("a bad value (%s) is one clear error naming the field", (ttl, message) => {
    expect(problems(`{ "agent": { "kind": "client", "ttl": ${ttl} } }`)).toEqual([message])
  })

  it("an agent entry of kind server is refused; a misspelt field is caught", () => {
    expect(problems(`{ "agent": { "kind": "server", "ttl": 2 } }`)).toEqual(["certificates.agent.kind: must be client (agents get client certificates)"])
    expect(problems(`{ "agent": { "tll": 2 } }`)).toEqual(["certificates.agent.tll: unknown field; did you mean ttl?"])
  })

  it.scopedLive("the endpoint issues certificates of that lifetime and tells the agent to renew after two thirds of it", () =>
    Effect.gen(function* () {
      const ttl = parsed(`{ "agent": { "kind": "client", "ttl": 2 } }`).config.certificates.agentTtl
      const { client, awaitRegistration } = yield* startAgentEndpoint({ certificateTtl: ttl })
      const before = Date.now()
      const identity = yield* client.register({ nonce: (yield* awaitRegistration("vmx01ttl1")).jwt })
      const certificate = new X509Certificate(identity.certificatePem)
      // notAfter = issue time + ttl (X.509 times have whole seconds; notBefore is back-dated for clock skew).
      expect(Math.abs(Date.parse(certificate.validTo) - (before + 2 * 3_600_000))).toBeLessThanOrEqual(5000)
      expect(identity.renewAfterSeconds).toBe(4800)
      const renewed = yield* client.renew(identity)
      expect(renewed.renewAfterSeconds).toBe(4800)
    }))
})
