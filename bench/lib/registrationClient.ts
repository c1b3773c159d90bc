/**
 * The client process of bench/registration.ts (started by it over an IPC channel; not a bench of its own,
 * which is why it lives in bench/lib/). It does what the server process tells it (bench/lib/registrationProtocol.ts):
 *
 * - `PrepareRegister` + `Go`: registers the nonces of a file with the product's `AgentClient` (a fresh
 *   Ed25519 key pair per call, HTTPS over TLS 1.3 to the registration endpoint, undici's keep-alive pool) at
 *   a given concurrency, timing every call;
 * - `Enroll`: registers agents the same way and keeps their identities;
 * - `PrepareHealth` + `Go`: opens one agent channel per identity (`tlsTransport(caPem).channel`: one
 *   WebSocket over TLS 1.3 with the agent's client certificate), 8 at a time, each proven by a first call,
 *   and keeps a number of `ReportHealth` calls in flight on each for a fixed time, timing every call.
 *
 * Every failed call is counted by its error tag and sent back (a caller pauses after a failure, so a dead
 * channel is counted, not spun on); nothing here prints a nonce or a key. The process exits when told to or
 * when the server process goes away (its IPC channel closes).
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { Cause, Effect, Exit, Logger, LogLevel, Option, Queue, Redacted, Schema, Scope } from "effect"
import { type AgentIdentity, type AgentRpcClient, makeAgentClient, tlsTransport } from "../../src/agent/AgentClient.js"
import { type ClientFigures, ClientMessage, NoncesFile, ServerMessage } from "./registrationProtocol.js"
import { openWireChannel, type WireChannel } from "./wireChannel.js"

/** Calls counted as they end: successes timed, failures by tag. */
const makeRecorder = () => {
  const samplesMs: Array<number> = []
  const errors: Record<string, number> = {}
  let started = 0
  let ok = 0
  let failed = 0
  return {
    /** Counts a call started outside Effect (the wire client); returns its start time for `ended`. */
    started: (): number => {
      started++
      return performance.now()
    },
    /** Counts the end of a call `started` returned `t0` for: "ok", or its error tag. */
    ended: (t0: number, outcome: string) => {
      if (outcome === "ok") {
        ok++
        samplesMs.push(performance.now() - t0)
        return
      }
      failed++
      errors[outcome] = (errors[outcome] ?? 0) + 1
    },
    /** Runs `call`, timing it; never fails, but says whether it succeeded. */
    time: <A, E extends { readonly _tag: string }>(call: Effect.Effect<A, E>): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        started++
        const t0 = performance.now()
        return Effect.map(Effect.exit(call), (exit) => {
          if (Exit.isSuccess(exit)) {
            ok++
            samplesMs.push(performance.now() - t0)
            return true
          }
          failed++
          const tag = Option.match(Cause.failureOption(exit.cause), {
            onNone: () => (Cause.isInterruptedOnly(exit.cause) ? "Interrupted" : "Die"),
            onSome: (error) => error._tag
          })
          errors[tag] = (errors[tag] ?? 0) + 1
          return false
        })
      }),
    figures: (seconds: number, cpuSeconds: number): ClientFigures => ({
      ok,
      errors: { ...errors },
      unfinished: started - ok - failed,
      seconds,
      samplesMs: samplesMs.sort((a, b) => a - b).map((ms) => Math.round(ms * 1000) / 1000),
      cpuSeconds
    })
  }
}

/** Runs `work` as one measured run: wall time and this process's CPU around it, cut off after `limitSeconds`. */
const measured = (recorder: ReturnType<typeof makeRecorder>, limitSeconds: number, work: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    yield* Effect.timeoutOption(work, `${limitSeconds} seconds`)
    const seconds = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    return recorder.figures(seconds, (cpu.user + cpu.system) / 1e6)
  })

/** Registration runs are cut off after this long: a hanging call is reported as unfinished, not waited for. */
const REGISTER_LIMIT_SECONDS = 120
/** A ReportHealth run gets this long after its time is up for the calls in flight to come back. */
const HEALTH_GRACE_SECONDS = 5
const CHANNELS_OPENED_AT_ONCE = 8
const AFTER_ERROR_PAUSE = "100 millis"

type PrepareHealth = Extract<ServerMessage, { _tag: "PrepareHealth" }>

/**
 * A ReportHealth run with the wire client (bench/lib/wireChannel.ts): channels opened 8 at a time, each
 * proven by a first call; `inFlight` callers per channel, each sending its next call when its answer is
 * in, for the warm-up, then (after `go`) for the measured seconds. Sends `Prepared` itself, returns `Done`.
 */
