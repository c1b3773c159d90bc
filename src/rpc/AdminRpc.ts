/**
 * The `Admin` RPC group: how an operator (`nstance-admin`, scripts) sees and steers a running shard — its
 * status, instances and groups, dynamic groups (`groups.jsonc`), operator-requested creations and deletions,
 * config refresh and validation, registration nonces, and a stream of what happens.
 *
 * Authentication is checked on the HTTP request before its body is read (see `AdminServer.ts`): a bearer token
 * (`Authorization: Bearer …`) for cluster-wide administration, or an operator's client certificate from the
 * cluster CA, scoped to its tenant (a tenant-scoped caller meets `OutOfScope` outside it). A request with
 * neither, or with one the server does not accept, gets HTTP 401 and a body naming only the error tag, which
 * the client turns into the typed `Unauthenticated` below. Payloads follow the agent
 * group's rule: the RPC schemas fix the wire shape only, and the handlers decode strict `*Payload` schemas,
 * so an oversized or malformed field is a typed `PayloadTooLarge` / `InvalidPayload` naming the field.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { Effect, Either, Option, ParseResult, Schema, SchemaAST } from "effect"
import { InvalidPayload, NotLeader, PayloadTooLarge } from "../domain/agent/errors.js"
import { Hold } from "../domain/shard/state.js"

export { InvalidPayload, NotLeader, PayloadTooLarge }

/** Largest request body the admin endpoint reads. */
export const MAX_ADMIN_REQUEST_BYTES = 64 * 1024

/** Longest string field (ids, templates, instance types); `vars` values have their own limit. */
const MAX_FIELD = 256
const MAX_VARS = 64
const MAX_VAR_VALUE = 4096

/** Carries `Bearer <token>`. */
export const ADMIN_HEADER = "authorization"

// ---------------------------------------------------------------------------------------------------------
// Errors

/**
 * No admin token and no operator certificate, or one the servers do not accept (another token, an agent's
 * certificate, another CA's, an expired one). Says nothing else on purpose.
 */
export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()("Unauthenticated", {}) {
  override get message() {
    return "the admin endpoint refused the credentials (no admin token or operator certificate, or not one the server accepts)"
  }
}

/**
 * A caller with an operator certificate of `tenant` asked for something outside that tenant: an operation
 * on the whole shard (`otherTenant` null), or on another tenant's groups.
 */
export class OutOfScope extends Schema.TaggedError<OutOfScope>()("OutOfScope", {
  tenant: Schema.String,
  operation: Schema.String,
  otherTenant: Schema.NullOr(Schema.String)
}) {
  override get message() {
    return this.otherTenant === null
      ? `${this.operation} is cluster-wide: an operator certificate of tenant ${this.tenant} may not do it (only the admin token may)`
      : `${this.operation} on tenant ${this.otherTenant}: an operator certificate of tenant ${this.tenant} acts on its own tenant only`
  }
}

export class InstanceNotFound extends Schema.TaggedError<InstanceNotFound>()("InstanceNotFound", {
  instanceId: Schema.String
}) {
  override get message() {
    return `no instance ${this.instanceId} in this shard`
  }
}

export class GroupNotFound extends Schema.TaggedError<GroupNotFound>()("GroupNotFound", {
  tenant: Schema.String,
  group: Schema.String
}) {
  override get message() {
    return `no group ${this.tenant}/${this.group} in this shard's config`
  }
}

/** The group change would make the shard config invalid, or breaks a rule for runtime changes. */
export class InvalidGroup extends Schema.TaggedError<InvalidGroup>()("InvalidGroup", {
  problems: Schema.Array(Schema.String)
}) {
  override get message() {
    return `group change refused: ${this.problems.join("; ")}`
  }
}

/** Every attempt to write `groups.jsonc` lost to a concurrent writer; nothing was changed by this call. */
export class GroupConflict extends Schema.TaggedError<GroupConflict>()("GroupConflict", {
  attempts: Schema.Int
}) {
  override get message() {
    return `groups.jsonc kept changing under this update (${this.attempts} attempts); nothing was written, try again`
  }
}

