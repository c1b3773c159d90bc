/**
 * The events of a shard's log: the only durable record of what the leader decided and did. Each is a
 * versioned `Schema.TaggedStruct`, decoded strictly (unknown tag, version or field → failure), because a
 * replay that silently skipped an event would fold to a state that never existed.
 */
import { type Either, type ParseResult, Schema } from "effect"

/** Version field: filled in by `make`, checked exactly on decode. */
const v = Schema.Literal(1).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1 as const))
const instanceId = Schema.String
/** Epoch milliseconds from Effect's Clock, supplied by the caller. */
const at = Schema.Number
const Vmid = Schema.Int.pipe(Schema.positive())
const Kind = Schema.String.pipe(Schema.pattern(/^[a-z]{3}$/, { message: () => "kind must be 3 lowercase letters" }))

export const LeaderElected = Schema.TaggedStruct("LeaderElected", { v, term: Schema.Int, replica: Schema.String })

export const RequestReason = Schema.Literal("scale-up", "replacement", "operator")
export type RequestReason = typeof RequestReason.Type

export const InstanceRequested = Schema.TaggedStruct("InstanceRequested", {
  v,
  instanceId,
  at,
  tenant: Schema.String,
  group: Schema.String,
  kind: Kind,
  specHash: Schema.String,
  reason: RequestReason,
  /** The group's infra hash when requested (see `src/domain/config/infraHash.ts`); absent in logs from before it was recorded. */
  infraHash: Schema.optional(Schema.String)
})

export const NodeChosen = Schema.TaggedStruct("NodeChosen", { v, instanceId, at, node: Schema.String })

export const TemplateResolved = Schema.TaggedStruct("TemplateResolved", {
  v,
  instanceId,
  at,
  templateVmid: Vmid,
  templateNode: Schema.String,
  /**
   * The group's infra hash in the config the VM is placed and built from, which may be newer than the one
   * of its request (a create waiting at placement for a config fix): rotation compares this one.
   */
  infraHash: Schema.optional(Schema.String)
})

export const IsoUploadRequested = Schema.TaggedStruct("IsoUploadRequested", {
  v,
  instanceId,
  at,
  node: Schema.String,
  storage: Schema.String,
  volid: Schema.String
})

/**
 * A registration nonce was minted for the instance and goes into its user-data. Only the SHA-256 of the token
 * is recorded: the token itself never enters the log. A later one (a resumed ISO step mints anew) replaces it.
 */
export const NonceIssued = Schema.TaggedStruct("NonceIssued", { v, instanceId, at, nonceHash: Schema.String })

export const IsoUploaded = Schema.TaggedStruct("IsoUploaded", { v, instanceId, at, volid: Schema.String })

/** The VMID reservation: written before the clone call, so it raises the high-water mark even if the clone never happens. */
export const CloneRequested = Schema.TaggedStruct("CloneRequested", {
  v,
  instanceId,
  at,
  vmid: Vmid,
  node: Schema.String,
  templateVmid: Vmid,
  templateNode: Schema.String
})

export const Cloned = Schema.TaggedStruct("Cloned", { v, instanceId, at, vmid: Vmid, node: Schema.String })

/**
 * The clone onto `vmid` died with its node: the node booted after the clone was requested, no clone of the
 * template runs there any more, and `vmid` still holds the clone's nameless placeholder, locked `clone` (with
 * what disks the worker made). An API token cannot lift that lock, so the placeholder stays for an operator
 * (`qm unlock`, then `qm destroy`) and the instance clones anew onto another VMID. `bootedAt`: the node's boot
 * (this replica's clock), after the clone's `CloneRequested`.
 */
export const CloneAbandoned = Schema.TaggedStruct("CloneAbandoned", {
  v,
  instanceId,
  at,
  vmid: Vmid,
  node: Schema.String,
  bootedAt: Schema.Number
})

export const Configured = Schema.TaggedStruct("Configured", { v, instanceId, at })

