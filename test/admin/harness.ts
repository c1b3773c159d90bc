/**
 * An admin endpoint in-process on 127.0.0.1 port 0: a `ShardReplica` over a memory store (its lease a test
 * double saying who leads), the real leader scope on the HTTP Proxmox simulator publishing its term into
 * that replica, and an `AdminServerLive` serving it. A second replica of the same shard — a standby whose
 * lease names the first as leader — can be started on the same store.
 */
import { Context, Duration, Effect, Layer, Logger, LogLevel, Option, Redacted, SubscriptionRef } from "effect"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import { HttpServer } from "@effect/platform"
import type { ParsedShardConfig } from "../../src/domain/config/index.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ProxmoxApiHttp } from "../../src/layers/ProxmoxApiHttp.js"
import type { LeaderInfo } from "../../src/services/LeaderLease.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { AdminServerLive } from "../../src/rpc/AdminServer.js"
import { ShardReplica, type ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import { buildReplica } from "../support/stackReplica.js"
import { runCommand } from "../support/cli.js"
import { adminCommand } from "../../src/cli/adminCommand.js"
import { writeCaFile } from "../support/tls.js"
export { writeCaFile } from "../support/tls.js"
import { leaseDouble } from "../support/leaseDouble.js"
import { type ConfigSource, loadConfig } from "../../src/shard/shardConfig.js"
import { PveSimulator, type RunningSimulator } from "../../src/sim/server.js"
import { type AdminCredentials, connectAdmin } from "../../src/admin/AdminClient.js"
import type { ClusterPkiShape } from "../../src/services/ClusterPki.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { randomBytes } from "node:crypto"
import { fastPveSettings } from "../shard/leaderHarness.js"

export const TOKEN = Redacted.make("test-admin-token-0123456789abcdef")
export const CLUSTER = "acme"
export const SHARD = "pve-a"

/** One tenant, one group `shop/web` of `size` VMs; `operator_addr` as given (the leader's advertised address). */
export const adminConfigText = (size: number, operatorAddr = "127.0.0.1:8993", bind: { readonly operator?: string; readonly health?: string } = {}) => `{
  "cluster": { "id": "${CLUSTER}" },
  "shard": {
    "id": "${SHARD}",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z1", "options": { "cloud_init_iso_storage": "local" } },
    "bind": { "health_addr": "${bind.health ?? ":8990"}", "election_addr": ":8991", "registration_addr": ":8992", "operator_addr": "${bind.operator ?? ":8993"}", "agent_addr": ":8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "10.0.0.1:8992", "operator_addr": "${operatorAddr}", "agent_addr": "10.0.0.1:8994" },
    "subnet_pools": { "edge": ["vmbr1"] },
    "garbage_collection": { "interval": "1s", "registration_timeout": "1m" }
  },
  "defaults": {
    "args": { "StoragePool": "local-lvm", "TemplateName": "debian-13-template" },
    "userdata": { "content": "#!/bin/sh\\necho hello\\n" }
  },
  "templates": {
    "web": { "kind": "web", "instance_type": "cpu:1,memory:512,disk:4", "subnet_pool": "edge" },
    "api": { "kind": "api", "instance_type": "cpu:1,memory:512,disk:4", "subnet_pool": "edge" }
  },
  "groups": { "shop": { "web": { "template": "web", "size": ${size} } } }
}
`

export interface Endpoint {
  readonly replica: ShardReplicaShape
  readonly port: number
  readonly address: string
}

/** The credentials of a client of a test's endpoints: the test token and the CA of `pki`. */
export const credentialsFor = (pki: ClusterPkiShape): AdminCredentials => ({ token: TOKEN, caPem: pki.caPem })

/** Serves the admin group for `replica` on 127.0.0.1:0, over TLS 1.3 with a certificate from `pki`. */
export const serve = (
  replica: ShardReplicaShape,
  store: ObjectStoreShape,
  source: ConfigSource,
  pki: ClusterPkiShape,
  maxRequestBytes?: number,
  /** Where the endpoint's log lines go (default: nowhere, unless NSTANCE_TEST_LOG=1). */
  logger?: Layer.Layer<never>
) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(AdminServerLive({
      token: TOKEN,
      source,
      store,
      host: "127.0.0.1",
      port: 0,
      tls: { pki, hosts: ["127.0.0.1"] },
      ...(maxRequestBytes === undefined ? {} : { maxRequestBytes })
    }).pipe(
      Layer.provide(Layer.succeed(ShardReplica, replica)),
      // The handlers' INFO lines would go to the test runner's stdout.
      Layer.provide(logger ?? Logger.minimumLogLevel(process.env["NSTANCE_TEST_LOG"] === "1" ? LogLevel.Debug : LogLevel.None))
    ))
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    return { replica, port: address.port, address: `127.0.0.1:${address.port}` } satisfies Endpoint
  })

export interface AdminWorldOptions {
  readonly size?: number
  /** Start the leader scope (default true). */
  readonly lead?: boolean
  readonly maxRequestBytes?: number
  /** Agent registration on (a cluster PKI in the store), so `MintNonce` is served. */
  readonly registration?: boolean
  /** Called with the simulator before the leader starts (e.g. to script faults it meets from its first call). */
  readonly beforeLead?: (sim: RunningSimulator, store: ObjectStoreShape) => Effect.Effect<void> | void
}

