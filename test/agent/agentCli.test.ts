/**
 * The standalone `nstance-agent`, run in-process through the same `cliProgram` as the binary against an
 * agent endpoint on loopback: it finds the nonce where a VM would (agent.json, the user-data, the NoCloud
 * seed ISO, the environment), registers, keeps its identity in `--state-dir`, reports health, renews — and
 * a refused nonce is one line on stderr and exit status 1.
 */
import { X509Certificate } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { writeCaFile } from "../support/tls.js"
import { Effect, Redacted } from "effect"
import { agentCommand } from "../../src/agent/agentCommand.js"
import { cloudInitSeed, InvalidCloudInitInput } from "../../src/domain/cloudInit.js"
import { withAgentRegistration } from "../../src/domain/shard/userData.js"
import { seedIsoBytes } from "../../src/layers/IsoBuilder9660.js"
import { type InProcessOptions, runCommand } from "../support/cli.js"
import { startAgentEndpoint } from "./harness.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "nstance-agent-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const agent = (args: ReadonlyArray<string>, options: InProcessOptions = {}) =>
  Effect.promise(() => runCommand(agentCommand, "nstance-agent", args, { env: { NSTANCE_AGENT_NONCE: undefined, NSTANCE_AGENT_URL: undefined, NSTANCE_AGENT_CA_FILE: undefined }, ...options }))

const errorLines = (stderr: string) => stderr.split("\n").filter((line) => line.startsWith("✗"))

