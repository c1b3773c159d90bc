import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Metric, MetricState, Redacted, Stream, SubscriptionRef } from "effect"
import { makeFilesDir } from "../../src/agent/filesDir.js"
import { parseShardConfig } from "../../src/domain/config/index.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { makeSecretStore } from "../../src/layers/SecretStoreObject.js"
import { keyProofMessage } from "../../src/rpc/AgentRpc.js"
import { makeFileDelivery } from "../../src/shard/FileDelivery.js"
import { rawChannel, startAgentEndpoint } from "./harness.js"
import { shardSection } from "../support/shardConfigJson.js"
import { opensslOutput } from "../support/spawn.js"

const INSTANCE = "web06dx9xy919t3v9kzd2xdsyzb3g"
const OTHER = "web06dx9xy919t3v9kzd2xdsyzb4h"

const configWith = (files: Record<string, unknown>, vars: Record<string, string> = { Env: "staging" }) => {
  const parsed = parseShardConfig(JSON.stringify({
    cluster: { id: "c1", secrets: { provider: "object-storage", encryption_key: { provider: "env", source: "K" } } },
    shard: shardSection("s1"),
    defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian", Cores: 1, Memory: 1024 } },
    certificates: { "web.server": { kind: "server", cn: "{{ .Instance.ID }}", dns: ["{{ .Instance.Hostname }}.example.com"], ip: ["{{ .Instance.IP4 }}"], ttl: 24 } },
    templates: { web: { kind: "web", subnet_pool: "default", files } },
    groups: { blue: { web: { template: "web", size: 2, vars } } }
  }))
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  return parsed.right
}

const FILES = {
  "tls/web.crt": { kind: "certificate", template: "web.server", key: { source: "agent", name: "web.pub" } },
  "app.env": { kind: "env", template: { ENV: "{{ .Vars.Env }}", ID: "{{ .Instance.ID }}" } },
  "db.pass": { kind: "secret", source: "db-password" },
  "site.conf": { kind: "storage", source: "files/{{ .Vars.Env }}/site.conf", mode: "0640" },
  "motd": { kind: "string", template: "hello\n" }
}

/** Polls `check` until it holds, for at most `ms`. */
const eventually = (what: string, check: () => boolean, ms = 15_000) =>
  Effect.gen(function* () {
    const until = Date.now() + ms
    while (!check()) {
      if (Date.now() > until) return yield* Effect.dieMessage(`timed out waiting until ${what}`)
      yield* Effect.sleep("50 millis")
    }
  })

/** The process's count of `name` with `label` = `value` (vitest runs each file in its own registry). */
const counted = (name: string, label: string, value: string) =>
  Effect.map(Metric.snapshot, (pairs) =>
    pairs
      .filter(({ metricKey }) => metricKey.name === name && metricKey.tags.some((tag) => tag.key === label && tag.value === value))
      .reduce((sum, { metricState }) => sum + (MetricState.isCounterState(metricState) ? Number(metricState.count) : 0), 0))

const read = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : undefined)
const mode = (path: string) => statSync(path).mode & 0o777