/** A nonce is minted only for an instance whose VM exists and has not registered yet. */
export class NonceNotApplicable extends Schema.TaggedError<NonceNotApplicable>()("NonceNotApplicable", {
  instanceId: Schema.String,
  phase: Schema.String
}) {
  override get message() {
    return this.phase === "registered"
      ? `instance ${this.instanceId} has already registered; a new nonce would not be accepted`
      : `instance ${this.instanceId} is ${this.phase}: its create saga puts a fresh nonce into the ISO it builds; mint one once its VM exists`
  }
}

/** A drain is acknowledged only while one is announced (`pending_deletion`): `retiring` says where the instance is instead. */
export class NotDraining extends Schema.TaggedError<NotDraining>()("NotDraining", {
  instanceId: Schema.String,
  /** What the instance is doing: "retiring (config-drift), its replacement not ready yet", "registered", … */
  state: Schema.String
}) {
  override get message() {
    return `instance ${this.instanceId} is not draining (${this.state}): there is no pending deletion to acknowledge; \`nstance-admin instance delete\` deletes it outright`
  }
}

/** `nstance-admin adopt --from-log`: no VM with this shard's tags names that log (or it is this shard's own log). */
export class NothingToAdopt extends Schema.TaggedError<NothingToAdopt>()("NothingToAdopt", {
  fromLog: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `nothing adopted from log ${this.fromLog}: ${this.reason}`
  }
}

export class RegistrationOff extends Schema.TaggedError<RegistrationOff>()("RegistrationOff", {}) {
  override get message() {
    return "agent registration is off on this shard (start the servers with NSTANCE_ENCRYPTION_KEY or --encryption-key-file)"
  }
}

/** The bucket or the event log did not answer; the request may be retried. */
export class AdminUnavailable extends Schema.TaggedError<AdminUnavailable>()("AdminUnavailable", {
  reason: Schema.String
}) {
  override get message() {
    return `shard unavailable: ${this.reason}`
  }
}

/** The shard config could not be (re)loaded: `lines` say why; the last good config stays in force. */
export class ConfigRejected extends Schema.TaggedError<ConfigRejected>()("ConfigRejected", {
  lines: Schema.Array(Schema.String)
}) {
  override get message() {
    return this.lines.join("; ")
  }
}

// ---------------------------------------------------------------------------------------------------------
// Views

export const LastErrorView = Schema.Struct({
  step: Schema.String,
  errorClass: Schema.String,
  message: Schema.String,
  attempt: Schema.Int,
  at: Schema.Number
})

/** Why the fold stopped an instance (an impossible event at `seq`): nothing acts on it until an operator deletes it. */
export const HoldView = Hold

/** An impossible event of the log (see `src/domain/shard/state.ts`). */
export const AnomalyView = Schema.Struct({
  seq: Schema.Int,
  event: Schema.String,
  instanceId: Schema.NullOr(Schema.String),
  vmid: Schema.NullOr(Schema.Int),
  reason: Schema.String,
  held: Schema.Array(Schema.String)
})
export type AnomalyView = typeof AnomalyView.Type