const wireHealth = (
  message: PrepareHealth,
  identities: ReadonlyArray<AgentIdentity>,
  caPem: string,
  send: (message: ClientMessage) => Effect.Effect<void>,
  go: Effect.Effect<unknown>
) =>
  Effect.gen(function* () {
    const agents = identities.slice(0, message.agents)
    if (agents.length < message.agents) return yield* Effect.dieMessage(`${message.agents} agents asked for, ${agents.length} enrolled`)
    const warm = makeRecorder()
    const channels = yield* Effect.acquireRelease(
      Effect.forEach(agents, (identity) =>
        Effect.promise(async () => {
          const channel = await openWireChannel(identity.agentUrl, caPem, identity)
          const t0 = warm.started()
          warm.ended(t0, await new Promise<string>((resolve) => channel.reportHealth(resolve)))
          return channel
        }), { concurrency: CHANNELS_OPENED_AT_ONCE }),
      (channels) => Effect.promise(() => Promise.all(channels.map((channel) => channel.close())))
    )
    /** Keeps the callers going until `until`; resolves when every caller has had its last answer. */
    const load = (recorder: ReturnType<typeof makeRecorder>, until: number) =>
      Effect.async<void>((resume) => {
        let running = channels.length * message.inFlight
        const caller = (channel: WireChannel) => {
          if (performance.now() >= until) {
            if (--running === 0) resume(Effect.void)
            return
          }
          const t0 = recorder.started()
          channel.reportHealth((outcome) => {
            recorder.ended(t0, outcome)
            // A failed call is counted; a pause after it keeps a broken channel from spinning on errors.
            if (outcome === "ok") caller(channel)
            else setTimeout(() => caller(channel), 100)
          })
        }
        for (const channel of channels) for (let i = 0; i < message.inFlight; i++) caller(channel)
      })
    yield* Effect.timeoutOption(load(warm, performance.now() + message.warmupSeconds * 1000), `${message.warmupSeconds + HEALTH_GRACE_SECONDS} seconds`)
    yield* send({ _tag: "Prepared", warmupErrors: warm.figures(0, 0).errors })
    yield* go
    const recorder = makeRecorder()
    const figures = yield* measured(recorder, message.seconds + HEALTH_GRACE_SECONDS, load(recorder, performance.now() + message.seconds * 1000))
    return { _tag: "Done" as const, figures }
  }).pipe(Effect.scoped)

