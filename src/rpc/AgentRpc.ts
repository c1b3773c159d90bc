/**
 * The `Agent` RPC group: how an agent on a VM nstance created registers (trading its single-use nonce and
 * a public key for a client certificate), reports health and renews that certificate before it expires.
 *
 * Authentication after registration is a signed request, not mTLS. Each `ReportHealth` and
 * `RenewCertificate` carries the agent's certificate and an Ed25519 signature, with the key that
 * certificate certifies, over a statement naming the procedure, the certificate, the request content and
 * the signing time (`domain/agent/signedRequest.ts`); the server checks the certificate against the cluster
 * CA and the signature against the certificate's key, and refuses signing times outside ±5 minutes or not
 * newer than the last one it accepted from that instance. Why not mTLS:
 * - @effect/platform-node's HTTP server hides the TLS socket: the peer certificate would have to be dug out
 *   of the raw Node request, outside the RPC layer, and the handlers could not be tested without TLS;
 * - mTLS would also need TLS with a server certificate agents already trust at registration, and a client
 *   certificate identity does not survive an L4/L7 hop that terminates TLS (keepalived VIPs, proxies);
 * - a signature binds the identity to the very request content, over any transport, and the same code
 *   serves the simulator's guests and a real `nstance-agent`.
 * What it does not give is confidentiality: run the agent address on a private network or behind TLS.
 *
 * Payloads: the RPC schemas below only fix the wire shape (strings and numbers), and the handlers decode
 * the strict `*Payload` schemas (length limits, PEM/DNS/IP formats). @effect/rpc answers a payload that
 * fails its schema with an untyped defect; checking in the handler turns an oversized or malformed field
 * into a typed `PayloadTooLarge` / `InvalidPayload` that names the field (and never echoes its value).
 */
import { isIPv4, isIPv6 } from "node:net"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Effect, Either, Option, ParseResult, Schema, SchemaAST } from "effect"
import {
  InvalidCertificate,
  InvalidNonce,
  InvalidPayload,
  NonceReused,
  NotLeader,
  PayloadTooLarge,
  UnknownInstance
} from "../domain/agent/errors.js"
import { MAX_NONCE_LENGTH } from "../domain/agent/nonce.js"

// ---------------------------------------------------------------------------------------------------------
// Limits and strict field schemas

export const PAYLOAD_LIMITS = {
  nonce: MAX_NONCE_LENGTH,
  publicKeyPem: 4096,
  certificatePem: 4096,
  privateIpv4: 15,
  privateIpv6: 45,
  hostname: 253,
  status: 16,
  signature: 128
} as const

/** Largest request body the agent endpoint reads; every field at its limit still fits. */
export const MAX_REQUEST_BYTES = 16 * 1024

