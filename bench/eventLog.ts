/**
 * The shard event log under load, on the memory store:
 *
 * 1. Replay of logs describing 1k and 10k instances (~10k and ~105k events: requested → placed → templated → ISO → clone
 *    → cloned → configured → started; a tenth deleted and gone; a few failures and leader changes), through
 *    `replayStore`: wall time and peak RSS, (a) from the segments alone and (b) from a snapshot near the end
 *    plus a ≤ 1000-event tail (the layer snapshots every 1000 events). Each is run with dense segments
 *    (256 events, the writer's `maxBatch`) and sparse ones (1–6 events, what step-at-a-time sagas produce).
 *    Segments and snapshots are written with the layer's own format (`segmentKey`, `{seq, events}` of
 *    encoded events; `{"seq","state","checksum"}` snapshots) and checked by replaying them. Every replay
 *    runs in a fresh child process (`--expose-gc`) that loads the bucket from a file into one buffer
 *    (`bucketStore`), so its RSS is the runtime, the bucket's bytes and the replay — not the building of the
 *    log, nor a store's bookkeeping per object.
 *    Peak RSS is the first (cold) replay's, the one a leader makes; five more give the warm time (and the
 *    process's max RSS over all six). Goal: < 1 s and < 150 MB.
 * 2. Idle RSS of a leader that replayed the log: a fresh child process opens the log over the same bucket as
 *    a leader does (`makeEventLog` + `open`: replay, then its `LeaderElected` segment) and holds it; RSS is
 *    sampled for 10 s once it has had 5 s to settle. Goal: < 150 MB.
 * 3. Store PUTs per created VM through `makeEventLog` (default 20 ms group commit) at 1, 5 and 20
 *    concurrent sagas, each appending the create saga's ten events in its seven writes with a 50–500 ms pause
 *    (standing for the PVE call) between steps. Goal: ≤ 3 PUTs per VM at 20 concurrent.
 *
 * Prints a table and writes bench/results/eventLog.json.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"
import { Effect, Either, HashMap, Logger, LogLevel, Stream } from "effect"
import { makeInstanceIdGenerator } from "../src/domain/instanceId.js"
import {
  Cloned,
  CloneRequested,
  Configured,
  encodeEvent,
  InstanceRequested,
  IsoUploaded,
  IsoUploadRequested,
  NodeChosen,
  type ShardEvent,
  type ShardEventEncoded,
  Started,
  StartRequested,
  TemplateResolved
} from "../src/domain/shard/events.js"
import { encodeState, fold, type State } from "../src/domain/shard/state.js"
import { makeEventLog, replayStore, segmentKey, snapshotKey } from "../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { type ObjectMeta, type ObjectStoreShape, PreconditionFailed } from "../src/services/ObjectStore.js"
import { makePrng } from "../src/sim/prng.js"
import { buildEvents, NODES } from "./lib/syntheticLog.js"
import { percentile } from "./lib/stats.js"
import { writeResult } from "./lib/results.js"

const here = dirname(fileURLToPath(import.meta.url))
const thisFile = fileURLToPath(import.meta.url)
const MB = 1024 * 1024

// ---- the log: 10k instances --------------------------------------------------------------------------------

/** Instances in the replayed logs: ~10k and ~100k events. */
const LOG_SIZES = [1_000, 10_000] as const
/** Logs of at least this many instances also get a leader's idle RSS. */
const LEADER_INSTANCES = 10_000
/** Goal for the replay's peak RSS and a leader's idle RSS at 10k instances, on this machine. */
const RSS_GOAL_MB = 150

/** Splits the events into segments of `sizeOf(i)` events. */
const segmentsOf = (events: ReadonlyArray<ShardEvent>, sizeOf: () => number): Array<ReadonlyArray<ShardEvent>> => {
  const out: Array<ReadonlyArray<ShardEvent>> = []
  for (let i = 0; i < events.length;) {
    const n = sizeOf()
    out.push(events.slice(i, i + n))
    i += n
  }
  return out
}

