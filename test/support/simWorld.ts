/**
 * A simulated world for the saga, reconcile, GC, crash and fencing tests: the real `leaderScope` on the
 * in-process PVE layer (`ProxmoxApiSim`: the simulator's model, timed by Effect's `Clock`) and a memory
 * object store, on a virtual clock — minutes of simulated PVE time in milliseconds of wall time, with no
 * HTTP and no real sleeps. Nothing moves unless the test advances time (`advanceUntil`, `advance`, `drive`).
 *
 * The clock is the world's own `VirtualClock` (test/support/virtualClock.ts), not `TestClock`: TestClock
 * lets fibers settle with three real `setTimeout(0)` turns before every timer it fires — 3 to 30 ms each on
 * a busy machine, which made a ported suite as slow as the real-time HTTP one.
 *
 *   it.scoped("…", () => Effect.gen(function* () {
 *     const w = yield* makeWorld({ size: 3 })
 *     yield* w.leader(1)
 *     yield* w.advanceUntil("3 running", w.convergence(3))
 *     yield* w.setConfig({ size: 0 })
 *   }))
 *
 * The API, in full:
 * - `model`, `faults`: the simulated cluster and its fault controller (`faults.failTasks`, `http`, `slowTasks`).
 * - `pve`: a client on the same cluster for acting behind the leader's back (run its calls with `drive`).
 * - `store`, `config`, `setConfig(change)`: the memory store; the config `SubscriptionRef` the leaders follow.
 * - `leader(term, options)`: starts a leader scope for `term` in the world's scope; returns its fiber.
 * - `crashLeader(term, point)`: a leader whose process dies at a segment write (a saga step) or in a task.
 * - `advanceUntil(what, problems, within)`: moves virtual time until `problems` is empty, or dies with them.
 * - `advance(duration)`, `drive(effect)`: let time pass; run an effect to its end while time moves.
 * - `now`, `state`, `events`, `convergence(size)`, `vms()`, `logs`: what the tests judge.
 */
