/**
 * The cluster PKI kept in the cluster's bucket: `pki/{clusterId}/ca.crt` (PEM, in the clear) and
 * `ca.key` / `nonce.key` (PKCS#8 PEM sealed with AES-256-GCM under the 32-byte encryption key, the object
 * key as associated data so sealed objects cannot be swapped). The first replica to start creates all three
 * with create-only writes, `ca.key` first: a replica that loses that race re-reads and loads the winner's.
 * Anything other than "all three absent" or "all three present and consistent" is a typed startup error —
 * a new CA would silently orphan every agent certificate, so it is never created over a partial PKI.
 */
import { isIP } from "node:net"
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, randomBytes, webcrypto } from "node:crypto"
import { readFile } from "node:fs/promises"
import { Clock, Duration, Effect, Either, Layer, Option, Redacted, Schedule, Schema } from "effect"
import { errors as joseErrors, jwtVerify, SignJWT } from "jose"
import {
  MAX_NONCE_LENGTH,
  NONCE_KIND,
  NonceBadSignature,
  NonceClaims,
  NonceExpired,
  NonceMalformed,
  NonceWrongKind,
  NonceWrongShard,
  nonceHash,
  type NonceAudience,
  type NonceError
} from "../domain/agent/nonce.js"
import {
  CertificateRejected,
  ClusterPki,
  type ClusterPkiShape,
  InvalidCertificateRequest,
  InvalidEncryptionKey,
  InvalidPublicKey,
  OPERATOR_NAME,
  OPERATOR_NAME_RULE,
  FILE_UNIT,
  OPERATOR_UNIT,
  PkiCorrupt,
  PkiIncomplete,
  type PkiLoadError,
  PkiMissing,
  PkiUndecryptable,
  type VerifiedClientCertificate
} from "../services/ClusterPki.js"
import { pkiObjectKeys } from "../domain/bucketKeys.js"
import { parseEncryptionKeyText } from "../domain/encryptionKey.js"
import { agentCertificateIssuer, issueAgentCertificate } from "./agentCertificateDer.js"
import { identifierProblem } from "../domain/config/validate.js"
import { ifAbsent, ObjectStore, type ObjectStoreShape, type StoreError } from "../services/ObjectStore.js"
import * as x509 from "./x509.js"

export interface ClusterPkiOptions {
  readonly clusterId: string
  /** 32 bytes; see `encryptionKeyFrom`. */
  readonly encryptionKey: Uint8Array
  /**
   * How long a partial PKI may take to become complete before it is an error: another replica may be
   * between its create-only writes. Default 3 seconds.
   */
  readonly settleTimeout?: Duration.DurationInput
  /** Validity of a newly created CA. Default 20 years. */
  readonly caValidity?: Duration.DurationInput
  /**
   * Create the PKI when none of its objects exist (default true: the servers). False for a tool that only
   * uses an existing PKI (`nstance-admin cert issue`): it fails with `PkiMissing` instead of making a CA.
   */
  readonly create?: boolean
}

const ED25519 = { name: "Ed25519" } as const
const subtle = webcrypto.subtle
/** Client certificates start this far in the past so an agent whose clock runs behind accepts them. */
const NOT_BEFORE_SKEW_MILLIS = 5 * 60_000
/** Leeway for nonce expiry: replicas' clocks differ slightly and a failover may change the verifier. */
const NONCE_CLOCK_TOLERANCE_SECONDS = 5
/** No certificate we issue comes near this; longer input is refused before parsing. */
const MAX_CERTIFICATE_PEM = 8192

// ---------------------------------------------------------------------------------------------------------
// The encryption key

const parseKeyText = (text: string, source: string): Either.Either<Uint8Array, InvalidEncryptionKey> =>
  Either.mapLeft(parseEncryptionKeyText(text), (reason) => new InvalidEncryptionKey({ source, reason }))

/**
 * The PKI encryption key from `NSTANCE_ENCRYPTION_KEY` or from `keyFile` (same content, surrounding
 * whitespace ignored). Exactly one of them must be set. Errors never contain the key.
 */
