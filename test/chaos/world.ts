/**
 * One seeded chaos run: a world built from the seed — the in-process PVE simulator in virtual time (`VirtualClock`), a memory
 * object store, 1–3 replicas each running the real lease and the real leader scope, two groups whose sizes
 * change — and a schedule of faults drawn from the same seed: replicas crashed (also right before or after a
 * log write, i.e. mid-saga) and restarted with the same or another id, PVE 5xx, lock timeouts, slow and
 * failing tasks, VMIDs taken behind our back, nodes offline, the API away, store errors, ambiguous store
 * writes (applied, answered as failure), store latency and partitions, lease expiry by clock jumps, VMs
 * stopped or deleted behind our back, the ISO storage full. Then the faults stop and the world must
 * converge within a bound of virtual time. Faults come in through wrappers (a `ProxmoxApi` and an
 * `ObjectStore` per replica, which also record the history) and the simulator's fault controller.
 * Some seeds from 3000 on run two shards in one process (`isTwoShardSeed`): each with its own config, groups,
 * replicas, leases and log under its own prefix of the one bucket, both on the one simulated cluster. Some
 * from 4000 on run with agent registration on (`isRegistrationSeed`): simulated guests register through
 * the replicas' agent handlers in memory, and the nonce rules are judged too.
 */
