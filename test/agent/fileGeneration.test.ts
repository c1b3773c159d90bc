import { generateKeyPairSync, randomBytes, X509Certificate as NodeX509 } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Redacted, TestClock } from "effect"
import { type Group, parseShardConfig, type ShardConfig } from "../../src/domain/config/index.js"
import { templateData } from "../../src/domain/shard/templateData.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { makeSecretStore } from "../../src/layers/SecretStoreObject.js"
import { agentKeysNeeded, type FileSources, type FileTarget, generateFile } from "../../src/shard/fileGeneration.js"
import { shardSection } from "../support/shardConfigJson.js"
import { opensslOutput } from "../support/spawn.js"

const CONFIG = {
  cluster: { id: "acme", secrets: { provider: "object-storage", encryption_key: { provider: "env", source: "K" } } },
  shard: shardSection(),
  defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian", Cores: 1, Memory: 1024 }, vars: { Env: "prod" } },
  certificates: {
    "web.server": { kind: "server", cn: "{{ .Instance.ID }}", organization: "acme web", dns: ["web.example.com", "{{ .Instance.Hostname }}.internal"], ip: ["{{ .Instance.IP4 }}", "{{ .Instance.IP6 }}"], uri: ["spiffe://acme/{{ .Vars.Env }}/web"], ttl: 3 },
    "svc.client": { kind: "client", cn: "{{ .Instance.ID }}", organization: "blue", ttl: 1 }
  },
  templates: {
    web: {
      kind: "web",
      subnet_pool: "default",
      files: {
        "tls/web.crt": { kind: "certificate", template: "web.server", key: { source: "agent", name: "web.pub" } },
        "svc.crt": { kind: "certificate", template: "svc.client", key: { source: "agent", name: "svc.pub" } },
        "app.env": { kind: "env", template: { ENV: "{{ .Vars.Env }}", GREETING: "hello $USER \"x\"", ID: "{{ .Instance.ID }}" } },
        "app.json": { kind: "json", template: { env: "{{ .Vars.Env }}", ips: ["{{ .Instance.IP4 }}"], port: 8080 } },
        "motd": { kind: "string", template: "welcome to {{ .Instance.Hostname }} in {{ .Provider.Zone }}\n" },
        "db.pass": { kind: "secret", source: "db-password" },
        "site.conf": { kind: "storage", source: "files/{{ .Vars.Env }}/site.conf" }
      }
    }
  },
  groups: { blue: { web: { template: "web", size: 1, vars: { Env: "staging" } } } }
}

const parsed = parseShardConfig(JSON.stringify(CONFIG))
if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
const config: ShardConfig = parsed.right.config
const group: Group = config.groups["blue"]!["web"]!
const files = config.templates["web"]!.files
const INSTANCE = "web06dx9xy919t3v9kzd2xdsyzb3g"
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8")

const pem = (key: ReturnType<typeof generateKeyPairSync>["publicKey"]) => key.export({ type: "spki", format: "pem" }) as string
const webKey = generateKeyPairSync("ed25519")
const svcKey = generateKeyPairSync("ed25519")

const setup = Effect.gen(function* () {
  const pki = yield* makeClusterPki(makeMemoryStore(), { clusterId: "acme", encryptionKey: new Uint8Array(randomBytes(32)) })
  const secrets = makeSecretStore(makeMemoryStore(), { prefix: "secret/", keys: [new Uint8Array(randomBytes(32))] })
  const storage = makeMemoryStore()
  yield* secrets.put("blue", "db-password", Redacted.make(new Uint8Array(Buffer.from("s3cret\n"))))
  yield* secrets.put("green", "db-password", Redacted.make(new Uint8Array(Buffer.from("not-yours"))))
  yield* storage.put("files/staging/site.conf", new Uint8Array(Buffer.from("server_name web;\n")))
  const sources: FileSources = { pki, secrets, storage }
  const target: FileTarget = {
    instanceId: INSTANCE,
    tenant: "blue",
    data: templateData({
      config,
      group,
      instanceId: INSTANCE,
      nonce: "",
      caPem: pki.caPem,
      server: { registrationAddr: "10.0.0.1:8992", agentAddr: "10.0.0.1:8994", operatorAddr: "10.0.0.1:8993" },
      registered: { hostname: "web-1", ipv4: "10.1.2.3" }
    }),
    certificates: config.certificates.templates,
    agentKeys: new Map([["web", pem(webKey.publicKey)], ["svc", pem(svcKey.publicKey)]])
  }
  return { pki, secrets, storage, sources, target }
})

