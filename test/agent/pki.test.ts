import { generateKeyPairSync, randomBytes, X509Certificate as NodeX509 } from "node:crypto"
import { pkiObjectKeys } from "../../src/domain/bucketKeys.js"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Redacted } from "effect"
import { encryptionKeyFrom, makeClusterPki, openSecret, sealSecret } from "../../src/layers/ClusterPkiStore.js"
import * as x509 from "../../src/layers/x509.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"

const key = new Uint8Array(randomBytes(32))
const options = { clusterId: "c1", encryptionKey: key, settleTimeout: "300 millis" } as const
const keys = pkiObjectKeys("c1")
const text = (body: Uint8Array) => Buffer.from(body).toString("utf8")
const agentPublicKeyPem = () => generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string

describe("agent client certificates (encoded directly to DER)", () => {
  it.live("read back alike by the x509 library and by Node: CA-signed, CN/O, the five extensions, validity to the second", () =>
    Effect.gen(function* () {
      const pki = yield* makeClusterPki(makeMemoryStore(), options)
      const agentKey = agentPublicKeyPem()
      const before = Date.now()
      const issued = yield* pki.issueClientCertificate({ instanceId: "vmx1derder", tenant: "acmé", publicKeyPem: agentKey, ttl: "90 minutes" })
      const ca = new x509.X509Certificate(pki.caPem)
      const cert = new x509.X509Certificate(issued.certificatePem)
      expect(yield* Effect.promise(() => cert.verify({ publicKey: ca.publicKey, signatureOnly: true }))).toBe(true)
      expect(cert.issuer).toBe(ca.subject)
      expect(cert.subjectName.getField("CN")).toEqual(["vmx1derder"])
      expect(cert.subjectName.getField("O")).toEqual(["acmé"])
      expect(cert.serialNumber.toLowerCase()).toBe(issued.serial)
      expect(issued.serial).toMatch(/^[0-7][0-9a-f]{31}$/)
      expect(cert.notAfter.getTime()).toBe(issued.notAfter.getTime())
      expect(Math.abs(issued.notAfter.getTime() - (before + 90 * 60_000))).toBeLessThan(5_000)
      expect(cert.notBefore.getTime()).toBeLessThan(before)
      expect(cert.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: false, critical: true })
      expect(cert.getExtension(x509.KeyUsagesExtension)).toMatchObject({ usages: x509.KeyUsageFlags.digitalSignature, critical: true })
      expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth])
      expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(ca.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId)
      expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/)
      // Node (OpenSSL) parses it, checks the CA's signature, and the key is the agent's.
      const node = new NodeX509(issued.certificatePem)
      expect(node.verify(new NodeX509(pki.caPem).publicKey)).toBe(true)
      expect(node.checkIssued(new NodeX509(pki.caPem))).toBe(true)
      expect(node.publicKey.export({ type: "spki", format: "pem" })).toBe(agentKey)
      expect(yield* pki.verifyClientCertificate(issued.certificatePem)).toMatchObject({ instanceId: "vmx1derder", tenant: "acmé", role: "agent", serial: issued.serial })
    }))

  it.live("a validity past 2049 is a GeneralizedTime, read back to the second", () =>
    Effect.gen(function* () {
      const pki = yield* makeClusterPki(makeMemoryStore(), options)
      const issued = yield* pki.issueClientCertificate({ instanceId: "vmx1long", tenant: "acme", publicKeyPem: agentPublicKeyPem(), ttl: "10000 days" })
      expect(issued.notAfter.getUTCFullYear()).toBeGreaterThanOrEqual(2050)
      expect(new Date(new NodeX509(issued.certificatePem).validTo).getTime()).toBe(issued.notAfter.getTime())
      expect(new x509.X509Certificate(issued.certificatePem).notAfter.getTime()).toBe(issued.notAfter.getTime())
    }))
})