import { Cause, Chunk, Context, Deferred, Duration, Effect, Fiber, HashMap, Logger, LogLevel, Option, Schema, type Scope, Stream, SubscriptionRef } from "effect"
import type { ParsedShardConfig } from "../../src/domain/config/index.js"
import { makeInstanceIdGenerator } from "../../src/domain/instanceId.js"
import { parseUpid } from "../../src/domain/pve/upid.js"
import { cdromDrive, isoVolid } from "../../src/domain/pveNames.js"
import { ShardEvent } from "../../src/domain/shard/events.js"
import { allInstances, fold, type Instance, type State } from "../../src/domain/shard/state.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { ProxmoxApi, type ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { leaderScope } from "../../src/shard/LeaderScope.js"
import type { GcGraces } from "../../src/shard/ShardContext.js"
import type { ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import { LatencyFast, type LatencyModel } from "../../src/sim/latency.js"
import { makeProxmoxApiSim, SimHandle } from "../../src/sim/ProxmoxApiSim.js"
import type { FaultController, SimModel, SimVm } from "../../src/sim/server.js"
import { leakedVolumes, nonTemplateVms } from "./leaks.js"
import { BRIDGE, CLUSTER, ISO_STORAGE, ourTags, parseConfig, SHARD, shardConfigText, TENANT } from "./shardConfig.js"
import { microtaskScheduler, VirtualClock } from "./virtualClock.js"

export { BRIDGE, CLUSTER, ISO_STORAGE, parseConfig, SHARD, TENANT } from "./shardConfig.js"
export { nonTemplateVms } from "./leaks.js"
export const GROUP = "web"
export const KIND = "web"
export const OUR_TAGS = ourTags(SHARD)

export interface ConfigOptions {
  readonly size: number
  readonly templateName?: string
  readonly gcInterval?: string
  /** `disk:` of the instance type in GiB; the template's disk is 2 GiB, so more means a resize. */
  readonly diskGiB?: number
  /** `shard.bind.registration_addr` and `shard.advertise.registration_addr` (default `:8992` / `10.0.0.1:8992`). */
  readonly registrationAddr?: string
  /** `shard.bind.agent_addr` and `shard.advertise.agent_addr` (default `:8994` / `10.0.0.1:8994`). */
  readonly agentAddr?: string
  readonly registrationTimeout?: string
  readonly healthCheckInterval?: string
  /** What the user-data script echoes (default "hello"): changing it changes the group's infra hash. */
  readonly greeting?: string
  readonly defaultDrainTimeout?: string
  /** The group's own `drain_timeout`. */
  readonly drainTimeout?: string
  /** `shard.expiry` as JSON. */
  readonly expiry?: string
  readonly createRateLimit?: string
}

/** A small shard config: one tenant, one group of `size` VMs cloned from the simulator's per-node template. */
export const configText = (o: ConfigOptions): string =>
  shardConfigText({
    title: "simulation test shard",
    gcInterval: o.gcInterval ?? "1s",
    registrationTimeout: o.registrationTimeout ?? "1m",
    ...(o.registrationAddr === undefined ? {} : { registrationAddr: o.registrationAddr }),
    ...(o.agentAddr === undefined ? {} : { agentAddr: o.agentAddr }),
    ...(o.healthCheckInterval === undefined ? {} : { healthCheckInterval: o.healthCheckInterval }),
    ...(o.templateName === undefined ? {} : { templateName: o.templateName }),
    ...(o.defaultDrainTimeout === undefined ? {} : { defaultDrainTimeout: o.defaultDrainTimeout }),
    ...(o.expiry === undefined ? {} : { expiry: o.expiry }),
    ...(o.createRateLimit === undefined ? {} : { createRateLimit: o.createRateLimit }),
    greeting: o.greeting ?? "hello",
    groups: [{ group: GROUP, kind: KIND, cpu: 1, memoryMiB: 512, diskGiB: o.diskGiB ?? 4, size: o.size, ...(o.drainTimeout === undefined ? {} : { drainTimeout: o.drainTimeout }) }]
  })

const mintId = makeInstanceIdGenerator()
/** A fresh, valid instance ID of our kind (for VMs made behind the leader's back). */
export const freshInstanceId = (kind = KIND) => mintId(kind)

/** A decoded event of the log with its segment's seq. */
export type EventView = ShardEvent & { readonly seq: number }

/** The instance an event is about ("" for shard-wide events). */
export const idOf = (event: ShardEvent): string => ("instanceId" in event ? event.instanceId : "")

const Segment = Schema.parseJson(Schema.Struct({ seq: Schema.Int, events: Schema.Array(ShardEvent) }))
const decodeSegment = Schema.decodeUnknownSync(Segment)

/** Every event of a store's log, oldest first, each with its segment's seq. */
export const storeEvents = (store: ObjectStoreShape): Effect.Effect<ReadonlyArray<EventView>> =>
  Effect.gen(function* () {
    const keys = yield* store.list("log/").pipe(Stream.runCollect, Effect.map((c) => Chunk.toReadonlyArray(c).map((m) => m.key)))
    const out: Array<EventView> = []
    for (const key of keys) {
      const { events, seq } = decodeSegment(new TextDecoder().decode((yield* store.get(key)).body))
      for (const event of events) out.push({ ...event, seq })
    }
    return out
  }).pipe(Effect.orDie)

/**
 * Everything that must hold once the shard is at rest with `size` instances: the log has exactly `size`
 * instances, all running; PVE has exactly one VM per instance (by name) and no other non-template VM, each
 * configured as the saga configures it and running; every disk belongs to an existing VM; the only ISOs are
 * the instances' own.
 */
export const convergenceProblems = (model: SimModel, state: State, size: number): Array<string> => {
  const problems: Array<string> = []
  const instances = allInstances(state)
  if (instances.length !== size) problems.push(`log: ${instances.length} instances, want ${size} (${describeInstances(instances)})`)
  for (const i of instances) if (i.phase !== "running") problems.push(`log: ${i.id} is ${i.phase}`)
  const ids = new Set(instances.map((i) => i.id))
  const byName = new Map<string, Array<SimVm>>()
  for (const vm of nonTemplateVms(model)) {
    const name = vm.config.get("name") ?? `(unnamed ${vm.vmid})`
    byName.set(name, [...(byName.get(name) ?? []), vm])
  }
  for (const [name, vms] of byName) {
    if (vms.length > 1) problems.push(`pve: ${vms.length} VMs named ${name} (${vms.map((vm) => vm.vmid).join(", ")})`)
    if (!ids.has(name)) problems.push(`pve: VM ${vms.map((vm) => vm.vmid).join(",")} named ${name} is not an instance of the log`)
  }
  for (const i of instances) {
    const vms = byName.get(i.id) ?? []
    if (vms.length === 0) {
      problems.push(`pve: no VM for ${i.id}`)
      continue
    }
    problems.push(...vmConfigProblems(vms[0]!, i))
  }
  problems.push(...volumeProblems(model, ids))
  return problems
}

const describeInstances = (instances: ReadonlyArray<Instance>) => instances.map((i) => `${i.id.slice(-6)}:${i.phase}`).join(", ")

/** How a VM made by the create saga must look. */
export const vmConfigProblems = (vm: SimVm, instance: Instance): Array<string> => {
  const problems: Array<string> = []
  const c = vm.config
  const where = `pve: VM ${vm.vmid} (${instance.id})`
  if (instance.vmid !== vm.vmid) problems.push(`${where}: the log says VMID ${instance.vmid}`)
  if (c.get("tags") !== OUR_TAGS) problems.push(`${where}: tags ${c.get("tags")}`)
  const description = decodeURIComponent(c.get("description") ?? "")
  if (!description.includes("DO NOT EDIT") || !description.includes(`group: ${GROUP}`) || !description.includes(`tenant: ${TENANT}`)) {
    problems.push(`${where}: description is not the managed-notes block: ${JSON.stringify(description)}`)
  }
  if (!(c.get("net0") ?? "").includes(`bridge=${BRIDGE}`)) problems.push(`${where}: net0 ${c.get("net0")}`)
  if (c.get("ide2") !== cdromDrive(isoVolid(ISO_STORAGE, instance.id))) problems.push(`${where}: ide2 ${c.get("ide2")}`)
  if (vm.status !== "running") problems.push(`${where}: ${vm.status}`)
  if (c.get("lock") !== undefined) problems.push(`${where}: locked (${c.get("lock")})`)
  return problems
}

/** Disks of VMs that do not exist, and ISOs other than the instances' own. */
export const volumeProblems = (model: SimModel, instanceIds: ReadonlySet<string>): Array<string> =>
  leakedVolumes(model, (id) => instanceIds.has(id), "leaked").map((problem) => `pve: ${problem}`)

/**
 * Where a leader's process dies. At an event-log segment write (a `log/…` PUT) — the `segment`-th one, or
 * the first that carries an `event` of that tag: `after`, the write lands and the process dies before it
 * hears back (the intent or result is durable, nothing that follows happens); `before`, it never lands
 * (the step's side effect happened, its record did not). Or inside a PVE `task` of that type: PVE accepted
 * it (the UPID came back) and the process dies before seeing it end — the task runs on without it. From
 * that moment the leader's store writes and PVE calls never return, as for a process that is gone.
 */
export type CrashPoint =
  | { readonly segment: number; readonly mode: "before" | "after" }
  | { readonly event: ShardEvent["_tag"]; readonly mode: "before" | "after" }
  | { readonly task: string }

export interface LeaderOptions {
  readonly replica?: string
  /** The store this leader writes through (default: the world's store). */
  readonly store?: ObjectStoreShape
  /** Wraps this leader's PVE client (e.g. to record its calls). */
  readonly wrapPve?: (pve: ProxmoxApiShape) => ProxmoxApiShape
  /** This leader's own config (default: the world's shared `SubscriptionRef`). */
  readonly config?: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** The replica handle the term is published to (what the admin handlers run against). */
  readonly handle?: ShardReplicaShape
}

export interface WorldOptions extends ConfigOptions {
  readonly graces?: GcGraces
  readonly seed?: number
  readonly sharedStorage?: boolean
  /**
   * How long PVE takes (default `LatencyFast`: tasks of tens of simulated milliseconds; the relations that
   * matter, such as a clone against the lock timeout, hold at every scale). Simulated time is free, but
   * longer tasks mean more task polls and periodic passes to run: pass `LatencyRealistic` where real
   * durations are the point (sagas drifting apart, figures in seconds).
   */
  readonly latency?: LatencyModel
}

/** Virtual time `advanceUntil` allows by default: a few reconcile periods and task timeouts. */
const DEFAULT_WITHIN = Duration.minutes(5)
/** Virtual time between two looks at `advanceUntil`'s predicate. */
const STEP_MS = 100
/** `drive` looks more often: the test usually reads the time right after its own action ends. */
const DRIVE_STEP_MS = 10

export const makeWorld = (options: WorldOptions): Effect.Effect<World, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const clock = new VirtualClock({ resolution: "exact", settle: "untilQuiet" })
    // Everything of the world runs on its clock, and on microtasks only: when a settle's `setImmediate`
    // fires, every fiber woken before it has run to its next wait, so the order of events is the seed's.
    const inWorld = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.withClock(clock), Effect.withScheduler(microtaskScheduler))
    // Built on the world's clock: the model's timers and the client's polls are the world's timers.
    const sim = yield* makeProxmoxApiSim({
      nodes: 3, seed: options.seed ?? 1, sharedStorage: options.sharedStorage ?? false,
      latency: options.latency ?? LatencyFast
    }).pipe(inWorld)
    const pve = Context.get(sim, ProxmoxApi)
    const { model, faults } = Context.get(sim, SimHandle)
    // Every write bumps `version`, so the judges below re-read the log only when it may have changed.
    const memory = makeMemoryStore()
    let version = 0
    const store: ObjectStoreShape = {
      ...memory,
      put: (key, body, pre) => Effect.ensuring(memory.put(key, body, pre), Effect.sync(() => { version++ })),
      delete: (key) => Effect.ensuring(memory.delete(key), Effect.sync(() => { version++ }))
    }
    let current: ConfigOptions = options
    const config = yield* SubscriptionRef.make(parseConfig(configText(current)))

    const logs: Array<string> = []
    const defects: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, cause, logLevel, message }) => {
        const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
        const term = Option.getOrUndefined(HashMap.get(annotations, "term"))
        // Stamped with the simulated time, which is what the test's timeline is made of.
        const line = `${(model.time.now() / 1000).toFixed(3)}s ${logLevel.label} [t${String(term ?? "-")}] ${text}`
        logs.push(line)
        // A defect is a bug even when a supervisor restarts what it killed: the judges report it.
        if (Cause.isDie(cause)) defects.push(`${line}: ${Cause.pretty(cause).split("\n")[0]}`)
        if (process.env["NSTANCE_TEST_LOG"] === "1") globalThis.console.log(line)
      })
    )

    const leader = (term: number, o: LeaderOptions = {}) =>
      leaderScope({
        clusterId: CLUSTER,
        shard: SHARD,
        replica: o.replica ?? `replica-${term}`,
        config: o.config ?? config,
        ...(options.graces === undefined ? {} : { graces: options.graces }),
        ...(o.handle === undefined ? {} : { handle: o.handle })
      })(term).pipe(
        Effect.provideService(ProxmoxApi, o.wrapPve === undefined ? pve : o.wrapPve(pve)),
        Effect.provideService(ObjectStore, o.store ?? store),
        Effect.provide(logger),
        Logger.withMinimumLogLevel(LogLevel.Debug),
        inWorld,
        Effect.forkIn(scope)
      )

    const now = Effect.sync(() => clock.unsafeCurrentTimeMillis())

    const advanceBy = (stepMs: number) => (what: string, problems: Effect.Effect<ReadonlyArray<string>>, within: Duration.DurationInput = DEFAULT_WITHIN) =>
      Effect.gen(function* () {
        const deadline = (yield* now) + Duration.toMillis(Duration.decode(within))
        for (;;) {
          const found = yield* problems
          if (found.length === 0) return
          const t = yield* now
          if (t >= deadline) {
            return yield* Effect.dieMessage(
              `${what}: not reached within ${Duration.format(Duration.decode(within))} of simulated time:\n  ${found.join("\n  ")}\n--- last log lines ---\n${logs.slice(-40).join("\n")}`
            )
          }
          // Every timer due within the step fires, in order; the predicate is looked at between steps, so it
          // should be one that stays true once reached (crash points are hooks for that reason).
          yield* clock.advance(Math.min(stepMs, deadline - t))
        }
      })
    const advanceUntil = advanceBy(STEP_MS)

    const advance = (duration: Duration.DurationInput) => clock.advance(duration)

    const drive = <A, E>(effect: Effect.Effect<A, E>, within: Duration.DurationInput = DEFAULT_WITHIN) =>
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(inWorld(effect))
        yield* advanceBy(DRIVE_STEP_MS)("driven effect", Effect.map(Fiber.poll(fiber), (exit) => (Option.isSome(exit) ? [] : ["still running"])), within)
        return yield* Fiber.join(fiber)
      })

    const crashLeader = (term: number, point: CrashPoint, o: Omit<LeaderOptions, "store"> = {}) =>
      Effect.gen(function* () {
        const crash = yield* makeCrash(point)
        const fiber = yield* leader(term, {
          ...o,
          store: crash.store(store),
          wrapPve: (pve) => crash.pve(o.wrapPve === undefined ? pve : o.wrapPve(pve))
        })
        yield* advanceUntil(`term ${term} reaches its crash point`, Effect.map(Deferred.isDone(crash.crashed), (done) => (done ? [] : ["not yet"])))
        const exit = yield* Fiber.poll(fiber)
        if (Option.isSome(exit)) return yield* Effect.dieMessage(`term ${term} ended before it was interrupted: ${String(exit.value)}`)
        yield* Fiber.interrupt(fiber)
      })

    const setConfig = (change: Partial<ConfigOptions>) =>
      Effect.suspend(() => {
        current = { ...current, ...change }
        return SubscriptionRef.set(config, parseConfig(configText(current)))
      })

    // Segments are written once under their key, so each is decoded once; the tests read the log often.
    const decoded = new Map<string, ReadonlyArray<EventView>>()
    let cached: { readonly version: number; readonly events: ReadonlyArray<EventView>; state?: State } | undefined
    const read = Effect.gen(function* () {
      if (cached !== undefined && cached.version === version) return cached
      const at = version
      const keys = yield* store.list("log/").pipe(Stream.runCollect, Effect.map((c) => Chunk.toReadonlyArray(c).map((m) => m.key)))
      const out: Array<EventView> = []
      for (const key of keys) {
        let segment = decoded.get(key)
        if (segment === undefined) {
          const { events, seq } = decodeSegment(new TextDecoder().decode((yield* store.get(key)).body))
          segment = events.map((event) => ({ ...event, seq }))
          decoded.set(key, segment)
        }
        out.push(...segment)
      }
      cached = { version: at, events: out }
      return cached
    }).pipe(Effect.orDie)
    const events: Effect.Effect<ReadonlyArray<EventView>> = Effect.map(read, (r) => r.events)

    // The fold of every segment is what a replay yields while no snapshot exists; after one, replay it.
    const state: Effect.Effect<State> = Effect.gen(function* () {
      const r = yield* read
      if (r.state !== undefined) return r.state
      const snapshots = yield* store.list("snapshot/").pipe(Stream.runCount, Effect.orDie)
      const folded = snapshots > 0
        ? yield* replayStore(store).pipe(Effect.map((replayed) => replayed.state), Effect.orDie, Logger.withMinimumLogLevel(LogLevel.None))
        : fold(r.events)
      r.state = folded
      return folded
    })

    return {
      model, faults, pve, store, config, logs, leader, crashLeader, setConfig, advanceUntil, advance, drive, now, state, events,
      convergence: (size: number) => Effect.map(state, (s) => [...defects, ...convergenceProblems(model, s, size)]),
      defects: () => defects,
      vms: () => nonTemplateVms(model)
    }
  })

