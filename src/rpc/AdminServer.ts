/**
 * The operator endpoint: handlers for the `Admin` RPC group and a layer serving them over HTTP (NDJSON) on
 * `shard.bind.operator_addr`. Every replica serves it; a handler that needs the shard's state runs on the
 * current leadership term's services (`withLeader`), so a standby answers `NotLeader{leaderAddr}` and the
 * client follows it. Only `ValidateConfig` is answered by any replica: it reads the bucket, not the log.
 *
 * The token check happens on the raw HTTP request, before its body is read: an unauthenticated caller
 * learns nothing (not whether its payload would parse, not whether this replica leads) and cannot make the
 * server buffer anything. Tokens are compared as SHA-256 digests with `timingSafeEqual`, so the time taken
 * does not depend on how much of a guess was right (nor on its length).
 */
import type { ListenerLimits } from "../domain/listenerLimits.js"
import { guardedServerLayer, makeRefusalLog, type RefusalLog, type ServerTls } from "../http/listener.js"
import { createHash, timingSafeEqual } from "node:crypto"
import { CONFIG_KEY } from "../domain/bucketKeys.js"
import { type HttpApp, HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { Cause, Clock, Effect, Either, HashMap, Layer, Option, Redacted, Schedule, Stream, SubscriptionRef } from "effect"
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
import { SagaRunner } from "../shard/SagaRunner.js"
import { certificateHosts, ShardContext } from "../shard/ShardContext.js"
import type { ClusterPkiShape } from "../services/ClusterPki.js"
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
  MAX_ADMIN_REQUEST_BYTES,
  NonceNotApplicable,
  NothingToAdopt,
  AdoptPayload,
  NotLeader,
  RegistrationOff,
  type StatusView,
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
// Views of the state

const instanceView = (i: Instance): InstanceView => ({
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
  held: i.held ?? null
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
        source: isStatic && isDynamic ? "static+dynamic" : isDynamic ? "dynamic" : "static"
      })
    }
  }
  return views.sort((a, b) => a.tenant.localeCompare(b.tenant) || a.group.localeCompare(b.group))
}