export const InstanceView = Schema.Struct({
  id: Schema.String,
  tenant: Schema.NullOr(Schema.String),
  group: Schema.NullOr(Schema.String),
  kind: Schema.String,
  phase: Schema.String,
  reason: Schema.String,
  node: Schema.NullOr(Schema.String),
  vmid: Schema.NullOr(Schema.Int),
  ips: Schema.Array(Schema.String),
  hostname: Schema.NullOr(Schema.String),
  failures: Schema.Int,
  lastError: Schema.NullOr(LastErrorView),
  deleteReason: Schema.NullOr(Schema.String),
  adopted: Schema.Boolean,
  requestedAt: Schema.Number,
  startedAt: Schema.NullOr(Schema.Number),
  registeredAt: Schema.NullOr(Schema.Number),
  /** Absent from servers that predate holds. */
  held: Schema.optional(Schema.NullOr(HoldView)),
  /**
   * The VM's state in PVE at the leader's last GC pass (running, paused, suspended, stopped, unknown): PVE
   * lists a paused guest as running. Absent before the term's first pass, for an instance without a VM, and
   * from older servers.
   */
  pveState: Schema.optional(Schema.String),
  /** Being replaced: why (unhealthy, config-drift, eligible-expiry, forced-expiry, ondemand-expiry) and since when. */
  retirement: Schema.optional(Schema.NullOr(Schema.Struct({ reason: Schema.String, at: Schema.Number }))),
  /** Its replacement is ready and its deletion announced: deleted at `deleteAt` unless acknowledged sooner. */
  drain: Schema.optional(Schema.NullOr(Schema.Struct({ startedAt: Schema.Number, deleteAt: Schema.Number }))),
  /** The infra hash it was built from (absent when unknown: never rotated for drift). */
  infraHash: Schema.optional(Schema.NullOr(Schema.String))
})
export type InstanceView = typeof InstanceView.Type

/** What the leader's last preflight against PVE found: PVE's version and one line per finding, errors first. */
export const PreflightView = Schema.Struct({
  /** When the run ended (ms since the epoch). */
  at: Schema.Number,
  pveVersion: Schema.NullOr(Schema.String),
  findings: Schema.Array(Schema.Struct({ severity: Schema.Literal("error", "warning"), message: Schema.String }))
})
export type PreflightView = typeof PreflightView.Type

export const StatusView = Schema.Struct({
  cluster: Schema.String,
  shard: Schema.String,
  leader: Schema.String,
  term: Schema.Int,
  seq: Schema.Int,
  instances: Schema.Int,
  byPhase: Schema.Record({ key: Schema.String, value: Schema.Int }),
  /** Instances by their VM's state in PVE at the leader's last GC pass (absent before it, and from older servers). */
  byPveState: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Int })),
  groups: Schema.Int,
  desiredVms: Schema.Int,
  registration: Schema.Boolean,
  lastErrors: Schema.Array(Schema.Struct({ instanceId: Schema.String, ...LastErrorView.fields })),
  /** Impossible events in the log in all, the newest of them, and the instances they hold (absent from older servers). */
  anomalies: Schema.optional(Schema.Int),
  recentAnomalies: Schema.optional(Schema.Array(AnomalyView)),
  held: Schema.optional(Schema.Array(Schema.Struct({ instanceId: Schema.String, vmid: Schema.NullOr(Schema.Int), ...HoldView.fields }))),
  /** The shard event log's identity (written into every VM's notes), and what the leader says about VMs of other logs. */
  logId: Schema.optional(Schema.String),
  ownership: Schema.optional(Schema.String),
  /** The leader's last preflight against PVE (absent before its first run, and from older servers). */
  preflight: Schema.optional(PreflightView)
})
export type StatusView = typeof StatusView.Type

/** What `AdoptVms` did: the VMs now this log's, and those whose notes could not be rewritten. */
export const AdoptedView = Schema.Struct({
  fromLog: Schema.String,
  adopted: Schema.Array(Schema.Struct({ instanceId: Schema.String, vmid: Schema.Int, node: Schema.String })),
  unstamped: Schema.Array(Schema.Struct({ instanceId: Schema.String, vmid: Schema.Int, reason: Schema.String }))
})
export type AdoptedView = typeof AdoptedView.Type

export const GroupSource = Schema.Literal("static", "dynamic", "static+dynamic")