export const encryptionKeyFrom = (
  env: Readonly<Record<string, string | undefined>>,
  keyFile?: string
): Effect.Effect<Uint8Array, InvalidEncryptionKey> =>
  Effect.gen(function* () {
    const fromEnv = env["NSTANCE_ENCRYPTION_KEY"]
    const envSet = fromEnv !== undefined && fromEnv !== ""
    if (keyFile !== undefined && envSet) {
      return yield* new InvalidEncryptionKey({
        source: `NSTANCE_ENCRYPTION_KEY and ${keyFile}`,
        reason: "both are set; set only one"
      })
    }
    if (keyFile !== undefined) {
      const text = yield* Effect.tryPromise({
        try: () => readFile(keyFile, "utf8"),
        catch: (cause) =>
          new InvalidEncryptionKey({
            source: keyFile,
            reason: `cannot read the key file: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`
          })
      })
      return yield* parseKeyText(text, keyFile)
    }
    if (!envSet) {
      return yield* new InvalidEncryptionKey({
        source: "NSTANCE_ENCRYPTION_KEY",
        reason: "not set (and no key file given); the cluster PKI's private keys are encrypted with it"
      })
    }
    return yield* parseKeyText(fromEnv, "NSTANCE_ENCRYPTION_KEY")
  })

// ---------------------------------------------------------------------------------------------------------
// Sealed objects: {v:1, iv, tag, ciphertext}, base64, AES-256-GCM with the object key as associated data

const SealedEnvelope = Schema.parseJson(
  Schema.Struct({ v: Schema.Literal(1), iv: Schema.String, tag: Schema.String, ciphertext: Schema.String })
)

export const sealSecret = (key: Uint8Array, plaintext: Uint8Array, objectKey: string): Uint8Array => {
  const iv = randomBytes(12)
  const cipher = createCipheriv("aes-256-gcm", key, iv)
  cipher.setAAD(Buffer.from(objectKey, "utf8"))
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
  const envelope = {
    v: 1,
    iv: iv.toString("base64"),
    tag: cipher.getAuthTag().toString("base64"),
    ciphertext: ciphertext.toString("base64")
  }
  return Buffer.from(JSON.stringify(envelope), "utf8")
}