const encodeAll = (events: ReadonlyArray<ShardEvent>): Array<ShardEventEncoded> =>
  events.map((event) => {
    const encoded = encodeEvent(event)
    if (Either.isLeft(encoded)) throw new Error(`cannot encode ${event._tag}: ${encoded.left.message}`)
    return encoded.right
  })

// The layer's formats (src/layers/eventLog/format.ts: segmentBody, snapshotBody).
const encoder = new TextEncoder()
const segmentBody = (seq: number, events: ReadonlyArray<ShardEvent>) => encoder.encode(JSON.stringify({ seq, events: encodeAll(events) }))
const snapshotBody = (seq: number, state: State) => {
  const stateJson = JSON.stringify(encodeState(state))
  return encoder.encode(`{"seq":${seq},"state":${stateJson},"checksum":"${createHash("sha256").update(stateJson).digest("hex")}"}`)
}

type Objects = Map<string, Uint8Array>

/**
 * The bucket as the layer leaves it. With `snapshots`, as in steady state: the newest snapshot ≤ 1000 events
 * before the end, the previous one 1000 events before that, and segments pruned behind the previous one
 * (the layer keeps the segments after the previous snapshot, and at least 100).
 */
const bucket = (segments: ReadonlyArray<ReadonlyArray<ShardEvent>>, snapshots: boolean): { objects: Objects; snapshotSeq: number; tailEvents: number } => {
  const objects: Objects = new Map()
  const total = segments.reduce((n, s) => n + s.length, 0)
  const cumulative: Array<number> = []
  segments.reduce((n, s, i) => (cumulative[i] = n + s.length), 0)
  // Seq of the last segment whose events end at or before `events` events into the log.
  const seqAt = (events: number) => {
    let seq = 0
    while (seq < cumulative.length && cumulative[seq]! <= events) seq++
    return seq
  }
  let snapshotSeq = 0
  let keepFrom = 1
  if (snapshots) {
    snapshotSeq = seqAt(total - 1000)
    const previousSeq = seqAt(total - 2000)
    let state = fold(segments.slice(0, previousSeq).flat())
    objects.set(snapshotKey(previousSeq), snapshotBody(previousSeq, state))
    state = fold(segments.slice(previousSeq, snapshotSeq).flat(), state)
    objects.set(snapshotKey(snapshotSeq), snapshotBody(snapshotSeq, state))
    keepFrom = Math.min(previousSeq, snapshotSeq - 100) + 1
  }
  segments.forEach((events, i) => {
    if (i + 1 >= keepFrom) objects.set(segmentKey(i + 1), segmentBody(i + 1, events))
  })
  return { objects, snapshotSeq, tailEvents: total - (snapshotSeq === 0 ? 0 : cumulative[snapshotSeq - 1]!) }
}

// Bucket files: [u32 key length][key][u32 body length][body]…
const saveObjects = (path: string, objects: Objects) => {
  const parts: Array<Uint8Array> = []
  let bytes = 0
  for (const [key, body] of objects) {
    const k = encoder.encode(key)
    const head = Buffer.alloc(4)
    head.writeUInt32LE(k.byteLength)
    const len = Buffer.alloc(4)
    len.writeUInt32LE(body.byteLength)
    parts.push(head, k, len, body)
    bytes += body.byteLength
  }
  writeFileSync(path, Buffer.concat(parts))
  return { bytes, objects: objects.size }
}

/**
 * The bucket read from its file into one buffer, each object a view into it, and what the process writes kept
 * beside it in a memory store. Stands for a remote bucket: a GET returns fresh bytes, and the store costs the
 * process the bucket's bytes once, not an object, a copy and an etag per key (30k small segments took the
 * memory store's own RSS to ~75 MB, more than the replay). The bucket's own objects are read-only.
 */