describe("cluster PKI: creation and loading", () => {
  it.live("first use creates ca.crt in the clear and both keys sealed; a second maker loads the same CA", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const first = yield* makeClusterPki(store, options)
      const crt = text((yield* store.get(keys.caCert)).body)
      expect(crt).toBe(first.caPem)
      expect(crt).toMatch(/^-----BEGIN CERTIFICATE-----/)
      for (const sealed of [keys.caKey, keys.nonceKey]) {
        const body = JSON.parse(text((yield* store.get(sealed)).body))
        expect(Object.keys(body).sort()).toEqual(["ciphertext", "iv", "tag", "v"])
        expect(body.v).toBe(1)
        expect(Buffer.from(body.iv, "base64")).toHaveLength(12)
        expect(text((yield* store.get(sealed)).body)).not.toMatch(/PRIVATE KEY/)
      }
      const second = yield* makeClusterPki(store, options)
      expect(second.caPem).toBe(first.caPem)
      // Node's own X.509 parser agrees it is a self-signed Ed25519 CA.
      const node = new NodeX509(first.caPem)
      expect(node.ca).toBe(true)
      expect(node.publicKey.asymmetricKeyType).toBe("ed25519")
      expect(node.verify(node.publicKey)).toBe(true)
      // A nonce minted by one replica verifies on the other: same nonce key.
      const nonce = yield* first.mintNonce({ instanceId: "vmx1", cluster: "c1", shard: "s1", tenant: "t", group: "g", ttl: "5 minutes" })
      expect((yield* second.verifyNonce(Redacted.value(nonce.jwt), { cluster: "c1", shard: "s1" })).sub).toBe("vmx1")
    }))

  it.live("two makers racing on one store produce one CA, and both can issue certificates it verifies", () =>
    Effect.gen(function* () {
      for (let round = 0; round < 5; round++) {
        const memory = makeMemoryStore()
        const lostCreates: Array<string> = []
        const store: ObjectStoreShape = {
          ...memory,
          put: (k, body, pre) =>
            memory.put(k, body, pre).pipe(Effect.tapErrorTag("PreconditionFailed", () => Effect.sync(() => lostCreates.push(k))))
        }
        const [a, b] = yield* Effect.all([makeClusterPki(store, options), makeClusterPki(store, options)], { concurrency: 2 })
        expect(a.caPem).toBe(b.caPem)
        // Both generated a CA and raced: exactly one create-only write of ca.key lost, and nothing else.
        expect(lostCreates).toEqual([keys.caKey])
        const issued = yield* b.issueClientCertificate({ instanceId: "vmx1", tenant: "acme", publicKeyPem: agentPublicKeyPem(), ttl: "1 hour" })
        expect((yield* a.verifyClientCertificate(issued.certificatePem)).instanceId).toBe("vmx1")
      }
    }))

  it.live("a wrong encryption key is a PkiUndecryptable naming ca.key, and nothing is overwritten", () =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      const pki = yield* makeClusterPki(store, options)
      const before = yield* store.get(keys.caKey)
      const error = yield* Effect.flip(makeClusterPki(store, { ...options, encryptionKey: new Uint8Array(randomBytes(32)) }))
      expect(error).toMatchObject({ _tag: "PkiUndecryptable", key: "pki/c1/ca.key" })
      expect(error.message).toMatch(/NSTANCE_ENCRYPTION_KEY/)
      expect((yield* store.get(keys.caKey)).etag).toBe(before.etag)
      expect(text((yield* store.get(keys.caCert)).body)).toBe(pki.caPem)
    }))

  it.live.each([
    ["ca.crt", keys.caCert],
    ["ca.key", keys.caKey],
    ["nonce.key", keys.nonceKey]
  ] as const)("with %s missing, loading fails with PkiIncomplete naming it, and creates nothing", ([_, missing]) =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* makeClusterPki(store, options)
      yield* store.delete(missing)
      const error = yield* Effect.flip(makeClusterPki(store, options))
      expect(error._tag).toBe("PkiIncomplete")
      if (error._tag !== "PkiIncomplete") return
      expect(error.missing).toEqual([missing])
      expect(error.present).toHaveLength(2)
      expect(error.message).toContain(missing)
      expect(Exit.isFailure(yield* Effect.exit(store.get(missing)))).toBe(true)
    }))

  it.live.each([
    ["ca.crt that is not PEM", keys.caCert, () => Buffer.from("garbage"), "PkiCorrupt"],
    ["ca.key that is not JSON", keys.caKey, () => Buffer.from("{not json"), "PkiCorrupt"],
    ["nonce.key sealed for another object (swapped files)", keys.nonceKey, () => sealSecret(key, Buffer.from("x"), keys.caKey), "PkiUndecryptable"],
    ["ca.key with a flipped ciphertext byte", keys.caKey, () => {
      const sealed = JSON.parse(Buffer.from(sealSecret(key, Buffer.from("secret"), keys.caKey)).toString())
      const ct = Buffer.from(sealed.ciphertext, "base64")
      ct[0] = ct[0]! ^ 1
      return Buffer.from(JSON.stringify({ ...sealed, ciphertext: ct.toString("base64") }))
    }, "PkiUndecryptable"],
    ["ca.key that decrypts to something else", keys.caKey, () => sealSecret(key, Buffer.from("hello"), keys.caKey), "PkiCorrupt"],
    ["ca.key of another CA", keys.caKey, () =>
      sealSecret(key, Buffer.from(generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string), keys.caKey), "PkiCorrupt"]
  ] as const)("a %s is a typed startup error naming the object", ([_, object, body, tag]) =>
    Effect.gen(function* () {
      const store = makeMemoryStore()
      yield* makeClusterPki(store, options)
      yield* store.put(object, body())
      const error = yield* Effect.flip(makeClusterPki(store, options))
      expect(error).toMatchObject({ _tag: tag, key: object })
    }))

  it("sealSecret and openSecret round-trip and bind the object key", () => {
    const sealed = sealSecret(key, Buffer.from("payload"), "pki/x/ca.key")
    expect(Either.getOrThrow(openSecret(key, sealed, "pki/x/ca.key")).toString()).toBe("payload")
    expect(Either.getLeft(openSecret(key, sealed, "pki/x/nonce.key"))._tag === "Some").toBe(true)
  })
})

