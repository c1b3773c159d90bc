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
 *    runs in a fresh child process (`--expose-gc`) that loads the store from a file, so its RSS is the
 *    runtime, the store's bytes and the replay — not the building of the log. Goal: < 1 s and < 150 MB.
 * 2. Store PUTs per created VM through `makeEventLog` (default 20 ms group commit) at 1, 5 and 20
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
import { Effect, Either, HashMap, Logger, LogLevel } from "effect"
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
import type { ObjectStoreShape } from "../src/services/ObjectStore.js"
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
  for (const [key, body] of objects) {
    const k = encoder.encode(key)
    const head = Buffer.alloc(4)
    head.writeUInt32LE(k.byteLength)
    const len = Buffer.alloc(4)
    len.writeUInt32LE(body.byteLength)
    parts.push(head, k, len, body)
  }
  writeFileSync(path, Buffer.concat(parts))
}

const loadObjects = (path: string, into: ObjectStoreShape) => {
  const file = readFileSync(path)
  let bytes = 0
  let objects = 0
  for (let at = 0; at < file.byteLength;) {
    const keyLength = file.readUInt32LE(at)
    const key = file.toString("utf8", at + 4, at + 4 + keyLength)
    at += 4 + keyLength
    const bodyLength = file.readUInt32LE(at)
    Effect.runSync(into.put(key, new Uint8Array(file.subarray(at + 4, at + 4 + bodyLength))))
    at += 4 + bodyLength
    bytes += bodyLength
    objects++
  }
  return { bytes, objects }
}

// ---- child: one replay scenario in a fresh process ---------------------------------------------------------

interface ReplayFigures {
  readonly storeBytes: number
  readonly objects: number
  readonly baselineRssMB: number
  readonly peakRssMB: number
  readonly maxRssMB: number
  readonly baselineHeapMB: number
  readonly peakHeapMB: number
  readonly coldMs: number
  readonly warmMs: number
  readonly state: { instances: number; gone: number; term: number; vmidHighWater: number; anomalies: number; seq: number; snapshotSeq: number }
}