const program = Effect.gen(function* () {
  const ipc = process.send?.bind(process)
  if (ipc === undefined) return yield* Effect.dieMessage("bench/lib/registrationClient.ts is started by bench/registration.ts, over an IPC channel")
  const fs = yield* FileSystem.FileSystem
  const inbox = yield* Queue.unbounded<ServerMessage>()
  const decodeServer = Schema.decodeUnknownSync(ServerMessage)
  process.on("message", (message) => Queue.unsafeOffer(inbox, decodeServer(message)))
  // The server went away (it exits or was killed): so do we.
  process.on("disconnect", () => Queue.unsafeOffer(inbox, { _tag: "Exit" }))
  const encodeClient = Schema.encodeSync(ClientMessage)
  const send = (message: ClientMessage) =>
    Effect.async<void>((resume) => void ipc(encodeClient(message), undefined, {}, () => resume(Effect.void)))
  const next = <T extends ServerMessage["_tag"]>(tag: T) =>
    Effect.flatMap(Queue.take(inbox), (message): Effect.Effect<Extract<ServerMessage, { _tag: T }>> =>
      message._tag === tag
        ? Effect.succeed(message as Extract<ServerMessage, { _tag: T }>)
        : message._tag === "Exit"
        ? Effect.interrupt
        : Effect.dieMessage(`expected ${tag}, got ${message._tag}`))

  /** The nonces of `file`, which is removed as soon as it is read. */
  const readNonces = (file: string) =>
    Effect.gen(function* () {
      const text = yield* fs.readFileString(file)
      yield* fs.remove(file)
      return (yield* Schema.decode(NoncesFile)(text)).nonces
    })

  yield* send({ _tag: "Ready" })
  const setup = yield* next("Setup")
  const transport = tlsTransport(setup.caPem)
  const client = yield* makeAgentClient(setup.registrationUrl, transport)
  const register = (nonce: Redacted.Redacted<string>) => client.register({ nonce, ips: { ipv4: "10.0.0.7" }, hostname: "web" })
  const identities: Array<AgentIdentity> = []

  while (true) {
    const message = yield* Queue.take(inbox)
    switch (message._tag) {
      case "PrepareRegister": {
        const nonces = yield* readNonces(message.noncesFile)
        const warm = makeRecorder()
        yield* Effect.forEach(nonces.slice(0, message.warmup), (nonce) => warm.time(register(nonce)), { concurrency: message.concurrency, discard: true })
        yield* send({ _tag: "Prepared", warmupErrors: warm.figures(0, 0).errors })
        yield* next("Go")
        const recorder = makeRecorder()
        const run = Effect.forEach(nonces.slice(message.warmup), (nonce) => recorder.time(register(nonce)), { concurrency: message.concurrency, discard: true })
        yield* send({ _tag: "Done", figures: yield* measured(recorder, REGISTER_LIMIT_SECONDS, run) })
        break
      }
      case "Enroll": {
        const nonces = yield* readNonces(message.noncesFile)
        const errors: Record<string, number> = {}
        yield* Effect.forEach(nonces, (nonce) =>
          register(nonce).pipe(
            Effect.tap((identity) => Effect.sync(() => void identities.push(identity))),
            Effect.catchAll((error) => Effect.sync(() => void (errors[error._tag] = (errors[error._tag] ?? 0) + 1)))
          ), { concurrency: message.concurrency, discard: true })
        yield* send({ _tag: "Enrolled", agents: identities.length, errors })
        break
      }
      case "PrepareHealth": {
        if (message.client === "wire") {
          yield* send(yield* wireHealth(message, identities, setup.caPem, send, next("Go")))
          break
        }
        const scope = yield* Scope.make()
        const agents = identities.slice(0, message.agents)
        if (agents.length < message.agents) return yield* Effect.dieMessage(`${message.agents} agents asked for, ${agents.length} enrolled`)
        const warm = makeRecorder()
        // Opened a few at a time, each proven by a first call (TLS handshake, certificate checked at the first
        // request): a steady state to measure, not a thundering herd of handshakes.
        const channels = yield* Effect.forEach(agents, (identity) =>
          Effect.gen(function* () {
            const rpc = yield* Scope.extend(transport.channel(identity.agentUrl, identity), scope)
            yield* warm.time(rpc.ReportHealth({ instanceId: identity.instanceId, status: "healthy" }))
            return { rpc, instanceId: identity.instanceId }
          }), { concurrency: CHANNELS_OPENED_AT_ONCE })
        /** `inFlight` callers per channel, each calling again as soon as its answer is in, until `until`. */
        const load = (recorder: ReturnType<typeof makeRecorder>, until: number) =>
          Effect.forEach(channels.flatMap((channel) => Array.from({ length: message.inFlight }, () => channel)), ({ instanceId, rpc }: { rpc: AgentRpcClient; instanceId: string }) =>
            Effect.gen(function* () {
              const call = rpc.ReportHealth({ instanceId, status: "healthy" })
              while (performance.now() < until) {
                // A failed call is counted; a pause after it keeps a broken channel from spinning on errors.
                if (!(yield* recorder.time(call))) yield* Effect.sleep(AFTER_ERROR_PAUSE)
              }
            }), { concurrency: "unbounded", discard: true })
        yield* Effect.timeoutOption(load(warm, performance.now() + message.warmupSeconds * 1000), `${message.warmupSeconds + HEALTH_GRACE_SECONDS} seconds`)
        yield* send({ _tag: "Prepared", warmupErrors: warm.figures(0, 0).errors })
        yield* next("Go")
        const recorder = makeRecorder()
        const figures = yield* measured(recorder, message.seconds + HEALTH_GRACE_SECONDS, load(recorder, performance.now() + message.seconds * 1000))
        yield* Scope.close(scope, Exit.void)
        yield* send({ _tag: "Done", figures })
        break
      }
      case "Exit":
        return
      default:
        return yield* Effect.dieMessage(`unexpected ${message._tag}`)
    }
  }
}).pipe(
  Effect.scoped,
  Effect.catchAllCause((cause) =>
    Cause.isInterruptedOnly(cause)
      ? Effect.void
      : Effect.sync(() => process.send?.(Schema.encodeSync(ClientMessage)({ _tag: "Failed", message: Cause.pretty(cause) }))).pipe(Effect.zipRight(Effect.failCause(cause)))
  ),
  Effect.provide(NodeFileSystem.layer),
  Logger.withMinimumLogLevel(LogLevel.Warning)
)

Effect.runPromise(program).then(
  () => process.exit(0),
  () => process.exit(1)
)
