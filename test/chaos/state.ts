/**
 * The state of one chaos run, which its parts (the wrappers, the replica lifecycle, the faults, the checks)
 * share: the shape its seed drew, the simulated PVE cluster and the bucket, the shards and their replica
 * slots, the faults in force. `makeChaosWorld` builds it, in the order the seed's draws expect.
 */
import { Context, Duration, Effect, type Scope, SubscriptionRef } from "effect"
import type { AgentEndpoints } from "../support/agentMemory.js"
import { shardPrefix } from "../../src/domain/bucketKeys.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { scopeStore } from "../../src/layers/ObjectStoreScoped.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { ProxmoxApi, type ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { makeProxmoxApiSim, SimHandle } from "../../src/sim/ProxmoxApiSim.js"
import { makePrng, type Prng } from "../../src/sim/prng.js"
import type { FaultController, SimModel } from "../../src/sim/server.js"
import type { VirtualClock } from "../support/virtualClock.js"
import { desiredGroups } from "../../src/domain/config/index.js"
import type { ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import { configText, type GroupSizes, parseConfig, SHARD, SHARD_B, type WorldConfig } from "./config.js"
import { EPOCH, History, type Who } from "./history.js"
import { makePauses, type Pauses } from "./pause.js"
import { makeRegistration, type Registration } from "./registration.js"
import { describeRollout, drawShape, type WorldShape } from "./shape.js"

export { BREAK_MODES, type BreakMode, SOURCE_BREAKS } from "./breakModes.js"
import type { BreakMode } from "./breakModes.js"

export { EPOCH } from "./history.js"

export interface StoreFaults {
  errorRate: number
  ambiguousRate: number
  latencyMs: number
  /** Incarnations whose store calls hang until healed, then time out. */
  readonly partitioned: Set<Who>
  /** Incarnations whose store calls time out after `LATE_TIMEOUT_MS` while their writes land when healed. */
  readonly lateLanding: Set<Who>
}

/**
 * A pause armed for the next matching call of a leader (the narrow windows: a clone's start, a delete's first
 * call, a log append, the first calls of a newer term): before the call goes out, or after its effect and
 * before its answer is read.
 */
export interface PauseTrigger {
  readonly ops: ReadonlySet<string>
  readonly mode: "before" | "after"
  readonly forMs: number
  readonly lagMs: number
  /** Only a term at least this new (right after a lease change); 0: any. */
  readonly minTerm: number
}

/** What the landed log segments say about VMIDs and deletes, kept as they land (the wrappers' lies and the VMID rules read it). */
export interface LogFacts {
  /** Instance → the VMID last reserved for it. */
  readonly vmidOf: Map<string, number>
  /** VMID → the instance last reserved at it. */
  readonly ownerOf: Map<number, string>
  /** Instances whose delete is on record. */
  readonly deleting: Set<string>
  /** VMIDs whose dead clone's placeholder the log reports left behind (`CloneAbandoned`). */
  readonly abandoned: Set<number>
  /** Every VMID the log ever reserved for a clone (`CloneRequested`). */
  readonly reserved: Set<number>
  /** Instances gone. */
  readonly gone: Set<string>
  /** The highest term elected so far (LeaderElected landed). */
  term: number
}

export interface CrashTrigger {
  readonly who: Who
  remaining: number
  readonly mode: "before" | "after"
}

/** One shard of the world: its config, its key space in the shared bucket, its replicas' slots. */
export interface ShardWorld {
  readonly id: string
  /** The bucket as this shard sees it: the bucket itself in a one-shard world, else scoped to `shard/{id}/`. */
  readonly store: ObjectStoreShape
  readonly config: SubscriptionRef.SubscriptionRef<ReturnType<typeof parseConfig>>
  world: WorldConfig
  finalSizes: GroupSizes
  /** Its replicas' slots in the world's replica array. */
  readonly slots: ReadonlyArray<number>
}

export interface Replica {
  readonly slot: number
  readonly id: string
  readonly who: Who
  readonly scope: Scope.CloseableScope
  /** Offsets of this incarnation's clock (lease only): wall and monotonic, in ms. */
  readonly skew: { wall: number; mono: number }
  leaderTerm: number | undefined
  /** This incarnation's agent endpoints' handlers, reached in memory (registration worlds). */
  endpoint?: AgentEndpoints | undefined
  /** The replica's handle, once its stack is built: what its admin endpoint serves (the operator's drain acks). */
  handle?: ShardReplicaShape | undefined
}

export interface ChaosWorld {
  readonly shape: WorldShape
  readonly breakMode: BreakMode
  readonly verbose: boolean
  /** Pause leaders at their PVE calls too, not only at log appends (`RunOptions.pvePauses`). */
  readonly pvePauses: boolean
  /** The seed's main PRNG stream: the shape, the fault plan, and every draw while the world runs. */
  readonly prng: Prng
  /** The second shard's stream (see `isTwoShardSeed`). */
  readonly shardPrng: Prng
  readonly clock: VirtualClock
  readonly history: History
  /** A line of the history (printed too, when verbose). */
  readonly say: (text: string) => void
  readonly worldScope: Scope.Scope
  readonly model: SimModel
  readonly faults: FaultController
  /** The simulated cluster's client, unrecorded: the operator's, and what the replicas' wrappers call. */
  readonly simPve: ProxmoxApiShape
  readonly bucket: ObjectStoreShape
  readonly registration: Registration
  readonly shards: ReadonlyArray<ShardWorld>
  /** The live incarnation in each replica slot (undefined while crashed). */
  readonly replicas: Array<Replica | undefined>
  readonly storeFaults: StoreFaults
  crashTrigger: CrashTrigger | undefined
  pauseTrigger: PauseTrigger | undefined
  /** Armed: at the next clone of a leader, that group is scaled down by one while its clone is slowed. */
  scaleDownAtClone: boolean
  /** Armed: `delayMs` after the next clone of a leader took effect, the node running it reboots for `downMs`. */
  rebootAtClone: { readonly delayMs: number; readonly downMs: number } | undefined
  /** The leader whose clone the scale-down caught: it crashes once its clone went out (the delete is its successor's). */
  crashAfterClone: Who | undefined
  readonly pauses: Pauses
  /** Incarnations that crashed: a dead process makes no more calls, whichever of its fibers runs before its scope closes. */
  readonly dead: Set<Who>
  /** VMIDs of VMs an operator made (not ours, whatever their name while cloning). */
  readonly foreignVmids: Set<number>
  /** Per shard: what its landed log segments say (each shard has its own log and VMID allocator). */
  readonly logFacts: Map<string, LogFacts>
  incarnations: number
  generation: number
  /** Off once the faults stop: no more ambiguous writes. */
  chaosOn: boolean
  /** Replica scopes still closing (their finalizers may wait for virtual time). */
  closing: number
}

/** The config of `world` for shard `shard`, recorded in the history as in force from now. */
export const configInForce = (history: History, shard: string, world: WorldConfig): ReturnType<typeof parseConfig> => {
  const parsed = parseConfig(configText(world, shard))
  const groups = desiredGroups(parsed.config)
  history.config({
    shard,
    sizes: Object.fromEntries(groups.map((g) => [g.group, g.size])),
    infraHashes: Object.fromEntries(groups.map((g) => [g.group, g.infraHash])),
    drainMs: Object.fromEntries(groups.map((g) => [g.group, Duration.toMillis(g.drainTimeout)]))
  })
  return parsed
}

/** Pushes the shard's `world` as its config, as the config watcher would after an operator's edit. */
export const pushConfig = (w: ChaosWorld, shard: ShardWorld): Effect.Effect<void> =>
  Effect.suspend(() => SubscriptionRef.set(shard.config, configInForce(w.history, shard.id, shard.world)))

/** What the log of `who`'s shard says so far. */
export const logFactsOf = (w: ChaosWorld, who: Who): LogFacts => {
  const shard = w.history.shardOf.get(who) ?? SHARD
  let facts = w.logFacts.get(shard)
  if (facts === undefined) {
    facts = { vmidOf: new Map(), ownerOf: new Map(), deleting: new Set(), abandoned: new Set(), reserved: new Set(), gone: new Set(), term: 0 }
    w.logFacts.set(shard, facts)
  }
  return facts
}

export const shardOfSlot = (w: ChaosWorld, slot: number): ShardWorld => w.shards.find((s) => s.slots.includes(slot))!

/** Seconds of virtual time since the start, for verbose output. */
export const elapsed = (clock: VirtualClock): string => ((clock.unsafeCurrentTimeMillis() - EPOCH) / 1000).toFixed(1)

export interface WorldSettings {
  readonly seed: number
  readonly breakMode: BreakMode
  readonly verbose: boolean
  readonly convergeBoundMs: number | undefined
  readonly pvePauses: boolean
}

export const makeChaosWorld = (settings: WorldSettings, clock: VirtualClock): Effect.Effect<ChaosWorld, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { seed, breakMode } = settings
    const prng = makePrng(seed * 31 + 7)
    const worldScope = yield* Effect.scope
    const history = new History(() => clock.unsafeCurrentTimeMillis() - EPOCH)
    const say = (text: string) => {
      history.line(text)
      if (settings.verbose) globalThis.console.log(`${elapsed(clock)}s ${text}`)
    }

    const shardPrng = makePrng(seed * 59 + 5)
    const shape = drawShape(seed, settings.convergeBoundMs, prng, shardPrng)
    const { replicaCount, replicaCountB, world, worldB } = shape
    if (worldB !== undefined) {
      say(`two shards: ${SHARD} (${replicaCount} replica(s)) and ${SHARD_B} (${replicaCountB} replica(s), sizes web=${worldB.sizes.web} api=${worldB.sizes.api}, gc ${worldB.gcInterval}) on one PVE cluster and one bucket`)
    }
    say(`world: seed ${seed}${shape.storm ? " (storm)" : ""}, ${replicaCount} replica(s), ${shape.nodes} nodes, latency ${shape.latency.name}, sizes web=${world.sizes.web} api=${world.sizes.api}, gc ${world.gcInterval}, snapshot every ${shape.snapshotEvery}, chaos ${shape.chaosMs / 1000}s${breakMode === "none" ? "" : `, BROKEN BUILD: ${breakMode}`}`)
    if (shape.rollout !== undefined) say(`${shape.twoShards ? `${[SHARD, SHARD_B][shape.rollout.shard]} ` : ""}${describeRollout(shape.rollout)}`)

    const replicas: Array<Replica | undefined> = Array.from({ length: shape.totalReplicas }, () => undefined)
    const registration = makeRegistration({ seed, on: shape.registrationOn, history, replicas, logNonces: breakMode === "log-nonce" })
    const simContext = yield* makeProxmoxApiSim({
      nodes: shape.nodes,
      seed,
      latency: shape.latency,
      retry: { baseDelay: "200 millis", maxDelay: "2 seconds" },
      ...(registration.guestHook === undefined ? {} : { guestHook: registration.guestHook })
    })
    const { model, faults } = Context.get(simContext, SimHandle)
    const bucket = makeMemoryStore()
    yield* registration.makePki(bucket, clock)
    if (shape.registrationOn) say("agent registration on: cluster PKI in the bucket, guests register in memory")

    const shards: Array<ShardWorld> = [{
      id: SHARD,
      store: shape.twoShards ? scopeStore(bucket, shardPrefix(SHARD)) : bucket,
      config: yield* SubscriptionRef.make(configInForce(history, SHARD, world)),
      world,
      finalSizes: world.sizes,
      slots: Array.from({ length: replicaCount }, (_, k) => k)
    }]
    if (worldB !== undefined) {
      shards.push({
        id: SHARD_B,
        store: scopeStore(bucket, shardPrefix(SHARD_B)),
        config: yield* SubscriptionRef.make(configInForce(history, SHARD_B, worldB)),
        world: worldB,
        finalSizes: worldB.sizes,
        slots: Array.from({ length: replicaCountB }, (_, k) => replicaCount + k)
      })
    }
    return {
      shape,
      breakMode,
      verbose: settings.verbose,
      pvePauses: settings.pvePauses,
      prng,
      shardPrng,
      clock,
      history,
      say,
      worldScope,
      model,
      faults,
      simPve: Context.get(simContext, ProxmoxApi),
      bucket,
      registration,
      shards,
      replicas,
      storeFaults: { errorRate: 0, ambiguousRate: 0, latencyMs: 0, partitioned: new Set(), lateLanding: new Set() },
      crashTrigger: undefined,
      pauseTrigger: undefined,
      scaleDownAtClone: false,
      rebootAtClone: undefined,
      crashAfterClone: undefined,
      pauses: makePauses(),
      dead: new Set(),
      foreignVmids: new Set(),
      logFacts: new Map(),
      incarnations: 0,
      generation: 0,
      chaosOn: true,
      closing: 0
    }
  })
