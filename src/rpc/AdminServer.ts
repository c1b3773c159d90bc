/**
 * The operator endpoint: handlers for the `Admin` RPC group and a layer serving them over HTTP (NDJSON) on
 * `shard.bind.operator_addr`. Every replica serves it; a handler that needs the shard's state runs on the
 * current leadership term's services (`withLeader`), so a standby answers `NotLeader{leaderAddr}` and the
 * client follows it. Only `ValidateConfig` is answered by any replica: it reads the bucket, not the log.
 *
 * Authentication happens on the raw HTTP request, before its body is read: an unauthenticated caller
 * learns nothing (not whether its payload would parse, not whether this replica leads) and cannot make the
 * server buffer anything. A request carrying `Authorization` is judged by the token alone: tokens are
 * compared as SHA-256 digests with `timingSafeEqual`, so the time taken does not depend on how much of a
 * guess was right (nor on its length); the token administers the whole shard. Without it, the client
 * certificate of the TLS handshake (asked for, not required) must be an operator's from the cluster CA,
 * valid now: its caller is scoped to the certificate's tenant. Either failure is a 401, counted (`token`,
 * `certificate`) and penalized alike.
 *
 * What a tenant-scoped caller may do, procedure by procedure (the handlers enforce it; the README repeats it):
 *
 * | procedure        | with the admin token | with an operator certificate of tenant T                        |
 * |------------------|----------------------|-----------------------------------------------------------------|
 * | Status           | the whole shard      | leader, term, log seq; T's instances, groups, errors and holds  |
 * | ListInstances    | all, or filtered     | T's only (`--tenant` of another tenant: OutOfScope)             |
 * | GetInstance      | any                  | T's (another tenant's instance: InstanceNotFound)               |
 * | ListGroups       | all                  | T's only                                                        |
 * | UpsertGroup      | any group            | T's groups (another tenant: OutOfScope)                         |
 * | DeleteGroup      | any group            | T's groups (another tenant: OutOfScope)                         |
 * | CreateInstance   | any group            | T's groups (another tenant: OutOfScope)                         |
 * | DeleteInstance   | any                  | T's (another tenant's instance: InstanceNotFound)               |
 * | AcknowledgeDrain | any                  | T's (another tenant's instance: InstanceNotFound)               |
 * | MintNonce        | any                  | T's (another tenant's instance: InstanceNotFound)               |
 * | WatchEvents      | every change         | changes of T's instances only                                   |
 * | RefreshConfig    | yes                  | OutOfScope: it reloads the whole shard's config                 |
 * | ValidateConfig   | yes                  | OutOfScope: it reports on the whole shard's config              |
 * | AdoptVms         | yes                  | OutOfScope: it takes over VMs of another event log              |
 *
 * Instances of another tenant are answered as unknown rather than refused: a tenant's view of the shard
 * holds only its own instances, so it learns nothing of others' IDs.
 */