describe("a VM's files", () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-files-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it.live("templated, secret and storage files have exactly the expected bytes and modes", () =>
    Effect.gen(function* () {
      const { sources, target } = yield* setup
      const make = (name: string) => generateFile(sources, target, name, files[name]!)
      const env = yield* make("app.env")
      expect(text(env.content)).toBe(`ENV=staging\nGREETING="hello \\$USER \\"x\\""\nID=${INSTANCE}\n`)
      expect(env.mode).toBe(0o640)
      expect(JSON.parse(text((yield* make("app.json")).content))).toEqual({ env: "staging", ips: ["10.1.2.3"], port: 8080 })
      expect(text((yield* make("motd")).content)).toBe("welcome to web-1 in a\n")
      const secret = yield* make("db.pass")
      expect(text(secret.content)).toBe("s3cret\n")
      expect(secret.mode).toBe(0o600)
      expect(text((yield* make("site.conf")).content)).toBe("server_name web;\n")
      expect(agentKeysNeeded(files)).toEqual(["svc", "web"])
    }))

  it.live("a server certificate chains to the cluster CA with the rendered SANs, for the agent's key (openssl verifies it)", () =>
    Effect.gen(function* () {
      const { pki, sources, target } = yield* setup
      const file = yield* generateFile(sources, target, "tls/web.crt", files["tls/web.crt"]!)
      const caFile = join(dir, "ca.crt")
      const certFile = join(dir, "web.crt")
      writeFileSync(caFile, pki.caPem)
      writeFileSync(certFile, file.content)
      expect((yield* Effect.promise(() => opensslOutput(["verify", "-purpose", "sslserver", "-CAfile", caFile, certFile]))).trim()).toBe(`${certFile}: OK`)
      const sans = (yield* Effect.promise(() => opensslOutput(["x509", "-in", certFile, "-noout", "-ext", "subjectAltName", "-subject"])))
      expect(sans).toContain("DNS:web.example.com, DNS:web-1.internal, IP Address:10.1.2.3, URI:spiffe://acme/staging/web")
      expect(sans).toMatch(new RegExp(`subject=CN ?= ?${INSTANCE}, O ?= ?acme web, OU ?= ?nstance-file`))
      const cert = new NodeX509(Buffer.from(file.content))
      expect(cert.publicKey.export({ type: "spki", format: "pem" })).toBe(pem(webKey.publicKey))
      expect(file.version).toBe(cert.serialNumber.toLowerCase())
      expect(file.certificate!.notAfter.getTime() - Date.now()).toBeGreaterThan(3 * 3600_000 - 60_000)
      // A file certificate never stands for an agent, even one of kind client with CN = the instance.
      const client = yield* generateFile(sources, target, "svc.crt", files["svc.crt"]!)
      writeFileSync(join(dir, "svc.crt"), client.content)
      expect((yield* Effect.promise(() => opensslOutput(["verify", "-purpose", "sslclient", "-CAfile", caFile, join(dir, "svc.crt")])))).toContain("OK")
      const refused = yield* Effect.flip(pki.verifyClientCertificate(text(client.content)))
      expect(refused.reason).toBe("NotClientCertificate")
    }))

  it.effect("a certificate is reused until two thirds of its TTL, then issued anew; a new request is issued at once", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(Date.now())
      const { sources, target } = yield* setup
      const spec = files["tls/web.crt"]!
      const first = yield* generateFile(sources, target, "tls/web.crt", spec)
      const again = yield* generateFile(sources, target, "tls/web.crt", spec, first)
      expect(again.version).toBe(first.version)
      yield* TestClock.adjust("119 minutes") // TTL 3 h: renewed at 2 h
      expect((yield* generateFile(sources, target, "tls/web.crt", spec, first)).version).toBe(first.version)
      yield* TestClock.adjust("2 minutes")
      const renewed = yield* generateFile(sources, target, "tls/web.crt", spec, first)
      expect(renewed.version).not.toBe(first.version)
      const otherKey = { ...target, agentKeys: new Map([["web", pem(generateKeyPairSync("ed25519").publicKey)]]) }
      expect((yield* generateFile(sources, otherKey, "tls/web.crt", spec, renewed)).version).not.toBe(renewed.version)
    }))

  it.live("refusals: no proven key, another tenant's secret, a missing object; a rotated secret is a new version", () =>
    Effect.gen(function* () {
      const { secrets, sources, target } = yield* setup
      const noKey = yield* Effect.flip(generateFile(sources, { ...target, agentKeys: new Map() }, "tls/web.crt", files["tls/web.crt"]!))
      expect([noKey.reason, noKey.message]).toEqual(["key-missing", "file tls/web.crt: the agent has not submitted key web yet"])
      // Tenant green has a db-password; a VM of tenant blue never gets it, nor does one of a tenant without it.
      const green = yield* generateFile(sources, { ...target, tenant: "green" }, "db.pass", files["db.pass"]!)
      expect(text(green.content)).toBe("not-yours")
      const red = yield* Effect.flip(generateFile(sources, { ...target, tenant: "red" }, "db.pass", files["db.pass"]!))
      expect([red.reason, red.message]).toEqual(["secret-missing", "file db.pass: no secret db-password in tenant red"])
      const missing = yield* Effect.flip(generateFile({ ...sources, storage: makeMemoryStore() }, target, "site.conf", files["site.conf"]!))
      expect(missing.reason).toBe("storage-missing")
      const before = yield* generateFile(sources, target, "db.pass", files["db.pass"]!)
      expect((yield* generateFile(sources, target, "db.pass", files["db.pass"]!, before)).version).toBe(before.version)
      yield* secrets.put("blue", "db-password", Redacted.make(new Uint8Array(Buffer.from("rotated"))))
      const after = yield* generateFile(sources, target, "db.pass", files["db.pass"]!, before)
      expect(after.version).not.toBe(before.version)
      expect(text(after.content)).toBe("rotated")
    }))
})