/** The store, the simulator, a leading replica with its admin endpoint, and helpers. */
export const makeAdminWorld = (options: AdminWorldOptions = {}) =>
  Effect.gen(function* () {
    const store = makeMemoryStore()
    const quiet = Logger.withMinimumLogLevel(process.env["NSTANCE_TEST_LOG"] === "1" ? LogLevel.Debug : LogLevel.None)
    const sim: RunningSimulator = yield* PveSimulator({ nodes: 3, http: true, seed: 3, sharedStorage: false })
    // The leader's address is only known once its endpoint is bound: the config's advertised operator
    // address is filled in after (the standby redirects there).
    let leaderAddress = "127.0.0.1:1"
    const source: ConfigSource = { _tag: "Store", key: CONFIG_KEY, shard: SHARD }
    const putConfig = (text: string) => store.put(CONFIG_KEY, new TextEncoder().encode(text)).pipe(Effect.orDie)
    yield* putConfig(adminConfigText(options.size ?? 1))
    const load = loadConfig(source).pipe(Effect.provideService(ObjectStore, store), Effect.orDie)
    const config: SubscriptionRef.SubscriptionRef<ParsedShardConfig> = yield* SubscriptionRef.make(yield* load)
    const leaderInfo = (): Option.Option<LeaderInfo> => Option.some({ id: "replica-1", address: "127.0.0.1:8991", term: 1 })
    // The endpoint's TLS certificate comes from the cluster PKI; the leader registers agents with it only when asked.
    const encryptionKey = new Uint8Array(randomBytes(32))
    const clusterPki = yield* makeClusterPki(store, { clusterId: CLUSTER, encryptionKey }).pipe(Effect.orDie, quiet)
    const pki = options.registration === true ? clusterPki : undefined
    const pve = ProxmoxApiHttp(fastPveSettings(sim))
    const leading = yield* leaseDouble("replica-1", Effect.sync(leaderInfo))
    const replica = yield* buildReplica({ id: "replica-1", advertiseHost: "127.0.0.1", config, source, store, lease: leading.lease, ...(pki === undefined ? {} : { pki }), leader: { pve, loop: { eventLog: { batchWindow: "5 millis" } } } }).pipe(quiet)
    const leader = yield* serve(replica, store, source, clusterPki, options.maxRequestBytes)
    leaderAddress = leader.address
    yield* putConfig(adminConfigText(options.size ?? 1, leaderAddress))
    yield* SubscriptionRef.set(config, yield* load)

    const prepared = options.beforeLead?.(sim, store)
    if (prepared !== undefined) yield* prepared
    if (options.lead !== false) {
      yield* leading.lead
      // Wait until the term is published (the endpoint then answers as the leader).
      for (let i = 0; i < 200 && Option.isNone(yield* replica.currentTerm); i++) yield* Effect.sleep("20 millis")
    }

    /** A standby replica of the same shard on the same store; its lease names replica-1 as the leader. */
    const standby = Effect.gen(function* () {
      const standbyConfig = yield* SubscriptionRef.make(yield* load)
      const standbyLease = yield* leaseDouble("replica-2", Effect.sync(leaderInfo))
      const standbyReplica = yield* buildReplica({ id: "replica-2", config: standbyConfig, source, store, lease: standbyLease.lease, leader: false }).pipe(quiet)
      return yield* serve(standbyReplica, store, source, clusterPki)
    })

    const credentials = credentialsFor(clusterPki)
    /** The CA as `nstance-admin --ca-file` / `NSTANCE_CA_FILE` reads it. */
    const caFile = yield* writeCaFile(clusterPki.caPem)
    const client = (address = leaderAddress, token = TOKEN) => Effect.map(connectAdmin(address, { token, caPem: clusterPki.caPem }), (c) => c.rpc)

    const waitUntil = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeout: Duration.DurationInput = "8 seconds") =>
      Effect.gen(function* () {
        const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
        while (!(yield* check)) {
          if (Date.now() > deadline) return yield* Effect.dieMessage(`${what}: not reached within ${Duration.format(Duration.decode(timeout))}`)
          yield* Effect.sleep("50 millis")
        }
      })

    /** Ends the leader's term (as losing the lease would). */
    const depose = leading.depose

    /** What `nstance-admin` needs to reach this world: the token and the CA file (and no address from the environment). */
    const adminEnv = { NSTANCE_ADMIN_TOKEN: Redacted.value(TOKEN), NSTANCE_CA_FILE: caFile, NSTANCE_ADMIN_ADDR: undefined }
    /** `nstance-admin args…` in-process with `adminEnv`, and `env` over it. */
    const admin = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) =>
      Effect.promise(() => runCommand(adminCommand, "nstance-admin", args, { env: { ...adminEnv, ...env } }))

    return { store, sim, config, replica, leader, standby, client, pki: clusterPki, encryptionKey, credentials, caFile, adminEnv, admin, waitUntil, putConfig, source, quiet, depose }
  })

export const nonTemplateVms = (sim: RunningSimulator) => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")
