/**
 * The agent's two endpoints under load, over TLS 1.3 on loopback, with the clients in other processes.
 *
 * This process is the server and only the server: the real `RegistrationServerLive` (HTTPS, NDJSON RPC,
 * body limit) and `AgentChannelServerLive` (one WebSocket per agent, TLS 1.3 with the agent's client
 * certificate required) on 127.0.0.1, port 0, wired as in test/agent/harness.ts, over a memory
 * `AgentBackend` and the cluster PKI on a memory store. Both listeners get the connection caps of a
 * 65,536-descriptor process (the systemd unit's), so the per-peer cap never limits the loopback clients
 * whatever this shell's `ulimit -n` is. It also mints the nonces and orchestrates the runs.
 *
 * The clients are bench/lib/registrationClient.ts, started as child processes (`node --import tsx`, as
 * bench/run.ts starts benches) and driven over Node's IPC channel (bench/lib/registrationProtocol.ts).
 * Every run is prepared by each client (nonces read, channels opened, warm-up), then started on all of
 * them at once; the clock starts there. This process measures its own CPU (`process.cpuUsage`, which
 * counts libuv's crypto threads too) and event-loop utilisation from that start to the last client's end;
 * latencies are the clients', per call; calls/s are all clients' successful calls over the longest
 * client's run.
 *
 * 1. RegisterAgent at concurrency 8, 32 and 64 (N = 400, 800, 1200 calls; BENCH_REG_N="400,800,1200"),
 *    from BENCH_REG_CLIENTS client processes (default 1, which the server saturates first; the concurrency
 *    and the nonces are split between them). Before each run this process mints the nonces (2 ×
 *    concurrency more for the warm-up, which also opens the keep-alive connections), announces each
 *    instance to the backend as awaiting its nonce (`backend.expect`), and writes them to a file only the
 *    user can read in a temporary directory of its own; the client reads the file and removes it. Nonces
 *    are never printed. A call is the product's `AgentClient.register`: a fresh Ed25519 key pair on the
 *    client, then, over undici's keep-alive HTTPS pool, the nonce verified, a certificate issued and the
 *    registration recorded on the server.
 * 2. ReportHealth over the agent channel, from BENCH_HEALTH_CLIENTS client processes (default 2; the
 *    agents are split between them and their calls summed). Each client first registers its share of the
 *    agents (outside every figure). Per run it opens one channel per agent, 8 at a time, each proven by a
 *    first call; keeps F calls in flight on each channel for 1 s of warm-up, then for BENCH_HEALTH_SECONDS
 *    (default 5) on the clock. Runs (agents × F): 8 × 16 (pipelining), 64 × 4, 256 × 1 (many agents);
 *    BENCH_HEALTH_RUNS="8x16,64x4,256x1". The channels are bench/lib/wireChannel.ts (BENCH_HEALTH_CLIENT=wire,
 *    the default): the TLS 1.3 WebSocket with the agent's certificate and the very frames the product's
 *    client sends, one request per WebSocket message, but driven by callbacks. The product's client
 *    (`tlsTransport(caPem).channel`, BENCH_HEALTH_CLIENT=agent) costs about as much CPU per call as the
 *    server, so on two cores its processes, not the server, were what the figures measured. A call counts
 *    only when the server answered it with success.
 *
 * Errors are never hidden: every failed call is counted on the client by its error tag (calls unanswered
 * at the cut-off as `unfinished`; a caller pauses 100 ms after a failure so a dead channel cannot spin),
 * and the server's refusal counter (`nstance_endpoint_refusals`) is read around each run and its
 * preparation; a run with either prints ERRORS and lists them, as does a backend that recorded other than
 * exactly the registrations (at least the health reports) the clients saw succeed. Logs: WARN and above.
 *
 * BENCH_REG_PHASES=register or =health runs one part alone, e.g. under `node --cpu-prof --import tsx
 * bench/registration.ts`, which profiles the server process only (BENCH_CLIENT_NODE_ARGS="--cpu-prof
 * --cpu-prof-dir=DIR" profiles the clients).
 *
 * Prints a table and writes bench/results/registration.json.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { cpus, loadavg } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { FileSystem, HttpServer, SocketServer } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { Context, Effect, Layer, Logger, LogLevel, Metric, MetricState, Queue, Schema } from "effect"
import { listenerLimits } from "../src/domain/listenerLimits.js"
import { makeMemoryAgentBackend } from "../src/layers/AgentBackendMemory.js"
import { makeClusterPki } from "../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { AgentChannelServerLive, RegistrationServerLive } from "../src/rpc/AgentServer.js"
import { AgentBackend } from "../src/services/AgentBackend.js"
import { ClusterPki } from "../src/services/ClusterPki.js"
import { ClientMessage, NoncesFile, type ServerMessage } from "./lib/registrationProtocol.js"
import { writeResult } from "./lib/results.js"
import { percentile } from "./lib/stats.js"

const CLUSTER = "bench"
const SHARD = "s1"
const CLIENT_PROGRAM = join(dirname(fileURLToPath(import.meta.url)), "lib", "registrationClient.ts")
/** Extra node flags for the client processes, e.g. BENCH_CLIENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const CLIENT_NODE_ARGS = (process.env["BENCH_CLIENT_NODE_ARGS"] ?? "").split(" ").filter((arg) => arg !== "")

const REG_CONCURRENCIES = [8, 32, 64] as const
const REG_SIZES = (process.env["BENCH_REG_N"] ?? "400,800,1200").split(",").map(Number)
const REG_CLIENTS = Number(process.env["BENCH_REG_CLIENTS"] ?? "1")
/** Agents × calls in flight per agent's channel; BENCH_HEALTH_RUNS="8x16,64x4,256x1". */
const HEALTH_RUNS = (process.env["BENCH_HEALTH_RUNS"] ?? "8x16,64x4,256x1").split(",").map((run) => {
  const [agents, inFlight] = run.split("x").map(Number)
  if (!Number.isInteger(agents) || !Number.isInteger(inFlight)) throw new Error(`BENCH_HEALTH_RUNS: "${run}" is not AGENTSxINFLIGHT`)
  return { agents: agents!, inFlight: inFlight! }
})
const HEALTH_CLIENTS = Number(process.env["BENCH_HEALTH_CLIENTS"] ?? "2")
const HEALTH_SECONDS = Number(process.env["BENCH_HEALTH_SECONDS"] ?? "5")
/** `wire` (bench/lib/wireChannel.ts) or `agent` (the product's channel client); BENCH_HEALTH_CLIENT. */
const HEALTH_CLIENT = process.env["BENCH_HEALTH_CLIENT"] === "agent" ? "agent" : "wire"
const HEALTH_WARMUP_SECONDS = 1
const ENROLL_CONCURRENCY = 16
/** Which parts run: "register,health" (default); one alone is handy under `node --cpu-prof`. */
const PHASES = (process.env["BENCH_REG_PHASES"] ?? "register,health").split(",")

