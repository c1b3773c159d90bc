/**
 * Agent registrations on loopback: the real agent endpoint (`AgentServerLive`, i.e. `AgentHandlersLive`
 * behind the HTTP/NDJSON RPC server with its body limit) on 127.0.0.1, port 0, over a memory backend, with
 * the cluster PKI on a memory store; the product's `AgentClient` talks to it over real HTTPS (TLS 1.3, the cluster CA), wired as in
 * test/agent/harness.ts.
 *
 * 1. RegisterAgent: N nonces minted for N instances (each announced to the backend as awaiting it) before
 *    the clock starts, then all N registered at concurrency 1, 8 and 32 (N = 200, 400, 800; override with
 *    BENCH_REG_N="200,400,800"): registrations/s and per-call latency p50/p99. A registration is a fresh
 *    Ed25519 key pair on the client, then nonce verification, a certificate issued and the registration
 *    recorded on the server.
 * 2. ReportHealth at concurrency 32 from every agent registered in 1 (BENCH_HEALTH_ROUNDS rounds, default 2):
 *    calls/s and p50/p99. Each call is signed by the agent's key and checked against its certificate.
 *
 * CPU: `process.cpuUsage()` around each run, as a share of the wall time of one core and of all cores. Client
 * and server share this process, so the figure is client + server together, not the server alone.
 *
 * Prints a table and writes bench/results/registration.json.
 */
import { randomBytes } from "node:crypto"
import { cpus, loadavg } from "node:os"
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { type AgentIdentity, makeAgentClient, tlsConnector } from "../src/agent/AgentClient.js"
import { makeMemoryAgentBackend } from "../src/layers/AgentBackendMemory.js"
import { makeClusterPki } from "../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { AgentServerLive } from "../src/rpc/AgentServer.js"
import { AgentBackend } from "../src/services/AgentBackend.js"
import { ClusterPki } from "../src/services/ClusterPki.js"
import { percentile } from "./lib/stats.js"
import { writeResult } from "./lib/results.js"

const CLUSTER = "bench"
const SHARD = "s1"
const CONCURRENCIES = [1, 8, 32] as const
const SIZES = (process.env["BENCH_REG_N"] ?? "200,400,800").split(",").map(Number)
const HEALTH_CONCURRENCY = 32
const HEALTH_ROUNDS = Number(process.env["BENCH_HEALTH_ROUNDS"] ?? "2")
const WARMUP = 20

interface RunFigures {
  readonly procedure: "RegisterAgent" | "ReportHealth"
  readonly concurrency: number
  readonly calls: number
  readonly seconds: number
  readonly perSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  /** user + system CPU of the whole process (client and server) over the run. */
  readonly cpuSeconds: number
  /** cpuSeconds / wall seconds: 1.0 = one core busy throughout. */
  readonly cpuCores: number
  /** cpuCores / core count. */
  readonly cpuShare: number
}

/** Runs `call` over `items` at `concurrency`, timing each call and the process CPU around the whole run. */
const timed = <A, E>(
  procedure: RunFigures["procedure"],
  concurrency: number,
  items: ReadonlyArray<A>,
  call: (item: A) => Effect.Effect<unknown, E>
) =>
  Effect.gen(function* () {
    const samples: Array<number> = []
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    yield* Effect.forEach(items, (item) =>
      Effect.suspend(() => {
        const s = performance.now()
        return Effect.tap(call(item), () => Effect.sync(() => void samples.push(performance.now() - s)))
      }), { concurrency, discard: true })
    const seconds = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    samples.sort((a, b) => a - b)
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    const figures: RunFigures = {
      procedure,
      concurrency,
      calls: items.length,
      seconds,
      perSecond: items.length / seconds,
      p50Ms: percentile(samples, 0.5),
      p99Ms: percentile(samples, 0.99),
      maxMs: samples.at(-1) ?? Number.NaN,
      cpuSeconds,
      cpuCores: cpuSeconds / seconds,
      cpuShare: cpuSeconds / seconds / cpus().length
    }
    return figures
  })

const header = () =>
  console.log(
    `${"procedure".padEnd(14)} ${"conc".padStart(4)} ${"calls".padStart(6)} ${"seconds".padStart(8)} ${"calls/s".padStart(9)} ` +
      `${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)} ${"CPU cores".padStart(10)} ${"CPU share".padStart(10)}`
  )

