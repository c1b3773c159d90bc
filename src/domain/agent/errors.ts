/**
 * The typed refusals of agent registration, health reports and renewals. They are Schema classes because
 * they cross the wire as the `Agent` RPC group's errors (`rpc/AgentRpc.ts`), and they live in the domain
 * because the services and backends that raise them (`AgentBackend`, its memory and shard layers) sit
 * below the RPC layer and must not import it. Tags and fields are the wire format: change neither.
 */
import { Schema } from "effect"
import type { NonceRejection } from "./nonce.js"

export class InvalidNonce extends Schema.TaggedError<InvalidNonce>()("InvalidNonce", {
  reason: Schema.Literal("BadSignature", "Expired", "WrongKind", "WrongShard", "Malformed"),
  detail: Schema.String
}) {
  override get message() {
    return `invalid nonce (${this.reason}): ${this.detail}`
  }
}
/** Compile-time: the wire reasons are exactly the domain's `NonceRejection`s. */
export type _NonceReasonsInStep = [NonceRejection] extends [InvalidNonce["reason"]]
  ? [InvalidNonce["reason"]] extends [NonceRejection] ? true : never
  : never
const _nonceReasonsInStep: _NonceReasonsInStep = true
void _nonceReasonsInStep

/** No instance with that ID is waiting for registration (never created, deleted, or not this shard's). */
export class UnknownInstance extends Schema.TaggedError<UnknownInstance>()("UnknownInstance", {
  instanceId: Schema.String
}) {
  override get message() {
    return `unknown instance ${this.instanceId}`
  }
}

/** The nonce was already used to register, or was superseded by a newer one for the same instance. */
export class NonceReused extends Schema.TaggedError<NonceReused>()("NonceReused", {
  instanceId: Schema.String
}) {
  override get message() {
    return `the nonce of instance ${this.instanceId} was already used or superseded`
  }
}

/** This replica does not lead the shard; retry at `leaderAddr` (empty when no leader is known). */
export class NotLeader extends Schema.TaggedError<NotLeader>()("NotLeader", {
  leaderAddr: Schema.String
}) {
  override get message() {
    return this.leaderAddr === "" ? "not the leader; no leader is known" : `not the leader; the leader is ${this.leaderAddr}`
  }
}

export class InvalidCertificate extends Schema.TaggedError<InvalidCertificate>()("InvalidCertificate", {
  reason: Schema.Literal(
    "Malformed",
    "UntrustedIssuer",
    "Expired",
    "NotYetValid",
    "NotClientCertificate",
    /** No client certificate on the connection. */
    "Missing",
    /** An operator's certificate, not an agent's. */
    "NotAgentCertificate",
    /** The instance renewed since this certificate was issued: only the newest is accepted. */
    "Superseded",
    /** The request names an instance other than the certificate's. */
    "OtherInstance"
  ),
  detail: Schema.String
}) {
  override get message() {
    return `invalid certificate (${this.reason}): ${this.detail}`
  }
}

/** A field (or, with field "body", the whole request) exceeds its limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  field: Schema.String,
  maxLength: Schema.Int
}) {
  override get message() {
    return `${this.field} exceeds ${this.maxLength} ${this.field === "body" ? "bytes" : "characters"}`
  }
}

/** A field is missing or not of its format; `reason` says what was expected, never what was sent. */
export class InvalidPayload extends Schema.TaggedError<InvalidPayload>()("InvalidPayload", {
  field: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid ${this.field}: ${this.reason}`
  }
}
