/**
 * The agent's two RPC groups.
 *
 * `RegistrationRpcs` (`RegisterAgent`), on `shard.bind.registration_addr` over TLS 1.3 without a client
 * certificate: a VM trades its single-use nonce and a public key for a client certificate (CN = instance
 * ID, O = tenant) and learns where the agent channel is. The VM checks the server against the CA
 * certificate that came in its user-data, so the nonce never reaches a server the cluster CA did not sign.
 *
 * `AgentRpcs` (`ReportHealth`, `RenewCertificate`), the agent channel on `shard.bind.agent_addr`: one
 * persistent WebSocket per agent over TLS 1.3 with the agent's client certificate required at the
 * handshake. Identity is the certificate's, per connection (`AgentAuthentication` provides the verified
 * `AgentPeer` to every handler), so requests carry no signatures; a request naming another instance, an
 * operator's certificate or a superseded one (the instance renewed since) is refused.
 *
 * Payloads: the RPC schemas below only fix the wire shape (strings and numbers), and the handlers decode
 * the strict `*Payload` schemas (length limits, PEM/DNS/IP formats). @effect/rpc answers a payload that
 * fails its schema with an untyped defect; checking in the handler turns an oversized or malformed field
 * into a typed `PayloadTooLarge` / `InvalidPayload` that names the field (and never echoes its value).
 */
import { isIPv4, isIPv6 } from "node:net"
import { Rpc, RpcGroup, RpcMiddleware } from "@effect/rpc"
import { Context, Effect, Either, Option, ParseResult, Schema, SchemaAST } from "effect"
import type { VerifiedClientCertificate } from "../services/ClusterPki.js"
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
import { FileMessage } from "../domain/agent/fileMessages.js"

// ---------------------------------------------------------------------------------------------------------
// Limits and strict field schemas

export const PAYLOAD_LIMITS = {
  nonce: MAX_NONCE_LENGTH,
  publicKeyPem: 4096,
  privateIpv4: 15,
  privateIpv6: 45,
  hostname: 253,
  status: 16,
  instanceId: 128,
  keyName: 64,
  /** Base64 of an Ed25519 signature (64 bytes). */
  proof: 128
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
/** The instance a channel request is about: it must be the one the connection's certificate names. */
export const InstanceIdField = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.instanceId),
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
  Schema.annotations({ description: "an instance ID (letters, digits, '.', '_', '-')" })
)

/** The name of a key the agent holds for a certificate file (`key.name` without `.pub`). */
export const KeyName = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.keyName),
  Schema.pattern(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/),
  Schema.annotations({ description: "a key name (letters, digits, '.', '_', '-')" })
)
export const KeyProof = Schema.String.pipe(
  Schema.maxLength(PAYLOAD_LIMITS.proof),
  Schema.pattern(/^[A-Za-z0-9+/]{86}==$/),
  Schema.annotations({ description: "the base64 of an Ed25519 signature" })
)

/**
 * What the agent signs with a key it submits, proving it holds the private half: bound to the instance and
 * the key's name, so a proof seen on one VM is worth nothing for another instance or another name.
 */
export const keyProofMessage = (instanceId: string, name: string): Uint8Array =>
  new TextEncoder().encode(`nstance key proof v1\n${instanceId}\n${name}\n`)

export const RegisterAgentPayload = Schema.Struct({
  nonce: NonceJwt,
  publicKeyPem: PublicKeyPem,
  privateIpv4: Schema.optional(Ipv4Address),
  privateIpv6: Schema.optional(Ipv6Address),
  hostname: Schema.optional(Hostname)
})
export type RegisterAgentPayload = typeof RegisterAgentPayload.Type

export const ReportHealthPayload = Schema.Struct({
  instanceId: InstanceIdField,
  status: Schema.optional(HealthStatus)
})
export type ReportHealthPayload = typeof ReportHealthPayload.Type

export const RenewCertificatePayload = Schema.Struct({
  instanceId: InstanceIdField,
  publicKeyPem: PublicKeyPem
})
export type RenewCertificatePayload = typeof RenewCertificatePayload.Type

export const SubmitKeyPayload = Schema.Struct({
  instanceId: InstanceIdField,
  name: KeyName,
  publicKeyPem: PublicKeyPem,
  proof: KeyProof
})
export type SubmitKeyPayload = typeof SubmitKeyPayload.Type

export const ReceiveFilesPayload = Schema.Struct({ instanceId: InstanceIdField })

export { FileMessage } from "../domain/agent/fileMessages.js"