import { RpcClientError, RpcTest } from "@effect/rpc"
import { shardPrefix } from "../../src/domain/bucketKeys.js"
import {
  Clock,
  Context,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Logger,
  LogLevel,
  Option,
  Random,
  Redacted,
  Schema,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import type { AgentConnector, AgentRpcClient } from "../../src/agent/AgentClient.js"
import { nonceHash } from "../../src/domain/agent/nonce.js"
import { ShardEvent } from "../../src/domain/shard/events.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { AgentRpcs } from "../../src/rpc/AgentRpc.js"
import { AgentHandlersLive } from "../../src/rpc/AgentServer.js"
import { AgentBackend } from "../../src/services/AgentBackend.js"
import { ClusterPki, type ClusterPkiShape } from "../../src/services/ClusterPki.js"
import { makeAgentBackendReplica } from "../../src/shard/AgentBackendShard.js"
import { makeShardReplica } from "../../src/shard/ShardReplica.js"
import { makeSimAgents, type SimAgents } from "../../src/sim/agent.js"
import type { GuestBoot } from "../../src/sim/guest.js"
import { emptyState, type State } from "../../src/domain/shard/state.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import { ObjectStore, type ObjectStoreShape, StoreUnavailable } from "../../src/services/ObjectStore.js"
import { ProxmoxApi, type ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { leaderScope } from "../../src/shard/LeaderScope.js"
import { LatencyDemo, LatencyRealistic, type LatencyModel } from "../../src/sim/latency.js"
import { makePrng, type Prng } from "../../src/sim/prng.js"
import { makeProxmoxApiSim, SimHandle } from "../../src/sim/ProxmoxApiSim.js"
import { CLUSTER, configText, type GroupSizes, parseConfig, SHARD, SHARD_B, type WorldConfig } from "./config.js"
import { History, type PveTarget, shardView, type StoreWrite, type Who } from "./history.js"
import { microtaskScheduler, VirtualClock } from "./virtualClock.js"
import { type AcceptedRegistration, checkHistory, crossShardViolations, endStateProblems, nonceViolations, type Violation } from "./checker.js"

/**
 * A deliberately broken product, to show the checker fails (`NSTANCE_CHAOS_BREAK`): compensation that
 * skips the ISO delete, or (registration worlds) a leader that logs each nonce it mints.
 */
export type BreakMode = "none" | "skip-iso-delete" | "log-nonce"

export interface RunOptions {
  readonly seed: number
  readonly breakMode?: BreakMode
  /** Print the world's plan and every fault as it happens. */
  readonly verbose?: boolean
  /** Virtual time the world has to converge once the faults stop (default 25 minutes). */
  readonly convergeBoundMs?: number
}

export interface RunResult {
  readonly seed: number
  readonly violations: ReadonlyArray<Violation>
  readonly history: History
  /** Virtual milliseconds until converged (undefined: not within the bound). */
  readonly convergedAfterMs: number | undefined
  readonly summary: string
}

/**
 * Seeds from 3000 on: one in five runs two shards in one process against the same PVE cluster and bucket.
 * Drawn from a PRNG stream of its own, so the worlds of every other seed keep their draws.
 */
export const isTwoShardSeed = (seed: number): boolean => seed >= 3000 && makePrng(seed * 53 + 11).int(1, 5) === 1

/**
 * Seeds from 4000 on: one in three one-shard worlds runs with agent registration on — a cluster PKI in the
 * bucket, nonces in the user-data, simulated guests registering through each replica's agent handlers in
 * memory — and is judged by the nonce rules too. A stream of its own, like the shard count.
 */
export const isRegistrationSeed = (seed: number): boolean => seed >= 4000 && !isTwoShardSeed(seed) && makePrng(seed * 67 + 19).int(1, 3) === 1

/** The first `count` registration seeds from `from` on. */
export const registrationSeeds = (from: number, count: number): Array<number> => {
  const out: Array<number> = []
  for (let seed = Math.max(from, 4000); out.length < count; seed++) if (isRegistrationSeed(seed)) out.push(seed)
  return out
}

/** The first `count` two-shard seeds from `from` on. */
export const twoShardSeeds = (from: number, count: number): Array<number> => {
  const out: Array<number> = []
  for (let seed = Math.max(from, 3000); out.length < count; seed++) if (isTwoShardSeed(seed)) out.push(seed)
  return out
}

const MUTATIONS = new Set(["clone", "updateConfig", "resize", "start", "stop", "shutdown", "deleteVm", "upload", "deleteVolume"])

const LatencyJittery: LatencyModel = { name: "jittery", timeScale: 1, requestMs: [5, 400], jitter: 0.6 }

const EPOCH = Date.parse("2026-03-01T00:00:00Z")

const pick = <A>(prng: Prng, items: ReadonlyArray<A>): A => items[prng.int(0, items.length - 1)]!

/** Call arguments as one short line for the history (no upload bytes, no long notes). */
const formatArgs = (args: ReadonlyArray<unknown>): string =>
  args.map((a) => {
    if (a instanceof Uint8Array) return `<${a.byteLength} B>`
    if (typeof a === "object" && a !== null) {
      return JSON.stringify(a, (k, v: unknown) => (v instanceof Uint8Array ? `<${v.byteLength} B>` : k === "description" ? "…" : v))
    }
    return String(a)
  }).join(",").slice(0, 200)

const SegmentBody = Schema.parseJson(Schema.Struct({ seq: Schema.Number, events: Schema.Array(Schema.encodedSchema(ShardEvent)) }))
const decodeSegmentBody = Schema.decodeUnknownEither(SegmentBody)
const textDecoder = new TextDecoder()

interface StoreFaults {
  errorRate: number
  ambiguousRate: number
  latencyMs: number
  /** Incarnations whose store calls hang until healed, then time out. */
  readonly partitioned: Set<Who>
}

interface CrashTrigger {
  readonly who: Who
  remaining: number
  readonly mode: "before" | "after"
}

/** One shard of the world: its config, its key space in the shared bucket, its replicas' slots. */
interface ShardWorld {
  readonly id: string
  /** The bucket as this shard sees it: the bucket itself in a one-shard world, else scoped to `shard/{id}/`. */
  readonly store: ObjectStoreShape
  readonly config: SubscriptionRef.SubscriptionRef<ReturnType<typeof parseConfig>>
  world: WorldConfig
  finalSizes: GroupSizes
  /** Its replicas' slots in the world's replica array. */
  readonly slots: ReadonlyArray<number>
}

interface Replica {
  readonly slot: number
  readonly id: string
  readonly who: Who
  readonly scope: Scope.CloseableScope
  /** Offsets of this incarnation's clock (lease only): wall and monotonic, in ms. */
  readonly skew: { wall: number; mono: number }
  leaderTerm: number | undefined
  /** This incarnation's agent handlers, reached in memory (registration worlds). */
  endpoint?: AgentRpcClient | undefined
}

/**
 * The PKI's signing and verifying run on WebCrypto, whose promises settle in wall-clock time: one at a time,
 * in the order the fibers ask, with virtual time held until each is done — so a seed replays exactly.
 */
const gatePki = (pki: ClusterPkiShape, clock: VirtualClock, one: Effect.Semaphore, onMint: (jwt: string) => Effect.Effect<void>): ClusterPkiShape => {
  const gate = <A, E>(effect: Effect.Effect<A, E>) => one.withPermits(1)(clock.holding(effect))
  return {
    ...pki,
    issueClientCertificate: (request) => gate(pki.issueClientCertificate(request)),
    verifyClientCertificate: (pem) => gate(pki.verifyClientCertificate(pem)),
    mintNonce: (request) => gate(pki.mintNonce(request)).pipe(Effect.tap((minted) => onMint(Redacted.value(minted.jwt)))),
    verifyNonce: (jwt, audience) => gate(pki.verifyNonce(jwt, audience))
  }
}

/** A clock that is the test clock shifted by `skew` (read on every call, so jumps take effect at once). */
const skewedClock = (base: Clock.Clock, skew: { wall: number; mono: number }): Clock.Clock => ({
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis() + skew.wall,
  currentTimeMillis: Effect.map(base.currentTimeMillis, (ms) => ms + skew.wall),
  unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos() + BigInt(Math.round(skew.mono * 1e6)),
  currentTimeNanos: Effect.map(base.currentTimeNanos, (ns) => ns + BigInt(Math.round(skew.mono * 1e6))),
  sleep: (d) => base.sleep(d)
})

export const runWorld = (options: RunOptions): Effect.Effect<RunResult> => {
  // A realistic epoch: wall-clock jumps backwards must not reach Go's zero time (a released lease).
  const clock = new VirtualClock(EPOCH)
  return Effect.scoped(Effect.gen(function* () {
    const { seed } = options
    const breakMode = options.breakMode ?? "none"
    const prng = makePrng(seed * 31 + 7)
    const worldScope = yield* Effect.scope
    const testClock = clock
    const history = new History(() => testClock.unsafeCurrentTimeMillis() - EPOCH)
    const say = (text: string) => {
      history.line(text)
      if (options.verbose === true) globalThis.console.log(`${((testClock.unsafeCurrentTimeMillis() - EPOCH) / 1000).toFixed(1)}s ${text}`)
    }

    // ---- the world's shape, from the seed ----
    // Seeds from 1000 on are storms: bigger groups, more faults. (Same draws as below, so seeds under 1000 keep their worlds.)
    const storm = seed >= 1000
    const twoShards = isTwoShardSeed(seed)
    // Every draw for the second shard comes from a stream of its own (see isTwoShardSeed).
    const shardPrng = makePrng(seed * 59 + 5)
    const replicaCount = prng.int(1, 3)
    const latency = pick(prng, [LatencyRealistic, LatencyRealistic, LatencyDemo, LatencyJittery])
    const nodes = prng.int(2, 4)
    const sizeOf = () => (storm ? { web: prng.int(0, 6), api: prng.int(0, 4) } : { web: prng.int(0, 3), api: prng.int(0, 2) })
    const world: WorldConfig = {
      sizes: sizeOf(),
      gcInterval: pick(prng, ["5s", "10s", "30s"]),
      createRateLimit: pick(prng, ["", "", "1s"]),
      diskGiB: pick(prng, [2, 4])
    }
    const snapshotEvery = pick(prng, [15, 40, 1000])
    const chaosMs = prng.int(90, 300) * 1000
    const boundMs = options.convergeBoundMs ?? 25 * 60_000
    const worldB: WorldConfig | undefined = twoShards
      ? {
        sizes: storm ? { web: shardPrng.int(0, 6), api: shardPrng.int(0, 4) } : { web: shardPrng.int(0, 3), api: shardPrng.int(0, 2) },
        gcInterval: pick(shardPrng, ["5s", "10s", "30s"]),
        createRateLimit: pick(shardPrng, ["", "", "1s"]),
        diskGiB: pick(shardPrng, [2, 4])
      }
      : undefined
    const replicaCountB = twoShards ? shardPrng.int(1, 3) : 0
    const totalReplicas = replicaCount + replicaCountB
    if (worldB !== undefined) {
      say(`two shards: ${SHARD} (${replicaCount} replica(s)) and ${SHARD_B} (${replicaCountB} replica(s), sizes web=${worldB.sizes.web} api=${worldB.sizes.api}, gc ${worldB.gcInterval}) on one PVE cluster and one bucket`)
    }
    say(`world: seed ${seed}${storm ? " (storm)" : ""}, ${replicaCount} replica(s), ${nodes} nodes, latency ${latency.name}, sizes web=${world.sizes.web} api=${world.sizes.api}, gc ${world.gcInterval}, snapshot every ${snapshotEvery}, chaos ${chaosMs / 1000}s${breakMode === "none" ? "" : `, BROKEN BUILD: ${breakMode}`}`)

    // ---- agent registration (registration worlds): guests reach a live replica's handlers in memory ----
    const registrationOn = isRegistrationSeed(seed)
    const regPrng = makePrng(seed * 71 + 23)
    const endpointDown = (url: string) => new RpcClientError.RpcClientError({ reason: "Protocol", message: `${url}: no replica answers (simulated)` })
    /** The registration address is a VIP: each call reaches one live replica, leader or not. */
    const viaVip = (url: string) => <A, E>(call: (endpoint: AgentRpcClient) => Effect.Effect<A, E>): Effect.Effect<A, E | RpcClientError.RpcClientError> =>
      Effect.suspend((): Effect.Effect<A, E | RpcClientError.RpcClientError> => {
        const live = replicas.filter((r): r is Replica & { endpoint: AgentRpcClient } => r?.endpoint !== undefined)
        return live.length === 0 ? Effect.fail(endpointDown(url)) : call(live[regPrng.int(0, live.length - 1)]!.endpoint)
      })
    /** Every raw nonce minted, and where one turned up (an event, a log line, a store object). */
    const minted: Array<string> = []
    const leaks: Array<Violation> = []
    const leakCheck = (text: string, where: string) => {
      for (const jwt of minted) {
        if (text.includes(jwt)) leaks.push({ rule: "nonce-leak", at: history.index, message: `a raw nonce in ${where}` })
      }
    }
    /** Successful registrations as the agents saw them: instance, hash of the nonce used, history index. */
    const accepted: Array<AcceptedRegistration> = []
    const connector: AgentConnector = (url) => {
      const via = viaVip(url)
      const client: AgentRpcClient = {
        RegisterAgent: (payload, opts) =>
          via((e) => e.RegisterAgent(payload, opts)).pipe(Effect.tap((result) => Effect.sync(() => {
            if (result === undefined) return
            const i = history.line(`agent ${result.instanceId} registered`)
            accepted.push({ instanceId: result.instanceId, nonceHash: nonceHash(payload.nonce), i })
          }))),
        ReportHealth: (payload, opts) => via((e) => e.ReportHealth(payload, opts)),
        RenewCertificate: (payload, opts) => via((e) => e.RenewCertificate(payload, opts))
      }
      return Effect.succeed(client)
    }
    // Made in the run's body (below), so that the agents' fibers log through the product logger.
    let agents: SimAgents | undefined

    const simContext = yield* makeProxmoxApiSim({
      nodes,
      seed,
      latency,
      retry: { baseDelay: "200 millis", maxDelay: "2 seconds" },
      ...(registrationOn ? { guestHook: (boot: GuestBoot) => agents?.hook(boot) } : {})
    })
    const simPve = Context.get(simContext, ProxmoxApi)
    const { model, faults } = Context.get(simContext, SimHandle)
    const base = makeMemoryStore()
    const onMint = (jwt: string) =>
      Effect.suspend(() => {
        minted.push(jwt)
        return breakMode === "log-nonce" ? Effect.logInfo(`minted nonce ${jwt}`) : Effect.void
      })
    const encryptionKey = Uint8Array.from({ length: 32 }, () => regPrng.int(0, 255))
    const pki: ClusterPkiShape | undefined = registrationOn
      ? gatePki(
        yield* makeClusterPki(base, { clusterId: CLUSTER, encryptionKey }).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.None)),
        clock,
        yield* Effect.makeSemaphore(1),
        onMint
      )
      : undefined
    if (registrationOn) say("agent registration on: cluster PKI in the bucket, guests register in memory")
    const shardA: ShardWorld = {
      id: SHARD,
      store: twoShards ? scopeStore(base, shardPrefix(SHARD)) : base,
      config: yield* SubscriptionRef.make(parseConfig(configText(world))),
      world,
      finalSizes: world.sizes,
      slots: Array.from({ length: replicaCount }, (_, k) => k)
    }
    const shards: Array<ShardWorld> = [shardA]
    if (worldB !== undefined) {
      shards.push({
        id: SHARD_B,
        store: scopeStore(base, shardPrefix(SHARD_B)),
        config: yield* SubscriptionRef.make(parseConfig(configText(worldB, SHARD_B))),
        world: worldB,
        finalSizes: worldB.sizes,
        slots: Array.from({ length: replicaCountB }, (_, k) => replicaCount + k)
      })
    }
    const shardOfSlot = (slot: number): ShardWorld => shards.find((s) => s.slots.includes(slot))!
    const storeFaults: StoreFaults = { errorRate: 0, ambiguousRate: 0, latencyMs: 0, partitioned: new Set() }
    let crashTrigger: CrashTrigger | undefined
    const replicas: Array<Replica | undefined> = Array.from({ length: totalReplicas }, () => undefined)
    let incarnations = 0
    let generation = 0
    let chaosOn = true
    /** Replica scopes still closing (their finalizers may wait for virtual time). */
    let closing = 0

    // ---- sampling the simulated cluster: never two VMs with one name ----
    const sampleModel = () => {
      const seen = new Map<string, number>()
      for (const vm of model.vms.values()) {
        if (vm.config.get("template") === "1") continue
        const name = vm.config.get("name")
        if (name === undefined) continue
        const other = seen.get(name)
        if (other !== undefined) {
          const problem = `two VMs named ${name}: ${other} and ${vm.vmid}`
          if (!history.samples.some((s) => s.problem === problem)) history.sample(problem)
        } else seen.set(name, vm.vmid)
      }
    }

    // ---- the recording, fault-injecting wrappers ----
    /** What a mutation acts on, read from the simulated cluster as the call starts (for the cross-shard rules). */
    const targetOf = (op: string, args: ReadonlyArray<unknown>): PveTarget | undefined => {
      if (!twoShards || !MUTATIONS.has(op)) return undefined
      if (op === "deleteVolume" || op === "upload") {
        const arg = args[2]
        const file = op === "upload" && typeof arg === "object" && arg !== null && "filename" in arg ? arg.filename : arg
        const m = typeof file === "string" ? /nstance-([a-z0-9]+)\.iso$/.exec(file) : null
        return m === null ? undefined : { instance: m[1] }
      }
      if (op === "clone") return undefined
      const vmid = args[1]
      const vm = typeof vmid === "number" ? model.vms.get(vmid) : undefined
      return vm === undefined ? undefined : { vmid: vm.vmid, tags: vm.config.get("tags"), instance: vm.config.get("name") }
    }

    const wrapPve = (who: Who, term: number): ProxmoxApiShape => {
      const tap = <Args extends ReadonlyArray<unknown>, A, E>(op: string, f: (...args: Args) => Effect.Effect<A, E>, nameOf?: (...args: Args) => string | undefined) =>
        (...args: Args): Effect.Effect<A, E> =>
          Effect.suspend(() => {
            const mutation = MUTATIONS.has(op)
            const name = nameOf?.(...args)
            history.pveStart(who, term, op, mutation ? formatArgs(args) : "", mutation, name, targetOf(op, args))
            return f(...args).pipe(Effect.ensuring(Effect.sync(sampleModel)))
          })
      const p = simPve
      return {
        version: tap("version", p.version),
        permissions: tap("permissions", p.permissions),
        nodeResources: tap("nodeResources", p.nodeResources),
        vmResources: tap("vmResources", p.vmResources),
        clusterStatus: tap("clusterStatus", p.clusterStatus),
        nextId: tap("nextId", p.nextId),
        nodeStatus: tap("nodeStatus", p.nodeStatus),
        listQemu: tap("listQemu", p.listQemu),
        vmConfig: tap("vmConfig", p.vmConfig),
        vmStatus: tap("vmStatus", p.vmStatus),
        clone: tap("clone", p.clone, (_node, _vmid, o) => o.name),
        updateConfig: tap("updateConfig", p.updateConfig),
        resize: tap("resize", p.resize),
        start: tap("start", p.start),
        stop: tap("stop", p.stop),
        shutdown: tap("shutdown", p.shutdown),
        deleteVm: tap("deleteVm", p.deleteVm),
        listStorage: tap("listStorage", p.listStorage),
        listStorageContent: tap("listStorageContent", p.listStorageContent),
        volumeAttributes: tap("volumeAttributes", p.volumeAttributes),
        upload: tap("upload", p.upload),
        deleteVolume: breakMode === "skip-iso-delete"
          ? tap("deleteVolume(skipped)", (_node: string, _storage: string, _volid: string) => Effect.succeed(Option.none()))
          : tap("deleteVolume", p.deleteVolume),
        taskStatus: tap("taskStatus", p.taskStatus),
        waitTask: tap("waitTask", p.waitTask)
      }
    }

    const crash = (slot: number, reason: string) =>
      Effect.gen(function* () {
        const r = replicas[slot]
        if (r === undefined) return
        replicas[slot] = undefined
        history.mark(r.who, "crash", r.leaderTerm, reason)
        if (options.verbose === true) globalThis.console.log(`${((testClock.unsafeCurrentTimeMillis() - EPOCH) / 1000).toFixed(1)}s crash ${r.who}: ${reason}`)
        // Closed on a fiber of its own: a finalizer waiting for (virtual) time must not hold up the caller,
        // which may be the very fiber that moves time on.
        closing++
        yield* Effect.forkIn(Scope.close(r.scope, Exit.void).pipe(Effect.ensuring(Effect.sync(() => closing--))), worldScope)
      })

    /** Crashes from inside the dying replica's own fiber: the close runs on a fiber of the world. */
    const crashFromWithin = (who: Who, reason: string) =>
      Effect.suspend(() => {
        const slot = replicas.findIndex((r) => r?.who === who)
        return slot < 0 ? Effect.void : Effect.asVoid(Effect.forkIn(crash(slot, reason), worldScope))
      })

    const wrapStore = (who: Who, term: number | undefined, base: ObjectStoreShape): ObjectStoreShape => {
      const gate = <A, E>(operation: string, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | StoreUnavailable> =>
        Effect.gen(function* () {
          if (storeFaults.latencyMs > 0) yield* Effect.sleep(Duration.millis(prng.int(0, storeFaults.latencyMs)))
          if (storeFaults.partitioned.has(who)) {
            while (storeFaults.partitioned.has(who)) yield* Effect.sleep("1 second")
            return yield* new StoreUnavailable({ operation, key, reason: "timed out (partitioned)" })
          }
          if (storeFaults.errorRate > 0 && prng.next() < storeFaults.errorRate) {
            return yield* new StoreUnavailable({ operation, key, reason: "503 Slow Down (injected)" })
          }
          return yield* effect
        })
      return {
        get: (key) => gate("get", key, base.get(key)),
        head: (key) => gate("head", key, base.head(key)),
        list: (prefix, startAfter) =>
          Stream.unwrap(gate("list", prefix, Effect.succeed(base.list(prefix, startAfter)))),
        delete: (key) =>
          Effect.suspend(() => {
            const w = history.write({ who, term, op: "delete", key })
            return gate("delete", key, base.delete(key)).pipe(
              Effect.tapBoth({ onFailure: () => Effect.sync(() => history.settle(w, "failed")), onSuccess: () => Effect.sync(() => history.settle(w, "applied")) })
            )
          }),
        put: (key, body, pre) =>
          Effect.suspend(() => {
            let seq: number | undefined
            let events: StoreWrite["events"]
            if (minted.length > 0) leakCheck(textDecoder.decode(body), `store object ${key}`)
            if (key.startsWith("log/")) {
              const decoded = decodeSegmentBody(textDecoder.decode(body))
              if (Either.isRight(decoded)) {
                seq = decoded.right.seq
                events = decoded.right.events
              }
            }
            const w = history.write({ who, term, op: "put", key, seq, events })
            const trigger = crashTrigger
            if (key.startsWith("log/") && term !== undefined && trigger !== undefined && trigger.who === who && --trigger.remaining <= 0) {
              crashTrigger = undefined
              if (trigger.mode === "before") {
                history.settle(w, "hung")
                return crashFromWithin(who, `crash before log write ${key}`).pipe(Effect.zipRight(Effect.never))
              }
              return base.put(key, body, pre).pipe(
                Effect.tap(() => Effect.sync(() => history.settle(w, "applied"))),
                Effect.zipRight(crashFromWithin(who, `crash after log write ${key}`)),
                Effect.zipRight(Effect.never)
              )
            }
            return gate("put", key, base.put(key, body, pre)).pipe(
              Effect.flatMap((result) => {
                if (chaosOn && storeFaults.ambiguousRate > 0 && prng.next() < storeFaults.ambiguousRate) {
                  history.settle(w, "ambiguous")
                  return Effect.fail(new StoreUnavailable({ operation: "put", key, reason: "500 InternalError (injected; the write was applied)" }))
                }
                history.settle(w, "applied")
                return Effect.succeed(result)
              }),
              Effect.tapError((error) => Effect.sync(() => {
                if (w.outcome === undefined) history.settle(w, error._tag === "PreconditionFailed" ? "rejected" : "failed")
              }))
            )
          })
      }
    }

    // ---- replicas: the real lease and the real leader scope ----
    const productLogger = Logger.make(({ annotations, logLevel, message }) => {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      let who = ""
      for (const [k, v] of annotations) if (k === "who") who = String(v)
      history.product(`${logLevel.label} ${who} ${text}`)
      if (minted.length > 0) leakCheck(text, "a product log line")
    })

    const startReplica = (slot: number, id: string, graceful: boolean) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const shard = shardOfSlot(slot)
        const who = `${twoShards ? `${shard.id}/` : ""}${id}#${++incarnations}`
        if (twoShards) history.shardOf.set(who, shard.id)
        const skew = { wall: 0, mono: 0 }
        const replica: Replica = { slot, id, who, scope, skew, leaderTerm: undefined }
        replicas[slot] = replica
        history.mark(who, "start", undefined, graceful ? "resigns on stop" : "dies without resigning")
        const lease = yield* makeLeaderLeaseOn(wrapStore(who, undefined, shard.store), {
          id,
          address: `${id}.chaos:8991`,
          frequentInterval: "5 seconds",
          leaderTimeout: "15 seconds",
          resignOnClose: graceful
        }).pipe(Effect.withClock(skewedClock(testClock, skew)), Scope.extend(scope), Effect.orDie)
        yield* lease.isLeader.changes.pipe(
          Stream.changes,
          Stream.runForEach((leading) =>
            Effect.sync(() => {
              if (!leading && replica.leaderTerm !== undefined) history.mark(who, "leaseLost", replica.leaderTerm)
            })
          ),
          Effect.forkIn(scope)
        )
        // Registration worlds: the replica's handle and its agent handlers, as runDaemon serves them over HTTP.
        const handle = pki === undefined
          ? undefined
          : yield* makeShardReplica({ clusterId: CLUSTER, shard: shard.id, replica: id, advertiseHost: `${id}.chaos`, config: shard.config, lease })
        if (handle !== undefined && pki !== undefined) {
          const handlers = AgentHandlersLive({
            cluster: CLUSTER,
            shard: shard.id,
            certificateTtl: Effect.map(SubscriptionRef.get(shard.config), (current) => current.config.certificates.agentTtl)
          }).pipe(Layer.provide(Layer.succeed(ClusterPki, pki)), Layer.provide(Layer.succeed(AgentBackend, makeAgentBackendReplica(handle))))
          replica.endpoint = yield* RpcTest.makeClient(AgentRpcs).pipe(Effect.provide(handlers), Scope.extend(scope))
        }
        const work = (term: number) =>
          Effect.suspend(() => {
            replica.leaderTerm = term
            history.mark(who, "termStart", term)
            return leaderScope({
              clusterId: CLUSTER,
              shard: shard.id,
              replica: id,
              config: shard.config,
              eventLog: { batchWindow: "20 millis", snapshotEvery },
              graces: { orphan: "60 seconds", vmLoss: "20 seconds" },
              ...(handle === undefined || pki === undefined ? {} : { handle, registration: { pki, advertiseHost: `${id}.chaos` } })
            })(term).pipe(
              Effect.provideService(ProxmoxApi, wrapPve(who, term)),
              Effect.provideService(ObjectStore, wrapStore(who, term, shard.store)),
              Effect.onExit((exit) => Effect.sync(() => history.mark(who, "termEnd", term, Exit.isInterrupted(exit) ? "interrupted" : "failed"))),
              Effect.annotateLogs({ who: `${who} t${term}` })
            )
          })
        yield* lease.whileLeader(work).pipe(Scope.extend(scope))
        return replica
      })

    const freshId = (slot: number) => `r${slot}g${++generation}`

    // ---- the fault schedule ----
    const faultScope = yield* Scope.make()
    const leaderSlot = () => {
      // Two shards: the leader of one of them (terms of different shards are not comparable).
      const of = twoShards ? shards[shardPrng.int(0, shards.length - 1)]! : undefined
      const leading = replicas.filter((r): r is Replica => r !== undefined && r.leaderTerm !== undefined && (of === undefined || of.slots.includes(r.slot)))
      const newest = leading.sort((a, b) => (b.leaderTerm ?? 0) - (a.leaderTerm ?? 0))[0]
      return newest?.slot
    }
    const anySlot = () => prng.int(0, totalReplicas - 1)
    const ourVms = () =>
      [...model.vms.values()].filter((vm) => vm.config.get("template") !== "1" && !(vm.config.get("name") ?? "").startsWith("foreign"))
    const foreignCount = { n: 0 }
    /** Behind our back: a PVE client of the operator's, not recorded as ours. */
    const operator = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkIn(Effect.ignore(effect), worldScope)
    const TASK_TYPES = ["qmclone", "qmconfig", "qmstart", "qmstop", "qmshutdown", "qmdestroy", "imgcopy", "resize"] as const
    const HTTP_PATHS = [
      "/nodes/*/qemu/*/clone", "/nodes/*/qemu/*/config", "/nodes/*/qemu/*/status/*", "/nodes/*/qemu/*",
      "/nodes/*/storage/*/upload", "/nodes/*/storage/*/content/**", "/cluster/resources", "/nodes/*/tasks/*/status", "/nodes/*/qemu"
    ]

    type Fault = { readonly name: string; readonly run: Effect.Effect<void> }
    const drawFault = (): Fault => {
      const kind = pick(prng, [
        "crash", "crash", "crashAtWrite", "crashAtWrite", "pve5xx", "pve5xx", "lockTimeout", "slowTasks", "failTasks", "failTasks",
        "vmidRace", "nodeOffline", "apiAway", "storeErrors", "ambiguous", "ambiguous", "storeLatency", "partition", "clockJump",
        "wallJump", "killVm", "deleteVm", "isoFull", "configPush", "configPush"
      ])
      switch (kind) {
        case "crash": {
          const target = prng.next() < 0.6 ? "leader" : "any"
          const delayMs = prng.int(0, 40) * 1000
          const sameId = prng.next() < 0.5
          const graceful = prng.next() < 0.3
          return {
            name: `crash ${target}, restart after ${delayMs / 1000}s with ${sameId ? "the same" : "a new"} id`,
            run: Effect.gen(function* () {
              const slot = target === "leader" ? leaderSlot() ?? anySlot() : anySlot()
              const r = replicas[slot]
              if (r === undefined) return
              yield* crash(slot, "crash")
              yield* Effect.sleep(Duration.millis(delayMs)).pipe(
                Effect.zipRight(Effect.suspend(() => replicas[slot] === undefined ? startReplica(slot, sameId ? r.id : freshId(slot), graceful) : Effect.void)),
                Effect.forkIn(faultScope)
              )
            })
          }
        }
        case "crashAtWrite": {
          const k = prng.int(1, 12)
          const mode = prng.next() < 0.5 ? "before" as const : "after" as const
          const delayMs = prng.int(0, 30) * 1000
          const sameId = prng.next() < 0.5
          return {
            name: `crash the leader ${mode} its ${k}th next log write, restart after ${delayMs / 1000}s`,
            run: Effect.gen(function* () {
              const slot = leaderSlot()
              if (slot === undefined) return
              const r = replicas[slot]!
              crashTrigger = { who: r.who, remaining: k, mode }
              // The restart waits for the crash (or gives up when the trigger never fires).
              yield* Effect.gen(function* () {
                for (let i = 0; i < 600 && replicas[slot]?.who === r.who; i++) yield* Effect.sleep("1 second")
                if (replicas[slot] !== undefined) return
                yield* Effect.sleep(Duration.millis(delayMs))
                if (replicas[slot] === undefined) yield* startReplica(slot, sameId ? r.id : freshId(slot), prng.next() < 0.3)
              }).pipe(Effect.forkIn(faultScope))
            })
          }
        }
        case "pve5xx": {
          const path = pick(prng, HTTP_PATHS)
          const status = pick(prng, [500, 500, 503, 596])
          const probability = pick(prng, [0.1, 0.3, 0.6, 1])
          const times = prng.int(1, 12)
          return { name: `PVE ${status} on ${path} p=${probability} ×${times}`, run: Effect.sync(() => void faults.http({ path, status, probability, times })) }
        }
        case "lockTimeout": {
          const path = pick(prng, ["/nodes/*/qemu/*/config", "/nodes/*/qemu/*/status/start", "/nodes/*/qemu/*", "/nodes/*/qemu/*/resize"])
          const times = prng.int(1, 3)
          return { name: `lock timeouts on ${path} ×${times}`, run: Effect.sync(() => void faults.lockTimeout({ path, probability: 0.5, times })) }
        }
        case "slowTasks": {
          const type = pick(prng, TASK_TYPES)
          const factor = prng.int(2, 30)
          const times = prng.int(1, 4)
          return { name: `slow ${type} ×${factor} (${times} tasks)`, run: Effect.sync(() => void faults.slowTasks({ type, factor, times })) }
        }
        case "failTasks": {
          const type = pick(prng, TASK_TYPES)
          const times = prng.int(1, 3)
          return { name: `failing ${type} tasks ×${times}`, run: Effect.sync(() => void faults.failTasks({ type, times })) }
        }
        case "isoFull": {
          const times = prng.int(1, 6)
          return {
            name: `ISO storage full ×${times}`,
            run: Effect.sync(() => {
              faults.failTasks({ type: "imgcopy", times, message: "write failed: No space left on device" })
            })
          }
        }
        case "vmidRace": {
          const ahead = prng.int(1, 3)
          return {
            name: `a VMID taken behind our back (+${ahead} above the highest)`,
            run: Effect.suspend(() => {
              const highest = Math.max(99, ...[...model.vms.keys()].filter((v) => v < 9000))
              const newid = highest + ahead
              const node = [...model.nodes.keys()][0]!
              const name = `foreign-${++foreignCount.n}`
              say(`fault: operator clones ${name} as VMID ${newid}`)
              return operator(simPve.clone(node, 9000, { newid, name, full: true, storage: "local-lvm" }).pipe(Effect.flatMap((upid) => simPve.waitTask(node, upid))))
            }).pipe(Effect.asVoid)
          }
        }
        case "nodeOffline": {
          const node = `pve${prng.int(1, nodes)}`
          const forMs = prng.int(10, 90) * 1000
          return {
            name: `${node} offline for ${forMs / 1000}s`,
            run: Effect.gen(function* () {
              faults.nodeOffline(node)
              yield* Effect.sleep(Duration.millis(forMs)).pipe(Effect.zipRight(Effect.sync(() => faults.nodeOnline(node))), Effect.forkIn(faultScope))
            })
          }
        }
        case "apiAway": {
          const forMs = prng.int(5, 40) * 1000
          const mode = pick(prng, ["reset", 503, 596] as const)
          return { name: `PVE API away (${mode}) for ${forMs / 1000}s`, run: Effect.sync(() => faults.apiUnavailable({ forMs, mode })) }
        }
        case "storeErrors":
        case "ambiguous":
        case "storeLatency": {
          const forMs = prng.int(5, 60) * 1000
          const level = kind === "storeLatency" ? prng.int(100, 3000) : pick(prng, [0.05, 0.2, 0.5])
          return {
            name: `store ${kind} ${level} for ${forMs / 1000}s`,
            run: Effect.gen(function* () {
              if (kind === "storeErrors") storeFaults.errorRate = level
              else if (kind === "ambiguous") storeFaults.ambiguousRate = level
              else storeFaults.latencyMs = level
              yield* Effect.sleep(Duration.millis(forMs)).pipe(
                Effect.zipRight(Effect.sync(() => {
                  if (kind === "storeErrors") storeFaults.errorRate = 0
                  else if (kind === "ambiguous") storeFaults.ambiguousRate = 0
                  else storeFaults.latencyMs = 0
                })),
                Effect.forkIn(faultScope)
              )
            })
          }
        }
        case "partition": {
          const forMs = prng.int(10, 60) * 1000
          return {
            name: `the leader cut off from the store for ${forMs / 1000}s (its lease expires)`,
            run: Effect.gen(function* () {
              const slot = leaderSlot()
              if (slot === undefined) return
              const who = replicas[slot]!.who
              storeFaults.partitioned.add(who)
              yield* Effect.sleep(Duration.millis(forMs)).pipe(Effect.zipRight(Effect.sync(() => storeFaults.partitioned.delete(who))), Effect.forkIn(faultScope))
            })
          }
        }
        case "clockJump": {
          const jumpMs = prng.int(5, 60) * 1000
          return {
            name: `the leader's monotonic clock jumps ${jumpMs / 1000}s ahead (its lease expires early)`,
            run: Effect.sync(() => {
              const slot = leaderSlot()
              if (slot !== undefined) replicas[slot]!.skew.mono += jumpMs
            })
          }
        }
        case "wallJump": {
          const jumpMs = pick(prng, [-1, 1]) * prng.int(1, 7200) * 1000
          return {
            name: `a replica's wall clock jumps ${jumpMs / 1000}s`,
            run: Effect.sync(() => {
              const r = replicas[anySlot()]
              if (r !== undefined) r.skew.wall += jumpMs
            })
          }
        }
        case "killVm":
        case "deleteVm": {
          const n = prng.int(0, 1000)
          return {
            name: kind === "killVm" ? "a VM stopped behind our back" : "a VM deleted behind our back",
            run: Effect.suspend(() => {
              const vms = ourVms().filter((vm) => vm.status === "running")
              if (vms.length === 0) return Effect.void
              const vm = vms[n % vms.length]!
              say(`fault: operator ${kind === "killVm" ? "stops" : "deletes"} VM ${vm.vmid} (${vm.config.get("name") ?? "?"})`)
              const stop = simPve.stop(vm.node, vm.vmid).pipe(Effect.flatMap((upid) => simPve.waitTask(vm.node, upid)))
              // As `qm destroy --purge --destroy-unreferenced-disks`: the simulator keeps a cloud-init drive
              // replaced by our ISO as an unreferenced volume, which real PVE frees on replacement.
              const remove = simPve.deleteVm(vm.node, vm.vmid, { purge: true, destroyUnreferencedDisks: true }).pipe(Effect.flatMap((upid) => simPve.waitTask(vm.node, upid)))
              return operator(kind === "killVm" ? stop : Effect.zipRight(stop, remove))
            }).pipe(Effect.asVoid)
          }
        }
        default: {
          const sizes = sizeOf()
          const shard = twoShards ? shards[shardPrng.int(0, shards.length - 1)]! : shardA
          return {
            name: `config push${twoShards ? ` to ${shard.id}` : ""}: web=${sizes.web} api=${sizes.api}`,
            run: Effect.suspend(() => {
              shard.world = { ...shard.world, sizes }
              return SubscriptionRef.set(shard.config, parseConfig(configText(shard.world, shard.id)))
            })
          }
        }
      }
    }

    const faultCount = storm ? prng.int(15, 35) : prng.int(3, 14)
    const plan = Array.from({ length: faultCount }, () => ({ at: prng.int(5, chaosMs / 1000) * 1000, fault: drawFault() })).sort((a, b) => a.at - b.at)
    shardA.finalSizes = sizeOf()
    for (const shard of shards.slice(1)) {
      shard.finalSizes = storm ? { web: shardPrng.int(0, 6), api: shardPrng.int(0, 4) } : { web: shardPrng.int(0, 3), api: shardPrng.int(0, 2) }
    }

    // ---- run ----
    const body = Effect.gen(function* () {
      if (registrationOn) {
        agents = yield* makeSimAgents({ connector, log: (line) => history.product(line) })
        agents.attach(model)
      }
      for (let slot = 0; slot < totalReplicas; slot++) yield* startReplica(slot, `r${slot}`, prng.next() < 0.3)
      for (const { at, fault } of plan) {
        yield* Effect.sleep(Duration.millis(at)).pipe(
          Effect.zipRight(Effect.suspend(() => {
            say(`fault: ${fault.name}`)
            return fault.run
          })),
          Effect.forkIn(faultScope)
        )
      }
      const stepMs = 1000
      for (let t = 0; t < chaosMs; t += stepMs) {
        yield* clock.advance(stepMs)
        sampleModel()
      }
      // Faults stop: every rule removed, nodes back, the store healthy, every replica up, final sizes pushed.
      chaosOn = false
      yield* Scope.close(faultScope, Exit.void)
      faults.reset()
      storeFaults.errorRate = 0
      storeFaults.ambiguousRate = 0
      storeFaults.latencyMs = 0
      storeFaults.partitioned.clear()
      crashTrigger = undefined
      for (let slot = 0; slot < totalReplicas; slot++) if (replicas[slot] === undefined) yield* startReplica(slot, freshId(slot), false)
      for (const shard of shards) {
        shard.world = { ...shard.world, sizes: shard.finalSizes }
        yield* SubscriptionRef.set(shard.config, parseConfig(configText(shard.world, shard.id)))
      }
      const stopAt = testClock.unsafeCurrentTimeMillis()
      say(`faults stop; final sizes ${shards.map((s) => `${twoShards ? `${s.id} ` : ""}web=${s.finalSizes.web} api=${s.finalSizes.api}`).join(", ")}`)
      let convergedAfterMs: number | undefined
      let problems: ReadonlyArray<string> = []
      let calm = 0
      for (let t = 0; t < boundMs; t += stepMs) {
        yield* clock.advance(stepMs)
        sampleModel()
        if ((t / stepMs) % 5 !== 4) continue
        const ends = yield* Effect.forEach(shards, (shard) =>
          replayStore(shard.store).pipe(
            Effect.either,
            Effect.map((replayed) => ({ shard: shard.id, state: Either.getOrUndefined(replayed)?.state ?? emptyState, world: shard.world, registration: registrationOn }))
          ))
        problems = endStateProblems(model, ends)
        if (problems.length === 0) {
          // Once more a few seconds later: at rest, not passing through.
          if (++calm >= 2) {
            convergedAfterMs = testClock.unsafeCurrentTimeMillis() - stopAt
            break
          }
        } else calm = 0
      }
      say(convergedAfterMs === undefined ? `NOT converged within ${boundMs / 60_000} min` : `converged ${Math.round(convergedAfterMs / 1000)}s after the faults stopped`)
      return { convergedAfterMs, problems }
    })

    const { convergedAfterMs, problems } = yield* body.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, productLogger)),
      Logger.withMinimumLogLevel(LogLevel.Info)
    )
    for (let slot = 0; slot < totalReplicas; slot++) yield* crash(slot, "end of run")
    for (let i = 0; i < 600 && closing > 0; i++) yield* clock.advance(1000)

    if (registrationOn) {
      for (const l of history.lines) leakCheck(l.text, `harness line @${l.i}`)
      const keys = yield* Stream.runCollect(base.list("")).pipe(Effect.orDie)
      for (const meta of keys) {
        const object = yield* base.get(meta.key).pipe(Effect.option)
        if (Option.isSome(object)) leakCheck(textDecoder.decode(object.value.body), `store object ${meta.key} at the end`)
      }
    }
    const violations: Array<Violation> = twoShards
      ? [
        ...shards.flatMap((shard) => checkHistory(shardView(history, shard.id)).map((v) => ({ ...v, message: `${shard.id}: ${v.message}` }))),
        ...checkHistory({ pve: [], writes: [], marks: [], samples: history.samples }),
        ...crossShardViolations(shards.map((shard) => ({ shard: shard.id, view: shardView(history, shard.id) })))
      ].sort((a, b) => a.at - b.at)
      : [...checkHistory(history), ...(registrationOn ? [...nonceViolations(history, accepted), ...leaks] : [])].sort((a, b) => a.at - b.at)
    if (convergedAfterMs === undefined) {
      violations.push({ rule: "convergence", at: history.index, message: `not converged within ${boundMs / 60_000} min after the faults stopped: ${problems.slice(0, 8).join("; ")}` })
    }
    const summary = `seed ${seed}: ${twoShards ? `2 shards, ${replicaCount}+${replicaCountB}` : replicaCount} replica(s), ${nodes} nodes, ${latency.name}, ${plan.length} faults, ${incarnations} incarnations, ` +
      `${history.pve.filter((c) => c.mutation).length} PVE mutations, ${history.writes.filter((w) => w.key.startsWith("log/") && w.outcome === "applied").length} log segments, ` +
      `${registrationOn ? `registration on (${minted.length} nonces, ${accepted.length} registrations), ` : ""}` +
      `${convergedAfterMs === undefined ? "NOT converged" : `converged +${Math.round(convergedAfterMs / 1000)}s`}`
    return { seed, violations, history, convergedAfterMs, summary } satisfies RunResult
  })).pipe(Effect.withClock(clock), Effect.withScheduler(microtaskScheduler), Effect.withRandom(Random.make(options.seed)))
}