export const Resized = Schema.TaggedStruct("Resized", { v, instanceId, at, size: Schema.String })

export const StartRequested = Schema.TaggedStruct("StartRequested", { v, instanceId, at })

export const Started = Schema.TaggedStruct("Started", { v, instanceId, at })

export const Registered = Schema.TaggedStruct("Registered", {
  v,
  instanceId,
  at,
  ips: Schema.Array(Schema.String),
  hostname: Schema.optional(Schema.String),
  /** The serial of the client certificate issued at registration (absent in logs written before it was recorded). */
  certificateSerial: Schema.optional(Schema.String)
})

/** The agent renewed its certificate: from now on only this serial is accepted for the instance. */
export const CertificateRenewed = Schema.TaggedStruct("CertificateRenewed", { v, instanceId, at, certificateSerial: Schema.String })

/**
 * The cluster CA issued certificates for an instance's certificate files (a key its agent holds): which file,
 * the serial and the expiry — never a key — so the log says which certificates exist and until when.
 */
export const FileCertificatesIssued = Schema.TaggedStruct("FileCertificatesIssued", {
  v,
  instanceId,
  at,
  certificates: Schema.Array(Schema.Struct({ file: Schema.String, serial: Schema.String, notAfter: Schema.Number }))
})

export const ErrorClass = Schema.Literal("transient", "conflict", "notFound", "unauthorized", "permanent", "timeout")
export type ErrorClass = typeof ErrorClass.Type

export const StepFailed = Schema.TaggedStruct("StepFailed", {
  v,
  instanceId,
  at,
  step: Schema.String,
  errorClass: ErrorClass,
  message: Schema.String,
  attempt: Schema.Int
})

/**
 * Why an instance is being replaced before it goes: its agent went silent, its group's config changed, it
 * reached an expiry age. The names are the original's drain reasons, as operators' tooling knows them.
 */
export const RetireReason = Schema.Literal("unhealthy", "config-drift", "eligible-expiry", "forced-expiry", "ondemand-expiry")
export type RetireReason = typeof RetireReason.Type

/**
 * The instance is to be replaced: it stops counting towards its group's size (so reconcile creates its
 * replacement) but keeps running until the replacement is ready and its drain is over. `skipDrain`: its VM
 * is not running in PVE, so there is nothing to drain — it goes as soon as its replacement is ready.
 */
export const RetirementRequested = Schema.TaggedStruct("RetirementRequested", {
  v,
  instanceId,
  at,
  reason: RetireReason,
  skipDrain: Schema.optional(Schema.Boolean)
})

/**
 * The retiring instance's replacement is ready: the tenant's operators are told it will be deleted at
 * `deleteAt` (`pending_deletion`) unless they acknowledge the drain sooner.
 */
export const DrainStarted = Schema.TaggedStruct("DrainStarted", { v, instanceId, at, deleteAt: Schema.Number })

/** `retired`: a retirement ended (drain over, or none asked); `drain-acked`: an operator acknowledged the drain. */
export const DeleteReason = Schema.Literal("scale-down", "gc", "operator", "compensation", "vm-gone", "not-ready", "retired", "drain-acked")
export type DeleteReason = typeof DeleteReason.Type

export const DeleteRequested = Schema.TaggedStruct("DeleteRequested", { v, instanceId, at, reason: DeleteReason })

export const VmStopped = Schema.TaggedStruct("VmStopped", { v, instanceId, at })

export const IsoDeleted = Schema.TaggedStruct("IsoDeleted", { v, instanceId, at, volid: Schema.String })

export const VmDeleted = Schema.TaggedStruct("VmDeleted", { v, instanceId, at, vmid: Vmid })

export const InstanceGone = Schema.TaggedStruct("InstanceGone", { v, instanceId, at })