// ---------------------------------------------------------------------------------------------------------
// Procedures (wire shapes; see the module comment for why the strict schemas are applied by the handlers)

export const RegisterAgentResult = Schema.Struct({
  certificatePem: Schema.String,
  caPem: Schema.String,
  instanceId: Schema.String,
  /** Renew the certificate after this many seconds (two thirds of its lifetime). */
  renewAfterSeconds: Schema.Int,
  /** The agent channel: `wss://{shard.advertise.agent_addr}/agent`. */
  agentUrl: Schema.String
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

/** The verified client certificate of the agent-channel connection a request came on. */
export class AgentPeer extends Context.Tag("nstance/AgentPeer")<AgentPeer, VerifiedClientCertificate>() {}

/**
 * Authenticates every agent-channel request by its connection's client certificate: an agent's (not an
 * operator's), issued by the cluster CA and valid now. Its implementation is a Layer, so the TLS one
 * (`AgentServer.ts`) serves the network and an in-memory one serves simulations in virtual time.
 */
export class AgentAuthentication extends RpcMiddleware.Tag<AgentAuthentication>()("AgentAuthentication", {
  provides: AgentPeer,
  failure: InvalidCertificate
}) {}

export class ReportHealth extends Rpc.make("ReportHealth", {
  payload: {
    instanceId: Schema.String,
    status: Schema.optional(Schema.String)
  },
  success: Schema.Struct({ ok: Schema.Literal(true) }),
  error: Schema.Union(InvalidCertificate, UnknownInstance, NotLeader, PayloadTooLarge, InvalidPayload)
}) {}

export class RenewCertificate extends Rpc.make("RenewCertificate", {
  payload: {
    instanceId: Schema.String,
    publicKeyPem: Schema.String
  },
  success: RenewCertificateResult,
  error: Schema.Union(InvalidCertificate, UnknownInstance, NotLeader, PayloadTooLarge, InvalidPayload)
}) {}

export class SubmitKey extends Rpc.make("SubmitKey", {
  payload: {
    instanceId: Schema.String,
    name: Schema.String,
    publicKeyPem: Schema.String,
    proof: Schema.String
  },
  success: Schema.Struct({ ok: Schema.Literal(true) }),
  error: Schema.Union(InvalidCertificate, UnknownInstance, NotLeader, PayloadTooLarge, InvalidPayload)
}) {}

/** The VM's files, as a stream that lasts as long as the connection: everything on open, then each change. */
export class ReceiveFiles extends Rpc.make("ReceiveFiles", {
  payload: { instanceId: Schema.String },
  success: FileMessage,
  error: Schema.Union(InvalidCertificate, UnknownInstance, NotLeader, PayloadTooLarge, InvalidPayload),
  stream: true
}) {}

export class RegistrationRpcs extends RpcGroup.make(RegisterAgent) {}

export class AgentRpcs extends RpcGroup.make(ReportHealth, RenewCertificate, SubmitKey, ReceiveFiles).middleware(AgentAuthentication) {}

// ---------------------------------------------------------------------------------------------------------
// Strict decoding of a wire payload

const expected = (schema: Schema.Schema.Any): string =>
  Option.getOrElse(SchemaAST.getDescriptionAnnotation(schema.ast), () => "a valid value")

const FIELD_EXPECTED: Record<string, string> = {
  nonce: expected(NonceJwt),
  publicKeyPem: expected(PublicKeyPem),
  privateIpv4: expected(Ipv4Address),
  privateIpv6: expected(Ipv6Address),
  hostname: expected(Hostname),
  status: expected(HealthStatus),
  instanceId: expected(InstanceIdField),
  name: expected(KeyName),
  proof: expected(KeyProof)
}

/**
 * Decodes a wire payload with a strict payload schema: the first field over its `PAYLOAD_LIMITS` entry is
 * a `PayloadTooLarge`, the first field failing its format an `InvalidPayload` saying what was expected.
 */
export const decodeStrict = <A, I>(schema: Schema.Schema<A, I> & { readonly fields: Schema.Struct.Fields }) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  // Worked out once: the decoder runs for every health report.
  const limits = Object.entries(PAYLOAD_LIMITS).filter(([field]) => field in schema.fields)
  return (raw: object): Effect.Effect<A, PayloadTooLarge | InvalidPayload> => {
    const record = raw as Record<string, unknown>
    for (const [field, max] of limits) {
      const value = record[field]
      if (typeof value === "string" && value.length > max) {
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
