/**
 * The cluster's trust root: an Ed25519 CA that issues agents' client certificates and an Ed25519 key that
 * signs registration nonces, both kept in the cluster's bucket (private keys encrypted). The contract only
 * issues and checks; where the keys live and how they are created is the layer's business.
 */
import { Context, Data, type Duration, type Effect } from "effect"
import type { MintedNonce, MintNonceRequest, NonceAudience, NonceClaims, NonceError } from "../domain/agent/nonce.js"
import type { StoreError } from "./ObjectStore.js"
import type { CertificateRequestFields } from "../domain/agent/fileContent.js"

/** `NSTANCE_ENCRYPTION_KEY` or the key file is missing or not 32 bytes. Never carries the key itself. */
export class InvalidEncryptionKey extends Data.TaggedError("InvalidEncryptionKey")<{
  readonly source: string
  readonly reason: string
}> {
  override get message() {
    return `invalid encryption key from ${this.source}: ${this.reason}`
  }
}

/** Some PKI objects exist and others do not: refusing to start rather than silently creating a new CA. */
export class PkiIncomplete extends Data.TaggedError("PkiIncomplete")<{
  readonly clusterId: string
  readonly present: ReadonlyArray<string>
  readonly missing: ReadonlyArray<string>
}> {
  override get message() {
    return `cluster PKI of ${this.clusterId} is incomplete: ${this.missing.join(", ")} missing while ` +
      `${this.present.join(", ")} exist; restore the missing objects from a backup (or, to start over with a ` +
      `new CA that invalidates every agent certificate, delete the remaining ones)`
  }
}

/** An encrypted key does not decrypt: the encryption key is not the one it was written with, or it was altered. */
export class PkiUndecryptable extends Data.TaggedError("PkiUndecryptable")<{ readonly key: string }> {
  override get message() {
    return `cannot decrypt ${this.key}: NSTANCE_ENCRYPTION_KEY (or the key file) is not the key it was ` +
      `written with, or the object was altered`
  }
}

/** A PKI object is not what it must be (bad PEM or JSON, wrong algorithm, key not matching the certificate). */
export class PkiCorrupt extends Data.TaggedError("PkiCorrupt")<{ readonly key: string; readonly reason: string }> {
  override get message() {
    return `corrupt cluster PKI object ${this.key}: ${this.reason}`
  }
}

/** No object of the cluster's PKI exists, and the caller asked not to create one (`nstance-admin cert issue`). */
export class PkiMissing extends Data.TaggedError("PkiMissing")<{ readonly clusterId: string }> {
  override get message() {
    return `no cluster PKI for cluster ${this.clusterId} in this bucket (pki/${this.clusterId}/): the servers create it at ` +
      `their first start with NSTANCE_ENCRYPTION_KEY; start one first, or check --bucket and the shard config's cluster.id`
  }
}

/** Everything that can stop the PKI from loading: a startup error, never retried into a new CA. */
export type PkiLoadError = PkiIncomplete | PkiUndecryptable | PkiCorrupt | PkiMissing | StoreError

/** The public key to certify is not an Ed25519 SubjectPublicKeyInfo PEM. */
export class InvalidPublicKey extends Data.TaggedError("InvalidPublicKey")<{ readonly reason: string }> {
  override get message() {
    return `invalid agent public key: ${this.reason}`
  }
}

export type CertificateRejection =
  | "Malformed"
  | "UntrustedIssuer"
  | "Expired"
  | "NotYetValid"
  | "NotClientCertificate"

/** A presented client certificate is not one this cluster's CA issued, or not valid now. */
export class CertificateRejected extends Data.TaggedError("CertificateRejected")<{
  readonly reason: CertificateRejection
  readonly detail: string
}> {
  override get message() {
    return `client certificate rejected (${this.reason}): ${this.detail}`
  }
}

export interface IssueClientCertificateRequest {
  readonly instanceId: string
  readonly tenant: string
  /** The agent's Ed25519 public key, SPKI PEM. */
  readonly publicKeyPem: string
  readonly ttl: Duration.DurationInput
}

/** What an operator's name (a certificate's CN) may be: a handle — it is logged and shown — not free text. */
export const OPERATOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/
export const OPERATOR_NAME_RULE = "must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"

/** An operator's client certificate: CN = `name`, O = `tenant`, OU = `OPERATOR_UNIT`. */
export interface IssueOperatorCertificateRequest {
  /** Who holds it (a person or a pipeline): see `OPERATOR_NAME`. */
  readonly name: string
  /** The tenant it is scoped to: the identifier rules of tenant IDs. */
  readonly tenant: string
  /** The operator's Ed25519 public key, SPKI PEM. */
  readonly publicKeyPem: string
  readonly ttl: Duration.DurationInput
}

