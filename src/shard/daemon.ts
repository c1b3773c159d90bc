/**
 * Composes one shard's daemon: the operator's object store scoped to the shard prefix, the shard config
 * (needed first for the election timings and the PVE TLS setting), the leader lease on that store, and
 * the leader's work — which runs only while the lease is held and is interrupted the moment it is lost.
 */
import { Duration, Effect, Layer, type Redacted, Schedule, type Scope, Stream, SubscriptionRef } from "effect"
import { hostname } from "node:os"
import { join } from "node:path"
import type { Address, ParsedShardConfig } from "../domain/config/index.js"
import { fileSnapshotCache } from "../layers/EventLogStore.js"
import { makeLeaderLeaseOn } from "../layers/LeaderLeaseStore.js"
import { ProxmoxApiHttp, type ProxmoxApiSettings, type PveSettingsError } from "../layers/ProxmoxApiHttp.js"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { makeClusterPki } from "../layers/ClusterPkiStore.js"
import type { PkiLoadError } from "../services/ClusterPki.js"
import { DuplicateReplica } from "../services/LeaderLease.js"
import { ObjectStore, type StoreError } from "../services/ObjectStore.js"
import { reloadConfig, watchConfig } from "./configWatch.js"
import { makeConfigHeld } from "./configHeld.js"
import { serveAdmin } from "../rpc/AdminServer.js"
import { serveAgentEndpoint } from "./agentEndpoint.js"
import { leaderScope } from "./LeaderScope.js"
import { makeShardReplica } from "./ShardReplica.js"
import { serveHealth } from "../http/HealthServer.js"
import { type ConfigSource, loadConfig, ShardMismatch } from "./shardConfig.js"

export interface DaemonSettings {
  /** Replica id (`--id`), written into `leader.json`. */
  readonly id: string
  /** Fills in the host of `shard.advertise.election_addr` when the config leaves it empty (default: hostname). */
  readonly advertiseHost?: string
  /** Key prefix of the shard in the store, e.g. `shard/pve-a/`. */
  readonly prefix: string
  readonly store: Layer.Layer<ObjectStore, StoreError>
  readonly config: ConfigSource
  /** PVE connection without the TLS choice, which comes from the shard config. */
  readonly proxmox: Omit<ProxmoxApiSettings, "insecureTls">
  /** `--cachedir`: the newest snapshot is copied to `{cachedir}/{shard}/snapshot.json` so a restart reads only the tail. */
  readonly cachedir?: string
  /**
   * The 32-byte key the cluster PKI's private keys are encrypted with (`NSTANCE_ENCRYPTION_KEY` or
   * `--encryption-key-file`). Given: agent registration is on. Absent: off, and an instance counts as ready
   * once its VM runs.
   */
  readonly encryptionKey?: Uint8Array
  /** Bearer token of the admin endpoint (`NSTANCE_ADMIN_TOKEN` or `--admin-token-file`); absent: the endpoint is not started. */
  readonly adminToken?: Redacted.Redacted<string>
  /** How often the bucket's config is checked for a change (default `CONFIG_POLL`, 5 s; tests shorten it). */
  readonly configPoll?: Duration.DurationInput
  /** Each element asks for the config to be re-read now (SIGHUP), naming why; absent: only the poll re-reads it. */
  readonly reloadRequests?: Stream.Stream<string>
}

export const REGISTRATION_OFF_WARNING =
  "agent registration is off: set NSTANCE_ENCRYPTION_KEY (or --encryption-key-file) to turn it on; " +
  "an instance counts as ready once its VM runs"

/** The address written into `leader.json`: the configured one, its wildcard host replaced. */
export const advertisedElectionAddress = (address: Address, advertiseHost: string | undefined): string => {
  const wildcard = address.host === "" || address.host === "0.0.0.0" || address.host === "::"
  const host = wildcard ? advertiseHost ?? hostname() : address.host
  return host.includes(":") ? `[${host}]:${address.port}` : `${host}:${address.port}`
}

// Startup keeps trying to read a missing or invalid config rather than exiting: a restart loop would only
// multiply bucket reads, and the operator's fix (a config push) is picked up at the next attempt.
const startupRetry = Schedule.exponential("1 second", 2).pipe(Schedule.either(Schedule.spaced("30 seconds")))

// A config of another shard is the exception: waiting would not fix it, and it must never be acted on.
const firstConfig = (source: ConfigSource, prefix: string): Effect.Effect<ParsedShardConfig, ShardMismatch, ObjectStore> =>
  loadConfig(source).pipe(
    Effect.tapError((error) =>
      error._tag === "ShardMismatch"
        ? Effect.void
        : Effect.forEach(error._tag === "ConfigUnavailable" ? error.lines : [error.message], (line) => Effect.logWarning(line), { discard: true })),
    Effect.retry({ schedule: startupRetry, while: (error) => error._tag !== "ShardMismatch" }),
    Effect.catchAll((error) => error._tag === "ShardMismatch" ? Effect.fail(new ShardMismatch({ ...error, key: `${prefix}${error.key}` })) : Effect.die(error))
  )

