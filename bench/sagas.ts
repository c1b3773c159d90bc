/**
 * The leader's sagas end to end: the real `leaderScope` (event log, adoption, saga runner, reconcile, GC) on
 * a memory store against the simulator (3 nodes). One group, cloned from the per-node `debian-13-template`
 * (2 GiB disk on `local-lvm`) with the ISO on `local`; the instance type's 8 GiB disk means a resize per VM.
 * The group's size is changed through the config `SubscriptionRef` the leader reads, as a config push would.
 *
 * 1. calls — HTTP simulator, "fast" latency, N = 10: non-polling PVE calls per create and per delete (scale
 *    0 → N → 0), by endpoint, from the simulator's request log (task-status polls counted apart); wall time
 *    per create (InstanceRequested → Started) against the sum of its PVE task times, one at a time and N at
 *    once. The counts are exact; the fast run's times are dominated by the machine's load.
 * 2. simulated — the in-process simulator (`ProxmoxApiSim`) on the realistic latency model under Effect's
 *    `TestClock`, jumping from one scheduled wake-up to the next: creates/min for 100 VMs against the
 *    critical-path limit, where the storage lock's time goes, wall time per create vs its PVE task times, and
 *    event-log PUTs per created VM at 1 (one at a time), 20 and 100 concurrent creates. Simulated time does not
 *    depend on the machine's load; pveproxy's per-request latency (5–40 ms) is not modelled in process.
 * 3. realistic — the HTTP simulator on the realistic latency model in real time: the same creates/min figure
 *    for BENCH_SAGAS_VMS VMs (default 30: 100 take about 6 minutes), as the wall-clock check of part 2.
 *
 * BENCH_SAGAS_PARTS=calls,simulated,realistic,large selects parts (default all; "large" is the simulated run at 1,000 VMs; parts not run keep their last figures). Prints tables and writes
 * bench/results/sagas.json (with the machine's core count and load).
 */
import { loadavg } from "node:os"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Chunk, Clock, Context, Duration, Effect, Either, FiberRef, HashMap, Layer, Logger, LogLevel, Option, type Scope, SubscriptionRef, TestClock, TestContext } from "effect"
import { type ParsedShardConfig, parseShardConfig } from "../src/domain/config/index.js"
import type { ShardEventEncoded } from "../src/domain/shard/events.js"
import { allInstances } from "../src/domain/shard/state.js"
import { replayStore } from "../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { ProxmoxApiHttp } from "../src/layers/ProxmoxApiHttp.js"
import { ObjectStore, type ObjectStoreShape } from "../src/services/ObjectStore.js"
import { ProxmoxApi, type ProxmoxApiShape } from "../src/services/ProxmoxApi.js"
import { leaderScope } from "../src/shard/LeaderScope.js"
import { type LatencyModel, PVE_SECONDS, scaled } from "../src/sim/latency.js"
import { ProxmoxApiSim, SimHandle } from "../src/sim/ProxmoxApiSim.js"
import { LatencyFast, LatencyRealistic, type SimModel, type SimTask, startSimulator } from "../src/sim/server.js"
import { percentile } from "./lib/stats.js"
import { writeResult } from "./lib/results.js"

const NODES = 3
/** The simulator's templates have one 2 GiB disk. */
const TEMPLATE_DISK_GIB = 2
const TASK_POLL = "GET /nodes/{node}/tasks/{upid}/status"

const configText = (size: number) => `// bench shard
{
  "cluster": { "id": "bench" },
  "shard": {
    "id": "pve-a",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z1", "options": { "cloud_init_iso_storage": "local" } },
    "bind": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": ":8992", "operator_addr": ":8993", "agent_addr": ":8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "10.0.0.1:8992", "operator_addr": "10.0.0.1:8993", "agent_addr": "10.0.0.1:8994" },
    "subnet_pools": { "edge": ["vmbr1"] },
    // Out of the way of the counts: a GC pass is a cluster read (and confirmations) every interval.
    "garbage_collection": { "interval": "1h", "registration_timeout": "2h" },
  },
  "defaults": {
    "args": { "StoragePool": "local-lvm", "TemplateName": "debian-13-template", "StartOnBoot": true },
    "userdata": { "content": "#!/bin/sh\\necho hello\\n" },
  },
  "templates": { "web": { "kind": "web", "instance_type": "cpu:1,memory:1024,disk:8", "subnet_pool": "edge" } },
  "groups": { "shop": { "web": { "template": "web", "size": ${size} } } },
}
`