interface RunFigures {
  readonly procedure: "RegisterAgent" | "ReportHealth"
  /** "c=32" for registrations, "64×4" (agents × calls in flight on each) for health reports. */
  readonly load: string
  readonly clientProcesses: number
  readonly ok: number
  /** Failed calls by error tag, all client processes together; `unfinished`: no answer by the cut-off. */
  readonly errors: Record<string, number>
  readonly warmupErrors: Record<string, number>
  /** Refusals the server counted over the run and its preparation (`nstance_endpoint_refusals`, endpoint/reason). */
  readonly serverRefusals: Record<string, number>
  /** Registrations or health reports the server's backend recorded over the run. */
  readonly serverRecorded: number
  /** The longest client's run. */
  readonly seconds: number
  /** Successful calls per second, all client processes together. */
  readonly perSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly server: {
    /** user + system CPU of this (the server) process from Go to the last client's end. */
    readonly cpuSeconds: number
    /** cpuSeconds / wall seconds: 1.0 = one core busy throughout. */
    readonly cores: number
    /** cores / core count of the machine. */
    readonly share: number
    /** Event-loop utilisation over the window (1.0 = the loop never idle). */
    readonly eventLoopUtilization: number
    /** Server CPU per successful call. */
    readonly cpuMsPerCall: number
    /**
     * 1000 / cpuMsPerCall: the calls/s one whole server core would sustain at this cost. The server is one
     * event loop, so this is its ceiling; on a busy machine, where it gets less than a core, it is the figure to compare runs by.
     */
    readonly perCoreSecond: number
  }
  /** All client processes' CPU over their runs, in cores. */
  readonly clientCores: number
}