export const GroupView = Schema.Struct({
  tenant: Schema.String,
  group: Schema.String,
  template: Schema.String,
  kind: Schema.String,
  size: Schema.Int,
  /** Instances of the group not being deleted. */
  live: Schema.Int,
  running: Schema.Int,
  instanceType: Schema.NullOr(Schema.String),
  subnetPool: Schema.NullOr(Schema.String),
  vars: Schema.Record({ key: Schema.String, value: Schema.String }),
  source: GroupSource,
  /** The group's infra hash now (absent from older servers). */
  infraHash: Schema.optional(Schema.String),
  /** Live instances built from another infra hash: a rotation replaces them one at a time. */
  outdated: Schema.optional(Schema.Int),
  /** Live instances being replaced (retiring or draining). */
  retiring: Schema.optional(Schema.Int)
})
export type GroupView = typeof GroupView.Type

export const ValidationView = Schema.Struct({
  valid: Schema.Boolean,
  key: Schema.String,
  problems: Schema.Array(Schema.String),
  warnings: Schema.Array(Schema.String),
  groups: Schema.Int,
  desiredVms: Schema.Int
})
export type ValidationView = typeof ValidationView.Type

/** One change the leader recorded, as the watch stream reports it (derived from consecutive folded states). */
export const WatchEvent = Schema.Struct({
  seq: Schema.Int,
  instanceId: Schema.String,
  tenant: Schema.NullOr(Schema.String),
  group: Schema.NullOr(Schema.String),
  /** The new phase, or "gone" once the instance left the log. */
  phase: Schema.String,
  node: Schema.NullOr(Schema.String),
  vmid: Schema.NullOr(Schema.Int),
  detail: Schema.String,
  /**
   * `pending_deletion` when the instance's drain started (and, for a new watcher, for every instance draining
   * when it connected): it is deleted at `deleteAt` unless an operator acknowledges the drain sooner.
   */
  status: Schema.optional(Schema.Literal("pending_deletion")),
  /** Why the instance is being replaced (with `status`, and when its retirement starts). */
  reason: Schema.optional(Schema.String),
  deleteAt: Schema.optional(Schema.Number)
})
export type WatchEvent = typeof WatchEvent.Type

// ---------------------------------------------------------------------------------------------------------
// Strict payloads

const Id = (what: string) => Schema.String.pipe(
  Schema.maxLength(MAX_FIELD),
  Schema.pattern(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/),
  Schema.annotations({ description: `a ${what}: lowercase letters, digits and '-'` })
)
const InstanceIdField = Schema.String.pipe(
  Schema.maxLength(64),
  Schema.pattern(/^[a-z]{3}[0-9a-z]{1,61}$/),
  Schema.annotations({ description: "an instance ID (3-letter kind, then lowercase letters and digits)" })
)
const Text = (what: string) => Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(MAX_FIELD),
  Schema.annotations({ description: `${what} of 1-${MAX_FIELD} characters` })
)
const LogIdField = Schema.String.pipe(
  Schema.maxLength(64),
  Schema.pattern(/^log[0-9a-hj-km-np-tv-z]{26}$/),
  Schema.annotations({ description: "an event log ID (\"log\" and 26 base32 characters, as `status` or the error log shows it)" })
)
const Size = Schema.Int.pipe(Schema.between(0, 10_000), Schema.annotations({ description: "an integer from 0 to 10000" }))
const Vars = Schema.Record({ key: Schema.String.pipe(Schema.maxLength(MAX_FIELD)), value: Schema.String.pipe(Schema.maxLength(MAX_VAR_VALUE)) }).pipe(
  Schema.filter((vars) => Object.keys(vars).length <= MAX_VARS),
  Schema.annotations({ description: `at most ${MAX_VARS} string variables (names up to ${MAX_FIELD}, values up to ${MAX_VAR_VALUE} characters)` })
)

const TenantField = Id("tenant ID")
const GroupField = Id("group key")
const TemplateField = Text("a template name")
const InstanceTypeField = Text("an instance type")
const SubnetPoolField = Text("a subnet pool name")

const expected = (schema: Schema.Schema.Any): string =>
  Option.getOrElse(SchemaAST.getDescriptionAnnotation(schema.ast), () => "a valid value")