/** The changes from `before` to `after`, one per instance whose phase, VM or failures moved. */
export const stateChanges = (before: State, after: State, seq: number): ReadonlyArray<WatchEvent> => {
  const events: Array<WatchEvent> = []
  for (const [id, now] of after.instances) {
    const was = Option.getOrUndefined(HashMap.get(before.instances, id))
    if (was === now) continue
    const failed = was !== undefined && now.failures > was.failures && now.lastError !== undefined
    if (was !== undefined && was.phase === now.phase && was.vmid === now.vmid && !failed && was.ips.length === now.ips.length) continue
    const detail = failed && now.lastError !== undefined
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
      detail
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
      Status: () =>
        onLeader(Effect.gen(function* () {
          const log = yield* EventLog
          const shard = yield* ShardContext
          const state = yield* log.state
          const config = yield* SubscriptionRef.get(shard.config)
          const byPhase: Record<string, number> = {}
          for (const [phase, list] of instancesByPhase(state)) byPhase[phase] = list.length
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
            ...Option.match(yield* (yield* Ownership).notice, { onNone: () => ({}), onSome: (ownership) => ({ ownership }) })
          }
          return status
        })).pipe(provideReplica, Effect.withSpan("admin.Status")),

      ListInstances: (wire) =>
        Effect.gen(function* () {
          const filter = yield* decodeList(wire)
          return yield* onLeader(Effect.gen(function* () {
            const state = yield* (yield* EventLog).state
            return allInstances(state)
              .filter((i) => (filter.tenant === undefined || i.tenant === filter.tenant) && (filter.group === undefined || i.group === filter.group))
              .map(instanceView)
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.ListInstances")),

      GetInstance: (wire) =>
        Effect.gen(function* () {
          const { instanceId } = yield* decodeInstanceRef(wire)
          return yield* onLeader(Effect.gen(function* () {
            const found = getInstance(yield* (yield* EventLog).state, instanceId)
            if (Option.isNone(found)) return yield* new InstanceNotFound({ instanceId })
            return instanceView(found.value)
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.GetInstance")),

      ListGroups: () =>
        onLeader(Effect.gen(function* () {
          const config = yield* SubscriptionRef.get((yield* ShardContext).config)
          const state = yield* (yield* EventLog).state
          const { dynamic, staticKeys } = yield* groupSources.pipe(Effect.mapError(unavailable))
          return groupViews(config, state, staticKeys, dynamic)
        })).pipe(provideReplica, Effect.withSpan("admin.ListGroups")),

      UpsertGroup: (wire) =>
        Effect.gen(function* () {
          const payload = yield* decodeUpsert(wire)
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
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.UpsertGroup")),

      DeleteGroup: (wire) =>
        Effect.gen(function* () {
          const { tenant, group } = yield* decodeGroupRef(wire)
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
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.DeleteGroup")),

      CreateInstance: (wire) =>
        Effect.gen(function* () {
          const { tenant, group } = yield* decodeGroupRef(wire)
          return yield* onLeader(Effect.gen(function* () {
            const shard = yield* ShardContext
            const config = yield* SubscriptionRef.get(shard.config)
            const target = groupTargets(config).targets.find((t) => t.tenant === tenant && t.group === group)
            if (target === undefined) return yield* new GroupNotFound({ tenant, group })
            const ids = yield* InstanceIds
            const log = yield* EventLog
            const instanceId = yield* ids.next(target.kind).pipe(Effect.mapError(unavailable))
            const at = yield* Clock.currentTimeMillis
            yield* log.append([InstanceRequested.make({ instanceId, at, tenant, group, kind: target.kind, specHash: target.specHash, reason: "operator" })]).pipe(Effect.mapError(unavailable))
            yield* Effect.logInfo(`${instanceId}: requested for ${tenant}/${group} (operator)`)
            yield* (yield* SagaRunner).ensure(instanceId)
            return { instanceId }
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.CreateInstance")),

      DeleteInstance: (wire) =>
        Effect.gen(function* () {
          const { instanceId } = yield* decodeInstanceRef(wire)
          return yield* onLeader(Effect.gen(function* () {
            const log = yield* EventLog
            const found = getInstance(yield* log.state, instanceId)
            if (Option.isNone(found)) return yield* new InstanceNotFound({ instanceId })
            // A held instance's delete is under way but stopped: the operator's delete is what releases it.
            if (found.value.phase === "deleting" && found.value.held === undefined) return { instanceId, alreadyDeleting: true }
            const at = yield* Clock.currentTimeMillis
            // The same path as any delete: the request is logged, and the delete saga stops the VM, removes
            // its ISO and the VM, and records each step.
            yield* log.append([DeleteRequested.make({ instanceId, at, reason: "operator" })]).pipe(Effect.mapError(unavailable))
            yield* Effect.logInfo(`${instanceId}: delete requested by an operator`)
            yield* (yield* SagaRunner).ensure(instanceId)
            return { instanceId, alreadyDeleting: false }
          }))
        }).pipe(provideReplica, Effect.withSpan("admin.DeleteInstance")),

      RefreshConfig: () =>
        onLeader(Effect.gen(function* () {
          const config = yield* reload("RefreshConfig")
          return { groups: groupCount(config), desiredVms: desiredVms(config), warnings: config.warnings.map(formatProblem) }
        })).pipe(provideReplica, Effect.withSpan("admin.RefreshConfig")),

      ValidateConfig: () => validate.pipe(Effect.withSpan("admin.ValidateConfig")),

      MintNonce: (wire) =>
        Effect.gen(function* () {
          const { instanceId } = yield* decodeInstanceRef(wire)
          return yield* onLeader(Effect.gen(function* () {
            const shard = yield* ShardContext
            if (shard.registration === undefined) return yield* new RegistrationOff()
            const log = yield* EventLog
            const found = getInstance(yield* log.state, instanceId)
            if (Option.isNone(found) || found.value.phase === "deleting" || found.value.tenant === undefined || found.value.group === undefined) {
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

      AdoptVms: (wire) =>
        Effect.gen(function* () {
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

      WatchEvents: () =>
        Stream.unwrap(onLeader(Effect.gen(function* () {
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
              return before === undefined ? [] : stateChanges(before, state, seq)
            }),
            Stream.interruptWhen(termEnded)
          )
        })).pipe(provideReplica))
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

/** Token first (nothing is read before it passes), then the body limit (413 on Content-Length or while reading). */
const guard = (token: Redacted.Redacted<string>, maxBytes: number, refusals: RefusalLog) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const peer = Option.getOrElse(request.remoteAddress, () => "unknown")
    if (!tokenMatches(request.headers[ADMIN_HEADER], token)) {
      yield* refusals.refuse("token", peer, request.headers[ADMIN_HEADER] === undefined ? "no Authorization header" : "wrong token")
      yield* refusals.penalize(peer)
      return json(401, { _tag: "Unauthenticated" })
    }
    const declared = Number(request.headers["content-length"])
    const tooLarge = json(413, { _tag: "PayloadTooLarge", field: "body", maxLength: maxBytes })
    if (Number.isFinite(declared) && declared > maxBytes) {
      yield* refusals.refuse("too-large", peer, `Content-Length ${declared} above ${maxBytes}`)
      return tooLarge
    }
    return yield* app.pipe(
      HttpIncomingMessage.withMaxBodySize(Option.some(maxBytes)),
      Effect.catchAllCause((cause) => {
        const defect = Cause.dieOption(cause)
        return Option.isSome(defect) && isBodyLimitDefect(defect.value) ? Effect.succeed(tooLarge) : Effect.failCause(cause)
      })
    )
  })

let routerCount = 0

/**
 * Serves the `Admin` group at `http://{host}:{port}{path}` until the layer's scope closes; the output
 * includes `HttpServer.HttpServer` (its `address` gives the bound port). Needs `ShardReplica`.
 */
export const AdminServerLive = (options: AdminServerOptions) => {
  class AdminRouter extends HttpRouter.Tag(`nstance/AdminRouter/${++routerCount}`)<AdminRouter>() {}
  const rpc = RpcServer.layer(AdminRpcs).pipe(
    Layer.provide(AdminHandlersLive(options)),
    Layer.provide(RpcServer.layerProtocolHttp({ path: options.path ?? "/admin", routerTag: AdminRouter })),
    Layer.provide(RpcSerialization.layerNdjson)
  )
  return Layer.unwrapEffect(Effect.map(makeRefusalLog("operator"), (refusals) =>
    AdminRouter.serve(guard(options.token, options.maxRequestBytes ?? MAX_ADMIN_REQUEST_BYTES, refusals)).pipe(
      Layer.provide(rpc),
      Layer.provideMerge(guardedServerLayer("operator", options, options.limits, refusals, options.tls))
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
      listening: () => Effect.logInfo(`admin endpoint: listening on ${settings.bind.text} (TLS 1.3, certificate from the cluster CA pki/${config.config.cluster.id}/ca.crt)`),
      cannotServe: `admin endpoint: cannot serve on ${settings.bind.text}`
    })
  })