const parseConfig = (size: number): ParsedShardConfig => {
  const parsed = parseShardConfig(configText(size))
  if (Either.isLeft(parsed)) throw new Error(`bench config does not parse: ${JSON.stringify(parsed.left.problems)}`)
  return parsed.right
}

interface TaskTiming {
  readonly type: string
  readonly node: string
  readonly start: number
  end: number | undefined
}

/**
 * A leader on a fresh simulator and memory store, with everything the figures need recorded. `pve` is the
 * simulator's client (HTTP or in process) and `tick` lets time pass while the bench waits: a real sleep, or
 * the TestClock's jump to its next wake-up. Times are the simulator's (`model.time`) and the log's (`Clock`).
 */
const makeRig = (model: SimModel, api: ProxmoxApiShape, tick: Effect.Effect<void>) =>
  Effect.gen(function* () {
    // Task start and end to the millisecond (the task records carry whole seconds): the simulator puts every
    // task into its table as it starts it, and resolves its `done` when it stops.
    const tasks = new Map<string, TaskTiming>()
    const table = model.tasks
    const set = table.set.bind(table)
    table.set = (upid: string, task: SimTask) => {
      if (!tasks.has(upid)) {
        const timing: TaskTiming = { type: task.type, node: task.node, start: model.time.now(), end: undefined }
        tasks.set(upid, timing)
        void task.done.then(() => { timing.end = model.time.now() })
      }
      return set(upid, task)
    }

    const base = makeMemoryStore()
    const puts = { log: 0, snapshot: 0, other: 0 }
    const events: Array<ShardEventEncoded> = []
    const store: ObjectStoreShape = {
      ...base,
      put: (key, body, pre) =>
        Effect.suspend(() => {
          if (key.startsWith("log/")) {
            puts.log++
            events.push(...(JSON.parse(new TextDecoder().decode(body)) as { events: Array<ShardEventEncoded> }).events)
          } else if (key.startsWith("snapshot/")) puts.snapshot++
          else puts.other++
          return base.put(key, body, pre)
        })
    }

    /** Which instance's saga waited on each task (the saga runner annotates its logs with the instance). */
    const taskOwner = new Map<string, string>()
    const pve: ProxmoxApiShape = {
      ...api,
      waitTask: (node, upid, options) =>
        Effect.flatMap(FiberRef.get(FiberRef.currentLogAnnotations), (annotations) => {
          const owner = HashMap.get(annotations, "instance")
          if (Option.isSome(owner)) taskOwner.set(String(upid), String(owner.value))
          return api.waitTask(node, upid, options)
        })
    }

    const lines: Array<string> = []
    const problems: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
        lines.push(text)
        if (LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)) problems.push(`${logLevel.label} ${text}`)
      })
    )

    const config = yield* SubscriptionRef.make(parseConfig(0))
    const leader = yield* leaderScope({ clusterId: "bench", shard: "pve-a", replica: "bench", config })(1).pipe(
      Effect.provideService(ProxmoxApi, pve),
      Effect.provideService(ObjectStore, store),
      Effect.provide(logger),
      Effect.forkScoped
    )

    const running = Effect.map(replayStore(base).pipe(Effect.orDie), (r) => allInstances(r.state))
    const nonTemplateVms = () => [...model.vms.values()].filter((vm) => vm.config.get("template") !== "1")

    const waitFor = (what: string, done: () => Effect.Effect<boolean>, timeoutMs: number) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        while (!(yield* done())) {
          const exit = leader.unsafePoll()
          if (exit !== null) return yield* Effect.dieMessage(`the leader ended while waiting for ${what}: ${String(exit)}\n${problems.slice(-20).join("\n")}`)
          if ((yield* Clock.currentTimeMillis) > deadline) return yield* Effect.dieMessage(`${what}: not reached within ${timeoutMs / 1000} s\n${problems.slice(-20).join("\n")}\n${lines.slice(-20).join("\n")}`)
          yield* tick
        }
      })

    /** Sets the group's size and waits until PVE and the log agree on `size` running VMs and nothing else. */
    const scaleTo = (size: number, timeoutMs: number) =>
      Effect.gen(function* () {
        yield* SubscriptionRef.set(config, parseConfig(size))
        yield* waitFor(`${size} running`, () =>
          Effect.gen(function* () {
            const vms = nonTemplateVms()
            if (vms.length !== size || vms.some((vm) => vm.status !== "running" || vm.config.get("lock") !== undefined)) return false
            const instances = yield* running
            return instances.length === size && instances.every((i) => i.phase === "running")
          }), timeoutMs)
      })

    yield* waitFor("the leader's start (replay, LeaderElected, cluster read)", () => Effect.succeed(lines.some((l) => l.startsWith("cluster read:"))), 30_000)
    return { model, tasks, taskOwner, puts, events, problems, scaleTo }
  })

