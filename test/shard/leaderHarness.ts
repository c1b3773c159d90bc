/**
 * A shard leader on the HTTP Proxmox simulator and a memory object store, for the tests that need the wire
 * (agent registration over real HTTP): the real `leaderScope` with the real HTTP client, in real time. The
 * saga, reconcile, GC, crash and fencing suites run in the simulated world instead
 * (`test/support/simWorld.ts`: the in-process PVE layer on a virtual clock).
 */
import { Chunk, Duration, Effect, HashMap, Logger, LogLevel, Option, Stream, SubscriptionRef } from "effect"
import type { ShardEventEncoded } from "../../src/domain/shard/events.js"
import type { State } from "../../src/domain/shard/state.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ProxmoxApiHttp } from "../../src/layers/ProxmoxApiHttp.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { leaderScope } from "../../src/shard/LeaderScope.js"
import type { GcGraces } from "../../src/shard/ShardContext.js"
import type { ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import { type GuestHook, PveSimulator, type RunningSimulator, type SimVm } from "../../src/sim/server.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { CLUSTER, type ConfigOptions, configText, convergenceProblems, nonTemplateVms as modelVms, parseConfig, SHARD } from "../support/simWorld.js"

// The shard config and the judges are the simulated world's (test/support/simWorld.ts), so both harnesses
// build and judge the same shard.
export { CLUSTER, type ConfigOptions, configText, OUR_TAGS, parseConfig, SHARD } from "../support/simWorld.js"

export interface LeaderOptions {
  readonly replica?: string
  /** The store this leader writes through (default: the harness's store). */
  readonly store?: ObjectStoreShape
  /** The replica handle the term is published to (replica-level endpoints such as the agent endpoint). */
  readonly handle?: ShardReplicaShape
}

export interface HarnessOptions extends ConfigOptions {
  readonly graces?: GcGraces
  readonly seed?: number
  readonly sharedStorage?: boolean
  /** Agent registration on, with a PKI in the harness's store under this key. */
  readonly encryptionKey?: Uint8Array
  /** The simulator's guest hook (simulated agents). */
  readonly guestHook?: GuestHook
}

export type EventView = ShardEventEncoded & { readonly seq: number }

/** Non-template VMs of the simulator. */
/** The HTTP client's settings for a simulator on the fast latency model: tasks of tens of milliseconds, polled accordingly. */
export const fastPveSettings = (sim: RunningSimulator) => ({
  apiUrl: sim.url,
  tokenId: sim.tokenId,
  tokenSecret: sim.tokenSecret,
  taskPoll: { initial: "10 millis", factor: 1.5, max: "100 millis" },
  retry: { baseDelay: "50 millis", maxDelay: "500 millis" }
} as const)

export const nonTemplateVms = (sim: RunningSimulator): Array<SimVm> => modelVms(sim.model)

export const makeHarness = (options: HarnessOptions) =>
  Effect.gen(function* () {
    const sim = yield* PveSimulator({
      nodes: 3, http: true, seed: options.seed ?? 1, sharedStorage: options.sharedStorage ?? false,
      ...(options.guestHook === undefined ? {} : { guestHook: options.guestHook })
    })
    const store = makeMemoryStore()
    const pki = options.encryptionKey === undefined
      ? undefined
      : yield* makeClusterPki(store, { clusterId: CLUSTER, encryptionKey: options.encryptionKey }).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.None))
    let current: ConfigOptions = options
    const config = yield* SubscriptionRef.make(parseConfig(configText(current)))
    const logs: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, logLevel, message }) => {
        const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
        const term = Option.getOrUndefined(HashMap.get(annotations, "term"))
        const line = `${new Date().toISOString().slice(11, 23)} ${logLevel.label} [t${String(term ?? "-")}] ${text}`
        logs.push(line)
        if (process.env["NSTANCE_TEST_LOG"] === "1") globalThis.console.log(line)
      })
    )
    const pveSettings = fastPveSettings(sim)

    /** Starts the leader scope for `term` in the test's scope; returns its fiber. */
    const leader = (term: number, o: LeaderOptions = {}) =>
      leaderScope({
        clusterId: CLUSTER,
        shard: SHARD,
        replica: o.replica ?? `replica-${term}`,
        config,
        eventLog: { batchWindow: "5 millis" },
        ...(options.graces === undefined ? {} : { graces: options.graces }),
        ...(pki === undefined ? {} : { registration: { pki } }),
        ...(o.handle === undefined ? {} : { handle: o.handle })
      })(term).pipe(
        Effect.provide(ProxmoxApiHttp(pveSettings)),
        Effect.provideService(ObjectStore, o.store ?? store),
        Effect.annotateLogs({ term }),
        Effect.provide(logger),
        Logger.withMinimumLogLevel(LogLevel.Debug),
        Effect.forkScoped
      )

    const setConfig = (change: Partial<ConfigOptions>) =>
      Effect.suspend(() => {
        current = { ...current, ...change }
        return SubscriptionRef.set(config, parseConfig(configText(current)))
      })

    /** The log as folded from the store (what a new leader would replay). */
    const state: Effect.Effect<State> = replayStore(store).pipe(Effect.map((r) => r.state), Effect.orDie)

    /** Every event of the log, oldest first, with its segment's seq. */
    const events: Effect.Effect<ReadonlyArray<EventView>> = Effect.gen(function* () {
      const keys = yield* store.list("log/").pipe(Stream.runCollect, Effect.map((c) => Chunk.toReadonlyArray(c).map((m) => m.key)))
      const out: Array<EventView> = []
      for (const key of keys) {
        const object = yield* store.get(key)
        const segment = JSON.parse(new TextDecoder().decode(object.body)) as { seq: number; events: Array<ShardEventEncoded> }
        for (const event of segment.events) out.push({ ...event, seq: segment.seq })
      }
      return out
    }).pipe(Effect.orDie)

    /** Polls `problems` until it returns none; fails with the last problems and the recent log otherwise. */
    const waitUntil = (what: string, problems: Effect.Effect<ReadonlyArray<string>>, timeout: Duration.DurationInput = "10 seconds") =>
      Effect.gen(function* () {
        const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
        for (;;) {
          const found = yield* problems
          if (found.length === 0) return
          if (Date.now() > deadline) {
            return yield* Effect.dieMessage(
              `${what}: not reached within ${Duration.format(Duration.decode(timeout))}:\n  ${found.join("\n  ")}\n--- last log lines ---\n${logs.slice(-40).join("\n")}`
            )
          }
          yield* Effect.sleep("50 millis")
        }
      })

    return {
      sim, store, config, logs, leader, setConfig, state, events, waitUntil,
      /** Problems keeping the shard from being converged at `size` running instances, with nothing leaked. */
      convergence: (size: number) => Effect.map(state, (s) => convergenceProblems(sim.model, s, size))
    }
  })

export type Harness = Effect.Effect.Success<ReturnType<typeof makeHarness>>
