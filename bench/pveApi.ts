/**
 * What the ProxmoxApi HTTP layer costs: calls/s it sustains against the simulator (zero injected latency)
 * for `GET /cluster/resources?type=vm` and `GET …/status/current` at 1 and 8 concurrent callers, and the
 * per-call overhead over a raw undici `fetch` of the same URL (decode, classification, metrics, spans).
 * Also the wall time of one clone → waitTask, where the adaptive poll schedule matters.
 */
import { Context, Duration, Effect, Layer } from "effect"
import { Agent, fetch } from "undici"
import { meanMs } from "../src/domain/pve/metrics.js"
import { ProxmoxApiHttp } from "../src/layers/ProxmoxApiHttp.js"
import { makePveCallsReader } from "../src/metrics/metrics.js"
import { ProxmoxApi } from "../src/services/ProxmoxApi.js"
import { startSimulator } from "../src/sim/server.js"

const ROUNDS = 4
const SECONDS = Number(process.env["BENCH_SECONDS"] ?? "2") / ROUNDS
const zeroLatency = { name: "zero", timeScale: 0.01, requestMs: [0, 0] as const, jitter: 0 }

const sim = await startSimulator({ nodes: 3, latency: zeroLatency })
// A running VM to read status of.
const agent = new Agent({ connect: { rejectUnauthorized: false }, connections: 16 })
const auth = `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`

const rawGet = async (path: string): Promise<void> => {
  const r = await fetch(sim.url + path, { dispatcher: agent, headers: { Authorization: auth } })
  const text = await r.text()
  if (r.status !== 200) throw new Error(`${path}: ${r.status}`)
  JSON.parse(text)
}

/** Runs `once` from `concurrency` callers for SECONDS; returns calls/s and mean ms per call. */
const measurePromise = async (concurrency: number, once: () => Promise<void>) => {
  const until = performance.now() + SECONDS * 1000
  let calls = 0
  const started = performance.now()
  const cpu = process.cpuUsage()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < until) {
      await once()
      calls++
    }
  }))
  const elapsed = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  // CPU of this process per call includes the in-process simulator's share, equal on both sides.
  return { perSecond: calls / elapsed, meanMs: (elapsed * 1000 * concurrency) / calls, cpuUs: (used.user + used.system) / calls }
}

type Round = { perSecond: number; meanMs: number; cpuUs: number }
const average = (rounds: ReadonlyArray<Round>): Round => ({
  perSecond: rounds.reduce((s, r) => s + r.perSecond, 0) / rounds.length,
  meanMs: rounds.reduce((s, r) => s + r.meanMs, 0) / rounds.length,
  cpuUs: rounds.reduce((s, r) => s + r.cpuUs, 0) / rounds.length
})

const program = Effect.gen(function* () {
  const context = yield* Layer.build(ProxmoxApiHttp({ apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, insecureTls: true }))
  const api = Context.get(context, ProxmoxApi)
  // This process's one client: the registry's nstance_pve_* figures are its calls.
  const metrics = yield* makePveCallsReader

  const cloneStart = performance.now()
  yield* api.waitTask("pve1", yield* api.clone("pve1", 9000, { newid: 10001, name: "bench-vm", full: true, storage: "local-lvm" }))
  const cloneMs = performance.now() - cloneStart
  yield* api.waitTask("pve1", yield* api.start("pve1", 10001))
  sim.model.refreshResources()

  const cases = [
    { label: "GET /cluster/resources?type=vm", layer: Effect.asVoid(api.vmResources()), raw: "/cluster/resources?type=vm" },
    { label: "GET /nodes/pve1/qemu/10001/status/current", layer: Effect.asVoid(api.vmStatus("pve1", 10001)), raw: "/nodes/pve1/qemu/10001/status/current" }
  ]
  console.log(`ProxmoxApiHttp vs raw undici fetch, ${ROUNDS}×${SECONDS}s per side and row, simulator with zero injected latency (3 pveproxy workers)`)
  console.log("endpoint                                      conc   layer calls/s  layer ms/call   raw calls/s  raw ms/call  overhead ms/call  layer CPU µs/call  raw CPU µs/call")
  for (const c of cases) {
    for (const concurrency of [1, 8]) {
      // Interleaved short rounds, so load from other processes on the machine hits both sides alike.
      const layerRounds: Array<Round> = []
      const rawRounds: Array<Round> = []
      for (let round = 0; round < ROUNDS; round++) {
        layerRounds.push(yield* Effect.promise(() => measurePromise(concurrency, () => Effect.runPromise(Effect.asVoid(c.layer)))))
        rawRounds.push(yield* Effect.promise(() => measurePromise(concurrency, () => rawGet(c.raw))))
      }
      const layer = average(layerRounds)
      const raw = average(rawRounds)
      console.log(
        `${c.label.padEnd(45)} ${String(concurrency).padStart(4)} ${layer.perSecond.toFixed(0).padStart(15)} ${layer.meanMs.toFixed(3).padStart(14)} ${raw.perSecond.toFixed(0).padStart(13)} ${raw.meanMs.toFixed(3).padStart(12)} ${(layer.meanMs - raw.meanMs).toFixed(3).padStart(17)} ${layer.cpuUs.toFixed(0).padStart(18)} ${raw.cpuUs.toFixed(0).padStart(16)}`
      )
    }
  }
  console.log(`clone (2 GiB full copy, fast preset) + waitTask wall time: ${cloneMs.toFixed(0)} ms (polls: ${(yield* metrics.snapshot).get("GET /nodes/{node}/tasks/{upid}/status")?.count ?? 0} incl. start)`)
  const snapshot = yield* metrics.snapshot
  console.log("nstance_pve_* metrics (layer calls only):")
  for (const m of snapshot.values()) {
    console.log(`  ${m.endpoint.padEnd(55)} count=${String(m.count).padStart(7)} errors=${m.errors} retries=${m.retries} mean=${meanMs(m).toFixed(3)}ms`)
  }
  yield* Effect.sleep(Duration.millis(10))
})

await Effect.runPromise(Effect.scoped(program))
await agent.close()
await sim.close()