const errorCount = (errors: Record<string, number>) => Object.values(errors).reduce((sum, n) => sum + n, 0)
const addCounts = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [key, n] of Object.entries(from)) if (n !== 0) into[key] = (into[key] ?? 0) + n
  return into
}
const describeCounts = (counts: Record<string, number>) => Object.entries(counts).map(([key, n]) => `${key} ${n}`).join(", ")

/** The server's refusal counters, by `endpoint/reason`. */
const refusalCounts = Effect.map(Metric.snapshot, (pairs) => {
  const counts: Record<string, number> = {}
  for (const pair of pairs) {
    if (pair.metricKey.name !== "nstance_endpoint_refusals" || !MetricState.isCounterState(pair.metricState)) continue
    const tag = (key: string) => pair.metricKey.tags.find((t) => t.key === key)?.value ?? "?"
    counts[`${tag("endpoint")}/${tag("reason")}`] = Number(pair.metricState.count)
  }
  return counts
})

/** A client process driven over IPC; ended (Exit, then killed if it lingers) when the scope closes. */
const spawnClient = (index: number) =>
  Effect.gen(function* () {
    const inbox = yield* Queue.unbounded<ClientMessage | { readonly _tag: "Exited"; readonly code: string }>()
    const decode = Schema.decodeUnknownSync(ClientMessage)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(process.execPath, [...CLIENT_NODE_ARGS, "--import", "tsx", CLIENT_PROGRAM], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
        child.on("message", (message) => Queue.unsafeOffer(inbox, decode(message)))
        child.on("exit", (code, signal) => Queue.unsafeOffer(inbox, { _tag: "Exited", code: String(code ?? signal) }))
        return child
      }),
      (child) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          const timer = setTimeout(() => child.kill(), 5_000)
          child.once("exit", () => {
            clearTimeout(timer)
            resume(Effect.void)
          })
          if (child.connected) child.send({ _tag: "Exit" })
          else child.kill()
        })
    )
    const send = (message: ServerMessage) =>
      Effect.async<void>((resume) => void child.send(message, (error) => resume(error === null ? Effect.void : Effect.die(error))))
    const next = <T extends ClientMessage["_tag"]>(tag: T) =>
      Effect.flatMap(Queue.take(inbox), (message): Effect.Effect<Extract<ClientMessage, { _tag: T }>> =>
        message._tag === tag
          ? Effect.succeed(message as Extract<ClientMessage, { _tag: T }>)
          : Effect.dieMessage(
            message._tag === "Failed"
              ? `client ${index} failed:\n${message.message}`
              : message._tag === "Exited"
              ? `client ${index} exited (${message.code})`
              : `client ${index}: expected ${tag}, got ${message._tag}`
          ))
    yield* next("Ready")
    return { index, send, next }
  })

type Client = Effect.Effect.Success<ReturnType<typeof spawnClient>>

const header = () =>
  console.log(
    `${"procedure".padEnd(14)} ${"load".padStart(8)} ${"procs".padStart(5)} ${"ok".padStart(7)} ${"errors".padStart(6)} ${"seconds".padStart(7)} ` +
      `${"calls/s".padStart(8)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"max ms".padStart(7)} │ ${"srv cores".padStart(9)} ${"srv share".padStart(9)} ` +
      `${"srv ELU".padStart(7)} ${"srv ms/call".padStart(11)} ${"calls/core-s".padStart(12)} │ ${"client cores".padStart(12)}`
  )