const row = (f: RunFigures) =>
  console.log(
    `${f.procedure.padEnd(14)} ${String(f.concurrency).padStart(4)} ${String(f.calls).padStart(6)} ${f.seconds.toFixed(2).padStart(8)} ` +
      `${f.perSecond.toFixed(1).padStart(9)} ${f.p50Ms.toFixed(1).padStart(8)} ${f.p99Ms.toFixed(1).padStart(8)} ${f.maxMs.toFixed(1).padStart(8)} ` +
      `${f.cpuCores.toFixed(2).padStart(10)} ${`${(f.cpuShare * 100).toFixed(0)} %`.padStart(10)}`
  )

const bench = Effect.gen(function* () {
  const store = makeMemoryStore()
  const pki = yield* makeClusterPki(store, { clusterId: CLUSTER, encryptionKey: new Uint8Array(randomBytes(32)) })
  const backend = makeMemoryAgentBackend()
  const context = yield* Layer.build(
    AgentServerLive({ cluster: CLUSTER, shard: SHARD, certificateTtl: "1 hour", host: "127.0.0.1", port: 0, tls: { pki, hosts: ["127.0.0.1"] } }).pipe(
      Layer.provide(Layer.succeed(ClusterPki, pki)),
      Layer.provide(Layer.succeed(AgentBackend, backend))
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
  const url = `https://127.0.0.1:${address.port}/agent`
  const client = yield* makeAgentClient(url, tlsConnector(pki.caPem))

  let next = 0
  /** `n` fresh instances, each awaiting its own nonce in the backend; the nonces, minted up front. */
  const mint = (n: number) =>
    Effect.forEach(Array.from({ length: n }, () => `vmb${String(next++).padStart(6, "0")}`), (instanceId) =>
      Effect.gen(function* () {
        const minted = yield* pki.mintNonce({ instanceId, cluster: CLUSTER, shard: SHARD, tenant: "acme", group: "web", ttl: "30 minutes" })
        yield* backend.expect(instanceId, { tenant: "acme", group: "web", nonceHash: minted.hash })
        return minted.jwt
      }))

  const identities: Array<AgentIdentity> = []
  const register = (nonce: Effect.Effect.Success<ReturnType<typeof mint>>[number]) =>
    Effect.map(client.register({ nonce, ips: { ipv4: "10.0.0.7" }, hostname: "web" }), (identity) => void identities.push(identity))

  // Warm-up: JIT, the keep-alive connections and the PKI's caches, outside every figure.
  const warm = yield* mint(WARMUP)
  yield* Effect.forEach(warm, register, { concurrency: 8, discard: true })

  console.log(`agent endpoint ${url}; ${cpus().length} cores, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`)
  const mintT0 = performance.now()
  const batches = new Map<number, ReadonlyArray<Effect.Effect.Success<ReturnType<typeof mint>>[number]>>()
  for (const [i, c] of CONCURRENCIES.entries()) batches.set(c, yield* mint(SIZES[i] ?? SIZES.at(-1)!))
  const minted = CONCURRENCIES.reduce((sum, c) => sum + batches.get(c)!.length, 0)
  const mintSeconds = (performance.now() - mintT0) / 1000
  console.log(`minted ${minted} nonces (+ awaiting in the backend) in ${mintSeconds.toFixed(2)} s: ${(minted / mintSeconds).toFixed(0)}/s\n`)

  header()
  const runs: Array<RunFigures> = []
  for (const c of CONCURRENCIES) {
    const figures = yield* timed("RegisterAgent", c, batches.get(c)!, register)
    runs.push(figures)
    row(figures)
  }

  const registered = (yield* backend.registrations).length
  if (registered !== WARMUP + minted) return yield* Effect.dieMessage(`expected ${WARMUP + minted} registrations, the backend has ${registered}`)

  const agents = Array.from({ length: HEALTH_ROUNDS }, () => identities).flat()
  const health = yield* timed("ReportHealth", HEALTH_CONCURRENCY, agents, (identity) => client.reportHealth(identity))
  runs.push(health)
  row(health)
  const reports = (yield* backend.healthReports).length
  if (reports !== agents.length) return yield* Effect.dieMessage(`expected ${agents.length} health reports, the backend has ${reports}`)

  return { url, warmup: WARMUP, mint: { nonces: minted, seconds: mintSeconds, perSecond: minted / mintSeconds }, healthRounds: HEALTH_ROUNDS, runs }
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))


const started = loadavg()
const figures = await Effect.runPromise(bench)
const file = writeResult("registration", {
  loadavgAtStart: started,
  note: "client and server share one process: CPU figures are both together",
  ...figures
})
console.log(`\nwrote ${file}`)