describe("the file stream on the agent channel (TLS, the product's client and files directory)", () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-delivery-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it.live("an agent receives exactly its files, rotated secrets and config pushes within seconds, and dropped files disappear", () =>
    Effect.gen(function* () {
      const config = yield* SubscriptionRef.make(configWith(FILES))
      const secrets = makeSecretStore(makeMemoryStore(), { prefix: "secret/", keys: [new Uint8Array(randomBytes(32))] })
      const storage = makeMemoryStore()
      yield* secrets.put("blue", "db-password", Redacted.make(new Uint8Array(Buffer.from("first"))))
      yield* secrets.put("green", "db-password", Redacted.make(new Uint8Array(Buffer.from("green's"))))
      yield* storage.put("files/staging/site.conf", new Uint8Array(Buffer.from("server_name a;\n")))
      const before = {
        secrets: yield* counted("nstance_agent_files_delivered", "kind", "secret"),
        certificates: yield* counted("nstance_agent_file_certificates_issued", "kind", "server"),
        keyMissing: yield* counted("nstance_agent_file_delivery_failures", "reason", "key-missing")
      }
      const h = yield* startAgentEndpoint({
        files: (pki, backend) =>
          makeFileDelivery({
            backend,
            config,
            pki,
            secrets,
            storage,
            serverAddresses: () => ({ registrationAddr: "10.0.0.1:8992", agentAddr: "10.0.0.1:8994", operatorAddr: "10.0.0.1:8993" }),
            pollEvery: "300 millis"
          })
      })
      const minted = yield* h.awaitRegistration(INSTANCE, "blue")
      const identity = yield* h.client.register({ nonce: minted.jwt, ips: { ipv4: "10.1.2.3" }, hostname: "web-1" })
      const files = join(dir, "vm")
      const filesDir = yield* makeFilesDir(files, (name, key) => h.client.submitKey(identity, name, key))
      const fiber = yield* Effect.fork(h.client.receiveFiles(identity).pipe(Stream.runForEach(filesDir.apply)))

      yield* eventually("every file is on disk", () => existsSync(join(files, "tls/web.crt")) && existsSync(join(files, "motd")))
      expect(read(join(files, "app.env"))).toBe(`ENV=staging\nID=${INSTANCE}\n`)
      expect(read(join(files, "db.pass"))).toBe("first")
      expect(read(join(files, "site.conf"))).toBe("server_name a;\n")
      expect([mode(join(files, "db.pass")), mode(join(files, "site.conf")), mode(join(files, "app.env")), mode(join(files, "web.key"))]).toEqual([0o600, 0o640, 0o640, 0o600])

      // The certificate: for the key the agent made (web.key stayed on disk), chaining to the CA, with the SANs.
      const caFile = join(dir, "ca.crt")
      writeFileSync(caFile, h.pki.caPem)
      const certFile = join(files, "tls/web.crt")
      expect((yield* Effect.promise(() => opensslOutput(["verify", "-purpose", "sslserver", "-CAfile", caFile, certFile]))).trim()).toBe(`${certFile}: OK`)
      expect((yield* Effect.promise(() => opensslOutput(["x509", "-in", certFile, "-noout", "-ext", "subjectAltName"])))).toContain("DNS:web-1.example.com, IP Address:10.1.2.3")
      const certificate = new X509Certificate(readFileSync(certFile))
      expect(certificate.publicKey.export({ type: "spki", format: "pem" })).toBe(createPublicKey(createPrivateKey(readFileSync(join(files, "web.key")))).export({ type: "spki", format: "pem" }))

      // A secret rotated, an object rewritten: delivered within seconds.
      yield* secrets.put("blue", "db-password", Redacted.make(new Uint8Array(Buffer.from("second"))))
      yield* storage.put("files/staging/site.conf", new Uint8Array(Buffer.from("server_name b;\n")))
      yield* eventually("the rotated secret is on disk", () => read(join(files, "db.pass")) === "second" && read(join(files, "site.conf")) === "server_name b;\n", 5_000)

      // A config push: a var changed and a file dropped.
      const { motd: _dropped, ...kept } = FILES
      yield* SubscriptionRef.set(config, configWith(kept, { Env: "prod" }))
      yield* storage.put("files/prod/site.conf", new Uint8Array(Buffer.from("server_name prod;\n")))
      yield* eventually("the push is on disk", () => read(join(files, "app.env")) === `ENV=prod\nID=${INSTANCE}\n` && !existsSync(join(files, "motd")), 5_000)
      yield* eventually("the storage key follows the var", () => read(join(files, "site.conf")) === "server_name prod;\n", 5_000)
      // The certificate was not issued again for nothing, and its issuance is on record: serial and expiry only.
      expect(new X509Certificate(readFileSync(certFile)).serialNumber).toBe(certificate.serialNumber)
      expect(yield* h.backend.fileCertificates).toEqual([
        { instanceId: INSTANCE, file: "tls/web.crt", serial: certificate.serialNumber.toLowerCase(), notAfter: new Date(certificate.validTo) }
      ])
      yield* eventually("the commit is applied", () => filesDir.written().join() === "app.env,db.pass,site.conf,tls/web.crt", 5_000)
      // Two versions of the secret sent, one certificate issued; until the key came, its file was counted missing once.
      expect((yield* counted("nstance_agent_files_delivered", "kind", "secret")) - before.secrets).toBe(2)
      expect((yield* counted("nstance_agent_file_certificates_issued", "kind", "server")) - before.certificates).toBe(1)
      expect((yield* counted("nstance_agent_file_delivery_failures", "reason", "key-missing")) - before.keyMissing).toBe(1)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped), 60_000)

  it.live("refusals: another instance's files, and a key the agent cannot prove", () =>
    Effect.gen(function* () {
      const config = yield* SubscriptionRef.make(configWith(FILES))
      const h = yield* startAgentEndpoint({
        files: (pki, backend) =>
          makeFileDelivery({
            backend,
            config,
            pki,
            secrets: undefined,
            storage: makeMemoryStore(),
            serverAddresses: () => ({ registrationAddr: "", agentAddr: "", operatorAddr: "" })
          })
      })
      const minted = yield* h.awaitRegistration(INSTANCE, "blue")
      const identity = yield* h.client.register({ nonce: minted.jwt })
      const other = yield* h.awaitRegistration(OTHER, "blue")
      yield* h.client.register({ nonce: other.jwt })
      const channel = yield* rawChannel(h.agentUrl, identity)

      const theirs = yield* Effect.flip(channel.ReceiveFiles({ instanceId: OTHER }).pipe(Stream.runDrain))
      expect(theirs).toMatchObject({ _tag: "InvalidCertificate", reason: "OtherInstance" })

      // The proof is signed by another key than the one submitted: refused, naming the field.
      const submitted = generateKeyPairSync("ed25519")
      const signer = generateKeyPairSync("ed25519")
      const forged = sign(null, keyProofMessage(INSTANCE, "web"), signer.privateKey).toString("base64")
      const unproven = yield* Effect.flip(channel.SubmitKey({
        instanceId: INSTANCE,
        name: "web",
        publicKeyPem: submitted.publicKey.export({ type: "spki", format: "pem" }) as string,
        proof: forged
      }))
      expect(unproven).toMatchObject({ _tag: "InvalidPayload", field: "proof" })
      // A proof made for another instance does not pass for this one either.
      const replayed = sign(null, keyProofMessage(OTHER, "web"), submitted.privateKey).toString("base64")
      expect(yield* Effect.flip(channel.SubmitKey({
        instanceId: INSTANCE,
        name: "web",
        publicKeyPem: submitted.publicKey.export({ type: "spki", format: "pem" }) as string,
        proof: replayed
      }))).toMatchObject({ _tag: "InvalidPayload", field: "proof" })
      // And on another instance's behalf, whatever the proof.
      const proper = sign(null, keyProofMessage(OTHER, "web"), submitted.privateKey).toString("base64")
      expect(yield* Effect.flip(channel.SubmitKey({
        instanceId: OTHER,
        name: "web",
        publicKeyPem: submitted.publicKey.export({ type: "spki", format: "pem" }) as string,
        proof: proper
      }))).toMatchObject({ _tag: "InvalidCertificate", reason: "OtherInstance" })
    }).pipe(Effect.scoped), 30_000)
})