const row = (f: RunFigures) =>
  console.log(
    `${f.procedure.padEnd(14)} ${f.load.padStart(8)} ${String(f.clientProcesses).padStart(5)} ${String(f.ok).padStart(7)} ` +
      `${String(errorCount(f.errors)).padStart(6)} ${f.seconds.toFixed(2).padStart(7)} ${f.perSecond.toFixed(0).padStart(8)} ` +
      `${f.p50Ms.toFixed(1).padStart(7)} ${f.p99Ms.toFixed(1).padStart(7)} ${f.maxMs.toFixed(1).padStart(7)} │ ` +
      `${f.server.cores.toFixed(2).padStart(9)} ${`${(f.server.share * 100).toFixed(0)} %`.padStart(9)} ${f.server.eventLoopUtilization.toFixed(2).padStart(7)} ` +
      `${f.server.cpuMsPerCall.toFixed(3).padStart(11)} ${f.server.perCoreSecond.toFixed(0).padStart(12)} │ ${f.clientCores.toFixed(2).padStart(12)}` +
      (errorCount(f.errors) + errorCount(f.warmupErrors) + errorCount(f.serverRefusals) > 0 ? "  ERRORS" : "")
  )

const bench = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const pki = yield* makeClusterPki(makeMemoryStore(), { clusterId: CLUSTER, encryptionKey: new Uint8Array(randomBytes(32)) })
  const backend = makeMemoryAgentBackend()
  const services = Layer.merge(Layer.succeed(ClusterPki, pki), Layer.succeed(AgentBackend, backend))
  const tls = { pki, hosts: ["127.0.0.1"] }
  const channel = yield* Layer.build(
    AgentChannelServerLive({ host: "127.0.0.1", port: 0, certificateTtl: "1 hour", tls, limits: listenerLimits("agent", 65_536) }).pipe(Layer.provide(services))
  )
  const channelAddress = Context.get(channel, SocketServer.SocketServer).address
  if (channelAddress._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
  const agentUrl = `wss://127.0.0.1:${channelAddress.port}/agent`
  const registration = yield* Layer.build(
    RegistrationServerLive({
      cluster: CLUSTER,
      shard: SHARD,
      host: "127.0.0.1",
      port: 0,
      certificateTtl: "1 hour",
      agentUrl,
      tls,
      limits: listenerLimits("registration", 65_536)
    }).pipe(Layer.provide(services))
  )
  const address = Context.get(registration, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
  const registrationUrl = `https://127.0.0.1:${address.port}/agent`

  // Nonces are secrets: they go to files only the user can read, in a directory removed at the end.
  const secrets = yield* fs.makeTempDirectoryScoped({ prefix: "nstance-bench-registration-" })
  let nextInstance = 0
  let nextFile = 0
  /** Mints `n` nonces for fresh instances, each announced to the backend as awaiting its nonce, and writes them to a file. */
  const mintFile = (n: number) =>
    Effect.gen(function* () {
      const nonces = yield* Effect.forEach(Array.from({ length: n }, () => `vmb${String(nextInstance++).padStart(6, "0")}`), (instanceId) =>
        Effect.gen(function* () {
          const minted = yield* pki.mintNonce({ instanceId, cluster: CLUSTER, shard: SHARD, tenant: "acme", group: "web", ttl: "30 minutes" })
          yield* backend.expect(instanceId, { tenant: "acme", group: "web", nonceHash: minted.hash })
          return minted.jwt
        }))
      const file = join(secrets, `nonces-${nextFile++}.json`)
      yield* fs.writeFileString(file, yield* Schema.encode(NoncesFile)({ nonces }), { mode: 0o600 })
      return file
    })

  const maxClients = Math.max(REG_CLIENTS, HEALTH_CLIENTS)
  const clients = yield* Effect.forEach(Array.from({ length: maxClients }, (_, i) => i), spawnClient, { concurrency: "unbounded" })
  yield* Effect.forEach(clients, (client) => client.send({ _tag: "Setup", registrationUrl, caPem: pki.caPem }), { discard: true })

  console.log(
    `registration ${registrationUrl}, agent channel ${agentUrl}; ${cpus().length} cores, node ${process.version}, ` +
      `load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}; client processes: ${REG_CLIENTS} for RegisterAgent, ${HEALTH_CLIENTS} for ReportHealth ` +
      `(${HEALTH_CLIENT === "wire" ? "wire-level channels, bench/lib/wireChannel.ts" : "the product's channel client"})\n`
  )

  /** One run: every client prepares (`prepare(client)`), then all go at once; the server's CPU is measured from Go to the last Done. */
  const run = (
    procedure: RunFigures["procedure"],
    load: string,
    participants: ReadonlyArray<Client>,
    prepare: (client: Client) => Effect.Effect<ServerMessage, unknown>,
    recorded: Effect.Effect<number>
  ) =>
    Effect.gen(function* () {
      const messages = yield* Effect.forEach(participants, prepare).pipe(Effect.orDie)
      const refusals0 = yield* refusalCounts
      yield* Effect.forEach(participants, (client, i) => client.send(messages[i]!), { discard: true })
      const prepared = yield* Effect.forEach(participants, (client) => client.next("Prepared"), { concurrency: "unbounded" })
      const recorded0 = yield* recorded
      const cpu0 = process.cpuUsage()
      const elu0 = performance.eventLoopUtilization()
      const t0 = performance.now()
      yield* Effect.forEach(participants, (client) => client.send({ _tag: "Go" }), { discard: true })
      const done = yield* Effect.forEach(participants, (client) => client.next("Done"), { concurrency: "unbounded" })
      const wall = (performance.now() - t0) / 1000
      const cpu = process.cpuUsage(cpu0)
      const elu = performance.eventLoopUtilization(elu0)
      const refusals1 = yield* refusalCounts
      const serverRecorded = (yield* recorded) - recorded0

      const figures = done.map((d) => d.figures)
      const samples = figures.flatMap((f) => f.samplesMs).sort((a, b) => a - b)
      const errors: Record<string, number> = {}
      for (const f of figures) addCounts(errors, { ...f.errors, unfinished: f.unfinished })
      const warmupErrors: Record<string, number> = {}
      for (const p of prepared) addCounts(warmupErrors, p.warmupErrors)
      const serverRefusals: Record<string, number> = {}
      for (const [key, n] of Object.entries(refusals1)) if (n - (refusals0[key] ?? 0) > 0) serverRefusals[key] = n - (refusals0[key] ?? 0)
      const ok = figures.reduce((sum, f) => sum + f.ok, 0)
      const seconds = Math.max(...figures.map((f) => f.seconds))
      const cpuSeconds = (cpu.user + cpu.system) / 1e6
      const result: RunFigures = {
        procedure,
        load,
        clientProcesses: participants.length,
        ok,
        errors,
        warmupErrors,
        serverRefusals,
        serverRecorded,
        seconds,
        perSecond: ok / seconds,
        p50Ms: percentile(samples, 0.5),
        p99Ms: percentile(samples, 0.99),
        maxMs: samples.at(-1) ?? Number.NaN,
        server: {
          cpuSeconds,
          cores: cpuSeconds / wall,
          share: cpuSeconds / wall / cpus().length,
          eventLoopUtilization: elu.utilization,
          cpuMsPerCall: (cpuSeconds * 1000) / ok,
          perCoreSecond: ok / cpuSeconds
        },
        clientCores: figures.reduce((sum, f) => sum + f.cpuSeconds, 0) / seconds
      }
      row(result)
      return result
    })

  const registered = Effect.map(backend.registrations, (all) => all.length)
  const reported = Effect.map(backend.healthReports, (all) => all.length)
  const runs: Array<RunFigures> = []
  const regClients = clients.slice(0, REG_CLIENTS)
  const healthClients = clients.slice(0, HEALTH_CLIENTS)

  header()
  for (const [i, concurrency] of PHASES.includes("register") ? REG_CONCURRENCIES.entries() : []) {
    const calls = REG_SIZES[i] ?? REG_SIZES.at(-1)!
    const perClient = Math.ceil(concurrency / regClients.length)
    const warmup = 2 * perClient
    runs.push(yield* run("RegisterAgent", `c=${concurrency}`, regClients, () =>
      Effect.map(mintFile(warmup + Math.ceil(calls / regClients.length)), (noncesFile): ServerMessage => ({
        _tag: "PrepareRegister",
        noncesFile,
        warmup,
        concurrency: perClient
      })), registered))
  }

  // The agents of the ReportHealth runs: each client process registers its share, outside every figure.
  const healthRuns = PHASES.includes("health") ? HEALTH_RUNS : []
  const maxAgents = Math.max(0, ...healthRuns.map((r) => r.agents))
  const perClientAgents = Math.ceil(maxAgents / healthClients.length)
  const enrolled = yield* Effect.forEach(healthRuns.length === 0 ? [] : healthClients, (client) =>
    Effect.gen(function* () {
      yield* client.send({ _tag: "Enroll", noncesFile: yield* mintFile(perClientAgents), concurrency: ENROLL_CONCURRENCY })
      return yield* client.next("Enrolled")
    }), { concurrency: "unbounded" })
  const enrollErrors = enrolled.reduce((into, e) => addCounts(into, e.errors), {})
  if (errorCount(enrollErrors) > 0) console.log(`ERRORS registering the ReportHealth agents: ${describeCounts(enrollErrors)}`)

  for (const { agents, inFlight } of healthRuns) {
    runs.push(yield* run("ReportHealth", `${agents}×${inFlight}`, healthClients, () =>
      Effect.succeed<ServerMessage>({
        _tag: "PrepareHealth",
        agents: Math.ceil(agents / healthClients.length),
        inFlight,
        warmupSeconds: HEALTH_WARMUP_SECONDS,
        seconds: HEALTH_SECONDS,
        client: HEALTH_CLIENT
      }), reported))
  }

  console.log(
    "\nload: c=N is N registrations in flight; A×F is A agents (one channel each) with F ReportHealth calls in flight per channel.\n" +
      "srv: the server process over the run (cores of CPU, share of the machine, event-loop utilisation, CPU ms per successful call);\n" +
      "calls/core-s: successful calls per second of server CPU, i.e. what the server would sustain on one whole core (its ceiling:\n" +
      "it is one event loop); with an srv ELU near 1 but srv cores well below 1, other processes were taking the server's CPU.\n" +
      "client cores: all client processes together. Latencies are the clients', per call."
  )
  let problems = 0
  for (const f of runs) {
    const mismatch = f.procedure === "RegisterAgent" ? f.serverRecorded !== f.ok : f.serverRecorded < f.ok
    if (errorCount(f.errors) + errorCount(f.serverRefusals) + errorCount(f.warmupErrors) === 0 && !mismatch) continue
    problems++
    console.log(
      `ERRORS in ${f.procedure} ${f.load}: client errors {${describeCounts(f.errors)}}, warm-up errors {${describeCounts(f.warmupErrors)}}, ` +
        `server refusals {${describeCounts(f.serverRefusals)}}; the server recorded ${f.serverRecorded} for ${f.ok} successful calls`
    )
  }
  if (problems === 0) console.log("no errors: every call succeeded, the server refused nothing and recorded every call.")
  return {
    registrationUrl,
    agentUrl,
    clientProgram: "bench/lib/registrationClient.ts",
    clientProcesses: { registerAgent: REG_CLIENTS, reportHealth: HEALTH_CLIENTS },
    healthClient: HEALTH_CLIENT,
    healthSeconds: HEALTH_SECONDS,
    enrolledAgents: enrolled.reduce((sum, e) => sum + e.agents, 0),
    enrollErrors,
    runs
  }
}).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer), Logger.withMinimumLogLevel(LogLevel.Warning))

const started = loadavg()
const figures = await Effect.runPromise(bench)
const file = writeResult("registration", {
  loadavgAtStart: started,
  note: "clients in other processes (bench/lib/registrationClient.ts); server CPU is this process's alone",
  ...figures
})
console.log(`\nwrote ${file}`)
process.exit(0)