const bucketStore = (path: string): ObjectStoreShape => {
  const file = readFileSync(path)
  const index = new Map<string, { readonly at: number; readonly size: number }>()
  for (let at = 0; at < file.byteLength;) {
    const keyLength = file.readUInt32LE(at)
    const key = file.toString("utf8", at + 4, at + 4 + keyLength)
    at += 4 + keyLength
    const size = file.readUInt32LE(at)
    index.set(key, { at: at + 4, size })
    at += 4 + size
  }
  const keys = [...index.keys()].sort()
  const written = makeMemoryStore()
  const metaOf = (key: string, size: number): ObjectMeta => ({ key, size, etag: `bucket-${index.get(key)?.at ?? 0}` })
  return {
    get: (key) => {
      const object = index.get(key)
      return object === undefined
        ? written.get(key)
        : Effect.sync(() => ({ body: new Uint8Array(file.subarray(object.at, object.at + object.size)), etag: metaOf(key, object.size).etag }))
    },
    head: (key) => {
      const object = index.get(key)
      return object === undefined ? written.head(key) : Effect.succeed(metaOf(key, object.size))
    },
    put: (key, body, precondition) =>
      index.has(key)
        ? Effect.fail(new PreconditionFailed({ key, precondition: precondition ?? { _tag: "IfAbsent" } }))
        : written.put(key, body, precondition),
    delete: (key) => written.delete(key),
    list: (prefix, startAfter) =>
      Stream.unwrap(Effect.map(Stream.runCollect(written.list(prefix, startAfter)), (own) => {
        const ours = keys
          .filter((key) => key.startsWith(prefix) && (startAfter === undefined || key > startAfter))
          .map((key) => metaOf(key, index.get(key)!.size))
        return Stream.fromIterable([...ours, ...own].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)))
      }))
  }
}

// ---- child: one replay scenario in a fresh process ---------------------------------------------------------

interface ReplayFigures {
  readonly baselineRssMB: number
  /** Peak RSS during the first (cold) replay: what a leader's one replay costs. */
  readonly peakRssMB: number
  /** Peak RSS over the five warm replays that follow (one replay's result held at a time). */
  readonly warmPeakRssMB: number
  /** The process's max RSS over all six (the kernel's figure). */
  readonly maxRssMB: number
  readonly baselineHeapMB: number
  readonly peakHeapMB: number
  readonly coldMs: number
  readonly warmMs: number
  readonly state: { instances: number; gone: number; term: number; vmidHighWater: number; anomalies: number; seq: number; snapshotSeq: number }
}

const rssSampler = (store: ObjectStoreShape) => {
  let peak = 0
  let peakHeap = 0
  let reads = 0
  const sample = () => {
    const rss = process.memoryUsage.rss()
    if (rss > peak) peak = rss
  }
  const sampleHeap = () => {
    const heap = process.memoryUsage().heapUsed
    if (heap > peakHeap) peakHeap = heap
  }
  // Sampled every 16th read the replay makes (a sample costs tens of µs: every read would slow the sparse
  // replay measurably) and by a timer, so the peak between reads is seen too.
  const sampled: ObjectStoreShape = {
    ...store,
    get: (key) => Effect.zipRight(Effect.sync(() => {
      if (++reads % 16 === 0) sample()
      if (reads % 256 === 0) sampleHeap()
    }), store.get(key))
  }
  return {
    store: sampled,
    /** Starts a new peak from the RSS now. */
    reset: () => {
      peak = process.memoryUsage.rss()
      peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
    },
    sample: () => {
      sample()
      sampleHeap()
    },
    peak: () => peak,
    peakHeap: () => peakHeap
  }
}