describe("encryptionKeyFrom", () => {
  const hex = "ab".repeat(32)
  const b64 = Buffer.alloc(32, 7).toString("base64")

  it.effect("accepts 64 hex characters or base64 of 32 bytes", () =>
    Effect.gen(function* () {
      expect(Buffer.from(yield* encryptionKeyFrom({ NSTANCE_ENCRYPTION_KEY: hex })).toString("hex")).toBe(hex)
      expect(Buffer.from(yield* encryptionKeyFrom({ NSTANCE_ENCRYPTION_KEY: ` ${b64}\n` }))).toEqual(Buffer.alloc(32, 7))
    }))

  it.live("takes the original server's raw form: 32 printable characters, as server-with-keepalived.sh generates a key file", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "nstance-key-")))
      const file = join(dir, "encryption.key")
      // The script: head -c 24 /dev/urandom | base64 — 32 characters and a newline.
      const generated = randomBytes(24).toString("base64")
      yield* Effect.promise(() => writeFile(file, `${generated}\n`))
      const key = yield* encryptionKeyFrom({}, file)
      expect(Buffer.from(key).toString("latin1")).toBe(generated)
      expect(key.length).toBe(32)
    }))

  it.effect.each([
    ["missing", {}, /not set/],
    ["too short", { NSTANCE_ENCRYPTION_KEY: "abcd" }, /32 bytes/],
    ["base64 of 16 bytes", { NSTANCE_ENCRYPTION_KEY: Buffer.alloc(16).toString("base64") }, /32 bytes/],
    ["63 hex characters", { NSTANCE_ENCRYPTION_KEY: "a".repeat(63) }, /32 bytes/]
  ] as const)("%s: InvalidEncryptionKey, without the key in the message", ([_, env, pattern]) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(encryptionKeyFrom(env))
      expect(error._tag).toBe("InvalidEncryptionKey")
      expect(error.message).toMatch(pattern)
      const value = (env as Record<string, string>)["NSTANCE_ENCRYPTION_KEY"]
      if (value !== undefined) expect(error.message).not.toContain(value)
    }))

  it.live("reads a key file; a missing file, or a file and the variable both set, are errors", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "nstance-key-")))
      const file = join(dir, "key")
      yield* Effect.promise(() => writeFile(file, hex + "\n"))
      expect(Buffer.from(yield* encryptionKeyFrom({}, file)).toString("hex")).toBe(hex)
      expect((yield* Effect.flip(encryptionKeyFrom({}, join(dir, "absent")))).message).toMatch(/ENOENT/)
      expect((yield* Effect.flip(encryptionKeyFrom({ NSTANCE_ENCRYPTION_KEY: hex }, file))).message).toMatch(/both/)
      yield* Effect.promise(() => rm(dir, { recursive: true }))
    }))
})