/** Runs one seed in virtual time; resolves with its result (never rejects on a violation). */
export const runSeed = (options: RunOptions): Promise<RunResult> => Effect.runPromise(runWorld(options))

/** The one command that reproduces a seed. */
export const reproduceCommand = (seed: number, breakMode: BreakMode = "none") =>
  `${breakMode === "none" ? "" : `NSTANCE_CHAOS_BREAK=${breakMode} `}npm run chaos -- --seed ${seed}`

/** A failing seed's report: the violations, the history around the first, the command that reproduces it. */
export const failureReport = (result: RunResult, breakMode: BreakMode = "none"): string => {
  const lines = [`chaos ${result.summary}`, `${result.violations.length} violation(s):`]
  for (const v of result.violations.slice(0, 10)) lines.push(`  [${v.rule}] @${v.at}: ${v.message}`)
  const first = result.violations.find((v) => v.rule !== "convergence") ?? result.violations[0]
  if (first?.rule === "convergence") {
    lines.push("the product's last log lines:")
    lines.push(...result.history.productLog.slice(-40).map((l) => `  ${String(l.i).padStart(6)} ${(l.t / 1000).toFixed(3).padStart(9)}s : ${l.text}`))
  } else if (first !== undefined) {
    lines.push(`history around @${first.at} (| harness, : product log):`)
    lines.push(...result.history.around(first.at).map((l) => `  ${l}`))
  }
  lines.push(`reproduce: ${reproduceCommand(result.seed, breakMode)}`)
  return lines.join("\n")
}