const runChild = async (path: string) => {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined)
  const sampler = rssSampler(bucketStore(path))
  gc()
  gc()
  const baseline = process.memoryUsage.rss()
  const baselineHeap = process.memoryUsage().heapUsed
  sampler.reset()
  const timer = setInterval(sampler.sample, 2)
  const times: Array<number> = []
  let coldPeak = 0
  let summary: ReplayFigures["state"] | undefined
  for (let run = 0; run < 6; run++) {
    const start = performance.now()
    const replayed = await Effect.runPromise(replayStore(sampler.store).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))
    times.push(performance.now() - start)
    sampler.sample()
    if (run === 0) {
      coldPeak = sampler.peak()
      sampler.reset()
    }
    summary = {
      instances: HashMap.size(replayed.state.instances),
      gone: replayed.state.goneCount,
      term: replayed.state.term,
      vmidHighWater: replayed.state.vmidHighWater,
      anomalies: replayed.state.anomalies,
      seq: replayed.seq,
      snapshotSeq: replayed.snapshotSeq
    }
  }
  clearInterval(timer)
  const warm = times.slice(1).sort((a, b) => a - b)
  const figures: ReplayFigures = {
    baselineRssMB: baseline / MB,
    peakRssMB: coldPeak / MB,
    warmPeakRssMB: sampler.peak() / MB,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    baselineHeapMB: baselineHeap / MB,
    peakHeapMB: sampler.peakHeap() / MB,
    coldMs: times[0]!,
    warmMs: percentile(warm, 0.5),
    state: summary!
  }
  process.stdout.write(`${JSON.stringify(figures)}\n`)
}

interface LeaderFigures {
  readonly openMs: number
  readonly peakRssMB: number
  readonly idleRssMB: { readonly min: number; readonly median: number; readonly max: number }
  readonly heapUsedMB: number
  readonly held: number
}

const IDLE_SETTLE_MS = 5_000
const IDLE_SAMPLES = 10

/** A leader over the bucket: the log opened as `open` does at election, then held while RSS is sampled. */
const runLeaderChild = (path: string, term: number) =>
  Effect.gen(function* () {
    const sampler = rssSampler(bucketStore(path))
    const log = yield* makeEventLog(sampler.store)
    sampler.reset()
    const timer = setInterval(sampler.sample, 2)
    const start = performance.now()
    yield* log.open("bench-leader", term)
    const openMs = performance.now() - start
    sampler.sample()
    clearInterval(timer)
    yield* Effect.sleep(`${IDLE_SETTLE_MS} millis`)
    const idle: Array<number> = []
    for (let i = 0; i < IDLE_SAMPLES; i++) {
      idle.push(process.memoryUsage.rss() / MB)
      yield* Effect.sleep("1 second")
    }
    idle.sort((a, b) => a - b)
    const state = yield* log.state
    const figures: LeaderFigures = {
      openMs,
      peakRssMB: sampler.peak() / MB,
      idleRssMB: { min: idle[0]!, median: percentile(idle, 0.5), max: idle.at(-1)! },
      heapUsedMB: process.memoryUsage().heapUsed / MB,
      held: HashMap.size(state.instances)
    }
    process.stdout.write(`${JSON.stringify(figures)}\n`)
  }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error))

// ---- part 2: PUTs per created VM ---------------------------------------------------------------------------

const SAGA_EVENTS = 10

interface PutFigures {
  readonly concurrency: number
  readonly vms: number
  readonly seconds: number
  readonly logPuts: number
  readonly snapshotPuts: number
  readonly putsPerVm: number
  readonly logPutsPerVm: number
  readonly eventsPerSegment: number
  readonly appendLatencyP50Ms: number
  readonly appendLatencyP99Ms: number
}