export const openSecret = (
  key: Uint8Array,
  body: Uint8Array,
  objectKey: string
): Either.Either<Buffer, PkiCorrupt | PkiUndecryptable> => {
  const envelope = Schema.decodeUnknownEither(SealedEnvelope)(Buffer.from(body).toString("utf8"))
  if (Either.isLeft(envelope)) {
    return Either.left(new PkiCorrupt({ key: objectKey, reason: "not a sealed-key envelope {v:1, iv, tag, ciphertext}" }))
  }
  const iv = Buffer.from(envelope.right.iv, "base64")
  const tag = Buffer.from(envelope.right.tag, "base64")
  if (iv.length !== 12 || tag.length !== 16) {
    return Either.left(new PkiCorrupt({ key: objectKey, reason: "IV must be 12 bytes and tag 16 bytes" }))
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, iv)
    decipher.setAAD(Buffer.from(objectKey, "utf8"))
    decipher.setAuthTag(tag)
    return Either.right(Buffer.concat([decipher.update(Buffer.from(envelope.right.ciphertext, "base64")), decipher.final()]))
  } catch {
    return Either.left(new PkiUndecryptable({ key: objectKey }))
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loading and creating

interface PkiMaterial {
  readonly caCert: x509.X509Certificate
  readonly caSigningKey: webcrypto.CryptoKey
  readonly noncePrivateKey: KeyObject
  readonly noncePublicKey: KeyObject
}

const spkiDer = (key: KeyObject): Buffer => key.export({ type: "spki", format: "der" })

const readOptional = (store: ObjectStoreShape, key: string): Effect.Effect<Option.Option<Uint8Array>, StoreError> =>
  store.get(key).pipe(
    Effect.map((object) => Option.some(object.body)),
    Effect.catchTag("NotFound", () => Effect.succeedNone)
  )

const privateKeyFrom = (pem: Buffer, objectKey: string): Either.Either<KeyObject, PkiCorrupt> => {
  try {
    const key = createPrivateKey({ key: pem, format: "pem" })
    return key.asymmetricKeyType === "ed25519"
      ? Either.right(key)
      : Either.left(new PkiCorrupt({ key: objectKey, reason: `not an Ed25519 key (${key.asymmetricKeyType})` }))
  } catch {
    return Either.left(new PkiCorrupt({ key: objectKey, reason: "decrypts, but is not a PKCS#8 PEM private key" }))
  }
}

const loadMaterial = (
  keys: ReturnType<typeof pkiObjectKeys>,
  encryptionKey: Uint8Array,
  caCertBody: Uint8Array,
  caKeyBody: Uint8Array,
  nonceKeyBody: Uint8Array
): Effect.Effect<PkiMaterial, PkiCorrupt | PkiUndecryptable> =>
  Effect.gen(function* () {
    const caCert = yield* Effect.try({
      try: () => new x509.X509Certificate(Buffer.from(caCertBody).toString("utf8")),
      catch: () => new PkiCorrupt({ key: keys.caCert, reason: "not a PEM X.509 certificate" })
    })
    if (caCert.publicKey.algorithm.name !== "Ed25519") {
      return yield* new PkiCorrupt({ key: keys.caCert, reason: `CA key is ${caCert.publicKey.algorithm.name}, not Ed25519` })
    }
    if (caCert.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
      return yield* new PkiCorrupt({ key: keys.caCert, reason: "not a CA certificate (basicConstraints cA is not set)" })
    }
    const caKey = yield* privateKeyFrom(yield* openSecret(encryptionKey, caKeyBody, keys.caKey), keys.caKey)
    if (!spkiDer(createPublicKey(caKey)).equals(Buffer.from(caCert.publicKey.rawData))) {
      return yield* new PkiCorrupt({ key: keys.caKey, reason: `the key does not belong to ${keys.caCert}` })
    }
    const caSigningKey = yield* Effect.promise(() =>
      subtle.importKey("pkcs8", caKey.export({ type: "pkcs8", format: "der" }), ED25519, false, ["sign"])
    )
    const noncePrivateKey = yield* privateKeyFrom(yield* openSecret(encryptionKey, nonceKeyBody, keys.nonceKey), keys.nonceKey)
    return { caCert, caSigningKey, noncePrivateKey, noncePublicKey: createPublicKey(noncePrivateKey) }
  })

/** The three objects of a fresh PKI, and whether this maker's writes all landed. */
const createMaterial = (
  store: ObjectStoreShape,
  keys: ReturnType<typeof pkiObjectKeys>,
  options: ClusterPkiOptions
): Effect.Effect<"created" | "lost", StoreError> =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const caKeys = (yield* Effect.promise(() => subtle.generateKey(ED25519, true, ["sign", "verify"]))) as webcrypto.CryptoKeyPair
    const caCert = yield* Effect.promise(async () =>
      x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: randomSerial(),
        name: [{ CN: [`nstance cluster CA ${options.clusterId}`] }, { O: ["nstance"] }],
        notBefore: new Date(now - NOT_BEFORE_SKEW_MILLIS),
        notAfter: new Date(now + Duration.toMillis(options.caValidity ?? Duration.days(20 * 365))),
        keys: caKeys,
        signingAlgorithm: ED25519,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)
        ]
      })
    )
    const caKeyPem = yield* Effect.promise(() => subtle.exportKey("pkcs8", caKeys.privateKey)).pipe(
      Effect.map((der) => createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }))
    )
    const nonceKeyPem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string
    // `ca.key` first, create-only: whoever writes it owns the creation; the loser loads the winner's PKI.
    const first = yield* store.put(keys.caKey, sealSecret(options.encryptionKey, Buffer.from(caKeyPem), keys.caKey), ifAbsent).pipe(
      Effect.as(true),
      Effect.catchTag("PreconditionFailed", () => Effect.succeed(false))
    )
    if (!first) return "lost" as const
    const rest = [
      store.put(keys.nonceKey, sealSecret(options.encryptionKey, Buffer.from(nonceKeyPem), keys.nonceKey), ifAbsent),
      store.put(keys.caCert, Buffer.from(caCert.toString("pem") + "\n", "utf8"), ifAbsent)
    ]
    for (const put of rest) {
      // A PreconditionFailed here means leftovers appeared meanwhile; loading reports the inconsistency.
      const landed = yield* put.pipe(Effect.as(true), Effect.catchTag("PreconditionFailed", () => Effect.succeed(false)))
      if (!landed) return "lost" as const
    }
    yield* Effect.logInfo("created the cluster PKI").pipe(Effect.annotateLogs({ cluster: options.clusterId }))
    return "created" as const
  })