/** A VM on PVE that carries our tags but that the log does not know. */
export const Adopted = Schema.TaggedStruct("Adopted", {
  v,
  instanceId,
  at,
  vmid: Vmid,
  node: Schema.String,
  tenant: Schema.optional(Schema.String),
  group: Schema.optional(Schema.String),
  kind: Kind,
  status: Schema.String,
  /** The infra hash the original server recorded for the instance, when its record was found. */
  infraHash: Schema.optional(Schema.String)
})

/** The leader raises the VMID high-water mark from a PVE listing. */
export const VmidsSeen = Schema.TaggedStruct("VmidsSeen", { v, highest: Schema.Int.pipe(Schema.nonNegative()) })

/**
 * The log's identity: a random ID minted with the log — in its first segment, next to the first
 * `LeaderElected` — or at the first open of a log written before identities existed. The create saga writes it
 * into each VM's managed notes, which is what ties a VM to the log that owns it: a leader never adopts or
 * deletes a VM whose notes name another log. Only the first one counts.
 */
export const LogIdentity = Schema.TaggedStruct("LogIdentity", {
  v,
  logId: Schema.String.pipe(Schema.pattern(/^log[0-9a-hj-km-np-tv-z]{26}$/, { message: () => "a log ID is \"log\" and 26 base32 characters" })),
  at
})

/**
 * A step found another VM than the log says at an instance's VMID: one of another name while a VM named after
 * the instance exists elsewhere (the log's VMID is wrong), or one whose notes name another log. Nothing was
 * done to either VM; the fold holds the instance, so nothing acts on it until an operator deletes it.
 */
export const VmMismatched = Schema.TaggedStruct("VmMismatched", {
  v,
  instanceId,
  at,
  step: Schema.String,
  vmid: Vmid,
  node: Schema.String,
  /** The name of the VM found at `vmid`. */
  found: Schema.String,
  /** The log its notes name, when that is what is wrong. */
  otherLog: Schema.optional(Schema.String),
  /** One line: what was found, and where the instance's own VM is when it was seen. */
  detail: Schema.String
})

export const ShardEvent = Schema.Union(
  LeaderElected,
  InstanceRequested,
  NodeChosen,
  TemplateResolved,
  IsoUploadRequested,
  NonceIssued,
  IsoUploaded,
  CloneRequested,
  Cloned,
  CloneAbandoned,
  Configured,
  Resized,
  StartRequested,
  Started,
  Registered,
  CertificateRenewed,
  FileCertificatesIssued,
  StepFailed,
  RetirementRequested,
  DrainStarted,
  DeleteRequested,
  VmStopped,
  IsoDeleted,
  VmDeleted,
  InstanceGone,
  Adopted,
  VmidsSeen,
  LogIdentity,
  VmMismatched
)
export type ShardEvent = typeof ShardEvent.Type
/** The JSON form of an event, as stored in a log segment. */
export type ShardEventEncoded = typeof ShardEvent.Encoded
export type ShardEventTag = ShardEvent["_tag"]

/** Events about one instance (all but `LeaderElected`, `VmidsSeen` and `LogIdentity`). */
export type InstanceEvent = Extract<ShardEvent, { readonly instanceId: string }>

/** Extra fields are an error too: a field we do not know means a writer newer than this reader. */
export const strict = { errors: "all", onExcessProperty: "error" } as const

const decodeEither = Schema.decodeUnknownEither(ShardEvent, strict)
const encodeEither = Schema.encodeEither(ShardEvent, strict)

/** Decodes one event from parsed JSON; fails on an unknown `_tag`, an unknown `v`, or any bad or extra field. */
export const decodeEvent = (input: unknown): Either.Either<ShardEvent, ParseResult.ParseError> => decodeEither(input)

/** Encodes one event to its JSON form; fails when the event breaks its schema (e.g. a fractional term). */
export const encodeEvent = (event: ShardEvent): Either.Either<ShardEventEncoded, ParseResult.ParseError> =>
  encodeEither(event)