/** A certificate request field the PKI will not put into a certificate. */
export class InvalidCertificateRequest extends Data.TaggedError("InvalidCertificateRequest")<{
  readonly field: string
  readonly reason: string
}> {
  override get message() {
    return `cannot issue the certificate: ${this.field} ${this.reason}`
  }
}

export interface IssuedCertificate {
  readonly certificatePem: string
  /** Lowercase hex. */
  readonly serial: string
  readonly notAfter: Date
}

export interface IssueServerCertificateRequest {
  /** What clients dial: IP addresses and DNS names, each becomes a subjectAltName. */
  readonly hosts: ReadonlyArray<string>
  readonly ttl: Duration.DurationInput
}

/** A server certificate and its private key, which lives only in the memory of the replica that asked. */
export interface IssuedServerCertificate {
  readonly certificatePem: string
  readonly privateKeyPem: string
  readonly serial: string
  readonly notAfter: Date
}

/** A certificate for a VM's own key, from a `certificates` template (the `certificate` file kind). */
export interface IssueFileCertificateRequest extends CertificateRequestFields {
  /** The agent's Ed25519 public key, SPKI PEM. */
  readonly publicKeyPem: string
  readonly ttl: Duration.DurationInput
}

/** Whose a client certificate is: an agent's (CN = instance ID) or an operator's (OU = operator, CN = their name). */
export type ClientRole = "agent" | "operator"

/** The OU that marks an operator's certificate; agents' certificates carry none, so one can never act as the other. */
export const OPERATOR_UNIT = "operator"

/**
 * The OU of every certificate issued for a VM's files: such a certificate never authenticates to nstance
 * (the agent channel and the admin endpoint refuse any OU but `OPERATOR_UNIT`), whatever its template says.
 */
export const FILE_UNIT = "nstance-file"

export interface VerifiedClientCertificate {
  /** Subject CN: the instance ID of an agent, the name of an operator. */
  readonly instanceId: string
  /** Subject O. */
  readonly tenant: string
  readonly role: ClientRole
  readonly serial: string
  readonly notAfter: Date
  /** The certified Ed25519 key, SPKI PEM: what checks the agent's request signatures. */
  readonly publicKeyPem: string
}

export interface ClusterPkiShape {
  readonly clusterId: string
  /** The CA certificate, PEM: agents keep it to know whom they talk to. */
  readonly caPem: string
  /** A certificate with CN = instance ID, O = tenant, clientAuth, valid from now (minus skew) for `ttl`. */
  readonly issueClientCertificate: (request: IssueClientCertificateRequest) => Effect.Effect<IssuedCertificate, InvalidPublicKey>
  /**
   * An operator's client certificate scoped to one tenant (role `operator`, see `OPERATOR_UNIT`), clientAuth,
   * valid from now (minus skew) for `ttl`.
   */
  readonly issueOperatorCertificate: (
    request: IssueOperatorCertificateRequest
  ) => Effect.Effect<IssuedCertificate, InvalidPublicKey | InvalidCertificateRequest>
  /** Signed by our CA, a client (not CA) certificate, and valid at the current `Clock` time. */
  readonly verifyClientCertificate: (pem: string) => Effect.Effect<VerifiedClientCertificate, CertificateRejected>
  /** A TLS server certificate for `hosts`, with a fresh key pair (the key is never stored). */
  readonly issueServerCertificate: (request: IssueServerCertificateRequest) => Effect.Effect<IssuedServerCertificate>
  /**
   * A leaf certificate for a key a VM holds, with the template's CN, O and SANs; valid from now (minus
   * skew) for `ttl`. It carries `FILE_UNIT`, so it can never stand for an agent or an operator.
   */
  readonly issueFileCertificate: (request: IssueFileCertificateRequest) => Effect.Effect<IssuedCertificate, InvalidPublicKey | InvalidCertificateRequest>
  /** An EdDSA JWT expiring `ttl` after the current `Clock` time. */
  readonly mintNonce: (request: MintNonceRequest) => Effect.Effect<MintedNonce>
  /** Checks, in order, shape, signature, expiry (at `Clock` time), kind, then cluster and shard. */
  readonly verifyNonce: (jwt: string, audience: NonceAudience) => Effect.Effect<NonceClaims, NonceError>
}

export class ClusterPki extends Context.Tag("nstance/ClusterPki")<ClusterPki, ClusterPkiShape>() {}