const randomSerial = (): string => {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x7f) | 0x01 // positive and exactly 16 bytes
  return bytes.toString("hex")
}

class Partial {
  readonly _tag = "Partial"
  constructor(readonly error: PkiIncomplete) {}
}

/**
 * Loads the PKI of `clusterId` from `store`, creating it when none of its objects exist. Fails with a
 * typed startup error for a partial PKI, a wrong encryption key or a corrupt object.
 */
export const makeClusterPki = (
  store: ObjectStoreShape,
  options: ClusterPkiOptions
): Effect.Effect<ClusterPkiShape, PkiLoadError> =>
  Effect.gen(function* () {
    if (options.encryptionKey.length !== 32) {
      return yield* Effect.dieMessage("ClusterPki: the encryption key must be 32 bytes (use encryptionKeyFrom)")
    }
    const keys = pkiObjectKeys(options.clusterId)
    const names = [keys.caCert, keys.caKey, keys.nonceKey] as const

    const readAll = Effect.all(names.map((key) => readOptional(store, key)))
    const settle = Schedule.spaced("100 millis").pipe(
      Schedule.upTo(options.settleTimeout ?? "3 seconds")
    )
    const readComplete = readAll.pipe(
      Effect.flatMap((bodies) => {
        const present = names.filter((_, i) => Option.isSome(bodies[i]!))
        if (present.length === 0 || present.length === names.length) return Effect.succeed(bodies)
        return Effect.fail(
          new Partial(
            new PkiIncomplete({
              clusterId: options.clusterId,
              present,
              missing: names.filter((_, i) => Option.isNone(bodies[i]!))
            })
          )
        )
      }),
      Effect.retry({ schedule: settle, while: (e) => e instanceof Partial }),
      Effect.catchIf((e): e is Partial => e instanceof Partial, (e) => Effect.fail(e.error))
    )

    let bodies = yield* readComplete
    if (bodies.every(Option.isNone)) {
      if (options.create === false) return yield* new PkiMissing({ clusterId: options.clusterId })
      yield* createMaterial(store, keys, options)
      bodies = yield* readComplete
      if (bodies.every(Option.isNone)) {
        return yield* new PkiIncomplete({ clusterId: options.clusterId, present: [], missing: [...names] })
      }
    }
    const [caCertBody, caKeyBody, nonceKeyBody] = bodies.map(Option.getOrThrow) as [Uint8Array, Uint8Array, Uint8Array]
    const material = yield* loadMaterial(keys, options.encryptionKey, caCertBody, caKeyBody, nonceKeyBody)
    return makeShape(options.clusterId, material)
  }).pipe(Effect.withSpan("ClusterPki.load", { attributes: { cluster: options.clusterId } }))

/** The PKI of `options.clusterId` in the `ObjectStore`; building the layer fails on a broken PKI. */
export const ClusterPkiLive = (options: ClusterPkiOptions): Layer.Layer<ClusterPki, PkiLoadError, ObjectStore> =>
  Layer.effect(ClusterPki, Effect.flatMap(ObjectStore, (store) => makeClusterPki(store, options)))

// ---------------------------------------------------------------------------------------------------------
// The operations