type Rig = Effect.Effect.Success<ReturnType<typeof makeRig>>

/** The HTTP simulator in real time, and the leader's HTTP client. */
const httpRig = (latency: LatencyModel, taskPoll?: { readonly initial: Duration.DurationInput; readonly factor: number; readonly max: Duration.DurationInput }) =>
  Effect.gen(function* () {
    const sim = yield* Effect.acquireRelease(
      Effect.promise(() => startSimulator({ nodes: NODES, http: true, seed: 1, latency, nodeMemoryGiB: 128 })),
      (s) => Effect.promise(() => s.close())
    )
    const context = yield* Layer.build(ProxmoxApiHttp({ apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, ...(taskPoll === undefined ? {} : { taskPoll }) }))
    return yield* makeRig(sim.model, Context.get(context, ProxmoxApi), Effect.sleep("10 millis"))
  })

/**
 * One step of simulated time: let every fiber settle at the current instant, then jump to the next wake-up
 * anyone scheduled (at least 1 ms, so fractional instants cannot stall the clock).
 */
const nextWakeUp = Effect.gen(function* () {
  yield* TestClock.adjust(0)
  const sleeps = Chunk.toReadonlyArray(yield* TestClock.sleeps())
  const now = yield* Clock.currentTimeMillis
  const next = sleeps.length === 0 ? now + 1 : Math.min(...sleeps)
  yield* TestClock.adjust(Math.max(1, Math.ceil(next - now)))
})

/** The in-process simulator on the realistic latency model, under TestClock (provide `TestContext` around it). */
const simulatedRig = Effect.gen(function* () {
  const context = yield* Layer.build(ProxmoxApiSim({ nodes: NODES, seed: 1, latency: LatencyRealistic, nodeMemoryGiB: 128 }))
  return yield* makeRig(Context.get(context, SimHandle).model, Context.get(context, ProxmoxApi), nextWakeUp)
})

// ---- figures -----------------------------------------------------------------------------------------------