const putsPerVm = (concurrency: number, vms: number, seed: number) =>
  Effect.gen(function* () {
    const base = makeMemoryStore()
    const puts = { log: 0, snapshot: 0, other: 0, counting: false }
    const store: ObjectStoreShape = {
      ...base,
      put: (key, body, pre) =>
        Effect.suspend(() => {
          if (puts.counting) {
            if (key.startsWith("log/")) puts.log++
            else if (key.startsWith("snapshot/")) puts.snapshot++
            else puts.other++
          }
          return base.put(key, body, pre)
        })
    }
    const log = yield* makeEventLog(store)
    yield* log.open("bench", 1)
    puts.counting = true
    const prng = makePrng(seed)
    const mint = makeInstanceIdGenerator()
    const latencies: Array<number> = []
    const append = (events: ReadonlyArray<ShardEvent>) =>
      Effect.suspend(() => {
        const start = performance.now()
        return log.append(events).pipe(Effect.tap(() => Effect.sync(() => latencies.push(performance.now() - start))))
      })
    const pause = Effect.suspend(() => Effect.sleep(`${Math.round(prng.between(50, 500))} millis`))
    let vmid = 1000
    /**
     * One create saga as `src/shard/createSaga.ts` writes it: ten events in seven appends (what has no PVE
     * call between it shares a write), each after the PVE call it stands for.
     */
    const saga = Effect.gen(function* () {
      const instanceId = mint("web")
      const node = NODES[prng.int(0, 2)]!
      const volid = `local:iso/nstance-${instanceId}.iso`
      const id = ++vmid
      const now = Date.now()
      const steps: ReadonlyArray<ReadonlyArray<ShardEvent>> = [
        [InstanceRequested.make({ instanceId, at: now, tenant: "shop", group: "web", kind: "web", specHash: "9f2c4e1ab07d3c55", reason: "scale-up" })],
        [NodeChosen.make({ instanceId, at: now, node }), TemplateResolved.make({ instanceId, at: now, templateVmid: 9000, templateNode: node })],
        [IsoUploadRequested.make({ instanceId, at: now, node, storage: "local", volid })],
        [IsoUploaded.make({ instanceId, at: now, volid }), CloneRequested.make({ instanceId, at: now, vmid: id, node, templateVmid: 9000, templateNode: node })],
        [Cloned.make({ instanceId, at: now, vmid: id, node })],
        [Configured.make({ instanceId, at: now }), StartRequested.make({ instanceId, at: now })],
        [Started.make({ instanceId, at: now })]
      ]
      for (let i = 0; i < steps.length; i++) {
        if (i > 0) yield* pause
        yield* append(steps[i]!)
      }
    })
    let next = 0
    const start = performance.now()
    // Closed loop: each worker starts its next create when the last one is done, so `concurrency` run at once.
    yield* Effect.all(
      Array.from({ length: concurrency }, () =>
        Effect.gen(function* () {
          while (next < vms) {
            next++
            yield* saga
          }
        })),
      { concurrency: "unbounded", discard: true }
    )
    const seconds = (performance.now() - start) / 1000
    latencies.sort((a, b) => a - b)
    const figures: PutFigures = {
      concurrency,
      vms,
      seconds,
      logPuts: puts.log,
      snapshotPuts: puts.snapshot,
      putsPerVm: (puts.log + puts.snapshot + puts.other) / vms,
      logPutsPerVm: puts.log / vms,
      eventsPerSegment: (vms * SAGA_EVENTS) / puts.log,
      appendLatencyP50Ms: percentile(latencies, 0.5),
      appendLatencyP99Ms: percentile(latencies, 0.99)
    }
    return figures
  }).pipe(Effect.scoped)

// ---- results file ------------------------------------------------------------------------------------------


// ---- main --------------------------------------------------------------------------------------------------