const joseRejection = (cause: unknown): NonceError => {
  if (cause instanceof joseErrors.JWTExpired) {
    const exp = typeof cause.payload["exp"] === "number" ? cause.payload["exp"] : 0
    return new NonceExpired({ expiredAt: new Date(exp * 1000) })
  }
  if (cause instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new NonceBadSignature({ detail: "signature does not match the cluster's nonce key" })
  }
  if (cause instanceof joseErrors.JOSEAlgNotAllowed || cause instanceof joseErrors.JOSENotSupported) {
    return new NonceBadSignature({ detail: "not signed with EdDSA" })
  }
  if (cause instanceof joseErrors.JWTClaimValidationFailed) {
    return new NonceMalformed({ detail: `claim ${cause.claim} ${cause.reason}` })
  }
  if (cause instanceof joseErrors.JOSEError) return new NonceMalformed({ detail: cause.code })
  return new NonceMalformed({ detail: "not a compact JWT" })
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/** An Ed25519 SubjectPublicKeyInfo PEM as DER, or why not: the only keys the CA certifies. */
const ed25519PublicKey = (publicKeyPem: string): Effect.Effect<Buffer, InvalidPublicKey> =>
  Effect.gen(function* () {
    const key = yield* Effect.try({
      try: () => createPublicKey(publicKeyPem),
      catch: () => new InvalidPublicKey({ reason: "not a PEM public key" })
    })
    if (key.type !== "public" || key.asymmetricKeyType !== "ed25519") {
      return yield* new InvalidPublicKey({ reason: `expected an Ed25519 public key, got ${key.asymmetricKeyType}` })
    }
    return spkiDer(key)
  })

/** Why an operator certificate request cannot be issued, or undefined. */
const operatorRequestProblem = (name: string, tenant: string, ttlMillis: number): InvalidCertificateRequest | undefined => {
  if (!OPERATOR_NAME.test(name)) {
    return new InvalidCertificateRequest({ field: "name", reason: OPERATOR_NAME_RULE })
  }
  const tenantProblem = identifierProblem(tenant)
  if (tenantProblem !== undefined) return new InvalidCertificateRequest({ field: "tenant", reason: tenantProblem })
  if (!(ttlMillis > 0)) return new InvalidCertificateRequest({ field: "ttl", reason: "must be positive" })
  return undefined
}

const makeShape = (clusterId: string, material: PkiMaterial): ClusterPkiShape => {
  const { caCert, caSigningKey, noncePrivateKey, noncePublicKey } = material
  const caPem = caCert.toString("pem") + "\n"

  const reject = (reason: CertificateRejected["reason"], detail: string) => Effect.fail(new CertificateRejected({ reason, detail }))

  const verifyClientCertificate = (pem: string): Effect.Effect<VerifiedClientCertificate, CertificateRejected> =>
    Effect.gen(function* () {
      if (pem.length > MAX_CERTIFICATE_PEM) return yield* reject("Malformed", "longer than any certificate we issue")
      const cert = yield* Effect.try({
        try: () => new x509.X509Certificate(pem),
        catch: () => new CertificateRejected({ reason: "Malformed", detail: "not a PEM X.509 certificate" })
      })
      if (cert.issuer !== caCert.subject) return yield* reject("UntrustedIssuer", "not issued by this cluster's CA")
      const signed = yield* Effect.promise(() =>
        cert.verify({ publicKey: caCert.publicKey, signatureOnly: true }).catch(() => false)
      )
      if (!signed) return yield* reject("UntrustedIssuer", "signature is not by this cluster's CA")
      if (cert.getExtension(x509.BasicConstraintsExtension)?.ca === true) {
        return yield* reject("NotClientCertificate", "a CA certificate")
      }
      const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)
      if (eku === null || !eku.usages.includes(x509.ExtendedKeyUsage.clientAuth)) {
        return yield* reject("NotClientCertificate", "no clientAuth extended key usage")
      }
      const cn = cert.subjectName.getField("CN")
      const o = cert.subjectName.getField("O")
      if (cn.length !== 1 || o.length !== 1) return yield* reject("Malformed", "subject needs exactly one CN and one O")
      if (cert.publicKey.algorithm.name !== "Ed25519") return yield* reject("Malformed", "key is not Ed25519")
      const now = yield* Clock.currentTimeMillis
      if (now < cert.notBefore.getTime()) return yield* reject("NotYetValid", `valid from ${cert.notBefore.toISOString()}`)
      if (now > cert.notAfter.getTime()) return yield* reject("Expired", `expired at ${cert.notAfter.toISOString()}`)
      const publicKeyPem = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: "der", type: "spki" })
        .export({ type: "spki", format: "pem" }) as string
      const units = cert.subjectName.getField("OU")
      // Certificates for VMs' files (FILE_UNIT), or any other unit, never authenticate to nstance.
      if (units.length > 0 && !(units.length === 1 && units[0] === OPERATOR_UNIT)) {
        return yield* reject("NotClientCertificate", `organizational unit ${units.join(",")} is not an agent's or an operator's`)
      }
      return {
        instanceId: cn[0]!,
        tenant: o[0]!,
        role: units.includes(OPERATOR_UNIT) ? "operator" as const : "agent" as const,
        serial: cert.serialNumber.toLowerCase(),
        notAfter: cert.notAfter,
        publicKeyPem
      }
    })

  /** A leaf certificate signed by the CA: not a CA itself, signatures only, for `usage`. */
  const subjectKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId
  const agentIssuer = agentCertificateIssuer(
    {
      subjectName: Buffer.from(caCert.subjectName.toArrayBuffer()),
      subjectKeyId: subjectKeyId === undefined ? undefined : Buffer.from(subjectKeyId, "hex"),
      spki: Buffer.from(caCert.publicKey.rawData)
    },
    KeyObject.from(caSigningKey)
  )

  const issueLeaf = (leaf: {
    readonly subject: x509.JsonName
    readonly publicKey: Buffer | webcrypto.CryptoKey
    readonly now: number
    readonly ttl: Duration.DurationInput
    readonly usage: x509.ExtendedKeyUsageType
    readonly names?: x509.SubjectAlternativeNameExtension
  }) =>
    Effect.promise(async () =>
      x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: leaf.subject,
        issuer: caCert.subjectName,
        notBefore: new Date(leaf.now - NOT_BEFORE_SKEW_MILLIS),
        notAfter: new Date(leaf.now + Duration.toMillis(leaf.ttl)),
        publicKey: leaf.publicKey,
        signingKey: caSigningKey,
        signingAlgorithm: ED25519,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([leaf.usage]),
          ...(leaf.names === undefined ? [] : [leaf.names]),
          await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
          await x509.SubjectKeyIdentifierExtension.create(leaf.publicKey)
        ]
      })
    )

  return ClusterPki.of({
    clusterId,
    caPem,

    // The hot path of every registration and renewal: encoded directly (see agentCertificateDer.ts).
    issueClientCertificate: ({ instanceId, tenant, publicKeyPem, ttl }) =>
      Effect.gen(function* () {
        const spki = yield* ed25519PublicKey(publicKeyPem)
        const now = yield* Clock.currentTimeMillis
        return issueAgentCertificate(agentIssuer, {
          instanceId,
          tenant,
          spki,
          notBefore: new Date(now - NOT_BEFORE_SKEW_MILLIS),
          notAfter: new Date(now + Duration.toMillis(ttl))
        })
      }),

    issueOperatorCertificate: ({ name, tenant, publicKeyPem, ttl }) =>
      Effect.gen(function* () {
        const problem = operatorRequestProblem(name, tenant, Duration.toMillis(Duration.decode(ttl)))
        if (problem !== undefined) return yield* problem
        const spki = yield* ed25519PublicKey(publicKeyPem)
        const now = yield* Clock.currentTimeMillis
        // The OU is what makes it an operator's: `verifyClientCertificate` reads the role from it, and agents'
        // certificates never carry one.
        const cert = yield* issueLeaf({
          subject: [{ CN: [name] }, { O: [tenant] }, { OU: [OPERATOR_UNIT] }],
          publicKey: spki,
          now,
          ttl,
          usage: x509.ExtendedKeyUsage.clientAuth
        })
        return { certificatePem: cert.toString("pem") + "\n", serial: cert.serialNumber.toLowerCase(), notAfter: cert.notAfter }
      }),

    verifyClientCertificate,

    issueFileCertificate: (request) =>
      Effect.gen(function* () {
        const ttlMillis = Duration.toMillis(Duration.decode(request.ttl))
        if (!(ttlMillis > 0)) return yield* new InvalidCertificateRequest({ field: "ttl", reason: "must be positive" })
        if (request.commonName === "" || request.commonName.length > 64) {
          return yield* new InvalidCertificateRequest({ field: "cn", reason: "must be 1-64 characters" })
        }
        if (request.organization.length > 64) return yield* new InvalidCertificateRequest({ field: "organization", reason: "must be at most 64 characters" })
        const spki = yield* ed25519PublicKey(request.publicKeyPem)
        const now = yield* Clock.currentTimeMillis
        const names: Array<x509.JsonGeneralName> = [
          ...request.dns.map((value) => ({ type: "dns" as const, value })),
          ...request.ip.map((value) => ({ type: "ip" as const, value })),
          ...request.uri.map((value) => ({ type: "url" as const, value }))
        ]
        const cert = yield* issueLeaf({
          subject: [{ CN: [request.commonName] }, ...(request.organization === "" ? [] : [{ O: [request.organization] }]), { OU: [FILE_UNIT] }],
          publicKey: spki,
          now,
          ttl: request.ttl,
          usage: request.kind === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
          ...(names.length === 0 ? {} : { names: new x509.SubjectAlternativeNameExtension(names) })
        })
        return { certificatePem: cert.toString("pem") + "\n", serial: cert.serialNumber.toLowerCase(), notAfter: cert.notAfter }
      }),

    issueServerCertificate: ({ hosts, ttl }) =>
      Effect.gen(function* () {
        // The wall clock, not Effect's: a server certificate is checked by clients' TLS stacks against the
        // operating system's time, whatever clock the issuing code runs under (a test's TestClock included).
        const now = Date.now()
        const keys = (yield* Effect.promise(() => subtle.generateKey(ED25519, true, ["sign", "verify"]))) as webcrypto.CryptoKeyPair
        const names = [...new Set(hosts.filter((host) => host !== ""))]
        const cert = yield* issueLeaf({
          subject: [{ CN: [names[0] ?? "nstance"] }, { O: [clusterId] }],
          publicKey: keys.publicKey,
          now,
          ttl,
          usage: x509.ExtendedKeyUsage.serverAuth,
          names: new x509.SubjectAlternativeNameExtension(names.map((name) => (isIP(name) === 0 ? { type: "dns", value: name } : { type: "ip", value: name })))
        })
        const privateKeyPem = yield* Effect.promise(() => subtle.exportKey("pkcs8", keys.privateKey)).pipe(
          Effect.map((der) => createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }).toString())
        )
        return { certificatePem: cert.toString("pem") + "\n", privateKeyPem, serial: cert.serialNumber.toLowerCase(), notAfter: cert.notAfter }
      }),

    mintNonce: (request) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const iat = Math.floor(now / 1000)
        const claims: NonceClaims = {
          sub: request.instanceId,
          kind: NONCE_KIND,
          cluster: request.cluster,
          shard: request.shard,
          tenant: request.tenant,
          group: request.group,
          jti: randomBytes(16).toString("base64url"),
          iat,
          exp: iat + Math.max(1, Math.ceil(Duration.toSeconds(request.ttl)))
        }
        const jwt = yield* Effect.promise(() =>
          new SignJWT({ kind: claims.kind, cluster: claims.cluster, shard: claims.shard, tenant: claims.tenant, group: claims.group })
            .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
            .setSubject(claims.sub)
            .setJti(claims.jti)
            .setIssuedAt(claims.iat)
            .setExpirationTime(claims.exp)
            .sign(noncePrivateKey)
        )
        return { jwt: Redacted.make(jwt), hash: nonceHash(jwt), claims }
      }),

    verifyNonce: (jwt, audience: NonceAudience) =>
      Effect.gen(function* () {
        if (jwt.length > MAX_NONCE_LENGTH) return yield* new NonceMalformed({ detail: `longer than ${MAX_NONCE_LENGTH} characters` })
        if (!COMPACT_JWS.test(jwt)) return yield* new NonceMalformed({ detail: "not a compact JWT" })
        const now = yield* Clock.currentTimeMillis
        const verified = yield* Effect.tryPromise({
          try: () =>
            jwtVerify(jwt, noncePublicKey, {
              algorithms: ["EdDSA"],
              currentDate: new Date(now),
              clockTolerance: NONCE_CLOCK_TOLERANCE_SECONDS,
              requiredClaims: ["sub", "jti", "iat", "exp"]
            }),
          catch: joseRejection
        })
        const kind = verified.payload["kind"]
        if (kind !== NONCE_KIND) return yield* new NonceWrongKind({ kind: typeof kind === "string" ? kind : String(kind) })
        const claims = yield* Schema.decodeUnknown(NonceClaims)(verified.payload, { onExcessProperty: "ignore" }).pipe(
          Effect.mapError(() => new NonceMalformed({ detail: "claims missing or of the wrong type" }))
        )
        if (claims.cluster !== audience.cluster || claims.shard !== audience.shard) {
          return yield* new NonceWrongShard({ expected: audience, actual: { cluster: claims.cluster, shard: claims.shard } })
        }
        return claims
      })
  })
}