const FIELD_EXPECTED: Readonly<Record<string, string>> = {
  tenant: expected(TenantField),
  group: expected(GroupField),
  template: expected(TemplateField),
  size: expected(Size),
  instanceType: expected(InstanceTypeField),
  subnetPool: expected(SubnetPoolField),
  vars: expected(Vars),
  instanceId: expected(InstanceIdField),
  fromLog: expected(LogIdField)
}

export const GroupRefPayload = Schema.Struct({ tenant: TenantField, group: GroupField })
export const UpsertGroupPayload = Schema.Struct({
  tenant: TenantField,
  group: GroupField,
  template: Schema.optional(TemplateField),
  size: Schema.optional(Size),
  instanceType: Schema.optional(InstanceTypeField),
  subnetPool: Schema.optional(SubnetPoolField),
  vars: Schema.optional(Vars)
})
export type UpsertGroupPayload = typeof UpsertGroupPayload.Type
export const InstanceRefPayload = Schema.Struct({ instanceId: InstanceIdField })
export const AdoptPayload = Schema.Struct({ fromLog: LogIdField })
export const ListInstancesPayload = Schema.Struct({ tenant: Schema.optional(TenantField), group: Schema.optional(GroupField) })

/** Per-field limits checked before the formats, so an oversized value is `PayloadTooLarge`, not `InvalidPayload`. */
const FIELD_LIMITS: Readonly<Record<string, number>> = {
  tenant: MAX_FIELD, group: MAX_FIELD, template: MAX_FIELD, instanceType: MAX_FIELD, subnetPool: MAX_FIELD, instanceId: 64, fromLog: 64
}

/**
 * Decodes a wire payload with a strict schema: the first string field over its limit is `PayloadTooLarge`,
 * the first field failing its format an `InvalidPayload` saying what was expected (never the value sent).
 */
export const decodeAdminPayload = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  return (raw: object): Effect.Effect<A, PayloadTooLarge | InvalidPayload> => {
    const record = raw as Record<string, unknown>
    for (const [field, max] of Object.entries(FIELD_LIMITS)) {
      const value = record[field]
      if (typeof value === "string" && value.length > max) return Effect.fail(new PayloadTooLarge({ field, maxLength: max }))
    }
    const vars = record["vars"]
    if (typeof vars === "object" && vars !== null && Object.keys(vars).length > MAX_VARS) {
      return Effect.fail(new PayloadTooLarge({ field: "vars", maxLength: MAX_VARS }))
    }
    // Decoding a map assigns its keys, and assigning `__proto__` sets a prototype: the var would vanish.
    if (typeof vars === "object" && vars !== null && Object.hasOwn(vars, "__proto__")) {
      return Effect.fail(new InvalidPayload({ field: "vars", reason: `"__proto__" cannot be a variable name` }))
    }
    const decoded = decode(raw)
    if (Either.isRight(decoded)) return Effect.succeed(decoded.right)
    const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
    const field = typeof issue?.path[0] === "string" ? issue.path[0] : "payload"
    if (issue?.message === "is missing") return Effect.fail(new InvalidPayload({ field, reason: "is missing" }))
    return Effect.fail(new InvalidPayload({ field, reason: `expected ${FIELD_EXPECTED[field] ?? "a valid value"}` }))
  }
}

// ---------------------------------------------------------------------------------------------------------
// Procedures

const Common = [NotLeader, PayloadTooLarge, InvalidPayload, AdminUnavailable, Unauthenticated, OutOfScope] as const

export class Status extends Rpc.make("Status", {
  success: StatusView,
  error: Schema.Union(...Common)
}) {}

export class ListInstances extends Rpc.make("ListInstances", {
  payload: { tenant: Schema.optional(Schema.String), group: Schema.optional(Schema.String) },
  success: Schema.Array(InstanceView),
  error: Schema.Union(...Common)
}) {}

export class GetInstance extends Rpc.make("GetInstance", {
  payload: { instanceId: Schema.String },
  success: InstanceView,
  error: Schema.Union(...Common, InstanceNotFound)
}) {}