const runChild = async (path: string) => {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined)
  const base = makeMemoryStore()
  const loaded = loadObjects(path, base)
  const storeBytes = loaded.bytes
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
  const store: ObjectStoreShape = {
    ...base,
    get: (key) => Effect.zipRight(Effect.sync(() => {
      if (++reads % 16 === 0) sample()
      if (reads % 256 === 0) sampleHeap()
    }), base.get(key))
  }
  gc()
  gc()
  const baseline = process.memoryUsage.rss()
  const baselineHeap = process.memoryUsage().heapUsed
  peak = baseline
  peakHeap = baselineHeap
  const timer = setInterval(() => { sample(); sampleHeap() }, 2)
  const times: Array<number> = []
  let last: Effect.Effect.Success<ReturnType<typeof replayStore>> | undefined
  for (let run = 0; run < 6; run++) {
    const start = performance.now()
    last = await Effect.runPromise(replayStore(store).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))
    times.push(performance.now() - start)
    sample()
    sampleHeap()
  }
  clearInterval(timer)
  const warm = times.slice(1).sort((a, b) => a - b)
  const figures: ReplayFigures = {
    storeBytes,
    objects: loaded.objects,
    baselineRssMB: baseline / MB,
    peakRssMB: peak / MB,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    baselineHeapMB: baselineHeap / MB,
    peakHeapMB: peakHeap / MB,
    coldMs: times[0]!,
    warmMs: percentile(warm, 0.5),
    state: {
      instances: HashMap.size(last!.state.instances),
      gone: last!.state.goneCount,
      term: last!.state.term,
      vmidHighWater: last!.state.vmidHighWater,
      anomalies: last!.state.anomalies,
      seq: last!.seq,
      snapshotSeq: last!.snapshotSeq
    }
  }
  process.stdout.write(`${JSON.stringify(figures)}\n`)
}

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
  const replays: Array<{ instances: number; events: number; scenario: string; segments: string; snapshotSeq: number; tailEvents: number } & ReplayFigures> = []
  for (const [segments, list] of Object.entries(variants)) {
    for (const snapshots of [false, true]) {
      const scenario = snapshots ? "snapshot + tail" : "all segments"
      const { objects, snapshotSeq, tailEvents } = bucket(list, snapshots)
      const path = join(dir, `${instances}-${segments}-${snapshots ? "snap" : "full"}.bin`)
      saveObjects(path, objects)
      const child = spawnSync(process.execPath, ["--expose-gc", ...(process.env["BENCH_NODE_FLAGS"] ?? "").split(" ").filter(Boolean), bundle, "--child", path], {
        cwd: join(here, ".."), encoding: "utf8", maxBuffer: 16 * MB
      })
      if (child.status !== 0) throw new Error(`replay child (${segments}, ${scenario}) exited with ${child.status ?? child.signal}:\n${child.stderr}`)
      const figures = JSON.parse(child.stdout.trim().split("\n").at(-1)!) as ReplayFigures
      // The replay must fold to exactly the state of all the events, whichever way it went.
      const s = figures.state
      if (s.instances !== HashMap.size(expected.instances) || s.gone !== expected.goneCount || s.term !== expected.term ||
        s.vmidHighWater !== expected.vmidHighWater || s.anomalies !== expected.anomalies || s.seq !== list.length || s.snapshotSeq !== snapshotSeq) {
        throw new Error(`replay of ${segments}/${scenario} folded to ${JSON.stringify(s)}; expected ${HashMap.size(expected.instances)} instances, seq ${list.length}, snapshot ${snapshotSeq}`)
      }
      replays.push({ instances, events: events.length, scenario, segments, snapshotSeq, tailEvents, ...figures })
    }
  }
  return { log: { instances, events: events.length, segments: { dense: variants.dense.length, sparse: variants.sparse.length } }, replays }
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
  try {
    // ~10k and ~100k events.
    for (const instances of LOG_SIZES) {
      const one = replaysOf(instances, dir, bundle)
      logs.push(one.log)
      replays.push(...one.replays)
    }
  } finally {
    if (process.env["BENCH_KEEP"] === "1") console.log(`kept the bucket files in ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }

  console.log("\nreplay through replayStore (memory store; fresh process each; cold = first replay, warm = median of 5 more)")
  console.log(`${"events".padStart(7)} ${"segments".padEnd(8)} ${"from".padEnd(16)} ${"read".padStart(18)} ${"store".padStart(8)} ${"cold".padStart(9)} ${"warm".padStart(9)} ${"RSS before".padStart(11)} ${"RSS peak".padStart(9)} ${"Δ".padStart(7)}  goal < 1 s, < 150 MB`)
  for (const r of replays) {
    const read = r.snapshotSeq === 0 ? `${r.state.seq} segments` : `snap + ${r.state.seq - r.snapshotSeq} seg (${r.tailEvents} ev)`
    const ok = r.coldMs < 1000 && r.peakRssMB < 150 ? "ok" : "MISSED"
    console.log(
      `${String(r.events).padStart(7)} ${r.segments.padEnd(8)} ${r.scenario.padEnd(16)} ${read.padStart(18)} ${`${(r.storeBytes / MB).toFixed(1)} MB`.padStart(8)} ` +
        `${`${r.coldMs.toFixed(0)} ms`.padStart(9)} ${`${r.warmMs.toFixed(0)} ms`.padStart(9)} ${`${r.baselineRssMB.toFixed(0)} MB`.padStart(11)} ` +
        `${`${r.peakRssMB.toFixed(0)} MB`.padStart(9)} ${`+${(r.peakRssMB - r.baselineRssMB).toFixed(0)}`.padStart(7)}  ${ok}`
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
    logs,
    replay: replays,
    putsPerCreatedVm: puts
  })
  console.log(`\nwrote ${file}`)
}

if (process.argv[2] === "--child") await runChild(process.argv[3]!)
else await main()