export interface World {
  readonly model: SimModel
  readonly faults: FaultController
  /** A client on the world's cluster for the test itself; its task waits need time to move (`drive`). */
  readonly pve: ProxmoxApiShape
  readonly store: ObjectStoreShape
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** Every log line of every leader, stamped with simulated seconds. */
  readonly logs: ReadonlyArray<string>
  /** Starts the leader scope of `term` in the world's scope; the fiber ends with the term (Fenced, …). */
  readonly leader: (term: number, options?: LeaderOptions) => Effect.Effect<Fiber.RuntimeFiber<never, unknown>>
  /** Runs a leader for `term` until its process dies at `point` (a saga step, a task), then interrupts it. */
  readonly crashLeader: (term: number, point: CrashPoint, options?: Omit<LeaderOptions, "store">) => Effect.Effect<void>
  readonly setConfig: (change: Partial<ConfigOptions>) => Effect.Effect<void>
  /** Moves virtual time until `problems` is empty; dies with the last problems and log lines after `within` (5 min). */
  readonly advanceUntil: (what: string, problems: Effect.Effect<ReadonlyArray<string>>, within?: Duration.DurationInput) => Effect.Effect<void>
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** Runs `effect` to its end while virtual time moves (the test's own PVE calls wait on tasks). */
  readonly drive: <A, E>(effect: Effect.Effect<A, E>, within?: Duration.DurationInput) => Effect.Effect<A, E>
  /** Virtual time, epoch milliseconds (as the events' `at`). */
  readonly now: Effect.Effect<number>
  /** The log folded from the store (what a new leader would replay). */
  readonly state: Effect.Effect<State>
  /** Every event of the log, oldest first, with its segment's seq. */
  readonly events: Effect.Effect<ReadonlyArray<EventView>>
  /** Problems keeping the shard from being converged at `size` running instances, with nothing leaked (or defects logged). */
  readonly convergence: (size: number) => Effect.Effect<ReadonlyArray<string>>
  readonly vms: () => Array<SimVm>
  /** Log lines of every defect (a fiber that died) so far. */
  readonly defects: () => ReadonlyArray<string>
}

/**
 * One process death at `point` (see `CrashPoint`): wrap the leader's store and PVE client with `store` and
 * `pve`; `crashed` completes at the point, after which both hang for good.
 */
export const makeCrash = (point: CrashPoint) =>
  Effect.gen(function* () {
    const crashed = yield* Deferred.make<void>()
    let dead = false
    let segments = 0
    const die = Effect.suspend(() => {
      dead = true
      return Deferred.succeed(crashed, undefined)
    }).pipe(Effect.zipRight(Effect.never))
    const reached = (body: Uint8Array) =>
      "segment" in point
        ? segments >= point.segment
        : "event" in point && decodeSegment(new TextDecoder().decode(body)).events.some((e) => e._tag === point.event)
    const store = (base: ObjectStoreShape): ObjectStoreShape => ({
      ...base,
      put: (key, body, pre) =>
        Effect.suspend(() => {
          if (dead) return Effect.never
          if ("task" in point || !key.startsWith("log/")) return base.put(key, body, pre)
          segments++
          if (!reached(body)) return base.put(key, body, pre)
          return point.mode === "before" ? die : base.put(key, body, pre).pipe(Effect.zipRight(die))
        })
    })
    const pve = (base: ProxmoxApiShape): ProxmoxApiShape => {
      const wrapped: Record<string, unknown> = {}
      for (const [name, method] of Object.entries(base)) {
        wrapped[name] = typeof method !== "function"
          ? method
          : (...args: Array<unknown>) => Effect.suspend(() => (dead ? Effect.never : (method as (...a: Array<unknown>) => Effect.Effect<unknown, unknown>)(...args)))
      }
      const waitTask: ProxmoxApiShape["waitTask"] = (node, upid, options) =>
        Effect.suspend(() => {
          const type = Option.map(parseUpid(upid), (u) => u.type)
          return "task" in point && Option.contains(type, point.task) ? die : base.waitTask(node, upid, options)
        })
      // Every method of the client keeps its signature; only the moment it returns changes.
      return { ...(wrapped as unknown as ProxmoxApiShape), waitTask: (node, upid, options) => Effect.suspend(() => (dead ? Effect.never : waitTask(node, upid, options))) }
    }
    return { crashed, store, pve }
  })

export interface ForeignVm {
  readonly name: string
  readonly node?: string
  readonly tags?: string
  readonly description?: string
  /** Uploads this ISO file name to `local` and attaches it as ide2. */
  readonly isoFile?: string
  readonly start?: boolean
}

/**
 * Makes a VM through the PVE API the way an operator, another tool or the original Go server would — not
 * through the leader: clone of the node's template, one config call, optionally an ISO and a start. Its
 * task waits need time to move: run it with `World.drive`.
 */
export const makeVmBehindOurBack = (pve: ProxmoxApiShape, vm: ForeignVm) =>
  Effect.gen(function* () {
    const node = vm.node ?? "pve1"
    const template = { pve1: 9000, pve2: 9001, pve3: 9002 }[node] ?? 9000
    const vmid = yield* pve.nextId()
    yield* pve.clone(node, template, { newid: vmid, name: vm.name, full: true, storage: "local-lvm" }).pipe(Effect.flatMap((upid) => pve.waitTask(node, upid)))
    let ide2: string | undefined
    if (vm.isoFile !== undefined) {
      yield* pve.upload(node, ISO_STORAGE, { filename: vm.isoFile, content: "iso", data: new Uint8Array(2048) }).pipe(Effect.flatMap((upid) => pve.waitTask(node, upid)))
      ide2 = `${ISO_STORAGE}:iso/${vm.isoFile},media=cdrom`
    }
    const update = {
      ...(vm.tags === undefined ? {} : { tags: vm.tags }),
      ...(vm.description === undefined ? {} : { description: vm.description }),
      ...(ide2 === undefined ? {} : { ide2 })
    }
    if (Object.keys(update).length > 0) {
      yield* pve.updateConfig(node, vmid, update).pipe(Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: (upid) => Effect.asVoid(pve.waitTask(node, upid)) })))
    }
    if (vm.start === true) yield* pve.start(node, vmid).pipe(Effect.flatMap((upid) => pve.waitTask(node, upid)))
    return { vmid, node }
  }).pipe(Effect.orDie)
