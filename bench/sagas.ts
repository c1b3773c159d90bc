/**
 * The leader's sagas end to end: the real `leaderScope` (event log, adoption, saga runner, reconcile, GC)
 * with the real HTTP PVE client against the HTTP simulator (3 nodes), on a memory store. One group, cloned
 * from the per-node `debian-13-template` (2 GiB disk on `local-lvm`) with the ISO on `local`; the instance
 * type's 8 GiB disk means a resize per VM. The group's size is changed through the config `SubscriptionRef`
 * the leader reads, as a config push would.
 *
 * 1. "fast" latency, N = 10: non-polling PVE calls per create and per delete (scale 0 → N → 0), by
 *    endpoint, from the simulator's request log (task-status polls counted apart).
 * 2. "fast" latency: wall time per create (InstanceRequested → Started in the log) against the sum of its
 *    PVE task times (every task the saga waited on, timed by hooking the simulator's task table), once for
 *    creates one at a time and once inside the batch of N.
 * 3. "realistic" latency: creates/min for BENCH_SAGAS_VMS VMs (default 30 — 100 would take over 5 minutes
 *    at the ~19/min the cluster allows) against the critical-path limit of the latency model, and event-log
 *    PUTs per created VM in that run.
 *
 * Prints tables and writes bench/results/sagas.json.
 */
import { loadavg } from "node:os"
import { Effect, Either, Fiber, FiberRef, HashMap, Layer, Logger, LogLevel, Option, SubscriptionRef } from "effect"
import { type ParsedShardConfig, parseShardConfig } from "../src/domain/config/index.js"
import type { ShardEventEncoded } from "../src/domain/shard/events.js"
import { allInstances } from "../src/domain/shard/state.js"
import { replayStore } from "../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { ProxmoxApiHttp, type ProxmoxApiSettings } from "../src/layers/ProxmoxApiHttp.js"
import { ObjectStore, type ObjectStoreShape } from "../src/services/ObjectStore.js"
import { ProxmoxApi } from "../src/services/ProxmoxApi.js"
import { leaderScope } from "../src/shard/LeaderScope.js"
import { type LatencyModel, PVE_SECONDS, scaled } from "../src/sim/latency.js"
import { LatencyFast, LatencyRealistic, type RunningSimulator, type SimTask, startSimulator } from "../src/sim/server.js"
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
  readonly start: number
  end: number | undefined
}

