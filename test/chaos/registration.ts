/**
 * Agent registration in a chaos world (`isRegistrationSeed`): a cluster PKI in the bucket, simulated guests
 * that register through a live replica's agent handlers in memory, and the nonce-leak check — every raw
 * nonce (JWT) minted is looked for in store objects, product log lines and the harness's own history.
 */
import { RpcClientError } from "@effect/rpc"
import { Effect, Logger, LogLevel, Option, Redacted, type Scope, Stream } from "effect"
import type { AgentRpcClient, AgentTransport, RegistrationRpcClient } from "../../src/agent/AgentClient.js"
import { type AgentEndpoints, presenting } from "../support/agentMemory.js"
import { nonceHash } from "../../src/domain/agent/nonce.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import type { ClusterPkiShape } from "../../src/services/ClusterPki.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { makeSimAgents, type SimAgents } from "../../src/sim/agent.js"
import type { GuestBoot, GuestHook } from "../../src/sim/guest.js"
import type { SimModel } from "../../src/sim/model.js"
import { makePrng } from "../../src/sim/prng.js"
import type { VirtualClock } from "../support/virtualClock.js"
import type { AcceptedRegistration, Violation } from "./checker.js"
import { CLUSTER } from "./config.js"
import type { History } from "./history.js"

export interface Registration {
  readonly on: boolean
  /** Every raw nonce minted. */
  readonly minted: ReadonlyArray<string>
  /** Where a raw nonce turned up (an event, a log line, a store object). */
  readonly leaks: ReadonlyArray<Violation>
  /** Successful registrations as the agents saw them: instance, hash of the nonce used, history index. */
  readonly accepted: ReadonlyArray<AcceptedRegistration>
  /** Records a leak for every raw nonce minted so far that is in `text`. */
  readonly leakCheck: (text: string, where: string) => void
  /** The simulator's guest hook: a booting guest's agent starts (registration worlds only). */
  readonly guestHook: GuestHook | undefined
  /** The cluster PKI, once `makePki` made it (registration worlds only). */
  readonly pki: () => ClusterPkiShape | undefined
  readonly makePki: (bucket: ObjectStoreShape, clock: VirtualClock) => Effect.Effect<void>
  /** Starts the simulated agents; run inside the world's logger, so that their fibers log as the product does. */
  readonly startAgents: (model: SimModel) => Effect.Effect<void, never, Scope.Scope>
  /** The run's last look for leaks: the harness's history and every object left in the bucket. */
  readonly scanAtEnd: (bucket: ObjectStoreShape) => Effect.Effect<void>
}

export interface RegistrationSettings {
  readonly seed: number
  readonly on: boolean
  readonly history: History
  /** The world's replica slots; an agent's call reaches the handlers of a live one. */
  readonly replicas: ReadonlyArray<{ readonly endpoint?: AgentEndpoints | undefined } | undefined>
  /** `log-nonce`: the deliberately broken leader that logs each nonce it mints. */
  readonly logNonces: boolean
}

/**
 * The PKI's signing and verifying run on WebCrypto, whose promises settle in wall-clock time: one at a time,
 * in the order the fibers ask, with virtual time held until each is done — so a seed replays exactly.
 */
const gatePki = (pki: ClusterPkiShape, clock: VirtualClock, one: Effect.Semaphore, onMint: (jwt: string) => Effect.Effect<void>): ClusterPkiShape => {
  const gate = <A, E>(effect: Effect.Effect<A, E>) => one.withPermits(1)(clock.holding(effect))
  return {
    ...pki,
    issueClientCertificate: (request) => gate(pki.issueClientCertificate(request)),
    verifyClientCertificate: (pem) => gate(pki.verifyClientCertificate(pem)),
    mintNonce: (request) => gate(pki.mintNonce(request)).pipe(Effect.tap((minted) => onMint(Redacted.value(minted.jwt)))),
    verifyNonce: (jwt, audience) => gate(pki.verifyNonce(jwt, audience))
  }
}

const textDecoder = new TextDecoder()