export class ListGroups extends Rpc.make("ListGroups", {
  success: Schema.Array(GroupView),
  error: Schema.Union(...Common)
}) {}

export class UpsertGroup extends Rpc.make("UpsertGroup", {
  payload: {
    tenant: Schema.String,
    group: Schema.String,
    template: Schema.optional(Schema.String),
    size: Schema.optional(Schema.Number),
    instanceType: Schema.optional(Schema.String),
    subnetPool: Schema.optional(Schema.String),
    // Any object on the wire: decoding a map here would drop a `__proto__` key unseen; the handler's
    // strict decode refuses it by name.
    vars: Schema.optional(Schema.Object)
  },
  success: Schema.Struct({ group: GroupView, etag: Schema.String, attempts: Schema.Int }),
  error: Schema.Union(...Common, InvalidGroup, GroupConflict)
}) {}

export class DeleteGroup extends Rpc.make("DeleteGroup", {
  payload: { tenant: Schema.String, group: Schema.String },
  success: Schema.Struct({ deleted: Schema.Boolean, staticRemains: Schema.Boolean }),
  error: Schema.Union(...Common, GroupConflict, InvalidGroup)
}) {}

export class CreateInstance extends Rpc.make("CreateInstance", {
  payload: { tenant: Schema.String, group: Schema.String },
  success: Schema.Struct({ instanceId: Schema.String }),
  error: Schema.Union(...Common, GroupNotFound)
}) {}

export class DeleteInstance extends Rpc.make("DeleteInstance", {
  payload: { instanceId: Schema.String },
  success: Schema.Struct({ instanceId: Schema.String, alreadyDeleting: Schema.Boolean }),
  error: Schema.Union(...Common, InstanceNotFound)
}) {}

export class RefreshConfig extends Rpc.make("RefreshConfig", {
  success: Schema.Struct({ groups: Schema.Int, desiredVms: Schema.Int, warnings: Schema.Array(Schema.String) }),
  error: Schema.Union(...Common, ConfigRejected)
}) {}

/** Validates the bucket's config (with the dynamic groups); served by any replica, leader or not. */
export class ValidateConfig extends Rpc.make("ValidateConfig", {
  success: ValidationView,
  error: Schema.Union(...Common)
}) {}

export class MintNonce extends Rpc.make("MintNonce", {
  payload: { instanceId: Schema.String },
  success: Schema.Struct({ instanceId: Schema.String, nonce: Schema.String, expiresAt: Schema.Number }),
  error: Schema.Union(...Common, InstanceNotFound, RegistrationOff, NonceNotApplicable)
}) {}

/** Takes over the VMs with this shard's tags whose notes name another event log (an operator's deliberate decision). */
export class AdoptVms extends Rpc.make("AdoptVms", {
  payload: { fromLog: Schema.String },
  success: AdoptedView,
  error: Schema.Union(...Common, NothingToAdopt)
}) {}

/** The tenant's operator is done with a draining instance: it is deleted now rather than at its `deleteAt`. */
export class AcknowledgeDrain extends Rpc.make("AcknowledgeDrain", {
  payload: { instanceId: Schema.String },
  success: Schema.Struct({ instanceId: Schema.String, alreadyDeleting: Schema.Boolean }),
  error: Schema.Union(...Common, InstanceNotFound, NotDraining)
}) {}

export class WatchEvents extends Rpc.make("WatchEvents", {
  success: WatchEvent,
  error: Schema.Union(...Common),
  stream: true
}) {}

export class AdminRpcs extends RpcGroup.make(
  Status,
  ListInstances,
  GetInstance,
  ListGroups,
  UpsertGroup,
  DeleteGroup,
  CreateInstance,
  DeleteInstance,
  AcknowledgeDrain,
  RefreshConfig,
  ValidateConfig,
  MintNonce,
  WatchEvents,
  AdoptVms
) {}
