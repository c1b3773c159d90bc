/**
 * Composes one shard's daemon: the operator's object store scoped to the shard prefix, the shard config
 * (needed first for the election timings and the PVE TLS setting), the leader lease on that store, and
 * the leader's work — which runs only while the lease is held and is interrupted the moment it is lost.
 */
import { Duration, Effect, Layer, Schedule, type Scope } from "effect"
import { hostname } from "node:os"
import type { Address, ParsedShardConfig } from "../domain/config/index.js"
import { makeLeaderLeaseOn } from "../layers/LeaderLeaseStore.js"
import { ProxmoxApiHttp, type ProxmoxApiSettings, type PveSettingsError } from "../layers/ProxmoxApiHttp.js"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { ObjectStore, type StoreError } from "../services/ObjectStore.js"
import { type ConfigSource, leaderWork, loadConfig } from "./leaderWork.js"

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
  readonly reconcileInterval: Duration.DurationInput
}

/** The address written into `leader.json`: the configured one, its wildcard host replaced. */
export const advertisedElectionAddress = (address: Address, advertiseHost: string | undefined): string => {
  const wildcard = address.host === "" || address.host === "0.0.0.0" || address.host === "::"
  const host = wildcard ? advertiseHost ?? hostname() : address.host
  return host.includes(":") ? `[${host}]:${address.port}` : `${host}:${address.port}`
}

// Startup keeps trying to read a missing or invalid config rather than exiting: a restart loop would only
// multiply bucket reads, and the operator's fix (a config push) is picked up at the next attempt.
const startupRetry = Schedule.exponential("1 second", 2).pipe(Schedule.either(Schedule.spaced("30 seconds")))

const firstConfig = (source: ConfigSource): Effect.Effect<ParsedShardConfig, never, ObjectStore> =>
  loadConfig(source).pipe(
    Effect.tapError((error) =>
      Effect.forEach(error._tag === "ConfigUnavailable" ? error.lines : [error.message], (line) => Effect.logWarning(line), { discard: true })),
    Effect.retry(startupRetry),
    Effect.orDie
  )

/** Runs the shard until the scope closes (SIGINT/SIGTERM), resigning the lease on the way out. */
export const runDaemon = (settings: DaemonSettings): Effect.Effect<never, StoreError | PveSettingsError, Scope.Scope> =>
  Effect.gen(function* () {
    const base = yield* ObjectStore
    const scoped = scopeStore(base, settings.prefix)
    const shardStore = Layer.succeed(ObjectStore, scoped)
    const { config } = yield* firstConfig(settings.config).pipe(Effect.provide(shardStore))
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
    // Built once, before the election: bad PVE settings stop the start instead of every leadership term.
    const pve = yield* Layer.build(ProxmoxApiHttp({ ...settings.proxmox, insecureTls: config.shard.infra.options.insecureTls }))
    yield* lease.whileLeader(
      (term) => leaderWork(settings.config, settings.reconcileInterval)(term).pipe(Effect.provide(pve), Effect.provide(shardStore))
    )
    return yield* Effect.never
  }).pipe(Effect.provide(settings.store))