/** The replays of one log size: dense and sparse segments, each from the segments alone and from a snapshot. */
const replaysOf = (instances: number, dir: string, bundle: string) => {
  const t0 = performance.now()
  const events = buildEvents(instances)
  const expected = fold(events)
  const prng = makePrng(7)
  const variants = {
    dense: segmentsOf(events, () => 256),
    sparse: segmentsOf(events, () => prng.int(1, 6))
  }
  console.log(
    `log: ${instances} instances, ${events.length} events (${HashMap.size(expected.instances)} instances left, ${expected.goneCount} gone); ` +
      `dense ${variants.dense.length} segments of 256, sparse ${variants.sparse.length} segments of 1–6 events; built in ${((performance.now() - t0) / 1000).toFixed(1)} s`
  )
  const replays: Array<{ instances: number; events: number; scenario: string; segments: string; snapshotSeq: number; tailEvents: number; storeBytes: number; objects: number } & ReplayFigures> = []
  const leaders: Array<{ instances: number; events: number; scenario: string; segments: string } & LeaderFigures> = []
  const nodeFlags = (process.env["BENCH_NODE_FLAGS"] ?? "").split(" ").filter(Boolean)
  const runNode = (args: ReadonlyArray<string>, what: string) => {
    const child = spawnSync(process.execPath, [...nodeFlags, ...args], { cwd: join(here, ".."), encoding: "utf8", maxBuffer: 16 * MB })
    if (child.status !== 0) throw new Error(`${what} exited with ${child.status ?? child.signal}:\n${child.stderr}`)
    return child.stdout.trim().split("\n").at(-1)!
  }
  for (const [segments, list] of Object.entries(variants)) {
    for (const snapshots of [false, true]) {
      const scenario = snapshots ? "snapshot + tail" : "all segments"
      const { objects, snapshotSeq, tailEvents } = bucket(list, snapshots)
      const path = join(dir, `${instances}-${segments}-${snapshots ? "snap" : "full"}.bin`)
      const saved = saveObjects(path, objects)
      const figures = JSON.parse(runNode(["--expose-gc", bundle, "--child", path], `replay child (${segments}, ${scenario})`)) as ReplayFigures
      // The replay must fold to exactly the state of all the events, whichever way it went.
      const s = figures.state
      if (s.instances !== HashMap.size(expected.instances) || s.gone !== expected.goneCount || s.term !== expected.term ||
        s.vmidHighWater !== expected.vmidHighWater || s.anomalies !== expected.anomalies || s.seq !== list.length || s.snapshotSeq !== snapshotSeq) {
        throw new Error(`replay of ${segments}/${scenario} folded to ${JSON.stringify(s)}; expected ${HashMap.size(expected.instances)} instances, seq ${list.length}, snapshot ${snapshotSeq}`)
      }
      replays.push({ instances, events: events.length, scenario, segments, snapshotSeq, tailEvents, storeBytes: saved.bytes, objects: saved.objects, ...figures })
      if (instances >= LEADER_INSTANCES) {
        const leader = JSON.parse(runNode([bundle, "--leader", path, String(expected.term + 1)], `leader child (${segments}, ${scenario})`)) as LeaderFigures
        if (leader.held !== HashMap.size(expected.instances)) throw new Error(`the leader over ${segments}/${scenario} holds ${leader.held} instances`)
        leaders.push({ instances, events: events.length, scenario, segments, ...leader })
      }
    }
  }
  return { log: { instances, events: events.length, segments: { dense: variants.dense.length, sparse: variants.sparse.length } }, replays, leaders }
}