/** A leader on a fresh simulator and memory store, with everything the figures need recorded. */
const makeRig = (latency: LatencyModel, taskPoll: ProxmoxApiSettings["taskPoll"]) =>
  Effect.gen(function* () {
    const sim = yield* Effect.acquireRelease(
      Effect.promise(() => startSimulator({ nodes: NODES, http: true, seed: 1, latency, nodeMemoryGiB: 128 })),
      (s) => Effect.promise(() => s.close())
    )
    // Task start and end to the millisecond (the task records carry whole seconds): the simulator puts every
    // task into its table as it starts it, and resolves its `done` when it stops.
    const tasks = new Map<string, TaskTiming>()
    const table = sim.model.tasks
    const set = table.set.bind(table)
    table.set = (upid: string, task: SimTask) => {
      if (!tasks.has(upid)) {
        const timing: TaskTiming = { type: task.type, start: Date.now(), end: undefined }
        tasks.set(upid, timing)
        void task.done.then(() => { timing.end = Date.now() })
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
    const pveSettings: ProxmoxApiSettings = { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, ...(taskPoll === undefined ? {} : { taskPoll }) }
    const pve = Layer.effect(
      ProxmoxApi,
      Effect.map(ProxmoxApi, (api) => ({
        ...api,
        waitTask: (node: string, upid: Parameters<typeof api.waitTask>[1], options?: Parameters<typeof api.waitTask>[2]) =>
          Effect.flatMap(FiberRef.get(FiberRef.currentLogAnnotations), (annotations) => {
            const owner = HashMap.get(annotations, "instance")
            if (Option.isSome(owner)) taskOwner.set(String(upid), String(owner.value))
            return api.waitTask(node, upid, options)
          })
      }))
    ).pipe(Layer.provide(ProxmoxApiHttp(pveSettings)))

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
      Effect.provide(pve),
      Effect.provideService(ObjectStore, store),
      Effect.provide(logger),
      Effect.forkScoped
    )

    const running = Effect.map(replayStore(base).pipe(Effect.orDie), (r) => allInstances(r.state))
    const nonTemplateVms = () => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")

    const waitFor = (what: string, done: () => Effect.Effect<boolean>, timeoutMs: number, everyMs: number) =>
      Effect.gen(function* () {
        const deadline = Date.now() + timeoutMs
        while (!(yield* done())) {
          const exit = leader.unsafePoll()
          if (exit !== null) return yield* Effect.dieMessage(`the leader ended while waiting for ${what}: ${String(exit)}\n${problems.slice(-20).join("\n")}`)
          if (Date.now() > deadline) return yield* Effect.dieMessage(`${what}: not reached within ${timeoutMs / 1000} s\n${problems.slice(-20).join("\n")}\n${lines.slice(-20).join("\n")}`)
          yield* Effect.sleep(`${everyMs} millis`)
        }
      })

    /** Sets the group's size and waits until PVE and the log agree on `size` running VMs and nothing else. */
    const scaleTo = (size: number, timeoutMs: number, everyMs: number) =>
      Effect.gen(function* () {
        yield* SubscriptionRef.set(config, parseConfig(size))
        yield* waitFor(`${size} running`, () =>
          Effect.gen(function* () {
            const vms = nonTemplateVms()
            if (vms.length !== size || vms.some((vm) => vm.status !== "running" || vm.config.get("lock") !== undefined)) return false
            const instances = yield* running
            return instances.length === size && instances.every((i) => i.phase === "running")
          }), timeoutMs, everyMs)
      })

    yield* waitFor("the leader's start (replay, LeaderElected, cluster read)", () => Effect.succeed(lines.some((l) => l.startsWith("cluster read:"))), 30_000, 20)
    return { sim, tasks, taskOwner, puts, events, problems, scaleTo, leader }
  })

// ---- figures -----------------------------------------------------------------------------------------------

const countsSince = (sim: RunningSimulator, from: number) => {
  const counts = new Map<string, number>()
  for (const r of sim.model.requests.slice(from)) {
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

type Rig = Effect.Effect.Success<ReturnType<typeof makeRig>>

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
  const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
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

const instanceIdsOf = (events: ReadonlyArray<ShardEventEncoded>, from: number) =>
  new Set(events.slice(from).flatMap((e) => (e._tag === "InstanceRequested" ? [e.instanceId] : [])))

// ---- 1 + 2: fast latency -----------------------------------------------------------------------------------

const N = 10
/** Task polls scaled to the fast preset's tens-of-milliseconds tasks (the production default starts at 150 ms). */
const FAST_POLL = { initial: "10 millis", factor: 1.5, max: "100 millis" } as const

const fastRun = Effect.gen(function* () {
  console.log(`fast latency (time scale ${LatencyFast.timeScale}), task polls ${FAST_POLL.initial} ×${FAST_POLL.factor} up to ${FAST_POLL.max}`)
  const rig = yield* makeRig(LatencyFast, FAST_POLL)

  // N at once, on a leader that has just started (its cluster-view caches are empty): calls per create and
  // per delete, and the timings with the per-node limits in play.
  const createFrom = rig.sim.model.requests.length
  let eventsFrom = rig.events.length
  const putsBefore = rig.puts.log
  const t0 = Date.now()
  yield* rig.scaleTo(N, 120_000, 10)
  const createSeconds = (Date.now() - t0) / 1000
  const creates = countsSince(rig.sim, createFrom)
  const batch = createTimings(rig, instanceIdsOf(rig.events, eventsFrom))
  const createLogPuts = rig.puts.log - putsBefore

  const deleteFrom = rig.sim.model.requests.length
  const t1 = Date.now()
  yield* rig.scaleTo(0, 120_000, 10)
  const deleteSeconds = (Date.now() - t1) / 1000
  const deletes = countsSince(rig.sim, deleteFrom)

  // Then creates one at a time: the create's own critical path, nothing queued in front of it.
  eventsFrom = rig.events.length
  for (let size = 1; size <= 5; size++) yield* rig.scaleTo(size, 60_000, 10)
  const isolated = createTimings(rig, instanceIdsOf(rig.events, eventsFrom))

  console.log(`\nPVE calls, ${N} VMs: created in ${createSeconds.toFixed(2)} s, deleted in ${deleteSeconds.toFixed(2)} s`)
  const perCreate = perOp("per create", creates, N)
  const perDelete = perOp("per delete", deletes, N)
  console.log(`\nwall time per create vs the sum of its PVE task times (fast latency)`)
  printTimings("one at a time (5)", isolated)
  printTimings(`${N} at once     `, batch)
  console.log(`  event-log PUTs per create (${N} at once): ${(createLogPuts / N).toFixed(2)}`)
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

// ---- 3: realistic latency ----------------------------------------------------------------------------------

const realisticRun = (vms: number) =>
  Effect.gen(function* () {
    const m = LatencyRealistic
    // The critical path: PVE holds a local storage's allocation lock (per node) for the whole disk copy of a
    // full clone and for a resize, so creations on one node are serialised on it. Everything else (setup,
    // upload, config, start) runs beside it, at up to 3 calls per node. Per VM the lock is held
    //   copy = fullCopyPerGiB × template disk GiB (4.5 s × 2 = 9 s)  +  resize (0.5 s)
    // so the cluster cannot create faster than  nodes × 60 / lock-seconds  per minute (3 × 60 / 9.5 ≈ 18.9).
    // nstance's own storage slot covers the whole clone task (setup 1 s + cloud-init drive 0.2 s + copy)
    // plus its poll, and the resize task: the best it can do is nodes × 60 / (clone task + resize), ≈ 16.8.
    const lockSeconds = PVE_SECONDS.fullCopyPerGiB * TEMPLATE_DISK_GIB + PVE_SECONDS.resize
    const limitPerMin = (NODES * 60) / (scaled(m, lockSeconds) / 1000)
    const slotSeconds = PVE_SECONDS.cloneSetup + PVE_SECONDS.storageOp + PVE_SECONDS.fullCopyPerGiB * TEMPLATE_DISK_GIB + PVE_SECONDS.resize
    const slotLimitPerMin = (NODES * 60) / (scaled(m, slotSeconds) / 1000)
    console.log(`\nrealistic latency: ${vms} VMs${vms < 100 ? " (not 100: at the ~19/min the latency model allows, 100 take over 5 minutes; BENCH_SAGAS_VMS=100 to run them)" : ""}, production task polls (150 ms ×1.6 up to 2.5 s)`)
    const rig = yield* makeRig(m, undefined)
    const eventsFrom = rig.events.length
    const putsBefore = { ...rig.puts }
    const requestsFrom = rig.sim.model.requests.length
    const t0 = Date.now()
    yield* rig.scaleTo(vms, Math.max(600_000, vms * 12_000), 250)
    const seconds = (Date.now() - t0) / 1000
    const perMin = (vms * 60) / seconds
    // When the steps finished across the batch: first, median and last, in seconds after the config change.
    const milestones = Object.fromEntries(["Cloned", "Resized", "Started"].map((tag) => {
      const ats = rig.events.slice(eventsFrom).flatMap((e) => (e._tag === tag && "at" in e ? [(e.at - t0) / 1000] : [])).sort((a, b) => a - b)
      return [tag, { first: ats[0] ?? Number.NaN, median: percentile(ats, 0.5), last: ats.at(-1) ?? Number.NaN }]
    }))
    const timings = createTimings(rig, instanceIdsOf(rig.events, eventsFrom))
    const logPuts = rig.puts.log - putsBefore.log
    const snapshotPuts = rig.puts.snapshot - putsBefore.snapshot
    const calls = countsSince(rig.sim, requestsFrom)
    console.log(
      `  ${vms} creates in ${seconds.toFixed(1)} s = ${perMin.toFixed(1)} creates/min\n` +
        `  critical-path limit ${limitPerMin.toFixed(1)}/min (${NODES} nodes × 60 / ${(scaled(m, lockSeconds) / 1000).toFixed(1)} s of storage lock per VM) → ` +
        `ratio ${(perMin / limitPerMin).toFixed(2)}; ` +
        `nstance's own storage-slot bound ${slotLimitPerMin.toFixed(1)}/min → ratio ${(perMin / slotLimitPerMin).toFixed(2)}`
    )
    for (const [tag, at] of Object.entries(milestones)) {
      console.log(`  ${tag.padEnd(8)} first ${at.first.toFixed(1).padStart(6)} s, median ${at.median.toFixed(1).padStart(6)} s, last ${at.last.toFixed(1).padStart(6)} s after the config change`)
    }
    printTimings("per create", timings)
    console.log(
      `  event-log PUTs per created VM: ${(logPuts / vms).toFixed(2)} segments (+ ${(snapshotPuts / vms).toFixed(2)} snapshots), ` +
        `${((rig.events.length - eventsFrom) / Math.max(1, logPuts)).toFixed(2)} events per segment; PVE calls per create ${(calls.total / vms).toFixed(2)} + ${(calls.polls / vms).toFixed(2)} task polls; ` +
        `pveproxy queue peak ${rig.sim.model.workers.peakQueue}`
    )
    return {
      vms,
      seconds,
      createsPerMin: perMin,
      limitPerMin,
      ratio: perMin / limitPerMin,
      milestonesSeconds: milestones,
      slotLimitPerMin,
      timings,
      logPutsPerVm: logPuts / vms,
      snapshotPutsPerVm: snapshotPuts / vms,
      pveCallsPerCreate: calls.total / vms,
      taskPollsPerCreate: calls.polls / vms,
      pveproxyQueuePeak: rig.sim.model.workers.peakQueue,
      warnings: rig.problems
    }
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

const vmsRealistic = Number(process.env["BENCH_SAGAS_VMS"] ?? 30)
const started = loadavg()
const fast = await Effect.runPromise(fastRun)
summariseWarnings("fast", fast.warnings)
const realistic = await Effect.runPromise(realisticRun(vmsRealistic))
summariseWarnings("realistic", realistic.warnings)
const file = writeResult("sagas", { loadavgAtStart: started, fast, realistic })
console.log(`\nwrote ${file}`)
