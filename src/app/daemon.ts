/**
 * One shard's daemon as a stack of Layers, bottom to top: who this replica is and the operator's bucket;
 * the shard's prefix of it; the shard config (read first: it holds the election timings and the PVE TLS
 * setting); agent registration; the lease; the replica's handle; the endpoints every replica serves; the
 * Proxmox client (built once, before the election, so bad PVE settings stop the start instead of every
 * term); and the leader loop, which works only while the lease is held. Each is built after the one below
 * it and released in the reverse order when the scope closes (the lease resigns on the way out).
 */
import { Context, type Duration, Effect, Layer, type Redacted, type Scope, type Stream, SubscriptionRef } from "effect"
import { join } from "node:path"
import { fileSnapshotCache } from "../layers/EventLogStore.js"
import { ProxmoxApiHttp, type ProxmoxApiSettings, type PveSettingsError } from "../layers/ProxmoxApiHttp.js"
import type { PkiLoadError } from "../services/ClusterPki.js"
import { DuplicateReplica, LeaderLease } from "../services/LeaderLease.js"
import type { ObjectStore, StoreError } from "../services/ObjectStore.js"
import type { ProxmoxApi } from "../services/ProxmoxApi.js"
import type { ConfigSource, ShardMismatch } from "../shard/shardConfig.js"
import { EndpointsLive } from "./endpoints.js"
import { LeaderLoopLive } from "./LeaderLoop.js"
import { RegistrationLive } from "./Registration.js"
import { LeaseLive, ReplicaLive } from "./Replica.js"
import { replicaIdentity } from "./ReplicaIdentity.js"
import { ShardConfig, ShardConfigLive } from "./ShardConfig.js"
import { bucketFrom, ShardStoreLive } from "./stores.js"

export { REGISTRATION_OFF_WARNING } from "./Registration.js"

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

/** The Proxmox client with the TLS choice and request timeout of the shard config. */
const ProxmoxLive = (proxmox: Omit<ProxmoxApiSettings, "insecureTls">): Layer.Layer<ProxmoxApi, PveSettingsError, ShardConfig> =>
  Layer.unwrapEffect(
    Effect.map(ShardConfig, (shardConfig) =>
      Layer.unwrapEffect(
        Effect.map(SubscriptionRef.get(shardConfig.current), ({ config }) =>
          ProxmoxApiHttp({
            ...proxmox,
            insecureTls: config.shard.infra.options.insecureTls,
            requestTimeout: proxmox.requestTimeout ?? config.shard.requestTimeout
          }))
      ))
  )

/**
 * The leader loop, with the snapshot cache under `--cachedir/{shard}` when one is given; a standby follows the
 * log (a warm standby), so the term it wins replays only the tail.
 */
const leaderLoopFor = (cachedir: string | undefined) =>
  cachedir === undefined
    ? LeaderLoopLive({ followLog: true })
    : Layer.unwrapEffect(Effect.gen(function* () {
      const { config } = yield* SubscriptionRef.get((yield* ShardConfig).current)
      return LeaderLoopLive({ eventLog: { cache: fileSnapshotCache(join(cachedir, config.shard.id)) }, followLog: true })
    }))

/** The whole stack of one shard's replica; its outputs stay available to whoever builds it (tests read them). */
export const ShardStack = (settings: DaemonSettings) =>
  leaderLoopFor(settings.cachedir).pipe(
    Layer.provideMerge(ProxmoxLive(settings.proxmox)),
    Layer.provideMerge(EndpointsLive(settings.adminToken)),
    Layer.provideMerge(ReplicaLive),
    Layer.provideMerge(LeaseLive),
    Layer.provideMerge(RegistrationLive(settings.encryptionKey)),
    Layer.provideMerge(ShardConfigLive({
      source: settings.config,
      ...(settings.configPoll === undefined ? {} : { poll: settings.configPoll }),
      ...(settings.reloadRequests === undefined ? {} : { reloadRequests: settings.reloadRequests })
    })),
    Layer.provideMerge(ShardStoreLive),
    Layer.provideMerge(Layer.merge(
      replicaIdentity({ id: settings.id, prefix: settings.prefix, ...(settings.advertiseHost === undefined ? {} : { advertiseHost: settings.advertiseHost }) }),
      bucketFrom(settings.store)
    ))
  )

/** Runs the shard until the scope closes (SIGINT/SIGTERM), resigning the lease on the way out. */
export const runDaemon = (settings: DaemonSettings): Effect.Effect<never, StoreError | PveSettingsError | ShardMismatch | PkiLoadError | DuplicateReplica, Scope.Scope> =>
  Effect.gen(function* () {
    const stack = yield* Layer.build(ShardStack(settings))
    const lease = Context.get(stack, LeaderLease)
    // Runs until the scope closes, or until another live process turns out to use our --id.
    return yield* (lease.duplicate ?? Effect.never).pipe(
      Effect.mapError((error) => new DuplicateReplica({ id: error.id, term: error.term, address: error.address, key: `${settings.prefix}${error.key}` }))
    )
  })