const countsSince = (model: SimModel, from: number) => {
  const counts = new Map<string, number>()
  for (const r of model.requests.slice(from)) {
    const key = r.endpoint ?? `${r.method} ${r.path}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  const polls = counts.get(TASK_POLL) ?? 0
  counts.delete(TASK_POLL)
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  return { counts, polls, total }
}

const perOp = (label: string, c: ReturnType<typeof countsSince>, n: number) => {
  console.log(`  ${label}: ${(c.total / n).toFixed(2)} non-polling calls (+ ${(c.polls / n).toFixed(2)} task polls)`)
  const rows = [...c.counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  for (const [endpoint, count] of rows) console.log(`    ${(count / n).toFixed(2).padStart(6)}  ${endpoint}`)
  return {
    nonPollingPerOp: c.total / n,
    pollsPerOp: c.polls / n,
    byEndpoint: Object.fromEntries(rows.map(([endpoint, count]) => [endpoint, count / n]))
  }
}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length)

/** Per created instance: wall time in the log against the PVE tasks its saga waited on. */
const createTimings = (rig: Rig, ids: ReadonlySet<string>) => {
  const requested = new Map<string, number>()
  const started = new Map<string, number>()
  for (const e of rig.events) {
    if (!("instanceId" in e) || !ids.has(e.instanceId) || !("at" in e)) continue
    if (e._tag === "InstanceRequested") requested.set(e.instanceId, e.at)
    if (e._tag === "Started") started.set(e.instanceId, e.at)
  }
  const byType = new Map<string, Array<number>>()
  const rows = [...ids].flatMap((id) => {
    const from = requested.get(id)
    const to = started.get(id)
    if (from === undefined || to === undefined) return []
    let taskMs = 0
    for (const [upid, owner] of rig.taskOwner) {
      const timing = rig.tasks.get(upid)
      if (owner !== id || timing?.end === undefined) continue
      taskMs += timing.end - timing.start
      byType.set(timing.type, [...(byType.get(timing.type) ?? []), timing.end - timing.start])
    }
    return [{ id, wallMs: to - from, taskMs }]
  })
  const wall = rows.map((r) => r.wallMs).sort((a, b) => a - b)
  const task = rows.map((r) => r.taskMs).sort((a, b) => a - b)
  return {
    creates: rows.length,
    wallMeanMs: mean(wall),
    wallP50Ms: percentile(wall, 0.5),
    wallMaxMs: wall.at(-1) ?? Number.NaN,
    taskSumMeanMs: mean(task),
    ratio: mean(wall) / mean(task),
    taskMeanMsByType: Object.fromEntries([...byType].map(([type, xs]) => [type, mean(xs)]))
  }
}

const printTimings = (label: string, t: ReturnType<typeof createTimings>) =>
  console.log(
    `  ${label}: wall ${t.wallMeanMs.toFixed(0)} ms mean (p50 ${t.wallP50Ms.toFixed(0)}, max ${t.wallMaxMs.toFixed(0)}) vs ` +
      `PVE tasks ${t.taskSumMeanMs.toFixed(0)} ms → wall/task ${t.ratio.toFixed(2)}; mean task ms: ` +
      Object.entries(t.taskMeanMsByType).map(([type, ms]) => `${type} ${ms.toFixed(0)}`).join(", ")
  )

/**
 * Where a create's time goes: per instance, the time from each event to the next in its log (the step that
 * ends with the later event, and everything it waited for), as the mean over the batch; and the first
 * instance's steps and tasks, from the config change.
 */
const stepTimings = (rig: Rig, ids: ReadonlySet<string>, t0: number) => {
  const byInstance = new Map<string, Array<{ readonly tag: string; readonly at: number }>>()
  for (const e of rig.events) {
    if (!("instanceId" in e) || !ids.has(e.instanceId) || !("at" in e)) continue
    const list = byInstance.get(e.instanceId) ?? []
    list.push({ tag: e._tag, at: e.at })
    byInstance.set(e.instanceId, list)
  }
  const steps = new Map<string, Array<number>>()
  for (const list of byInstance.values()) {
    for (let i = 1; i < list.length; i++) {
      // Events of one write carry (about) one time: the step is the write before's.
      if (list[i]!.at - list[i - 1]!.at <= 1) continue
      const key = `${list[i - 1]!.tag} → ${list[i]!.tag}`
      steps.set(key, [...(steps.get(key) ?? []), list[i]!.at - list[i - 1]!.at])
    }
  }
  const meanMsByStep = Object.fromEntries([...steps].map(([key, xs]) => [key, Math.round(mean(xs))]))
  const first = [...byInstance].find(([, list]) => list.some((e) => e.tag === "Cloned"))
  const firstInstance = first === undefined ? undefined : {
    events: first[1].map((e) => `${((e.at - t0) / 1000).toFixed(2)} ${e.tag}`),
    tasks: [...rig.taskOwner].filter(([, owner]) => owner === first[0]).flatMap(([upid]) => {
      const t = rig.tasks.get(upid)
      return t === undefined ? [] : [`${t.type} ${((t.start - t0) / 1000).toFixed(2)}–${t.end === undefined ? "?" : ((t.end - t0) / 1000).toFixed(2)}`]
    })
  }
  return { meanMsByStep, firstInstance }
}

const instanceIdsOf = (events: ReadonlyArray<ShardEventEncoded>, from: number) =>
  new Set(events.slice(from).flatMap((e) => (e._tag === "InstanceRequested" ? [e.instanceId] : [])))

/**
 * The critical path of the latency model. PVE holds a local storage's allocation lock (per node) for the
 * whole disk copy of a full clone and for a resize, so creations on one node are serialised on it; the rest
 * (setup, upload, config, start, API calls: 3 pveproxy workers at 5–40 ms a call) runs beside it. Per VM the
 * lock is held copy = fullCopyPerGiB × template GiB (4.5 s × 2) + resize (0.5 s) = 9.5 s, so the cluster
 * cannot create faster than nodes × 60 / 9.5 s ≈ 18.9 per minute. For a batch of N there is also a ramp the
 * lock cannot hide — the first upload and clone setup before the first copy (0.3 + 1 + 0.2 s) and the last
 * start after the last resize (1.5 s) — so N VMs take at least ⌈N / nodes⌉ × 9.5 s + 3 s.
 */
const criticalPath = (m: LatencyModel, vms: number) => {
  const lockMs = scaled(m, PVE_SECONDS.fullCopyPerGiB * TEMPLATE_DISK_GIB + PVE_SECONDS.resize)
  const rampMs = scaled(m, PVE_SECONDS.uploadBase + PVE_SECONDS.cloneSetup + PVE_SECONDS.storageOp + PVE_SECONDS.start)
  const bestMs = Math.ceil(vms / NODES) * lockMs + rampMs
  return { lockSecondsPerVm: lockMs / 1000, limitPerMin: (NODES * 60_000) / lockMs, bestSecondsForBatch: bestMs / 1000, bestPerMinForBatch: (vms * 60_000) / bestMs }
}

/**
 * Where each node's storage lock went, from the task timings: a clone holds it for its copy (the task's last
 * 9 s), a resize for its last 0.5 s. Busy time, idle gaps between the first and last hold, and how long
 * clones and resizes waited for it (task time beyond setup + copy, resp. the resize itself).
 */
const lockUse = (m: LatencyModel, tasks: ReadonlyArray<TaskTiming>) => {
  const copyMs = scaled(m, PVE_SECONDS.fullCopyPerGiB * TEMPLATE_DISK_GIB)
  const resizeMs = scaled(m, PVE_SECONDS.resize)
  const cloneOwnMs = scaled(m, PVE_SECONDS.cloneSetup + PVE_SECONDS.storageOp) + copyMs
  const done = tasks.filter((t): t is TaskTiming & { end: number } => t.end !== undefined)
  const nodes = [...new Set(done.filter((t) => t.type === "qmclone").map((t) => t.node))].sort()
  const perNode = nodes.map((node) => {
    const holds = done
      .filter((t) => t.node === node && (t.type === "qmclone" || t.type === "resize"))
      .map((t) => [t.end - (t.type === "qmclone" ? copyMs : resizeMs), t.end] as const)
      .sort((a, b) => a[0] - b[0])
    let busy = 0
    let reach = -Infinity
    for (const [from, to] of holds) {
      const start = Math.max(from, reach)
      if (to > start) busy += to - start
      reach = Math.max(reach, to)
    }
    const span = holds.length === 0 ? 0 : reach - holds[0]![0]
    const clones = done.filter((t) => t.node === node && t.type === "qmclone")
    return { node, vms: clones.length, busySeconds: busy / 1000, idleSeconds: (span - busy) / 1000, utilisation: span === 0 ? Number.NaN : busy / span }
  })
  const cloneWaits = done.filter((t) => t.type === "qmclone").map((t) => t.end - t.start - cloneOwnMs)
  const resizeWaits = done.filter((t) => t.type === "resize").map((t) => t.end - t.start - resizeMs)
  return { perNode, cloneLockWaitMeanMs: mean(cloneWaits), cloneLockWaitMaxMs: Math.max(...cloneWaits), resizeLockWaitMeanMs: mean(resizeWaits) }
}

// ---- 1: calls (fast latency, HTTP) -------------------------------------------------------------------------

const N = 10
/** Task polls scaled to the fast preset's tens-of-milliseconds tasks (the production default starts at 150 ms). */
const FAST_POLL = { initial: "10 millis", factor: 1.5, max: "100 millis" } as const

const callsRun = Effect.gen(function* () {
  console.log(`calls: HTTP simulator, fast latency (time scale ${LatencyFast.timeScale}), task polls ${FAST_POLL.initial} ×${FAST_POLL.factor} up to ${FAST_POLL.max}`)
  const rig = yield* httpRig(LatencyFast, FAST_POLL)

  // N at once, on a leader that has just started (its cluster-view caches are empty): calls per create and
  // per delete, and the timings with the per-node limits in play.
  const createFrom = rig.model.requests.length
  let eventsFrom = rig.events.length
  const putsBefore = rig.puts.log
  const t0 = Date.now()
  yield* rig.scaleTo(N, 120_000)
  const createSeconds = (Date.now() - t0) / 1000
  const creates = countsSince(rig.model, createFrom)
  const batch = createTimings(rig, instanceIdsOf(rig.events, eventsFrom))
  const createLogPuts = rig.puts.log - putsBefore

  const deleteFrom = rig.model.requests.length
  const t1 = Date.now()
  yield* rig.scaleTo(0, 120_000)
  const deleteSeconds = (Date.now() - t1) / 1000
  const deletes = countsSince(rig.model, deleteFrom)

  // Then creates one at a time: the create's own critical path, nothing queued in front of it.
  eventsFrom = rig.events.length
  for (let size = 1; size <= 5; size++) yield* rig.scaleTo(size, 60_000)
  const isolated = createTimings(rig, instanceIdsOf(rig.events, eventsFrom))

  console.log(`\nPVE calls, ${N} VMs: created in ${createSeconds.toFixed(2)} s, deleted in ${deleteSeconds.toFixed(2)} s`)
  const perCreate = perOp("per create", creates, N)
  const perDelete = perOp("per delete", deletes, N)
  console.log(`\nwall time per create vs the sum of its PVE task times (fast latency, real time: the machine's load dominates)`)
  printTimings("one at a time (5)", isolated)
  printTimings(`${N} at once     `, batch)
  return {
    vms: N,
    createSeconds,
    deleteSeconds,
    perCreate,
    perDelete,
    timings: { oneAtATime: isolated, batch },
    logPutsPerCreate: createLogPuts / N,
    warnings: rig.problems
  }
}).pipe(Effect.scoped)

// ---- 2 + 3: a batch on the realistic latency model -----------------------------------------------------------

/** Scales a fresh leader from 0 to `vms` and reports the batch's figures (times from the log and the simulator's clock). */
const batchFigures = (rig: Rig, vms: number, timeoutMs: number) =>
  Effect.gen(function* () {
    const m = LatencyRealistic
    const eventsFrom = rig.events.length
    const putsBefore = { ...rig.puts }
    const requestsFrom = rig.model.requests.length
    const tasksBefore = new Set(rig.tasks.keys())
    const t0 = yield* Clock.currentTimeMillis
    yield* rig.scaleTo(vms, timeoutMs)
    const seconds = ((yield* Clock.currentTimeMillis) - t0) / 1000
    const perMin = (vms * 60) / seconds
    const cp = criticalPath(m, vms)
    // When the steps finished across the batch: first, median and last, in seconds after the config change.
    const milestones = Object.fromEntries(["Cloned", "Resized", "Started"].map((tag) => {
      const ats = rig.events.slice(eventsFrom).flatMap((e) => (e._tag === tag && "at" in e ? [(e.at - t0) / 1000] : [])).sort((a, b) => a - b)
      return [tag, { first: ats[0] ?? Number.NaN, median: percentile(ats, 0.5), last: ats.at(-1) ?? Number.NaN }]
    }))
    const timings = createTimings(rig, instanceIdsOf(rig.events, eventsFrom))
    const steps = stepTimings(rig, instanceIdsOf(rig.events, eventsFrom), t0)
    const lock = lockUse(m, [...rig.tasks].filter(([upid]) => !tasksBefore.has(upid)).map(([, t]) => t))
    const logPuts = rig.puts.log - putsBefore.log
    const calls = countsSince(rig.model, requestsFrom)
    return {
      vms,
      seconds,
      createsPerMin: perMin,
      ...cp,
      ratio: perMin / cp.limitPerMin,
      ratioToBestForBatch: perMin / cp.bestPerMinForBatch,
      milestonesSeconds: milestones,
      lock,
      timings,
      steps,
      logPutsPerVm: logPuts / vms,
      snapshotPutsPerVm: (rig.puts.snapshot - putsBefore.snapshot) / vms,
      eventsPerPut: (rig.events.length - eventsFrom) / Math.max(1, logPuts),
      pveCallsPerCreate: calls.total / vms,
      taskPollsPerCreate: calls.polls / vms,
      pveproxyQueuePeak: rig.model.workers.peakQueue,
      warnings: rig.problems
    }
  })

type Batch = Effect.Effect.Success<ReturnType<typeof batchFigures>>

const printBatch = (b: Batch) => {
  console.log(
    `  ${b.vms} creates in ${b.seconds.toFixed(1)} s = ${b.createsPerMin.toFixed(1)} creates/min; critical-path limit ${b.limitPerMin.toFixed(1)}/min ` +
      `(${NODES} nodes × 60 / ${b.lockSecondsPerVm.toFixed(1)} s of storage lock per VM) → ratio ${b.ratio.toFixed(2)} ` +
      `(best possible for this batch ${b.bestPerMinForBatch.toFixed(1)}/min → ${b.ratioToBestForBatch.toFixed(2)} of it)`
  )
  for (const [tag, at] of Object.entries(b.milestonesSeconds)) {
    console.log(`  ${tag.padEnd(8)} first ${at.first.toFixed(1).padStart(6)} s, median ${at.median.toFixed(1).padStart(6)} s, last ${at.last.toFixed(1).padStart(6)} s after the config change`)
  }
  console.log(
    `  storage lock: ` + b.lock.perNode.map((n) => `${n.node} ${n.vms} VMs, busy ${n.busySeconds.toFixed(1)} s, idle ${n.idleSeconds.toFixed(1)} s (${(100 * n.utilisation).toFixed(1)}%)`).join("; ") +
      `; waits at the lock: clones ${b.lock.cloneLockWaitMeanMs.toFixed(0)} ms mean (max ${b.lock.cloneLockWaitMaxMs.toFixed(0)}), resizes ${b.lock.resizeLockWaitMeanMs.toFixed(0)} ms`
  )
  printTimings("per create", b.timings)
  console.log(`  mean ms per step: ${Object.entries(b.steps.meanMsByStep).map(([step, ms]) => `${step} ${ms}`).join("; ")}`)
  if (b.steps.firstInstance !== undefined) {
    console.log(`  first instance: ${b.steps.firstInstance.events.join(", ")}; tasks ${b.steps.firstInstance.tasks.join(", ")}`)
  }
  console.log(
    `  event-log PUTs per created VM: ${b.logPutsPerVm.toFixed(2)} (+ ${b.snapshotPutsPerVm.toFixed(2)} snapshots), ${b.eventsPerPut.toFixed(2)} events per PUT; ` +
      `PVE calls per create ${b.pveCallsPerCreate.toFixed(2)} + ${b.taskPollsPerCreate.toFixed(2)} task polls; pveproxy queue peak ${b.pveproxyQueuePeak}`
  )
}

/** Creates one at a time (each waits for the one before to run): PUTs per VM with nothing to batch with. */
const oneAtATime = (rig: Rig, count: number, timeoutMs: number) =>
  Effect.gen(function* () {
    const eventsFrom = rig.events.length
    const before = rig.puts.log
    for (let size = 1; size <= count; size++) yield* rig.scaleTo(size, timeoutMs)
    return { vms: count, logPutsPerVm: (rig.puts.log - before) / count, timings: createTimings(rig, instanceIdsOf(rig.events, eventsFrom)) }
  })

const simulated = <A>(effect: Effect.Effect<A, never, Scope.Scope>) =>
  Effect.gen(function* () {
    const wall = Date.now()
    const result = yield* effect.pipe(Effect.scoped, Effect.provide(TestContext.TestContext))
    return { result, wallSeconds: (Date.now() - wall) / 1000 }
  })

const simulatedRun = (vms: number) =>
  Effect.gen(function* () {
    console.log(`\nsimulated: in-process simulator, realistic latency, TestClock (production task polls from 150 ms, at most 2.5 s apart)`)
    const single = yield* simulated(Effect.flatMap(simulatedRig, (rig) => oneAtATime(rig, 3, 120_000)))
    console.log(`  1 at a time (3 VMs, ${single.wallSeconds.toFixed(1)} s of wall time): event-log PUTs per created VM ${single.result.logPutsPerVm.toFixed(2)}`)
    printTimings("  one at a time", single.result.timings)
    const twenty = yield* simulated(Effect.flatMap(simulatedRig, (rig) => batchFigures(rig, 20, 600_000)))
    console.log(`  20 at once (${twenty.wallSeconds.toFixed(1)} s of wall time):`)
    printBatch(twenty.result)
    const many = yield* simulated(Effect.flatMap(simulatedRig, (rig) => batchFigures(rig, vms, Math.max(600_000, vms * 12_000))))
    console.log(`  ${vms} at once (${many.wallSeconds.toFixed(1)} s of wall time):`)
    printBatch(many.result)
    return {
      note: "simulated seconds (TestClock); pveproxy's per-request latency is not modelled in process",
      oneAtATime: { ...single.result, wallSeconds: single.wallSeconds },
      batch20: { ...twenty.result, wallSeconds: twenty.wallSeconds },
      batch: { ...many.result, wallSeconds: many.wallSeconds },
      logPutsPerVmByConcurrency: { "1": single.result.logPutsPerVm, "20": twenty.result.logPutsPerVm, [String(vms)]: many.result.logPutsPerVm }
    }
  })

const realisticRun = (vms: number) =>
  Effect.gen(function* () {
    console.log(`\nrealistic: HTTP simulator in real time, ${vms} VMs, production task polls`)
    const rig = yield* httpRig(LatencyRealistic)
    const batch = yield* batchFigures(rig, vms, Math.max(600_000, vms * 12_000))
    printBatch(batch)
    return batch
  }).pipe(Effect.scoped)

// ---- main --------------------------------------------------------------------------------------------------

const summariseWarnings = (label: string, warnings: ReadonlyArray<string>) => {
  if (warnings.length === 0) return
  const distinct = new Map<string, number>()
  for (const w of warnings) {
    const key = w.replace(/[a-z]{3}[0-9a-hj-km-np-tv-z]{26}/g, "<id>").replace(/\d+/g, "N")
    distinct.set(key, (distinct.get(key) ?? 0) + 1)
  }
  console.log(`  ${label}: ${warnings.length} warnings/errors logged by the leader:`)
  for (const [text, count] of [...distinct].slice(0, 8)) console.log(`    ${String(count).padStart(4)}× ${text.slice(0, 200)}`)
}

const parts = new Set((process.env["BENCH_SAGAS_PARTS"] ?? "calls,simulated,realistic,large").split(",").map((p) => p.trim()))
const vmsSimulated = Number(process.env["BENCH_SAGAS_SIM_VMS"] ?? 100)
const vmsRealistic = Number(process.env["BENCH_SAGAS_VMS"] ?? 30)
const started = loadavg()
const figures: Record<string, unknown> = { loadavgAtStart: started }
if (parts.has("calls")) {
  const calls = await Effect.runPromise(callsRun)
  summariseWarnings("calls", calls.warnings)
  figures["calls"] = calls
}
if (parts.has("simulated")) {
  const sim = await Effect.runPromise(simulatedRun(vmsSimulated))
  summariseWarnings("simulated", [...sim.batch20.warnings, ...sim.batch.warnings])
  figures["simulated"] = sim
}
if (parts.has("realistic")) {
  const realistic = await Effect.runPromise(realisticRun(vmsRealistic))
  summariseWarnings("realistic", realistic.warnings)
  figures["realistic"] = realistic
}
if (parts.has("large")) {
  // creates/min at a thousand VMs: the same world as "simulated", ten times the batch.
  const large = await Effect.runPromise(simulatedRun(Number(process.env["BENCH_SAGAS_LARGE_VMS"] ?? 1000)))
  summariseWarnings("large", [...large.batch20.warnings, ...large.batch.warnings])
  figures["large"] = large
}
// Parts not run this time keep their last figures, so one part can be re-measured on its own.
const previous = (() => {
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), "results", "sagas.json"), "utf8"))
    return typeof parsed === "object" && parsed !== null && "figures" in parsed && typeof parsed.figures === "object" && parsed.figures !== null ? parsed.figures : {}
  } catch {
    return {}
  }
})()
const file = writeResult("sagas", { ...previous, ...figures })
console.log(`\nwrote ${file}`)