const DNS_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
const DNS_NAME = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*\\.?$`)
const PEM_BLOCK = (label: string) => new RegExp(`^-----BEGIN ${label}-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END ${label}-----\\r?\\n?$`)

export const NonceJwt = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.nonce),
  Schema.annotations({ description: `a compact JWT of at most ${PAYLOAD_LIMITS.nonce} characters` })
)
export const PublicKeyPem = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.publicKeyPem),
  Schema.pattern(PEM_BLOCK("PUBLIC KEY")),
  Schema.annotations({ description: "an SPKI PEM public key (-----BEGIN PUBLIC KEY-----)" })
)
export const CertificatePem = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.certificatePem),
  Schema.pattern(PEM_BLOCK("CERTIFICATE")),
  Schema.annotations({ description: "a PEM certificate (-----BEGIN CERTIFICATE-----)" })
)
export const Ipv4Address = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.privateIpv4),
  Schema.filter((s) => isIPv4(s)),
  Schema.annotations({ description: "an IPv4 address in dotted-quad form" })
)
export const Ipv6Address = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.privateIpv6),
  Schema.filter((s) => isIPv6(s)),
  Schema.annotations({ description: "an IPv6 address" })
)
export const Hostname = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.hostname),
  Schema.pattern(DNS_NAME),
  Schema.annotations({ description: "a DNS name of at most 253 characters, labels of 1-63 letters, digits or hyphens" })
)
export const HealthStatus = Schema.Literal("healthy", "degraded", "unhealthy").annotations({
  description: "one of healthy, degraded, unhealthy"
})
/** Ed25519 signature, base64url without padding (86 characters). */
export const Signature = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.signature),
  Schema.pattern(/^[A-Za-z0-9_-]{86}$/),
  Schema.annotations({ description: "an Ed25519 signature in base64url (86 characters)" })
)
/** Unix milliseconds at which the agent signed the request. */
export const SignedAt = Schema.Int.pipe(
  Schema.positive(),
  Schema.annotations({ description: "a positive integer (Unix milliseconds)" })
)

export const RegisterAgentPayload = Schema.Struct({
  nonce: NonceJwt,
  publicKeyPem: PublicKeyPem,
  privateIpv4: Schema.optional(Ipv4Address),
  privateIpv6: Schema.optional(Ipv6Address),
  hostname: Schema.optional(Hostname)
})
export type RegisterAgentPayload = typeof RegisterAgentPayload.Type

export const ReportHealthPayload = Schema.Struct({
  certificatePem: CertificatePem,
  status: Schema.optional(HealthStatus),
  signedAt: SignedAt,
  signature: Signature
})
export type ReportHealthPayload = typeof ReportHealthPayload.Type

export const RenewCertificatePayload = Schema.Struct({
  certificatePem: CertificatePem,
  publicKeyPem: PublicKeyPem,
  signedAt: SignedAt,
  signature: Signature
})
export type RenewCertificatePayload = typeof RenewCertificatePayload.Type

// ---------------------------------------------------------------------------------------------------------
// Procedures (wire shapes; see the module comment for why the strict schemas are applied by the handlers)

export const RegisterAgentResult = Schema.Struct({
  certificatePem: Schema.String,
  caPem: Schema.String,
  instanceId: Schema.String,
  /** Renew the certificate after this many seconds (two thirds of its lifetime). */
  renewAfterSeconds: Schema.Int
})
export type RegisterAgentResult = typeof RegisterAgentResult.Type

export const RenewCertificateResult = Schema.Struct({
  certificatePem: Schema.String,
  caPem: Schema.String,
  renewAfterSeconds: Schema.Int
})
export type RenewCertificateResult = typeof RenewCertificateResult.Type

export class RegisterAgent extends Rpc.make("RegisterAgent", {
  payload: {
    nonce: Schema.String,
    publicKeyPem: Schema.String,
    privateIpv4: Schema.optional(Schema.String),
    privateIpv6: Schema.optional(Schema.String),
    hostname: Schema.optional(Schema.String)
  },
  success: RegisterAgentResult,
  error: Schema.Union(InvalidNonce, UnknownInstance, NonceReused, NotLeader, PayloadTooLarge, InvalidPayload)
}) {}

export class ReportHealth extends Rpc.make("ReportHealth", {
  payload: {
    certificatePem: Schema.String,
    status: Schema.optional(Schema.String),
    signedAt: Schema.Number,
    signature: Schema.String
  },
  success: Schema.Struct({ ok: Schema.Literal(true) }),
  error: Schema.Union(InvalidCertificate, UnknownInstance, NotLeader, PayloadTooLarge, InvalidPayload)
}) {}

export class RenewCertificate extends Rpc.make("RenewCertificate", {
  payload: {
    certificatePem: Schema.String,
    publicKeyPem: Schema.String,
    signedAt: Schema.Number,
    signature: Schema.String
  },
  success: RenewCertificateResult,
  error: Schema.Union(InvalidCertificate, UnknownInstance, NotLeader, PayloadTooLarge, InvalidPayload)
}) {}

export class AgentRpcs extends RpcGroup.make(RegisterAgent, ReportHealth, RenewCertificate) {}

// ---------------------------------------------------------------------------------------------------------
// Strict decoding of a wire payload

const expected = (schema: Schema.Schema.Any): string =>
  Option.getOrElse(SchemaAST.getDescriptionAnnotation(schema.ast), () => "a valid value")

const FIELD_EXPECTED: Record<string, string> = {
  nonce: expected(NonceJwt),
  publicKeyPem: expected(PublicKeyPem),
  certificatePem: expected(CertificatePem),
  privateIpv4: expected(Ipv4Address),
  privateIpv6: expected(Ipv6Address),
  hostname: expected(Hostname),
  status: expected(HealthStatus),
  signature: expected(Signature),
  signedAt: expected(SignedAt)
}

/**
 * Decodes a wire payload with a strict payload schema: the first field over its `PAYLOAD_LIMITS` entry is
 * a `PayloadTooLarge`, the first field failing its format an `InvalidPayload` saying what was expected.
 */
export const decodeStrict = <A, I>(schema: Schema.Schema<A, I> & { readonly fields: Schema.Struct.Fields }) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  return (raw: object): Effect.Effect<A, PayloadTooLarge | InvalidPayload> => {
    const record = raw as Record<string, unknown>
    for (const [field, max] of Object.entries(PAYLOAD_LIMITS)) {
      const value = record[field]
      if (field in schema.fields && typeof value === "string" && value.length > max) {
        return Effect.fail(new PayloadTooLarge({ field, maxLength: max }))
      }
    }
    const decoded = decode(raw)
    if (Either.isRight(decoded)) return Effect.succeed(decoded.right)
    const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
    const field = typeof issue?.path[0] === "string" ? issue.path[0] : "payload"
    const reason = issue?.message === "is missing"
      ? "is missing"
      : `expected ${FIELD_EXPECTED[field] ?? "a valid value"}`
    return Effect.fail(new InvalidPayload({ field, reason }))
  }
}