import type { ListenerLimits } from "../domain/listenerLimits.js"
import { guardedServerLayer, makeConnectionCertificates, makeRefusalLog, type RefusalLog, type ServerTls, tlsSocketOf } from "../http/listener.js"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { CONFIG_KEY } from "../domain/bucketKeys.js"
import { type HttpApp, Headers, HttpIncomingMessage, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { TLSSocket } from "node:tls"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { Cause, Clock, Context, Effect, Either, HashMap, Layer, Option, Redacted, Schedule, Stream, SubscriptionRef } from "effect"
import { type Address, formatProblem, type ParsedShardConfig, parseJsonc } from "../domain/config/index.js"
import { deleteDynamicGroup, dynamicEntry, type DynamicGroups, staticGroupsOf, upsertDynamicGroup } from "../domain/dynamicGroups.js"
import { own } from "../domain/config/records.js"
import { DeleteRequested, InstanceRequested, NonceIssued } from "../domain/shard/events.js"
import { allInstances, getInstance, heldInstances, type Instance, instancesByPhase, type State } from "../domain/shard/state.js"
import { GroupChangeRefused, GroupWriteConflict, updateDynamicGroups } from "../admin/groupsStore.js"
import { EventLog } from "../services/EventLog.js"
import { InstanceIds } from "../services/InstanceIds.js"
import { ObjectStore, type ObjectStoreShape } from "../services/ObjectStore.js"
import { reloadConfig } from "../shard/configWatch.js"
import { groupTargets } from "../shard/reconcile.js"
import { adoptFromLog } from "../shard/adopt.js"
import { Ownership } from "../shard/Ownership.js"
import { Preflight } from "../shard/Preflight.js"
import { ClusterView } from "../shard/ClusterView.js"
import type { PvePowerState } from "../domain/pve/status.js"
import { SagaRunner } from "../shard/SagaRunner.js"
import { certificateHosts, ShardContext } from "../shard/ShardContext.js"
import type { CertificateRejected, ClusterPkiShape, VerifiedClientCertificate } from "../services/ClusterPki.js"
import { type LeaderServices, NotLeaderHere, ShardReplica, type ShardReplicaShape, withLeader } from "../shard/ShardReplica.js"
import { type ConfigSource, readDynamicGroups } from "../shard/shardConfig.js"
import { keepServing } from "./keepServing.js"
import { desiredVmsOf, groupCountOf, validateStoredConfig } from "../admin/validateConfig.js"
import {
  ADMIN_HEADER,
  AdminRpcs,
  AdminUnavailable,
  ConfigRejected,
  decodeAdminPayload,
  GroupConflict,
  GroupNotFound,
  GroupRefPayload,
  type GroupView,
  InstanceNotFound,
  InstanceRefPayload,
  type InstanceView,
  InvalidGroup,
  ListInstancesPayload,
  NotDraining,
  MAX_ADMIN_REQUEST_BYTES,
  NonceNotApplicable,
  NothingToAdopt,
  AdoptPayload,
  NotLeader,
  OutOfScope,
  RegistrationOff,
  type StatusView,
  Unauthenticated,
  UpsertGroupPayload,
  type ValidationView,
  type WatchEvent
} from "./AdminRpc.js"

export interface AdminServiceOptions {
  /** The bearer token every request must carry. */
  readonly token: Redacted.Redacted<string>
  /** Where this replica's config comes from (what `RefreshConfig` and group writes reload). */
  readonly source: ConfigSource
  /** The replica's store scoped to the shard prefix (what `ValidateConfig` reads). */
  readonly store: ObjectStoreShape
}

export interface AdminServerOptions extends AdminServiceOptions {
  /** Interface to bind; default all interfaces. */
  readonly host?: string
  /** 0 picks a free port; read it from `HttpServer.HttpServer`'s address. */
  readonly port: number
  /** Default `/admin`. */
  readonly path?: HttpRouter.PathInput
  /** Default `MAX_ADMIN_REQUEST_BYTES` (64 KiB). */
  readonly maxRequestBytes?: number
  /** Connection caps and timeouts (default: what the process's descriptor limit allows). */
  readonly limits?: ListenerLimits
  /** TLS 1.3 with a certificate from the cluster CA; absent: plain HTTP (tests of the handlers only). */
  readonly tls?: ServerTls
}

// ---------------------------------------------------------------------------------------------------------
// Who is calling

/** Who a request comes from, as the HTTP guard established it. */
export type AdminCaller =
  /** The admin token: the whole shard. */
  | { readonly _tag: "Administrator" }
  /** An operator certificate: its tenant only. */
  | { readonly _tag: "TenantOperator"; readonly tenant: string; readonly name: string; readonly serial: string }

const ADMINISTRATOR: AdminCaller = { _tag: "Administrator" }

/**
 * Who made a change, as the `operator` annotation of its log lines: the operator certificate's name, tenant
 * and serial, or the admin token (never the token itself).
 */
export const operatorOf = (caller: AdminCaller): string =>
  caller._tag === "Administrator" ? "admin token" : `${caller.name} (tenant ${caller.tenant}, certificate ${caller.serial})`

/**
 * How the guard hands the caller to the handlers. RPC handlers see the request's headers, merged with headers
 * the client may put into each RPC message — so the header carries no identity, only a random key into
 * `AdminCallers`, valid while its HTTP request runs. A client that sets it itself can only spoil its own call.
 */
const CALLER_HEADER = "x-nstance-caller"

export interface AdminCallersShape {
  /** Registers the caller of one request; the key goes into `CALLER_HEADER`. */
  readonly enter: (caller: AdminCaller) => Effect.Effect<string>
  readonly leave: (key: string) => Effect.Effect<void>
  readonly lookup: (key: string | undefined) => Effect.Effect<Option.Option<AdminCaller>>
}

/**
 * The callers of the requests in flight. Served without it (the handlers alone, in-process, with no HTTP
 * guard in front), every call is the administrator's: there is no credential to scope by.
 */
export class AdminCallers extends Context.Tag("nstance/AdminCallers")<AdminCallers, AdminCallersShape>() {}

export const makeAdminCallers = (): AdminCallersShape => {
  const inFlight = new Map<string, AdminCaller>()
  return {
    enter: (caller) =>
      Effect.sync(() => {
        const key = randomBytes(24).toString("base64url")
        inFlight.set(key, caller)
        return key
      }),
    leave: (key) => Effect.sync(() => void inFlight.delete(key)),
    lookup: (key) => Effect.sync(() => Option.fromNullable(key === undefined ? undefined : inFlight.get(key)))
  }
}

/** A tenant-scoped caller may not run `operation`: it concerns the whole shard. */
const clusterWide = (caller: AdminCaller, operation: string): Effect.Effect<void, OutOfScope> =>
  caller._tag === "TenantOperator" ? Effect.fail(new OutOfScope({ tenant: caller.tenant, operation, otherTenant: null })) : Effect.void

/** A tenant-scoped caller runs `operation` on its own tenant only. */
const ownTenant = (caller: AdminCaller, operation: string, tenant: string): Effect.Effect<void, OutOfScope> =>
  caller._tag === "TenantOperator" && caller.tenant !== tenant
    ? Effect.fail(new OutOfScope({ tenant: caller.tenant, operation, otherTenant: tenant }))
    : Effect.void

/** Whether the caller sees what belongs to `tenant` (what belongs to no tenant, only the administrator). */
const sees = (caller: AdminCaller, tenant: string | null | undefined): boolean =>
  caller._tag === "Administrator" || caller.tenant === tenant

// ---------------------------------------------------------------------------------------------------------
// Views of the state

/** PVE's VM states from the term's last GC pass (a term published without the view, as tests do, has none). */
const pveStatesOfTerm: Effect.Effect<ReadonlyMap<string, PvePowerState>> = Effect.flatMap(Effect.serviceOption(ClusterView), Option.match({
  onNone: () => Effect.succeed(new Map<string, PvePowerState>()),
  onSome: (view) => view.vmStates
}))

/** Instances by their VM's state in PVE, among `ids`; undefined before the term's first GC pass. */
const byPveStateOf = (states: ReadonlyMap<string, PvePowerState>, ids: Iterable<string>): Record<string, number> | undefined => {
  if (states.size === 0) return undefined
  const counts: Record<string, number> = {}
  for (const id of ids) {
    const state = states.get(id)
    if (state !== undefined) counts[state] = (counts[state] ?? 0) + 1
  }
  return counts
}

const instanceView = (i: Instance, pveState?: PvePowerState): InstanceView => ({
  id: i.id,
  tenant: i.tenant ?? null,
  group: i.group ?? null,
  kind: i.kind,
  phase: i.phase,
  reason: i.reason,
  node: i.node ?? null,
  vmid: i.vmid ?? null,
  ips: i.ips,
  hostname: i.hostname ?? null,
  failures: i.failures,
  lastError: i.lastError ?? null,
  deleteReason: i.deleteReason ?? null,
  adopted: i.adopted,
  requestedAt: i.requestedAt,
  startedAt: i.startedAt ?? null,
  registeredAt: i.registeredAt ?? null,
  held: i.held ?? null,
  ...(pveState === undefined ? {} : { pveState }),
  retirement: i.retirement === undefined ? null : { reason: i.retirement.reason, at: i.retirement.at },
  drain: i.drain ?? null,
  infraHash: i.infraHash ?? null
})

/** The newest anomalies `status` shows (the state keeps more; `nstance-admin state` shows them all). */
const STATUS_ANOMALIES = 10

const desiredVms = desiredVmsOf
const groupCount = groupCountOf

const groupViews = (config: ParsedShardConfig, state: State, staticKeys: ReadonlySet<string>, dynamic: DynamicGroups): ReadonlyArray<GroupView> => {
  const views: Array<GroupView> = []
  for (const [tenant, groups] of Object.entries(config.config.groups)) {
    for (const [key, group] of Object.entries(groups)) {
      const members = allInstances(state).filter((i) => i.tenant === tenant && i.group === key && i.phase !== "deleting")
      const isStatic = staticKeys.has(`${tenant}/${key}`)
      const isDynamic = dynamicEntry(dynamic, tenant, key) !== undefined
      views.push({
        tenant,
        group: key,
        template: group.template,
        kind: own(config.config.templates, group.template)?.kind ?? "",
        size: group.size,
        live: members.length,
        running: members.filter((i) => i.phase === "running" || i.phase === "registered").length,
        // Effective values: the group's own, else its template's.
        instanceType: group.instanceType ?? own(config.config.templates, group.template)?.instanceType ?? null,
        subnetPool: group.subnetPool ?? own(config.config.templates, group.template)?.subnetPool ?? null,
        vars: group.vars,
        source: isStatic && isDynamic ? "static+dynamic" : isDynamic ? "dynamic" : "static",
        infraHash: group.infraHash,
        // Built from another config than the group's now (a rotation replaces them one at a time), and being replaced.
        outdated: members.filter((i) => i.reason !== "operator" && i.infraHash !== undefined && i.infraHash !== group.infraHash).length,
        retiring: members.filter((i) => i.retirement !== undefined).length
      })
    }
  }
  return views.sort((a, b) => a.tenant.localeCompare(b.tenant) || a.group.localeCompare(b.group))
}

/**
 * `Status` for a caller scoped to `tenant`: who leads and where the log is, and of the state only what is
 * the tenant's — its instances by phase, groups, desired VMs, last errors and holds. What is the shard's
 * (the log's anomalies and identity, ownership notices) is left out.
 */
const tenantStatus = (tenant: string): Effect.Effect<StatusView, never, LeaderServices> =>
  Effect.gen(function* () {
    const log = yield* EventLog
    const shard = yield* ShardContext
    const state = yield* log.state
    const config = yield* SubscriptionRef.get(shard.config)
    const mine = allInstances(state).filter((i) => i.tenant === tenant)
    const byPhase: Record<string, number> = {}
    for (const instance of mine) byPhase[instance.phase] = (byPhase[instance.phase] ?? 0) + 1
    const byPveState = byPveStateOf(yield* pveStatesOfTerm, mine.map((i) => i.id))
    const groups = Object.values(own(config.config.groups, tenant) ?? {})
    return {
      cluster: shard.clusterId,
      shard: shard.shard,
      leader: shard.replica,
      term: shard.term,
      seq: yield* log.seq,
      instances: mine.length,
      byPhase,
      ...(byPveState === undefined ? {} : { byPveState }),
      groups: groups.length,
      desiredVms: groups.reduce((sum, group) => sum + group.size, 0),
      registration: shard.registration !== undefined,
      lastErrors: mine
        .flatMap((i) => (i.lastError === undefined ? [] : [{ instanceId: i.id, ...i.lastError }]))
        .sort((a, b) => b.at - a.at)
        .slice(0, 10),
      held: mine.flatMap((i) => (i.held === undefined ? [] : [{ instanceId: i.id, vmid: i.vmid ?? null, ...i.held }]))
    }
  })

/** The `pending_deletion` notice of a draining instance (the original's drain notification). */
export const pendingDeletion = (instance: Instance, seq: number): WatchEvent | undefined =>
  instance.drain === undefined || instance.phase === "deleting"
    ? undefined
    : {
      seq,
      instanceId: instance.id,
      tenant: instance.tenant ?? null,
      group: instance.group ?? null,
      phase: instance.phase,
      node: instance.node ?? null,
      vmid: instance.vmid ?? null,
      detail: `pending deletion (${instance.retirement?.reason ?? "?"}) at ${new Date(instance.drain.deleteAt).toISOString()}; acknowledge to delete now`,
      status: "pending_deletion",
      ...(instance.retirement === undefined ? {} : { reason: instance.retirement.reason }),
      deleteAt: instance.drain.deleteAt
    }

/** The changes from `before` to `after`, one per instance whose phase, VM, failures, retirement or drain moved. */
export const stateChanges = (before: State, after: State, seq: number): ReadonlyArray<WatchEvent> => {
  const events: Array<WatchEvent> = []
  for (const [id, now] of after.instances) {
    const was = Option.getOrUndefined(HashMap.get(before.instances, id))
    if (was === now) continue
    const drainStarted = was?.drain === undefined ? pendingDeletion(now, seq) : undefined
    if (drainStarted !== undefined) {
      events.push(drainStarted)
      continue
    }
    const retiring = was !== undefined && was.retirement === undefined && now.retirement !== undefined && now.phase !== "deleting"
    const failed = was !== undefined && now.failures > was.failures && now.lastError !== undefined
    if (was !== undefined && was.phase === now.phase && was.vmid === now.vmid && !failed && !retiring && was.ips.length === now.ips.length) continue
    const detail = retiring && now.retirement !== undefined
      ? `retiring (${now.retirement.reason}): its replacement is created before it drains`
      : failed && now.lastError !== undefined
      ? `${now.lastError.step} failed (${now.lastError.errorClass}): ${now.lastError.message}`
      : now.phase === "deleting"
      ? `delete requested (${now.deleteReason ?? "?"})`
      : was === undefined
      ? `requested (${now.reason})`
      : now.phase === "registered" && now.ips.length > 0
      ? `registered ${now.ips.join(", ")}`
      : ""
    events.push({
      seq,
      instanceId: id,
      tenant: now.tenant ?? null,
      group: now.group ?? null,
      phase: now.phase,
      node: now.node ?? null,
      vmid: now.vmid ?? null,
      detail,
      ...(retiring && now.retirement !== undefined ? { reason: now.retirement.reason } : {})
    })
  }
  for (const [id, was] of before.instances) {
    if (HashMap.has(after.instances, id)) continue
    events.push({ seq, instanceId: id, tenant: was.tenant ?? null, group: was.group ?? null, phase: "gone", node: was.node ?? null, vmid: was.vmid ?? null, detail: "removed from the log" })
  }
  return events
}

// ---------------------------------------------------------------------------------------------------------
// Handlers

const unavailable = (error: { readonly message: string }) => new AdminUnavailable({ reason: error.message })

/**
 * Runs `effect` on the leader's term; a standby (or a leader between terms) answers `NotLeader` — or, when
 * this replica's last term ended on a corrupt event log and no newer leader is known, `AdminUnavailable`
 * naming the object: "no leader is known" would hide why.
 */
const onLeader = <A, E>(effect: Effect.Effect<A, E, LeaderServices>): Effect.Effect<A, E | NotLeader | AdminUnavailable, ShardReplica> =>
  withLeader("operator", effect).pipe(
    Effect.catchAll((e): Effect.Effect<never, E | NotLeader | AdminUnavailable, ShardReplica> =>
      e instanceof NotLeaderHere ? Effect.flatMap(notLeaderAnswer(e.leaderAddr), Effect.fail) : Effect.fail(e))
  )

const notLeaderAnswer = (leaderAddr: string): Effect.Effect<NotLeader | AdminUnavailable, never, ShardReplica> =>
  Effect.gen(function* () {
    const replica = yield* ShardReplica
    const problem = yield* replica.logProblem
    const leader = yield* replica.lease.currentLeader
    if (Option.isNone(problem) || Option.exists(leader, (l) => l.term > problem.value.term)) return new NotLeader({ leaderAddr })
    return new AdminUnavailable({
      reason: `no leader can start: event log corrupt at ${problem.value.key}: ${problem.value.reason} (see "Repairing the event log" in the README)`
    })
  })

/** How often a watch stream checks that its term is still the current one. */
const watchTermCheck = Schedule.spaced("1 second")

/** Phases in which the VM (and its ISO) exist and the agent has not registered: a minted nonce can still be used. */
const NONCE_PHASES: ReadonlySet<string> = new Set(["cloning", "cloned", "configured", "starting", "running"])

const decodeGroupRef = decodeAdminPayload(GroupRefPayload)
const decodeUpsert = decodeAdminPayload(UpsertGroupPayload)
const decodeInstanceRef = decodeAdminPayload(InstanceRefPayload)
const decodeList = decodeAdminPayload(ListInstancesPayload)
const decodeAdopt = decodeAdminPayload(AdoptPayload)

const textOf = (body: Uint8Array) => new TextDecoder().decode(body)

/** Static group keys (`tenant/key`) of `config.jsonc` and the dynamic document, read from the shard store. */
const groupSources = Effect.gen(function* () {
  const store = yield* ObjectStore
  const config = yield* store.get(CONFIG_KEY).pipe(Effect.map(Option.some), Effect.catchTag("NotFound", () => Effect.succeed(Option.none())))
  const json = Option.isSome(config) ? Either.getOrUndefined(parseJsonc(textOf(config.value.body))) : undefined
  const statics = staticGroupsOf(json)
  const keys = new Set(Object.entries(statics).flatMap(([tenant, groups]) => Object.keys(groups).map((key) => `${tenant}/${key}`)))
  const dynamic: DynamicGroups = (yield* readDynamicGroups()).groups
  return { staticKeys: keys, dynamic }
})

const refusedGroup = (error: GroupChangeRefused | GroupWriteConflict | { readonly _tag: string; readonly message: string }) =>
  error instanceof GroupChangeRefused
    ? new InvalidGroup({ problems: error.problems })
    : error instanceof GroupWriteConflict
    ? new GroupConflict({ attempts: error.attempts })
    : new AdminUnavailable({ reason: error.message })

/** The `Admin` group's handlers; needs `ShardReplica`. */
export const AdminHandlersLive = (options: AdminServiceOptions) =>
  AdminRpcs.toLayer(Effect.gen(function* () {
    const replica = yield* ShardReplica
    const provideReplica = Effect.provideService(ShardReplica, replica)
    const callers = yield* Effect.serviceOption(AdminCallers)

    /** The caller the guard authenticated; a request that reached the handlers without one is refused. */
    /**
     * An operator's delete of one instance it sees (another tenant's is `InstanceNotFound`): `alreadyGoing`
     * says whether its delete is under way already (or refuses). Else the same path as any delete: the request
     * is logged, and the delete saga stops the VM, removes its ISO and the VM, and records each step.
     */
    const operatorDelete = <E>(
      headers: Headers.Headers,
      wire: object,
      reason: "operator" | "drain-acked",
      said: string,
      alreadyGoing: (instance: Instance) => Effect.Effect<boolean, E>
    ) =>
      Effect.gen(function* () {
        const caller = yield* callerOf(headers)
        const { instanceId } = yield* decodeInstanceRef(wire)
        return yield* onLeader(Effect.gen(function* () {
          const log = yield* EventLog
          const found = getInstance(yield* log.state, instanceId)
          if (Option.isNone(found) || !sees(caller, found.value.tenant)) return yield* new InstanceNotFound({ instanceId })
          if (yield* alreadyGoing(found.value)) return { instanceId, alreadyDeleting: true }
          const at = yield* Clock.currentTimeMillis
          yield* log.append([DeleteRequested.make({ instanceId, at, reason })]).pipe(Effect.mapError(unavailable))
          yield* Effect.logInfo(`${instanceId}: ${said}`)
          yield* (yield* SagaRunner).ensure(instanceId)
          return { instanceId, alreadyDeleting: false }
        }).pipe(Effect.annotateLogs("operator", operatorOf(caller))))
      }).pipe(provideReplica)

    const callerOf = (headers: Headers.Headers): Effect.Effect<AdminCaller, Unauthenticated> =>
      Option.match(callers, {
        onNone: () => Effect.succeed(ADMINISTRATOR),
        onSome: (registry) =>
          Effect.flatMap(registry.lookup(headers[CALLER_HEADER]), Option.match({ onNone: () => Effect.fail(new Unauthenticated()), onSome: Effect.succeed }))
      })

    /** Reloads the config into this replica's `SubscriptionRef` (the leader's reconcile follows it). */
    const reload = (why: string) =>
      reloadConfig(options.source, replica.config, why, replica.configHeld).pipe(
        Effect.provideService(ObjectStore, options.store),
        Effect.mapError((error) => new ConfigRejected({ lines: error._tag === "ConfigUnavailable" ? error.lines : [error.message] }))
      )

    // A server started with --config reads no dynamic groups: a write would be accepted and never acted on.
    const storeConfigOnly = options.source._tag === "Local"
      ? Effect.fail(new InvalidGroup({ problems: [`this shard's servers read their config from a local file (${options.source.path}, --config); dynamic groups need the config in the bucket`] }))
      : Effect.void

    const validate: Effect.Effect<ValidationView> = options.source._tag === "Local"
      ? Effect.succeed({
        valid: true,
        key: options.source.path,
        problems: [],
        warnings: options.source.parsed.warnings.map(formatProblem),
        groups: groupCount(options.source.parsed),
        desiredVms: desiredVms(options.source.parsed)
      })
      : validateStoredConfig(options.source.shard, options.source.key).pipe(Effect.provideService(ObjectStore, options.store))

    return AdminRpcs.of({
      Status: (_, { headers }) =>
        Effect.flatMap(callerOf(headers), (caller) => caller._tag === "TenantOperator" ? onLeader(tenantStatus(caller.tenant)) : onLeader(Effect.gen(function* () {
          const log = yield* EventLog
          const shard = yield* ShardContext
          const state = yield* log.state
          const config = yield* SubscriptionRef.get(shard.config)
          const byPhase: Record<string, number> = {}
          for (const [phase, list] of instancesByPhase(state)) byPhase[phase] = list.length
          const byPveState = byPveStateOf(yield* pveStatesOfTerm, HashMap.keys(state.instances))
          const lastErrors = allInstances(state)
            .flatMap((i) => (i.lastError === undefined ? [] : [{ instanceId: i.id, ...i.lastError }]))
            .sort((a, b) => b.at - a.at)
            .slice(0, 10)
          const status: StatusView = {
            cluster: shard.clusterId,
            shard: shard.shard,
            leader: shard.replica,
            term: shard.term,
            seq: yield* log.seq,
            instances: HashMap.size(state.instances),
            byPhase,
            ...(byPveState === undefined ? {} : { byPveState }),
            groups: groupCount(config),
            desiredVms: desiredVms(config),
            registration: shard.registration !== undefined,
            lastErrors,
            anomalies: state.anomalies,
            recentAnomalies: state.recentAnomalies.slice(-STATUS_ANOMALIES).map((a) => ({
              seq: a.seq, event: a.event, instanceId: a.instanceId ?? null, vmid: a.vmid ?? null, reason: a.reason, held: a.held
            })),
            held: heldInstances(state).flatMap((i) => (i.held === undefined ? [] : [{ instanceId: i.id, vmid: i.vmid ?? null, ...i.held }])),
            ...(state.logId === undefined ? {} : { logId: state.logId }),
            ...Option.match(yield* (yield* Ownership).notice, { onNone: () => ({}), onSome: (ownership) => ({ ownership }) }),
            ...Option.match(yield* (yield* Preflight).latest, {
              onNone: () => ({}),
              onSome: (run) => ({ preflight: { at: run.at, pveVersion: run.report.version ?? null, findings: run.report.findings } })
            })
          }
          return status
        }))).pipe(provideReplica, Effect.withSpan("admin.Status")),

      ListInstances: (wire, { headers }) =>
        Effect.gen(function* () {
          const caller = yield* callerOf(headers)
          const filter = yield* decodeList(wire)
          if (filter.tenant !== undefined) yield* ownTenant(caller, "ListInstances", filter.tenant)
          const tenant = caller._tag === "TenantOperator" ? caller.tenant : filter.tenant
          return yield* onLeader(Effect.gen(function* () {
            const state = yield* (yield* EventLog).state
            const pveStates = yield* pveStatesOfTerm
            return allInstances(state)
              .filter((i) => (tenant === undefined || i.tenant === tenant) && (filter.group === undefined || i.group === filter.group))
              .map((i) => instanceView(i, pveStates.get(i.id)))
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.ListInstances")),

      GetInstance: (wire, { headers }) =>
        Effect.gen(function* () {
          const caller = yield* callerOf(headers)
          const { instanceId } = yield* decodeInstanceRef(wire)
          return yield* onLeader(Effect.gen(function* () {
            const found = getInstance(yield* (yield* EventLog).state, instanceId)
            if (Option.isNone(found) || !sees(caller, found.value.tenant)) return yield* new InstanceNotFound({ instanceId })
            return instanceView(found.value, (yield* pveStatesOfTerm).get(instanceId))
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.GetInstance")),

      ListGroups: (_, { headers }) =>
        Effect.flatMap(callerOf(headers), (caller) => onLeader(Effect.gen(function* () {
          const config = yield* SubscriptionRef.get((yield* ShardContext).config)
          const state = yield* (yield* EventLog).state
          const { dynamic, staticKeys } = yield* groupSources.pipe(Effect.mapError(unavailable))
          return groupViews(config, state, staticKeys, dynamic).filter((group) => sees(caller, group.tenant))
        }))).pipe(provideReplica, Effect.withSpan("admin.ListGroups")),

      UpsertGroup: (wire, { headers }) =>
        Effect.gen(function* () {
          const caller = yield* callerOf(headers)
          const payload = yield* decodeUpsert(wire)
          yield* ownTenant(caller, "UpsertGroup", payload.tenant)
          yield* storeConfigOnly
          return yield* onLeader(Effect.gen(function* () {
            const written = yield* updateDynamicGroups((groups, configJson) =>
              Either.map(
                Either.mapLeft(upsertDynamicGroup(groups, configJson, payload.tenant, payload.group, payload), (problem) => [problem]),
                (next) => ({ groups: next, result: undefined })
              )).pipe(Effect.mapError(refusedGroup))
            yield* Effect.logInfo(`admin: group ${payload.tenant}/${payload.group} upserted${payload.size === undefined ? "" : ` (size ${payload.size})`}`)
            const config = yield* reload(`group ${payload.tenant}/${payload.group} upserted`).pipe(
              Effect.mapError((e) => new AdminUnavailable({ reason: `groups.jsonc written, but the config did not reload: ${e.message}` }))
            )
            const state = yield* (yield* EventLog).state
            const { dynamic, staticKeys } = yield* groupSources.pipe(Effect.mapError(unavailable))
            const view = groupViews(config, state, staticKeys, dynamic).find((g) => g.tenant === payload.tenant && g.group === payload.group)
            if (view === undefined) return yield* new AdminUnavailable({ reason: `group ${payload.tenant}/${payload.group} was written but is not in the reloaded config` })
            return { group: view, etag: written.etag, attempts: written.attempts }
          }).pipe(Effect.annotateLogs("operator", operatorOf(caller))))
        }).pipe(provideReplica, Effect.withSpan("admin.UpsertGroup")),

      DeleteGroup: (wire, { headers }) =>
        Effect.gen(function* () {
          const caller = yield* callerOf(headers)
          const { tenant, group } = yield* decodeGroupRef(wire)
          yield* ownTenant(caller, "DeleteGroup", tenant)
          yield* storeConfigOnly
          return yield* onLeader(Effect.gen(function* () {
            const written = yield* updateDynamicGroups((groups, configJson) => {
              const removed = deleteDynamicGroup(groups, tenant, group)
              const staticRemains = own(own(staticGroupsOf(configJson), tenant), group) !== undefined
              return Either.right({ groups: removed.groups, result: { deleted: removed.existed, staticRemains } })
            }).pipe(Effect.mapError(refusedGroup))
            if (written.result.deleted) {
              yield* Effect.logInfo(`admin: dynamic group ${tenant}/${group} deleted`)
              yield* reload(`group ${tenant}/${group} deleted`).pipe(Effect.mapError((e) => new AdminUnavailable({ reason: e.message })))
            }
            return written.result
          }).pipe(Effect.annotateLogs("operator", operatorOf(caller))))
        }).pipe(provideReplica, Effect.withSpan("admin.DeleteGroup")),

      CreateInstance: (wire, { headers }) =>
        Effect.gen(function* () {
          const caller = yield* callerOf(headers)
          const { tenant, group } = yield* decodeGroupRef(wire)
          yield* ownTenant(caller, "CreateInstance", tenant)
          return yield* onLeader(Effect.gen(function* () {
            const shard = yield* ShardContext
            const config = yield* SubscriptionRef.get(shard.config)
            const target = groupTargets(config).targets.find((t) => t.tenant === tenant && t.group === group)
            if (target === undefined) return yield* new GroupNotFound({ tenant, group })
            const ids = yield* InstanceIds
            const log = yield* EventLog
            const instanceId = yield* ids.next(target.kind).pipe(Effect.mapError(unavailable))
            const at = yield* Clock.currentTimeMillis
            yield* log.append([InstanceRequested.make({ instanceId, at, tenant, group, kind: target.kind, specHash: target.specHash, infraHash: target.infraHash, reason: "operator" })]).pipe(Effect.mapError(unavailable))
            yield* Effect.logInfo(`${instanceId}: requested for ${tenant}/${group} (operator)`)
            yield* (yield* SagaRunner).ensure(instanceId)
            return { instanceId }
          }).pipe(Effect.annotateLogs("operator", operatorOf(caller))))
        }).pipe(provideReplica, Effect.withSpan("admin.CreateInstance")),

      // A held instance's delete is under way but stopped: the operator's delete is what releases it.
      DeleteInstance: (wire, { headers }) =>
        operatorDelete(headers, wire, "operator", "delete requested by an operator", (instance) =>
          Effect.succeed(instance.phase === "deleting" && instance.held === undefined)).pipe(Effect.withSpan("admin.DeleteInstance")),

      AcknowledgeDrain: (wire, { headers }) =>
        operatorDelete(headers, wire, "drain-acked", "drain acknowledged by an operator; deleting now", (instance) => {
          if (instance.phase === "deleting") return Effect.succeed(true)
          if (instance.drain !== undefined) return Effect.succeed(false)
          const state = instance.retirement === undefined ? instance.phase : `retiring (${instance.retirement.reason}), its replacement not ready yet`
          return Effect.fail(new NotDraining({ instanceId: instance.id, state }))
        }).pipe(Effect.withSpan("admin.AcknowledgeDrain")),

      RefreshConfig: (_, { headers }) =>
        Effect.flatMap(callerOf(headers), (caller) => clusterWide(caller, "RefreshConfig")).pipe(
          Effect.zipRight(onLeader(Effect.gen(function* () {
            const config = yield* reload("RefreshConfig")
            return { groups: groupCount(config), desiredVms: desiredVms(config), warnings: config.warnings.map(formatProblem) }
          }))),
          provideReplica,
          Effect.withSpan("admin.RefreshConfig")
        ),

      ValidateConfig: (_, { headers }) =>
        Effect.flatMap(callerOf(headers), (caller) => clusterWide(caller, "ValidateConfig")).pipe(
          Effect.zipRight(validate),
          Effect.withSpan("admin.ValidateConfig")
        ),

      MintNonce: (wire, { headers }) =>
        Effect.gen(function* () {
          const caller = yield* callerOf(headers)
          const { instanceId } = yield* decodeInstanceRef(wire)
          return yield* onLeader(Effect.gen(function* () {
            const shard = yield* ShardContext
            if (shard.registration === undefined) return yield* new RegistrationOff()
            const log = yield* EventLog
            const found = getInstance(yield* log.state, instanceId)
            if (
              Option.isNone(found) || !sees(caller, found.value.tenant) || found.value.phase === "deleting" ||
              found.value.tenant === undefined || found.value.group === undefined
            ) {
              return yield* new InstanceNotFound({ instanceId })
            }
            // Before the clone the saga still builds the ISO and mints its own nonce, which would replace this one.
            if (!NONCE_PHASES.has(found.value.phase)) return yield* new NonceNotApplicable({ instanceId, phase: found.value.phase })
            const config = yield* SubscriptionRef.get(shard.config)
            const minted = yield* shard.registration.pki.mintNonce({
              instanceId,
              cluster: shard.clusterId,
              shard: shard.shard,
              tenant: found.value.tenant,
              group: found.value.group,
              ttl: config.config.shard.garbageCollection.registrationTimeout
            })
            const at = yield* Clock.currentTimeMillis
            // Only the hash goes into the log; the token goes back to the operator and nowhere else.
            yield* log.append([NonceIssued.make({ instanceId, at, nonceHash: minted.hash })]).pipe(Effect.mapError(unavailable))
            yield* Effect.logInfo(`${instanceId}: registration nonce minted by an operator (the previous one no longer registers)`)
            return { instanceId, nonce: Redacted.value(minted.jwt), expiresAt: minted.claims.exp * 1000 }
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.MintNonce")),

      AdoptVms: (wire, { headers }) =>
        Effect.gen(function* () {
          yield* clusterWide(yield* callerOf(headers), "AdoptVms")
          const { fromLog } = yield* decodeAdopt(wire)
          return yield* onLeader(Effect.gen(function* () {
            const own = (yield* (yield* EventLog).state).logId
            if (fromLog === own) return yield* new NothingToAdopt({ fromLog, reason: "that is this shard's own event log" })
            const result = yield* adoptFromLog(fromLog).pipe(Effect.mapError(unavailable))
            if (result.adopted.length === 0) {
              const others = [...result.otherLogs].map(([logId, vmids]) => `${logId} (${vmids.length})`).join(", ")
              return yield* new NothingToAdopt({
                fromLog,
                reason: `no VM with this shard's tags that this log does not know names that log${others === "" ? "" : `; VMs of other logs: ${others}`}`
              })
            }
            yield* Effect.logInfo(`admin: ${result.adopted.length} VMs adopted from event log ${fromLog}`)
            return { fromLog, adopted: result.adopted, unstamped: result.unstamped }
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.AdoptVms")),

      WatchEvents: (_, { headers }) =>
        Stream.unwrap(Effect.flatMap(callerOf(headers), (caller) => onLeader(Effect.gen(function* () {
          const log = yield* EventLog
          const { term } = yield* ShardContext
          let previous: State | undefined
          // The stream belongs to this term: when the replica stops leading it, the watcher is told where
          // the leader now is instead of waiting on a log nobody writes.
          const termEnded = replica.currentTerm.pipe(
            Effect.repeat({ schedule: watchTermCheck, while: (current) => Option.exists(current, (t) => t.term === term) }),
            Effect.zipRight(replica.leaderAddress("operator")),
            Effect.flatMap((leaderAddr) => Effect.fail(new NotLeader({ leaderAddr })))
          )
          return log.changes.pipe(
            Stream.mapEffect((state) => Effect.map(log.seq, (seq) => ({ state, seq }))),
            Stream.mapConcat(({ seq, state }) => {
              const before = previous
              previous = state
              // A new watcher first hears of every drain under way, as the original's stream opens with them.
              const events = before === undefined
                ? allInstances(state).flatMap((instance) => pendingDeletion(instance, seq) ?? [])
                : stateChanges(before, state, seq)
              return events.filter((event) => sees(caller, event.tenant))
            }),
            Stream.interruptWhen(termEnded)
          )
        }))).pipe(provideReplica))
    })
  }))

// ---------------------------------------------------------------------------------------------------------
// HTTP

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest()

/** Whether an `Authorization` header carries the token; constant-time in the token's content and length. */
export const tokenMatches = (header: string | undefined, token: Redacted.Redacted<string>): boolean => {
  const presented = header !== undefined && header.startsWith("Bearer ") ? header.slice("Bearer ".length) : ""
  // Both digests are compared even for an empty or missing header, so a miss costs what a near-hit does.
  const match = timingSafeEqual(digest(presented), digest(Redacted.value(token)))
  return match && presented !== ""
}

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

const isBodyLimitDefect = (defect: unknown): boolean => {
  const cause = (defect as { cause?: unknown } | null)?.cause
  return cause instanceof Error && cause.message.includes("maxBytes")
}

/** What the guard makes of a request's credentials; a refusal's detail is logged, and never holds a secret. */
type Authentication =
  | { readonly _tag: "Accepted"; readonly caller: AdminCaller }
  | { readonly _tag: "Refused"; readonly reason: "token" | "certificate"; readonly detail: string }

const refused = (reason: "token" | "certificate", detail: string): Authentication => ({ _tag: "Refused", reason, detail })

const authenticate = (
  request: HttpServerRequest.HttpServerRequest,
  token: Redacted.Redacted<string>,
  certificateOf: ((socket: TLSSocket) => Effect.Effect<Option.Option<VerifiedClientCertificate>, CertificateRejected>) | undefined
): Effect.Effect<Authentication> =>
  Effect.gen(function* () {
    const authorization = request.headers[ADMIN_HEADER]
    // A request that brings a token is judged by it alone, whatever certificate its connection presented.
    if (authorization !== undefined) {
      return tokenMatches(authorization, token) ? { _tag: "Accepted", caller: ADMINISTRATOR } : refused("token", "wrong token")
    }
    const socket = tlsSocketOf(request)
    const presented = certificateOf === undefined || Option.isNone(socket)
      ? Either.right(Option.none<VerifiedClientCertificate>())
      : yield* Effect.either(certificateOf(socket.value))
    if (Either.isLeft(presented)) return refused("certificate", presented.left.reason)
    if (Option.isNone(presented.right)) return refused("token", "no Authorization header and no client certificate")
    const certificate = presented.right.value
    if (certificate.role !== "operator") return refused("certificate", "an agent's certificate")
    return { _tag: "Accepted", caller: { _tag: "TenantOperator", tenant: certificate.tenant, name: certificate.instanceId, serial: certificate.serial } }
  })

interface GuardSettings {
  readonly token: Redacted.Redacted<string>
  /** The cluster PKI client certificates must come from; absent (plain HTTP): the token only. */
  readonly pki: ClusterPkiShape | undefined
  readonly maxBytes: number
  readonly refusals: RefusalLog
  readonly callers: AdminCallersShape
}

/**
 * Credentials first (nothing is read before they pass), then the body limit (413 on Content-Length or while
 * reading); the caller goes to the handlers through `AdminCallers` for as long as the request runs.
 */
const guard = (settings: GuardSettings) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => {
  const { maxBytes, refusals, callers } = settings
  const certificateOf = settings.pki === undefined ? undefined : makeConnectionCertificates(settings.pki)
  return Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const peer = Option.getOrElse(request.remoteAddress, () => "unknown")
    const authentication = yield* authenticate(request, settings.token, certificateOf)
    if (authentication._tag === "Refused") {
      yield* refusals.refuse(authentication.reason, peer, authentication.detail)
      yield* refusals.penalize(peer)
      return json(401, { _tag: "Unauthenticated" })
    }
    const declared = Number(request.headers["content-length"])
    const tooLarge = json(413, { _tag: "PayloadTooLarge", field: "body", maxLength: maxBytes })
    if (Number.isFinite(declared) && declared > maxBytes) {
      yield* refusals.refuse("too-large", peer, `Content-Length ${declared} above ${maxBytes}`)
      return tooLarge
    }
    const key = yield* callers.enter(authentication.caller)
    return yield* app.pipe(
      Effect.provideService(HttpServerRequest.HttpServerRequest, request.modify({ headers: Headers.set(request.headers, CALLER_HEADER, key) })),
      HttpIncomingMessage.withMaxBodySize(Option.some(maxBytes)),
      Effect.catchAllCause((cause) => {
        const defect = Cause.dieOption(cause)
        return Option.isSome(defect) && isBodyLimitDefect(defect.value) ? Effect.succeed(tooLarge) : Effect.failCause(cause)
      }),
      Effect.ensuring(callers.leave(key))
    )
  })
}

let routerCount = 0

/**
 * Serves the `Admin` group at `http://{host}:{port}{path}` until the layer's scope closes; the output
 * includes `HttpServer.HttpServer` (its `address` gives the bound port). Needs `ShardReplica`.
 */
export const AdminServerLive = (options: AdminServerOptions) => {
  class AdminRouter extends HttpRouter.Tag(`nstance/AdminRouter/${++routerCount}`)<AdminRouter>() {}
  const callers = makeAdminCallers()
  const rpc = RpcServer.layer(AdminRpcs).pipe(
    Layer.provide(AdminHandlersLive(options).pipe(Layer.provide(Layer.succeed(AdminCallers, callers)))),
    Layer.provide(RpcServer.layerProtocolHttp({ path: options.path ?? "/admin", routerTag: AdminRouter })),
    Layer.provide(RpcSerialization.layerNdjson)
  )
  // The handshake asks every client for a certificate from the cluster CA and refuses none for lacking one:
  // the token is the other way in, and which one a request uses is decided per request.
  const tls: ServerTls | undefined = options.tls === undefined ? undefined : { ...options.tls, clientCertificates: "requested" }
  return Layer.unwrapEffect(Effect.map(makeRefusalLog("operator"), (refusals) =>
    AdminRouter.serve(guard({ token: options.token, pki: tls?.pki, maxBytes: options.maxRequestBytes ?? MAX_ADMIN_REQUEST_BYTES, refusals, callers })).pipe(
      Layer.provide(rpc),
      Layer.provideMerge(guardedServerLayer("operator", options, options.limits, refusals, tls))
    )))
}

export const ADMIN_TLS_MISSING =
  "admin endpoint not started: it serves only over TLS, with a certificate from the cluster CA, and the cluster PKI needs " +
  "NSTANCE_ENCRYPTION_KEY (or --encryption-key-file); the shard runs, but nstance-admin cannot reach it"

export const ADMIN_TOKEN_MISSING =
  "admin endpoint not started: no admin token (set NSTANCE_ADMIN_TOKEN or --admin-token-file); the shard runs, but nstance-admin cannot reach it"

/**
 * The operator endpoint of one replica for as long as the scope lasts. Without a token it is not started
 * (said once): an open operator endpoint would let anyone on the network delete VMs. A bind failure is
 * logged and does not stop the replica.
 */
export const serveAdmin = (settings: {
  readonly token: Redacted.Redacted<string> | undefined
  readonly bind: Address
  readonly source: ConfigSource
  readonly store: ObjectStoreShape
  readonly replica: ShardReplicaShape
  /** The cluster PKI the endpoint's TLS certificate comes from; absent: the endpoint is not started. */
  readonly pki: ClusterPkiShape | undefined
}): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (settings.token === undefined) return yield* Effect.logWarning(ADMIN_TOKEN_MISSING)
    if (settings.pki === undefined) return yield* Effect.logWarning(ADMIN_TLS_MISSING)
    const config = yield* SubscriptionRef.get(settings.replica.config)
    const server = AdminServerLive({
      token: settings.token,
      source: settings.source,
      store: settings.store,
      tls: { pki: settings.pki, hosts: certificateHosts(config, "operator", settings.replica.advertiseHost) },
      ...(settings.bind.host === "" ? {} : { host: settings.bind.host }),
      port: settings.bind.port
    }).pipe(Layer.provide(Layer.succeed(ShardReplica, settings.replica)))
    return yield* keepServing(server, {
      address: (context) => Context.get(context, HttpServer.HttpServer).address,
      listening: () => Effect.logInfo(`admin endpoint: listening on ${settings.bind.text} (TLS 1.3, certificate from the cluster CA pki/${config.config.cluster.id}/ca.crt)`),
      cannotServe: `admin endpoint: cannot serve on ${settings.bind.text}`
    })
  })
