/**
 * The registration nonce: a single-use EdDSA JWT the create saga puts into an instance's cloud-init
 * user-data so its agent can prove, once, that it runs on the VM nstance created. The token is a bearer
 * secret until used, so only `nonceHash(jwt)` may ever be stored (event log, backend records) or logged;
 * minting hands the token out wrapped in `Redacted` so a stray log line prints `<redacted>`.
 */
import { createHash } from "node:crypto"
import { Data, Duration, type Redacted, Schema } from "effect"

export const NONCE_KIND = "agent"
/** A compact JWS longer than this is refused before any parsing (the RPC payload limit too). */
export const MAX_NONCE_LENGTH = 2048

/** The claims nstance signs; `sub` is the instance ID. Times are JWT NumericDate (seconds). */
export const NonceClaims = Schema.Struct({
  sub: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64)),
  kind: Schema.Literal(NONCE_KIND),
  cluster: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
  shard: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128)),
  tenant: Schema.String.pipe(Schema.maxLength(256)),
  group: Schema.String.pipe(Schema.maxLength(256)),
  jti: Schema.String.pipe(Schema.minLength(16), Schema.maxLength(64)),
  iat: Schema.Int,
  exp: Schema.Int
})
export type NonceClaims = typeof NonceClaims.Type

export interface MintNonceRequest {
  readonly instanceId: string
  readonly cluster: string
  readonly shard: string
  readonly tenant: string
  readonly group: string
  /** Lifetime of the nonce from its minting (the create saga uses `nonceLifetime`). */
  readonly ttl: Duration.DurationInput
}

export interface MintedNonce {
  /** The token for the user-data only: `Redacted.value(jwt)`. Never store or log it. */
  readonly jwt: Redacted.Redacted<string>
  /** `nonceHash` of the token: what the event log records and registration compares against. */
  readonly hash: string
  readonly claims: NonceClaims
}

/** Where a nonce is accepted: the cluster and shard that minted it. */
export interface NonceAudience {
  readonly cluster: string
  readonly shard: string
}

/**
 * What a nonce's `exp` allows beyond `registration_timeout`. The nonce is minted at the create's ISO step,
 * before the upload, the full clone (its task alone may take 30 minutes, and clones onto one storage wait
 * for each other), the configure and resize calls and the start (each task bounded at 10 minutes); the
 * agent's `registration_timeout` only begins when the VM starts. `exp` = mint + registration_timeout would
 * let a slow clone eat the agent's window — or expire the nonce before its VM ever boots.
 *
 * Generous is safe because `exp` is not what bounds a registration: a nonce registers only the instance
 * it names while that instance awaits its agent (started, not yet registered), with its newest nonce, once;
 * and the liveness TTL replaces an instance whose agent has not registered `registration_timeout` after
 * the VM's start, after which its nonce matches nothing. `exp` is the backstop for a leaked nonce while no
 * leader runs that check.
 */
export const NONCE_CREATE_ALLOWANCE = Duration.hours(6)

/** The `ttl` of a nonce minted by the create saga: `registration_timeout` plus `NONCE_CREATE_ALLOWANCE`. */
export const nonceLifetime = (registrationTimeout: Duration.DurationInput): Duration.Duration =>
  Duration.sum(registrationTimeout, NONCE_CREATE_ALLOWANCE)

/** SHA-256 of the compact JWT, lowercase hex: the only form of a nonce that may be kept. */
export const nonceHash = (jwt: string): string => createHash("sha256").update(jwt, "utf8").digest("hex")

/** Reasons a nonce is refused; also the `reason` of the RPC `InvalidNonce` error. */
export type NonceRejection = "BadSignature" | "Expired" | "WrongKind" | "WrongShard" | "Malformed"

/** Not signed by this cluster's nonce key (forged, or signed with another algorithm or key). */
export class NonceBadSignature extends Data.TaggedError("NonceBadSignature")<{ readonly detail: string }> {
  readonly reason: NonceRejection = "BadSignature"
  override get message() {
    return `nonce signature does not verify: ${this.detail}`
  }
}

export class NonceExpired extends Data.TaggedError("NonceExpired")<{ readonly expiredAt: Date }> {
  readonly reason: NonceRejection = "Expired"
  override get message() {
    return `nonce expired at ${this.expiredAt.toISOString()}`
  }
}

/** Signed by us but not a registration nonce (some other token kind). */
export class NonceWrongKind extends Data.TaggedError("NonceWrongKind")<{ readonly kind: string }> {
  readonly reason: NonceRejection = "WrongKind"
  override get message() {
    return `token kind ${JSON.stringify(this.kind)} is not ${JSON.stringify(NONCE_KIND)}`
  }
}

/** Signed by us for another cluster or shard: it must be presented to the shard that created the VM. */
export class NonceWrongShard extends Data.TaggedError("NonceWrongShard")<{
  readonly expected: NonceAudience
  readonly actual: NonceAudience
}> {
  readonly reason: NonceRejection = "WrongShard"
  override get message() {
    return `nonce is for cluster ${this.actual.cluster} shard ${this.actual.shard}, ` +
      `not cluster ${this.expected.cluster} shard ${this.expected.shard}`
  }
}

/** Not a compact JWS at all, too long, or claims missing or of the wrong type. */
export class NonceMalformed extends Data.TaggedError("NonceMalformed")<{ readonly detail: string }> {
  readonly reason: NonceRejection = "Malformed"
  override get message() {
    return `malformed nonce: ${this.detail}`
  }
}

export type NonceError = NonceBadSignature | NonceExpired | NonceWrongKind | NonceWrongShard | NonceMalformed