export const makeRegistration = (settings: RegistrationSettings): Registration => {
  const { history, replicas } = settings
  // A stream of its own, so that the worlds without registration keep their draws.
  const regPrng = makePrng(settings.seed * 71 + 23)
  const endpointDown = (url: string) => new RpcClientError.RpcClientError({ reason: "Protocol", message: `${url}: no replica answers (simulated)` })
  /** The agent addresses are VIPs: each call reaches one live replica, leader or not. */
  /** The endpoint the last call went to: an agent has an identity only after a call reached one. */
  let lastReached: AgentEndpoints | undefined
  const viaVip = (url: string) => <A, E>(call: (endpoint: AgentEndpoints) => Effect.Effect<A, E>): Effect.Effect<A, E | RpcClientError.RpcClientError> =>
    Effect.suspend((): Effect.Effect<A, E | RpcClientError.RpcClientError> => {
      const live = replicas.filter((r): r is { endpoint: AgentEndpoints } => r?.endpoint !== undefined)
      if (live.length === 0) return Effect.fail(endpointDown(url))
      lastReached = live[regPrng.int(0, live.length - 1)]!.endpoint
      return call(lastReached)
    })
  const minted: Array<string> = []
  const leaks: Array<Violation> = []
  const leakCheck = (text: string, where: string) => {
    for (const jwt of minted) {
      if (text.includes(jwt)) leaks.push({ rule: "nonce-leak", at: history.index, message: `a raw nonce in ${where}` })
    }
  }
  const accepted: Array<AcceptedRegistration> = []
  const transport: AgentTransport = {
    registration: (url) => {
      const via = viaVip(url)
      const client: RegistrationRpcClient = {
        RegisterAgent: (payload, opts) =>
          via((e) => e.registration.RegisterAgent(payload, opts)).pipe(Effect.tap((result) => Effect.sync(() => {
            if (result === undefined) return
            const i = history.line(`agent ${result.instanceId} registered`)
            accepted.push({ instanceId: result.instanceId, nonceHash: nonceHash(payload.nonce), i })
          })))
      }
      return Effect.succeed(client)
    },
    // The connection's certificate travels beside each call, as the TLS handshake carries it on the network.
    channel: (url, identity) => {
      const via = viaVip(url)
      const client: AgentRpcClient = {
        ReportHealth: (payload) => via((e) => presenting(e.channel, identity).ReportHealth(payload)),
        RenewCertificate: (payload) => via((e) => presenting(e.channel, identity).RenewCertificate(payload)),
        SubmitKey: (payload) => via((e) => presenting(e.channel, identity).SubmitKey(payload)),
        // Chaos worlds give VMs no files (their configs have none, and sim agents open no stream without a
        // files directory): the stream of the replica last reached, which registered this agent.
        ReceiveFiles: (payload, opts) => presenting(lastReached!.channel, identity).ReceiveFiles(payload, opts)
      }
      return Effect.succeed(client)
    }
  }
  let agents: SimAgents | undefined
  let pki: ClusterPkiShape | undefined
  const onMint = (jwt: string) =>
    Effect.suspend(() => {
      minted.push(jwt)
      return settings.logNonces ? Effect.logInfo(`minted nonce ${jwt}`) : Effect.void
    })

  return {
    on: settings.on,
    minted,
    leaks,
    accepted,
    leakCheck,
    guestHook: settings.on ? (boot: GuestBoot) => agents?.hook(boot) : undefined,
    pki: () => pki,
    makePki: (bucket, clock) =>
      Effect.gen(function* () {
        const encryptionKey = Uint8Array.from({ length: 32 }, () => regPrng.int(0, 255))
        if (!settings.on) return
        pki = gatePki(
          yield* makeClusterPki(bucket, { clusterId: CLUSTER, encryptionKey }).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.None)),
          clock,
          yield* Effect.makeSemaphore(1),
          onMint
        )
      }),
    startAgents: (model) =>
      Effect.gen(function* () {
        if (!settings.on) return
        agents = yield* makeSimAgents({ transport, log: (line) => history.product(line) })
        agents.attach(model)
      }),
    scanAtEnd: (bucket) =>
      Effect.gen(function* () {
        if (!settings.on) return
        for (const l of history.lines) leakCheck(l.text, `harness line @${l.i}`)
        const keys = yield* Stream.runCollect(bucket.list("")).pipe(Effect.orDie)
        for (const meta of keys) {
          const object = yield* bucket.get(meta.key).pipe(Effect.option)
          if (Option.isSome(object)) leakCheck(textDecoder.decode(object.value.body), `store object ${meta.key} at the end`)
        }
      })
  }
}