const main = async () => {
  const dir = mkdtempSync(join(tmpdir(), "nstance-bench-eventlog-"))
  // The replay child runs as an esbuild bundle, as the daemon runs from dist/: under tsx, the loader and its
  // transpiled sources alone take the RSS to ~160 MB before the first segment is read.
  const bundle = join(dir, "replay-child.mjs")
  await build({
    entryPoints: [thisFile], outfile: bundle, bundle: true, format: "esm", platform: "node", target: "node20",
    mainFields: ["module", "main"], logLevel: "warning",
    banner: { js: "import { createRequire as __benchRequire } from 'node:module'; const require = __benchRequire(import.meta.url);" }
  })
  const logs: Array<ReturnType<typeof replaysOf>["log"]> = []
  const replays: Array<ReturnType<typeof replaysOf>["replays"][number]> = []
  const leaders: Array<ReturnType<typeof replaysOf>["leaders"][number]> = []
  try {
    // ~10k and ~100k events.
    for (const instances of LOG_SIZES) {
      const one = replaysOf(instances, dir, bundle)
      logs.push(one.log)
      replays.push(...one.replays)
      leaders.push(...one.leaders)
    }
  } finally {
    if (process.env["BENCH_KEEP"] === "1") console.log(`kept the bucket files in ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }

  console.log("\nreplay through replayStore (bucket in one buffer; fresh process each; cold = first replay, warm = median of 5 more; RSS peak = the cold replay's, max = the process's over all six)")
  console.log(`${"events".padStart(7)} ${"segments".padEnd(8)} ${"from".padEnd(16)} ${"read".padStart(18)} ${"store".padStart(8)} ${"cold".padStart(9)} ${"warm".padStart(9)} ${"RSS before".padStart(11)} ${"RSS peak".padStart(9)} ${"Δ".padStart(7)} ${"max".padStart(7)}  goal < 1 s, < ${RSS_GOAL_MB} MB`)
  for (const r of replays) {
    const read = r.snapshotSeq === 0 ? `${r.state.seq} segments` : `snap + ${r.state.seq - r.snapshotSeq} seg (${r.tailEvents} ev)`
    const ok = r.coldMs < 1000 && r.peakRssMB < RSS_GOAL_MB ? "ok" : "MISSED"
    console.log(
      `${String(r.events).padStart(7)} ${r.segments.padEnd(8)} ${r.scenario.padEnd(16)} ${read.padStart(18)} ${`${(r.storeBytes / MB).toFixed(1)} MB`.padStart(8)} ` +
        `${`${r.coldMs.toFixed(0)} ms`.padStart(9)} ${`${r.warmMs.toFixed(0)} ms`.padStart(9)} ${`${r.baselineRssMB.toFixed(0)} MB`.padStart(11)} ` +
        `${`${r.peakRssMB.toFixed(0)} MB`.padStart(9)} ${`+${(r.peakRssMB - r.baselineRssMB).toFixed(0)}`.padStart(7)} ${`${r.maxRssMB.toFixed(0)} MB`.padStart(7)}  ${ok}`
    )
  }

  console.log(`\nleader that replayed the log (makeEventLog + open over the same bucket, fresh process; idle = ${IDLE_SAMPLES} samples after ${IDLE_SETTLE_MS / 1000} s)`)
  for (const l of leaders) {
    console.log(
      `${String(l.instances).padStart(6)} instances ${l.segments.padEnd(7)} ${l.scenario.padEnd(16)} open ${`${l.openMs.toFixed(0)} ms`.padStart(8)}, ` +
        `peak RSS ${l.peakRssMB.toFixed(0)} MB, idle RSS median ${l.idleRssMB.median.toFixed(0)} MB (heap used ${l.heapUsedMB.toFixed(0)} MB)  ` +
        `goal idle < ${RSS_GOAL_MB} MB: ${l.idleRssMB.median < RSS_GOAL_MB ? "ok" : "MISSED"}`
    )
  }

  console.log("\nPUTs per created VM: 10 events per VM in the saga's 7 appends, 50–500 ms between steps (makeEventLog, 20 ms group commit)")
  const puts: Array<PutFigures> = []
  for (const [concurrency, vms] of process.env["BENCH_ONLY"] === "replay" ? [] : [[1, 5], [5, 25], [20, 100]] as const) {
    const figures = await Effect.runPromise(putsPerVm(concurrency, vms, concurrency * 31).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
    puts.push(figures)
    console.log(
      `${String(concurrency).padStart(2)} concurrent, ${String(vms).padStart(3)} VMs in ${figures.seconds.toFixed(1).padStart(5)} s: ` +
        `${figures.putsPerVm.toFixed(2)} PUTs/VM (${figures.logPutsPerVm.toFixed(2)} segments + ${(figures.snapshotPuts / vms).toFixed(2)} snapshots), ` +
        `${figures.eventsPerSegment.toFixed(2)} events/segment, append p50 ${figures.appendLatencyP50Ms.toFixed(1)} ms p99 ${figures.appendLatencyP99Ms.toFixed(1)} ms` +
        (concurrency === 20 ? `  goal ≤ 3: ${figures.putsPerVm <= 3 ? "ok" : "MISSED"}` : "")
    )
  }

  const file = writeResult("eventLog", {
    goals: { replayColdMs: 1000, replayPeakRssMB: RSS_GOAL_MB, leaderIdleRssMB: RSS_GOAL_MB },
    logs,
    replay: replays,
    leaderAfterReplay: leaders,
    putsPerCreatedVm: puts
  })
  console.log(`\nwrote ${file}`)
}

if (process.argv[2] === "--child") await runChild(process.argv[3]!)
else if (process.argv[2] === "--leader") await Effect.runPromise(runLeaderChild(process.argv[3]!, Number(process.argv[4])))
else await main()