/** Runs the shard until the scope closes (SIGINT/SIGTERM), resigning the lease on the way out. */
export const runDaemon = (settings: DaemonSettings): Effect.Effect<never, StoreError | PveSettingsError | ShardMismatch | PkiLoadError | DuplicateReplica, Scope.Scope> =>
  Effect.gen(function* () {
    const base = yield* ObjectStore
    const scoped = scopeStore(base, settings.prefix)
    const shardStore = Layer.succeed(ObjectStore, scoped)
    const first = yield* firstConfig(settings.config, settings.prefix).pipe(Effect.provide(shardStore))
    const { config } = first
    const configRef = yield* SubscriptionRef.make(first)
    const configHeld = yield* makeConfigHeld(config.shard.id)
    yield* watchConfig(settings.config, configRef, configHeld, settings.configPoll).pipe(Effect.provide(shardStore), Effect.forkScoped)
    if (settings.reloadRequests !== undefined) {
      const source = settings.config
      yield* settings.reloadRequests.pipe(
        Stream.runForEach((why) =>
          source._tag === "Local"
            ? Effect.logInfo(`${why}: the shard config comes from ${source.path} (--config), which is read only at start; nothing re-read`)
            // A config that does not load is logged by reloadConfig and the last good one stays.
            : reloadConfig(source, configRef, why, configHeld).pipe(Effect.provide(shardStore), Effect.ignore)),
        Effect.forkScoped
      )
    }
    // The PKI lives in the bucket root (pki/{cluster}/…), shared by every shard of the cluster. A partial PKI or
    // a wrong key refuses the start: never a silently regenerated CA.
    const pki = settings.encryptionKey === undefined
      ? undefined
      : yield* makeClusterPki(base, { clusterId: config.cluster.id, encryptionKey: settings.encryptionKey }).pipe(
        Effect.tapError((error) => Effect.logError(`agent registration: cannot load the cluster PKI: ${error.message}`))
      )
    if (pki === undefined) yield* Effect.logWarning(REGISTRATION_OFF_WARNING)
    else yield* Effect.logInfo(`agent registration is on: cluster PKI pki/${config.cluster.id}/ loaded`)
    const election = config.shard.leaderElection
    yield* Effect.logInfo(
      `shard ${config.shard.id} of cluster ${config.cluster.id}: replica ${settings.id} joins the election ` +
        `(renew ${Duration.format(election.frequentInterval)}, timeout ${Duration.format(election.leaderTimeout)})`
    )
    const lease = yield* makeLeaderLeaseOn(scoped, {
      id: settings.id,
      address: advertisedElectionAddress(config.shard.advertise.election, settings.advertiseHost),
      frequentInterval: election.frequentInterval,
      infrequentInterval: election.infrequentInterval,
      leaderTimeout: election.leaderTimeout
    }).pipe(Effect.orDie)
    const replica = yield* makeShardReplica({
      clusterId: config.cluster.id,
      shard: config.shard.id,
      replica: settings.id,
      ...(settings.advertiseHost === undefined ? {} : { advertiseHost: settings.advertiseHost }),
      config: configRef,
      configHeld,
      lease
    })
    // Endpoints served by every replica, leader or standby, start here (each binds its own address).
    yield* serveHealth(replica)
    if (pki !== undefined) yield* Effect.forkScoped(serveAgentEndpoint(replica, pki))
    yield* Effect.forkScoped(serveAdmin({ token: settings.adminToken, bind: config.shard.bind.operator, source: settings.config, store: scoped, replica }))
    // Built once, before the election: bad PVE settings stop the start instead of every leadership term.
    const pve = yield* Layer.build(ProxmoxApiHttp({
      ...settings.proxmox,
      insecureTls: config.shard.infra.options.insecureTls,
      requestTimeout: settings.proxmox.requestTimeout ?? config.shard.requestTimeout
    }))
    const work = leaderScope({
      clusterId: config.cluster.id,
      shard: config.shard.id,
      replica: settings.id,
      config: configRef,
      handle: replica,
      ...(pki === undefined ? {} : { registration: { pki, ...(settings.advertiseHost === undefined ? {} : { advertiseHost: settings.advertiseHost }) } }),
      ...(settings.cachedir === undefined ? {} : { eventLog: { cache: fileSnapshotCache(join(settings.cachedir, config.shard.id)) } })
    })
    yield* lease.whileLeader((term) => work(term).pipe(Effect.provide(pve), Effect.provide(shardStore)))
    // Runs until the scope closes, or until another live process turns out to use our --id.
    return yield* (lease.duplicate ?? Effect.never).pipe(
      Effect.mapError((error) => new DuplicateReplica({ id: error.id, term: error.term, address: error.address, key: `${settings.prefix}${error.key}` }))
    )
  }).pipe(Effect.provide(settings.store))