describe("nstance-agent", () => {
  it.scopedLive("--help describes the flags and exits 0", () =>
    Effect.gen(function* () {
      const result = yield* agent(["--help"])
      expect(result.status).toBe(0)
      for (const flag of ["--state-dir", "--settings", "--user-data", "--seed", "--url", "--health-interval", "--once"]) {
        expect(result.stdout).toContain(flag)
      }
    }))

  it.scopedLive("registers with agent.json's nonce, stores its identity, reports health; a restart needs no nonce", () =>
    Effect.gen(function* () {
      const { backend, url, awaitRegistration, pki } = yield* startAgentEndpoint()
      const dir = yield* tempDir
      const nonce = yield* awaitRegistration("vmx01cli1")
      const settings = join(dir, "agent.json")
      writeFileSync(settings, JSON.stringify({ registration_url: url, nonce: Redacted.value(nonce.jwt), ca_pem: pki.caPem }))
      const state = join(dir, "state")
      const first = yield* agent(["--settings", settings, "--state-dir", state, "--ipv4", "10.1.2.3", "--hostname", "web-1", "--once"])
      expect(first.status, first.stderr).toBe(0)
      expect(yield* backend.registrations).toMatchObject([{ instanceId: "vmx01cli1", ips: { ipv4: "10.1.2.3" }, hostname: "web-1" }])
      expect((yield* backend.healthReports).map((h) => h.instanceId)).toEqual(["vmx01cli1"])
      for (const file of ["identity.json", "agent.key", "agent.crt", "ca.crt"]) expect(existsSync(join(state, file)), file).toBe(true)
      expect(statSync(join(state, "identity.json")).mode & 0o777).toBe(0o600)
      expect(statSync(join(state, "agent.key")).mode & 0o777).toBe(0o600)
      expect(readFileSync(join(state, "agent.crt"), "utf8")).toContain("BEGIN CERTIFICATE")
      // The nonce is never printed.
      expect(first.stdout + first.stderr).not.toContain(Redacted.value(nonce.jwt).split(".")[2]!)

      // A restart finds its identity: the nonce (single-use, and its file gone) is not needed again.
      rmSync(settings)
      const second = yield* agent(["--settings", settings, "--state-dir", state, "--once"])
      expect(second.status, second.stderr).toBe(0)
      expect(yield* backend.registrations).toHaveLength(1)
      expect(yield* backend.healthReports).toHaveLength(2)
    }))

  it.scopedLive("finds the nonce in the cloud-init user-data and on the NoCloud seed ISO, as the simulator's guests do", () =>
    Effect.gen(function* () {
      const { backend, url, awaitRegistration, pki } = yield* startAgentEndpoint()
      const dir = yield* tempDir
      const userData = (jwt: Redacted.Redacted<string>) => withAgentRegistration("#!/bin/sh\necho hello\n", { registrationUrl: url, nonce: Redacted.value(jwt), caPem: pki.caPem })

      const fromUserData = yield* awaitRegistration("vmx01cli2")
      writeFileSync(join(dir, "user-data.txt"), userData(fromUserData.jwt))
      const viaUserData = yield* agent(["--user-data", join(dir, "user-data.txt"), "--state-dir", join(dir, "a"), "--once"])
      expect(viaUserData.status, viaUserData.stderr).toBe(0)

      const fromSeed = yield* awaitRegistration("vmx01cli3")
      const seed = cloudInitSeed({ instanceId: "vmx01cli3", userData: userData(fromSeed.jwt) })
      if (seed instanceof InvalidCloudInitInput) return yield* Effect.dieMessage(seed.message)
      const iso = seedIsoBytes(seed)
      if (!(iso instanceof Uint8Array)) return yield* Effect.dieMessage(iso.reason)
      writeFileSync(join(dir, "seed.iso"), iso)
      const viaSeed = yield* agent(["--seed", join(dir, "seed.iso"), "--state-dir", join(dir, "b"), "--once"])
      expect(viaSeed.status, viaSeed.stderr).toBe(0)
      // The seed mounted as a directory.
      const fromMount = yield* awaitRegistration("vmx01cli5")
      mkdirSync(join(dir, "cidata"))
      writeFileSync(join(dir, "cidata", "user-data"), userData(fromMount.jwt))
      const viaMount = yield* agent(["--seed", join(dir, "cidata"), "--state-dir", join(dir, "d"), "--once"])
      expect(viaMount.status, viaMount.stderr).toBe(0)
      expect((yield* backend.registrations).map((r) => r.instanceId)).toEqual(["vmx01cli2", "vmx01cli3", "vmx01cli5"])

      // A user-data without the agent's part is one clear line.
      writeFileSync(join(dir, "plain.txt"), "#!/bin/sh\necho hi\n")
      const none = yield* agent(["--user-data", join(dir, "plain.txt"), "--state-dir", join(dir, "c"), "--once"])
      expect(none.status).toBe(1)
      expect(errorLines(none.stderr)).toEqual([expect.stringContaining("the user-data has no nstance agent settings")])
    }))

  it.scopedLive("a bad nonce is one clear error line and exit status 1; nothing is stored", () =>
    Effect.gen(function* () {
      const { backend, url, pki } = yield* startAgentEndpoint()
      const dir = yield* tempDir
      const result = yield* agent(["--state-dir", join(dir, "state"), "--once"], { env: { NSTANCE_AGENT_NONCE: "not-a-jwt", NSTANCE_AGENT_URL: url, NSTANCE_AGENT_CA_FILE: yield* writeCaFile(pki.caPem) } })
      expect(result.status).toBe(1)
      expect(errorLines(result.stderr)).toEqual([`✗ registration at ${url} refused: invalid nonce (Malformed): malformed nonce: not a compact JWT`])
      expect(result.stderr.split("\n").filter((line) => line !== "")).toHaveLength(1)
      expect(existsSync(join(dir, "state", "identity.json"))).toBe(false)
      expect(yield* backend.registrations).toEqual([])
    }))

  it.scopedLive("a plain http:// URL is refused in one line before anything is sent", () =>
    Effect.gen(function* () {
      const { backend, url, pki, awaitRegistration } = yield* startAgentEndpoint()
      const nonce = yield* awaitRegistration("vmx01plain")
      const dir = yield* tempDir
      const plain = url.replace("https://", "http://")
      const result = yield* agent(["--state-dir", join(dir, "state"), "--once", "--url", plain], {
        env: { NSTANCE_AGENT_NONCE: Redacted.value(nonce.jwt), NSTANCE_AGENT_URL: url, NSTANCE_AGENT_CA_FILE: yield* writeCaFile(pki.caPem) }
      })
      expect(result.status).toBe(1)
      expect(errorLines(result.stderr)).toEqual([`✗ ${plain} is not an https:// URL; the agent speaks to its shard over TLS only`])
      expect(yield* backend.registrations).toEqual([])
    }))

  it.scopedLive("reports health on its interval and renews the certificate when the server says to", () =>
    Effect.gen(function* () {
      // Certificates of 9 seconds: renew after 6, leaving 3 s for a busy machine to get the renewal through
      // before the old certificate expires (an expired one can no longer open the channel to renew).
      const { backend, url, awaitRegistration, pki } = yield* startAgentEndpoint({ certificateTtl: "9 seconds" })
      const dir = yield* tempDir
      const nonce = yield* awaitRegistration("vmx01cli4")
      const state = join(dir, "state")
      // Runs until it has renewed and reported twice since (so the renewed identity is stored), however long a
      // busy machine takes; 30 s bound it.
      let reportsAtRenewal: number | undefined
      const renewedAndReported = () => {
        const renewed = Effect.runSync(backend.renewals).length
        const reports = Effect.runSync(backend.healthReports).length
        if (renewed >= 1 && reportsAtRenewal === undefined) reportsAtRenewal = reports
        return reportsAtRenewal !== undefined && reports >= Math.max(5, reportsAtRenewal + 2)
      }
      const result = yield* agent(["--state-dir", state, "--health-interval", "250ms"], {
        env: { NSTANCE_AGENT_NONCE: Redacted.value(nonce.jwt), NSTANCE_AGENT_URL: url, NSTANCE_AGENT_CA_FILE: yield* writeCaFile(pki.caPem) },
        interruptAfterMs: 30_000,
        until: renewedAndReported
      })
      expect(result.status, result.stderr).toBe(0)
      expect((yield* backend.renewals).length).toBeGreaterThanOrEqual(1)
      expect((yield* backend.healthReports).length).toBeGreaterThanOrEqual(5)
      // The stored identity is the newest certificate the server issued.
      const renewals = yield* backend.renewals
      const stored = JSON.parse(readFileSync(join(state, "identity.json"), "utf8")) as { certificate_pem: string }
      expect(readFileSync(join(state, "agent.crt"), "utf8")).toBe(stored.certificate_pem)
      expect(new X509Certificate(stored.certificate_pem).serialNumber.toLowerCase()).toBe(renewals[renewals.length - 1]!.certificateSerial)
    }), { timeout: 40_000 })
})
