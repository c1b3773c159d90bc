/**
 * A shard leader on the HTTP Proxmox simulator and a memory object store, for the saga, reconcile and GC
 * simulation tests: the real `leaderScope` (event log, adoption, saga runner, reconcile, GC) with the real
 * HTTP client, a config parsed from JSONC and held in a `SubscriptionRef`, and helpers that read what the
 * tests assert on — the simulator's model (VMs, their config, volumes) and the folded event log.
 */
import { Chunk, Context, Deferred, Duration, Effect, Either, Fiber, HashMap, Layer, Logger, LogLevel, Option, Stream, SubscriptionRef } from "effect"
import { type ParsedShardConfig, parseShardConfig } from "../../src/domain/config/index.js"
import { makeInstanceIdGenerator } from "../../src/domain/instanceId.js"
import type { ShardEventEncoded } from "../../src/domain/shard/events.js"
import { allInstances, type Instance, type State } from "../../src/domain/shard/state.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { ProxmoxApiHttp } from "../../src/layers/ProxmoxApiHttp.js"
import { ObjectStore, type ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { ProxmoxApi, type ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { leaderScope } from "../../src/shard/LeaderScope.js"
import type { GcGraces } from "../../src/shard/ShardContext.js"
import { type GuestHook, PveSimulator, type RunningSimulator, type SimVm } from "../../src/sim/server.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"

export const CLUSTER = "acme"
export const SHARD = "pve-a"
export const TENANT = "shop"
export const GROUP = "web"
export const KIND = "web"
export const BRIDGE = "vmbr1"
export const ISO_STORAGE = "local"
export const OUR_TAGS = `nstance;${CLUSTER};${SHARD}`

export interface ConfigOptions {
  readonly size: number
  readonly templateName?: string
  readonly gcInterval?: string
  /** `disk:` of the instance type in GiB; the template's disk is 2 GiB, so more means a resize. */
  readonly diskGiB?: number
  /** `shard.bind.registration_addr` and `shard.advertise.registration_addr` (default `:8992` / `10.0.0.1:8992`). */
  readonly registrationAddr?: string
  readonly registrationTimeout?: string
  readonly healthCheckInterval?: string
}

/** A small shard config: one tenant, one group of `size` VMs cloned from the simulator's per-node template. */
export const configText = (o: ConfigOptions): string => `// simulation test shard
{
  "cluster": { "id": "${CLUSTER}" },
  "shard": {
    "id": "${SHARD}",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z1", "options": { "cloud_init_iso_storage": "${ISO_STORAGE}" } },
    "bind": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "${o.registrationAddr ?? ":8992"}", "operator_addr": ":8993", "agent_addr": ":8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "${o.registrationAddr ?? "10.0.0.1:8992"}", "operator_addr": "10.0.0.1:8993", "agent_addr": "10.0.0.1:8994" },
    "subnet_pools": { "edge": ["${BRIDGE}"] },
    "garbage_collection": { "interval": "${o.gcInterval ?? "1s"}", "registration_timeout": "${o.registrationTimeout ?? "1m"}" },${o.healthCheckInterval === undefined ? "" : ` "health_check_interval": "${o.healthCheckInterval}",`}
  },
  "defaults": {
    "args": { "StoragePool": "local-lvm", "TemplateName": "${o.templateName ?? "debian-13-template"}", "StartOnBoot": true },
    "userdata": { "content": "#!/bin/sh\\necho hello\\n" },
  },
  "templates": {
    "web": { "kind": "${KIND}", "instance_type": "cpu:1,memory:512,disk:${o.diskGiB ?? 4}", "subnet_pool": "edge" },
  },
  "groups": { "${TENANT}": { "${GROUP}": { "template": "web", "size": ${o.size} } } },
}
`

export const parseConfig = (text: string): ParsedShardConfig => {
  const parsed = parseShardConfig(text)
  if (Either.isLeft(parsed)) throw new Error(`test config does not parse: ${JSON.stringify(parsed.left.problems)}`)
  return parsed.right
}

const mintId = makeInstanceIdGenerator()
/** A fresh, valid instance ID of our kind (for VMs made behind the leader's back). */
export const freshInstanceId = (kind = KIND) => mintId(kind)

export interface LeaderOptions {
  readonly replica?: string
  /** The store this leader writes through (default: the harness's store). */
  readonly store?: ObjectStoreShape
  /** Wraps this leader's PVE client (e.g. to record its calls). */
  readonly wrapPve?: (pve: ProxmoxApiShape) => ProxmoxApiShape
  /** This leader's own config (default: the harness's shared `SubscriptionRef`). */
  readonly config?: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
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
export const nonTemplateVms = (sim: RunningSimulator): Array<SimVm> =>
  [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")

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
    const pveSettings = {
      apiUrl: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: sim.tokenSecret,
      // Simulated tasks take tens of milliseconds: poll accordingly (adaptive, as in production).
      taskPoll: { initial: "10 millis", factor: 1.5, max: "100 millis" },
      retry: { baseDelay: "50 millis", maxDelay: "500 millis" }
    } as const

    /** Starts the leader scope for `term` in the test's scope; returns its fiber. */
    const leader = (term: number, o: LeaderOptions = {}) =>
      leaderScope({
        clusterId: CLUSTER,
        shard: SHARD,
        replica: o.replica ?? `replica-${term}`,
        config: o.config ?? config,
        eventLog: { batchWindow: "5 millis" },
        ...(options.graces === undefined ? {} : { graces: options.graces }),
        ...(pki === undefined ? {} : { registration: { pki } })
      })(term).pipe(
        Effect.provide(
          o.wrapPve === undefined
            ? ProxmoxApiHttp(pveSettings)
            : Layer.effect(ProxmoxApi, Effect.map(ProxmoxApi, o.wrapPve)).pipe(Layer.provide(ProxmoxApiHttp(pveSettings)))
        ),
        Effect.provideService(ObjectStore, o.store ?? store),
        Effect.annotateLogs({ term }),
        Effect.provide(logger),
        Logger.withMinimumLogLevel(LogLevel.Debug),
        Effect.forkScoped
      )

    /** A PVE client for the test itself (acting behind the leader's back). */
    const pve = Context.get(yield* Layer.build(ProxmoxApiHttp(pveSettings)), ProxmoxApi)

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
      sim, store, config, logs, leader, pve, setConfig, state, events, waitUntil,
      /** Problems keeping the shard from being converged at `size` running instances, with nothing leaked. */
      convergence: (size: number) => Effect.map(state, (s) => convergenceProblems(sim, s, size))
    }
  })

export type Harness = Effect.Effect.Success<ReturnType<typeof makeHarness>>

/**
 * Everything that must hold once the shard is at rest with `size` instances: the log has exactly `size`
 * instances, all running; PVE has exactly one VM per instance (by name) and no other non-template VM, each
 * configured as the saga configures it and running; every disk belongs to an existing VM; the only ISOs are
 * the instances' own.
 */
export const convergenceProblems = (sim: RunningSimulator, state: State, size: number): Array<string> => {
  const problems: Array<string> = []
  const instances = allInstances(state)
  if (instances.length !== size) problems.push(`log: ${instances.length} instances, want ${size} (${describe(instances)})`)
  for (const i of instances) if (i.phase !== "running") problems.push(`log: ${i.id} is ${i.phase}`)
  const ids = new Set(instances.map((i) => i.id))
  const byName = new Map<string, Array<SimVm>>()
  for (const vm of nonTemplateVms(sim)) {
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
  problems.push(...volumeProblems(sim, ids))
  return problems
}

const describe = (instances: ReadonlyArray<Instance>) => instances.map((i) => `${i.id.slice(-6)}:${i.phase}`).join(", ")

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
  if (c.get("ide2") !== `${ISO_STORAGE}:iso/nstance-${instance.id}.iso,media=cdrom`) problems.push(`${where}: ide2 ${c.get("ide2")}`)
  if (vm.status !== "running") problems.push(`${where}: ${vm.status}`)
  if (c.get("lock") !== undefined) problems.push(`${where}: locked (${c.get("lock")})`)
  return problems
}

/** Disks of VMs that do not exist, and ISOs other than the instances' own. */
export const volumeProblems = (sim: RunningSimulator, instanceIds: ReadonlySet<string>): Array<string> => {
  const problems: Array<string> = []
  for (const volume of sim.model.volumes.values()) {
    if (volume.content === "images") {
      if (volume.vmid === undefined || !sim.model.vms.has(volume.vmid)) problems.push(`pve: leaked disk ${volume.volid} on ${volume.node ?? "shared"}`)
    } else if (volume.content === "iso") {
      const match = /^[^:]+:iso\/nstance-(.+)\.iso$/.exec(volume.volid)
      if (match === null || !instanceIds.has(match[1]!)) problems.push(`pve: leaked ISO ${volume.volid} on ${volume.node ?? "shared"}`)
    }
  }
  return problems
}

/**
 * A store that stops the leader right around its `k`-th segment write (`log/…` PUT): `after` lets that
 * write land and then never returns (the process died after a durable append); `before` never lets it land
 * (the process died after the side effect, before its result was recorded). Every later PUT hangs too.
 * `crashed` completes when the crash point is reached, so the test can interrupt the leader's fiber.
 */
export const crashingStore = (base: ObjectStoreShape, k: number, mode: "before" | "after") =>
  Effect.gen(function* () {
    const crashed = yield* Deferred.make<void>()
    let segments = 0
    let dead = false
    const store: ObjectStoreShape = {
      ...base,
      put: (key, body, pre) =>
        Effect.suspend(() => {
          if (dead) return Effect.never
          if (!key.startsWith("log/")) return base.put(key, body, pre)
          segments++
          if (segments < k) return base.put(key, body, pre)
          dead = true
          const die = Deferred.succeed(crashed, undefined).pipe(Effect.zipRight(Effect.never))
          return mode === "before" ? die : base.put(key, body, pre).pipe(Effect.zipRight(die))
        })
    }
    return { store, crashed, segments: () => segments }
  })

/** Runs a leader until `crashed` completes, then interrupts it (the process is gone). */
export const crashLeader = (fiber: Fiber.RuntimeFiber<never, unknown>, crashed: Deferred.Deferred<void>, timeout: Duration.DurationInput = "10 seconds") =>
  Deferred.await(crashed).pipe(
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error("the crash point was never reached") }),
    Effect.zipRight(Fiber.interrupt(fiber)),
    Effect.asVoid
  )

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
 * through the leader: clone of the node's template, one config call, optionally an ISO and a start.
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
