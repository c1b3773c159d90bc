/**
 * The agent's two endpoints. Registration (`RegistrationRpcs` over HTTPS, NDJSON, with a request body
 * limit): the nonce is verified (signature, expiry, kind, cluster/shard), matched by hash against the
 * registration the instance awaits, a certificate is issued for the agent's key, and only then is the
 * registration recorded — so a bad public key never burns the nonce, and a lost race to record never hands
 * out a certificate. The agent channel (`AgentRpcs` over one WebSocket per agent, TLS 1.3 with the agent's
 * client certificate required): health reports and renewals, authenticated by the connection's
 * certificate, which must be the instance's newest.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import type { TLSSocket } from "node:tls"
import type { ListenerLimits, RefusalReason } from "../domain/listenerLimits.js"
import { guardedServerLayer, makeConnectionCertificates, makeListenerServer, makeRefusalLog, type RefusalLog, type ServerTls } from "../http/listener.js"
import { InvalidCertificate, InvalidNonce, InvalidPayload, NonceReused, NotLeader, UnknownInstance } from "../domain/agent/errors.js"
import { type HttpApp, HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse, SocketServer } from "@effect/platform"
import { Rpc, RpcMessage, RpcSerialization, RpcServer } from "@effect/rpc"
import { createPublicKey, verify as cryptoVerify } from "node:crypto"
import { Cause, Clock, Context, Duration, Effect, Either, Exit, Layer, Mailbox, Option, ParseResult, Predicate, Runtime, Schema, Stream } from "effect"
import { constTrue, constVoid } from "effect/Function"
import { type RawData, type WebSocket, WebSocketServer } from "ws"
import { nonceHash } from "../domain/agent/nonce.js"
import { AgentBackend } from "../services/AgentBackend.js"
import type { FileDeliveryShape } from "../shard/FileDelivery.js"
import { ClusterPki, type ClusterPkiShape, type VerifiedClientCertificate } from "../services/ClusterPki.js"
import {
  AgentAuthentication,
  AgentPeer,
  AgentRpcs,
  decodeStrict,
  keyProofMessage,
  MAX_REQUEST_BYTES,
  ReceiveFilesPayload,
  SubmitKeyPayload,
  RegisterAgentPayload,
  RegistrationRpcs,
  RenewCertificatePayload,
  ReportHealth,
  ReportHealthPayload
} from "./AgentRpc.js"

export interface AgentServiceOptions {
  /**
   * Lifetime of issued client certificates; agents are told to renew after two thirds of it. An effect is
   * read at every issue, so a config push (`certificates.agent.ttl`) applies without a restart.
   */
  readonly certificateTtl: Duration.DurationInput | Effect.Effect<Duration.Duration>
  /** Where refused requests are counted and logged (the endpoint's; absent: only the caller hears of them). */
  readonly refusals?: RefusalLog
  /** The file stream and key submissions (absent: the stream stays silent and keys are refused). */
  readonly files?: FileDeliveryShape
}

export interface RegistrationServiceOptions extends AgentServiceOptions {
  /** The cluster and shard this endpoint serves: nonces minted for others are refused. */
  readonly cluster: string
  readonly shard: string
  /** The agent channel's URL, told to every agent that registers (`wss://{shard.advertise.agent_addr}/agent`). */
  readonly agentUrl: string
}

/** The refusal a handler's error stands for; a redirect to the leader is not one. */
const refusalOf = (error: { readonly _tag: string }, channel: boolean): RefusalReason | undefined => {
  switch (error._tag) {
    case "UnknownInstance":
      // On the channel the certificate names an instance the shard no longer has.
      return channel ? "certificate" : "nonce"
    case "InvalidNonce":
    case "NonceReused":
      return "nonce"
    case "InvalidCertificate":
      return "certificate"
    case "InvalidPayload":
      return "payload"
    default:
      return undefined
  }
}

/** Where and how an endpoint listens. */
export interface ListenOptions {
  /** Interface to bind; default all interfaces. */
  readonly host?: string
  /** 0 picks a free port. */
  readonly port: number
  /** Default `/agent`. */
  readonly path?: string
  /** Largest request body (registration) or message (channel) read. Default `MAX_REQUEST_BYTES` (16 KiB). */
  readonly maxRequestBytes?: number
  /** Connection caps and timeouts (default: what the process's descriptor limit allows). */
  readonly limits?: ListenerLimits
}

export interface RegistrationServerOptions extends RegistrationServiceOptions, ListenOptions {
  /** TLS 1.3 with a certificate from the cluster CA; absent: plain HTTP (tests of the handlers only). */
  readonly tls?: ServerTls
}

export interface AgentChannelServerOptions extends AgentServiceOptions, ListenOptions {
  /** TLS 1.3 with a certificate from the cluster CA; the agent's client certificate is always required. */
  readonly tls: Omit<ServerTls, "clientCertificates">
}

const decodeRegister = decodeStrict(RegisterAgentPayload)
const decodeHealth = decodeStrict(ReportHealthPayload)
const decodeRenew = decodeStrict(RenewCertificatePayload)
const decodeSubmitKey = decodeStrict(SubmitKeyPayload)
const decodeReceiveFiles = decodeStrict(ReceiveFilesPayload)

/** Whether `proof` is the submitted key's signature of `keyProofMessage`: the agent holds its private half. */
const provesPossession = (payload: SubmitKeyPayload): Effect.Effect<void, InvalidPayload> =>
  Effect.suspend(() => {
    try {
      const key = createPublicKey(payload.publicKeyPem)
      if (key.asymmetricKeyType !== "ed25519") return Effect.fail(new InvalidPayload({ field: "publicKeyPem", reason: "expected an Ed25519 public key" }))
      const ok = cryptoVerify(null, keyProofMessage(payload.instanceId, payload.name), key, Buffer.from(payload.proof, "base64"))
      return ok ? Effect.void : Effect.fail(new InvalidPayload({ field: "proof", reason: "is not the key's signature of the key proof; the agent must hold the private key" }))
    } catch {
      return Effect.fail(new InvalidPayload({ field: "publicKeyPem", reason: "is not a public key" }))
    }
  })

/** What both groups' handlers share: the leader check, certificate issue and refusal counting. */
const makeCommon = (options: AgentServiceOptions) =>
  Effect.gen(function* () {
    const pki = yield* ClusterPki
    const backend = yield* AgentBackend
    const certificateTtl = Effect.isEffect(options.certificateTtl)
      ? options.certificateTtl
      : Effect.succeed(Duration.decode(options.certificateTtl))

    const requireLeader = Effect.flatMap(backend.leaderRedirect, Option.match({
      onNone: () => Effect.void,
      onSome: (leaderAddr) => Effect.fail(new NotLeader({ leaderAddr }))
    }))

    const issue = (instanceId: string, tenant: string, publicKeyPem: string) =>
      Effect.flatMap(certificateTtl, (ttl) =>
        pki.issueClientCertificate({ instanceId, tenant, publicKeyPem, ttl }).pipe(
          Effect.map((issued) => ({ ...issued, renewAfterSeconds: Math.max(1, Math.floor((Duration.toSeconds(ttl) * 2) / 3)) })),
          Effect.mapError((e) => new InvalidPayload({ field: "publicKeyPem", reason: e.reason }))
        ))

    // The RPC handlers do not see the peer's address, so the procedure stands in for it.
    const refusals = options.refusals
    const counted = <A, E extends { readonly _tag: string }, R>(procedure: string, handler: Effect.Effect<A, E, R>) =>
      refusals === undefined
        ? handler
        : handler.pipe(Effect.tapError((error) => {
          const reason = refusalOf(error, procedure !== "RegisterAgent")
          const detail = "reason" in error && typeof error.reason === "string" ? `${error._tag} ${error.reason}` : error._tag
          return reason === undefined ? Effect.void : refusals.refuse(reason, `an agent (${procedure})`, detail)
        }))
    return { pki, backend, requireLeader, issue, counted }
  })

/** The `Registration` group's handler; needs `ClusterPki` and `AgentBackend`. */
export const RegistrationHandlersLive = (options: RegistrationServiceOptions) =>
  RegistrationRpcs.toLayer(Effect.gen(function* () {
    const { backend, counted, issue, pki, requireLeader } = yield* makeCommon(options)
    const audience = { cluster: options.cluster, shard: options.shard }
    return RegistrationRpcs.of({
      RegisterAgent: (wire) =>
        counted("RegisterAgent", Effect.gen(function* () {
          const payload = yield* decodeRegister(wire)
          yield* requireLeader
          const claims = yield* pki.verifyNonce(payload.nonce, audience).pipe(
            Effect.mapError((e) => new InvalidNonce({ reason: e.reason, detail: e.message }))
          )
          const instanceId = claims.sub
          const hash = nonceHash(payload.nonce)
          const state = yield* backend.registrationState(instanceId)
          if (state._tag === "Unknown") return yield* new UnknownInstance({ instanceId })
          if (state._tag === "Registered" || state.nonceHash !== hash) return yield* new NonceReused({ instanceId })
          const issued = yield* issue(instanceId, state.tenant, payload.publicKeyPem)
          yield* backend.recordRegistered({
            instanceId,
            ips: { ipv4: payload.privateIpv4, ipv6: payload.privateIpv6 },
            hostname: payload.hostname,
            nonceHash: hash,
            certificateSerial: issued.serial,
            certificateNotAfter: issued.notAfter
          })
          // Debug: the shard's backend says it at INFO in the operator's words; this one carries the hash.
          yield* Effect.logDebug("agent registered").pipe(Effect.annotateLogs({
            instance: instanceId,
            ipv4: payload.privateIpv4 ?? "",
            ipv6: payload.privateIpv6 ?? "",
            nonceHash: hash
          }))
          return {
            certificatePem: issued.certificatePem,
            caPem: pki.caPem,
            instanceId,
            renewAfterSeconds: issued.renewAfterSeconds,
            agentUrl: options.agentUrl
          }
        })).pipe(Effect.withSpan("agent.RegisterAgent"))
    })
  }))

/** What every accepted report is answered with (one object, so that its encoding can be reused). */
const REPORTED = { ok: true as const }

/** A request about another instance than the connection's certificate names. */
const otherInstance = (peer: VerifiedClientCertificate, instanceId: string) =>
  new InvalidCertificate({ reason: "OtherInstance", detail: `the certificate is ${peer.instanceId}'s; the request is about ${instanceId}` })

/**
 * The agent channel's handlers, and `reportHealth`, the `ReportHealth` handler taking the connection's
 * certificate as an argument (what the channel answers inline calls). The handlers need an
 * `AgentAuthentication` (`AgentAuthenticationLive` on the network) that provides each request's `AgentPeer`.
 */
const makeAgentHandlers = (options: AgentServiceOptions) =>
  Effect.gen(function* () {
    const { backend, counted, issue, pki, requireLeader } = yield* makeCommon(options)
    /** The connection's certificate, which must be about the instance the request names. */
    const caller = (instanceId: string) =>
      Effect.flatMap(AgentPeer, (peer) => peer.instanceId === instanceId ? Effect.succeed(peer) : Effect.fail(otherInstance(peer, instanceId)))
    // Every agent calls this every few seconds: plain combinators rather than a generator, and no
    // `requireLeader`, because `recordHealth` answers `NotLeader` itself (one leadership check per report).
    const reportHealth = (peer: VerifiedClientCertificate, wire: typeof ReportHealth.payloadSchema.Type) =>
      counted(
        "ReportHealth",
        Effect.flatMap(decodeHealth(wire), (payload) =>
          peer.instanceId === payload.instanceId
            ? Effect.as(backend.recordHealth({ instanceId: peer.instanceId, certificateSerial: peer.serial }, payload.status ?? "healthy"), REPORTED)
            : Effect.fail(otherInstance(peer, payload.instanceId)))
      )
    const handlers = AgentRpcs.of({
      ReportHealth: (wire) => Effect.flatMap(AgentPeer, (peer) => reportHealth(peer, wire)),

      RenewCertificate: (wire) =>
        counted("RenewCertificate", Effect.gen(function* () {
          const payload = yield* decodeRenew(wire)
          const peer = yield* caller(payload.instanceId)
          yield* requireLeader
          const issued = yield* issue(peer.instanceId, peer.tenant, payload.publicKeyPem)
          yield* backend.recordRenewed({
            instanceId: peer.instanceId,
            presentedSerial: peer.serial,
            certificateSerial: issued.serial,
            certificateNotAfter: issued.notAfter
          })
          return { certificatePem: issued.certificatePem, caPem: pki.caPem, renewAfterSeconds: issued.renewAfterSeconds }
        })).pipe(Effect.withSpan("agent.RenewCertificate")),

      SubmitKey: (wire) =>
        counted("SubmitKey", Effect.gen(function* () {
          const payload = yield* decodeSubmitKey(wire)
          const peer = yield* caller(payload.instanceId)
          yield* provesPossession(payload)
          const files = options.files
          if (files === undefined) return yield* new InvalidPayload({ field: "name", reason: "this server delivers no files" })
          // The instance must be registered and the certificate its newest, as for every channel request.
          yield* backend.registeredInstance({ instanceId: peer.instanceId, certificateSerial: peer.serial })
          yield* files.keySubmitted(peer.instanceId, payload.name, payload.publicKeyPem)
          return { ok: true as const }
        })).pipe(Effect.withSpan("agent.SubmitKey")),

      ReceiveFiles: (wire) =>
        Stream.unwrap(counted("ReceiveFiles", Effect.gen(function* () {
          const payload = yield* decodeReceiveFiles(wire)
          // The instance is the connection's certificate's: a request naming another is refused.
          const peer = yield* caller(payload.instanceId)
          const files = options.files
          if (files === undefined) return Stream.never
          return files.stream({ instanceId: peer.instanceId, certificateSerial: peer.serial })
        })))
    })
    return { handlers, reportHealth }
  })

/**
 * The agent channel's handlers; need `ClusterPki`, `AgentBackend`, and an `AgentAuthentication`
 * (`AgentAuthenticationLive` on the network) that provides each request's `AgentPeer`.
 */
export const AgentHandlersLive = (options: AgentServiceOptions) => AgentRpcs.toLayer(Effect.map(makeAgentHandlers(options), ({ handlers }) => handlers))

/** An agent's certificate, not an operator's. */
const agentsOnly = (certificate: VerifiedClientCertificate): Effect.Effect<VerifiedClientCertificate, InvalidCertificate> =>
  certificate.role === "agent"
    ? Effect.succeed(certificate)
    : Effect.fail(new InvalidCertificate({ reason: "NotAgentCertificate", detail: `an ${certificate.role}'s certificate` }))

/** An agent's certificate (not an operator's) the cluster CA issued, valid now. */
export const authenticateAgentCertificate = (pki: ClusterPkiShape, pem: string): Effect.Effect<VerifiedClientCertificate, InvalidCertificate> =>
  pki.verifyClientCertificate(pem).pipe(
    Effect.mapError((error) => new InvalidCertificate({ reason: error.reason, detail: error.detail })),
    Effect.flatMap(agentsOnly)
  )

/** What the agent channel keeps of each of its connections for `AgentAuthenticationLive`. */
export interface AgentChannelPeer {
  readonly socket: TLSSocket
  /** The connection's certificate, once it passed as an agent's: later requests only have its expiry looked at. */
  agent: VerifiedClientCertificate | undefined
}

/**
 * The connections of the agent channel, by the client ID the RPC server knows each by (the `clientId` every
 * middleware call carries); provided by the channel server.
 */
export class AgentConnections extends Context.Tag("nstance/AgentConnections")<AgentConnections, {
  /** An open connection; undefined once it closed. */
  readonly get: (clientId: number) => AgentChannelPeer | undefined
}>() {}

/** What `AgentAuthenticationLive` does with a request (only its connection matters): its agent's certificate. */
const makeAgentAuthentication = (refusals?: RefusalLog) =>
  Effect.map(Effect.all([ClusterPki, AgentConnections]), ([pki, connections]) => {
    const certificateOf = makeConnectionCertificates(pki)
    const refuse = (error: InvalidCertificate, peer: string) =>
      Effect.zipRight(refusals === undefined ? Effect.void : refusals.refuse("certificate", peer, error.reason), Effect.fail(error))
    const authenticate = (connection: AgentChannelPeer) =>
      certificateOf(connection.socket).pipe(
        Effect.mapError((error) => new InvalidCertificate({ reason: error.reason, detail: error.detail })),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new InvalidCertificate({ reason: "Missing", detail: "no client certificate" })),
          onSome: (certificate) => agentsOnly(certificate)
        })),
        Effect.tap((certificate) => Effect.sync(() => void (connection.agent = certificate))),
        Effect.catchAll((error) => refuse(error, `${connection.socket.remoteAddress ?? "unknown"}`))
      )
    return (clientId: number): Effect.Effect<VerifiedClientCertificate, InvalidCertificate> =>
      Effect.suspend(() => {
        const connection = connections.get(clientId)
        if (connection === undefined) return refuse(new InvalidCertificate({ reason: "Missing", detail: "not a TLS connection" }), "unknown")
        const known = connection.agent
        if (known === undefined) return authenticate(connection)
        // Expired since: the full check again, which refuses it and says why.
        return Effect.flatMap(Clock.currentTimeMillis, (now) => now <= known.notAfter.getTime() ? Effect.succeed(known) : authenticate(connection))
      })
  })

const asMiddleware = (authenticate: Effect.Effect.Success<ReturnType<typeof makeAgentAuthentication>>) =>
  AgentAuthentication.of(({ clientId }) => authenticate(clientId))

/**
 * `AgentAuthentication` from the connection's client certificate: verified once per connection (the TLS
 * handshake checked the chain already), its validity checked again at every request, and an operator's
 * certificate refused. Refusals go to `refusals` when given. Whether the certificate is still the
 * instance's newest (not superseded by a renewal) is the backend's check, at every request. Needs
 * `ClusterPki` and the channel's `AgentConnections`.
 */
export const AgentAuthenticationLive = (refusals?: RefusalLog) => Layer.effect(AgentAuthentication, Effect.map(makeAgentAuthentication(refusals), asMiddleware))

const isBodyLimitDefect = (defect: unknown): boolean => {
  const cause = (defect as { cause?: unknown } | null)?.cause
  return cause instanceof Error && cause.message.includes("maxBytes")
}

const tooLarge = (maxBytes: number) =>
  HttpServerResponse.unsafeJson({ _tag: "PayloadTooLarge", field: "body", maxLength: maxBytes }, { status: 413 })

/**
 * Refuses bodies over `maxBytes`: one whose Content-Length says so gets 413 before anything is read (the
 * agent client, like any fetch of a string body, always sends it). A chunked body is cut off when the read
 * passes the limit; platform-node then destroys the request stream, so that client sees its connection
 * reset rather than the 413 answered here. Either way nothing beyond the limit is buffered.
 */
const bodyLimit = (maxBytes: number, refusals: RefusalLog) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const declared = Number(request.headers["content-length"])
      if (Number.isFinite(declared) && declared > maxBytes) {
        yield* refusals.refuse("too-large", Option.getOrElse(request.remoteAddress, () => "unknown"), `Content-Length ${declared} above ${maxBytes}`)
        return tooLarge(maxBytes)
      }
      return yield* app.pipe(
        HttpIncomingMessage.withMaxBodySize(Option.some(maxBytes)),
        Effect.catchAllCause((cause) => {
          const defect = Cause.dieOption(cause)
          return Option.isSome(defect) && isBodyLimitDefect(defect.value) ? Effect.succeed(tooLarge(maxBytes)) : Effect.failCause(cause)
        })
      )
    })

let routerCount = 0

/**
 * Serves `RegisterAgent` at `https://{host}:{port}{path}` until the layer's scope closes. The output
 * includes `HttpServer.HttpServer`, whose `address` gives the bound port. Needs `ClusterPki` and
 * `AgentBackend`.
 */
export const RegistrationServerLive = (options: RegistrationServerOptions) => {
  // A router of its own (not HttpRouter.Default): another server in the process must not share its routes.
  class RegistrationRouter extends HttpRouter.Tag(`nstance/RegistrationRouter/${++routerCount}`)<RegistrationRouter>() {}
  return Layer.unwrapEffect(Effect.map(makeRefusalLog("registration"), (refusals) => {
    const rpc = RpcServer.layer(RegistrationRpcs).pipe(
      Layer.provide(RegistrationHandlersLive({ ...options, refusals })),
      Layer.provide(RpcServer.layerProtocolHttp({ path: (options.path ?? "/agent") as HttpRouter.PathInput, routerTag: RegistrationRouter })),
      Layer.provide(RpcSerialization.layerNdjson)
    )
    return RegistrationRouter.serve(bodyLimit(options.maxRequestBytes ?? MAX_REQUEST_BYTES, refusals)).pipe(
      Layer.provide(rpc),
      Layer.provideMerge(guardedServerLayer("registration", options, options.limits, refusals, options.tls))
    )
  }))
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const isHeaderList = (value: unknown): value is ReadonlyArray<[string, string]> =>
  Array.isArray(value) && value.every((pair) => Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" && typeof pair[1] === "string")

/** A message a client may send, in the shape `RpcServer` takes (which checks procedure and payload itself). */
const isFromClient = (message: unknown): message is RpcMessage.FromClientEncoded => {
  if (!isRecord(message)) return false
  switch (message["_tag"]) {
    case "Request":
      return typeof message["id"] === "string" && typeof message["tag"] === "string" && isHeaderList(message["headers"])
    case "Ack":
    case "Interrupt":
      return typeof message["requestId"] === "string"
    case "Ping":
    case "Eof":
      return true
    default:
      return false
  }
}

const bytesOf = (data: RawData): Uint8Array => (Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data)

/** Answers on one connection are gathered into one WebSocket message up to this many characters. */
const MAX_BATCH_CHARS = 64 * 1024

/** Requests one connection may have in flight. */
const MAX_IN_FLIGHT = 1024

/** One open agent-channel connection. */
interface ChannelConnection extends AgentChannelPeer {
  readonly clientId: number
  readonly ws: WebSocket
  readonly parser: RpcSerialization.Parser
  /** Answers encoded and not yet written. */
  out: string
  /** IDs of the requests handed to the server and not answered yet. */
  readonly inFlight: Set<string>
}

/** A procedure the channel answers itself: the request in, the answer out (never failing). */
type InlineProcedure = (clientId: number, request: RpcMessage.RequestEncoded) => Effect.Effect<RpcMessage.FromServerEncoded>

/** `ReportHealth` with the middleware the group applies to it, which is what its answers are encoded with. */
const ReportHealthAuthenticated = ReportHealth.middleware(AgentAuthentication)

/**
 * `ReportHealth` answered in the channel's serving fiber instead of a fiber of its own: on a connection whose
 * certificate is already known, a report is a few in-memory checks (payload, certificate expiry, instance
 * and serial, leadership) that never wait, and the fiber `RpcServer` starts for each request (with the
 * context it builds to provide `AgentPeer`) was about half of the channel's CPU. Everything else is what `RpcServer` does with the request: the wire payload decoded with
 * the procedure's schema (a failure is a Die naming it), the same authentication handing the connection's
 * certificate to the same handler (`AgentAuthentication` looks at nothing but the connection), the exit
 * encoded with the procedure's exit schema (the one success answer encoded once), and a defect answered as
 * a Defect. test/agent/channel.test.ts holds the two paths' answers side by side.
 */
const makeInlineReportHealth = (
  reportHealth: (peer: VerifiedClientCertificate, payload: typeof ReportHealth.payloadSchema.Type) => Effect.Effect<
    typeof ReportHealth.successSchema.Type,
    typeof ReportHealth.errorSchema.Type
  >,
  authenticate: (clientId: number) => Effect.Effect<VerifiedClientCertificate, InvalidCertificate>
): Effect.Effect<InlineProcedure> =>
  Effect.suspend(() => {
    // Should the group ever apply other middleware to it, this would answer without it: refuse to start.
    const grouped = AgentRpcs.requests.get(ReportHealth._tag)
    if (grouped === undefined || grouped.middlewares.size !== 1 || !grouped.middlewares.has(AgentAuthentication)) {
      return Effect.dieMessage("the inline ReportHealth applies exactly the group's AgentAuthentication; the group changed")
    }
    const decode = Schema.decodeUnknownEither(ReportHealth.payloadSchema)
    const encodeExit = Schema.encode(Rpc.exitSchema(ReportHealthAuthenticated))
    const reported = Schema.encodeEither(Rpc.exitSchema(ReportHealthAuthenticated))(Exit.succeed(REPORTED))
    if (Either.isLeft(reported)) return Effect.die(reported.left)
    const encodeDefect = Schema.encodeUnknown(ReportHealth.defectSchema)
    const dieAnswer = (requestId: string, defect: unknown): Effect.Effect<RpcMessage.FromServerEncoded> =>
      encodeDefect(defect).pipe(
        Effect.map((encoded): RpcMessage.FromServerEncoded => ({ _tag: "Exit", requestId, exit: { _tag: "Failure", cause: { _tag: "Die", defect: encoded } } })),
        Effect.orElseSucceed(() => RpcMessage.ResponseDefectEncoded(defect))
      )
    const exitAnswer = (requestId: string, exit: Exit.Exit<typeof ReportHealth.successSchema.Type, typeof ReportHealth.errorSchema.Type | InvalidCertificate>) =>
      encodeExit(exit).pipe(
        Effect.map((encoded): RpcMessage.FromServerEncoded => ({ _tag: "Exit", requestId, exit: encoded })),
        Effect.catchAll((error) => dieAnswer(requestId, ParseResult.TreeFormatter.formatErrorSync(error)))
      )
    return Effect.succeed<InlineProcedure>((clientId, request) => {
      const payload = decode(request.payload)
      if (Either.isLeft(payload)) return dieAnswer(request.id, ParseResult.TreeFormatter.formatErrorSync(payload.left))
      return Effect.matchCauseEffect(
        // What providing `AgentPeer` from the middleware to the handler comes to, without a context to build.
        Effect.flatMap(authenticate(clientId), (peer) => reportHealth(peer, payload.right)),
        {
          onSuccess: (value): Effect.Effect<RpcMessage.FromServerEncoded> =>
            value === REPORTED ? Effect.succeed({ _tag: "Exit", requestId: request.id, exit: reported.right }) : exitAnswer(request.id, Exit.succeed(value)),
          // As RpcServer does without `disableFatalDefects`: a defect is the connection's, not the request's.
          onFailure: (cause) =>
            Cause.isDie(cause) && !Cause.isInterrupted(cause)
              ? Effect.succeed(RpcMessage.ResponseDefectEncoded(Cause.squash(cause)))
              : exitAnswer(request.id, Exit.failCause(cause))
        }
      )
    })
  })

/**
 * The agent channel as an `RpcServer.Protocol`: agent-channel WebSockets on a guarded TLS server (client
 * certificate required at the handshake), NDJSON over them. Messages are capped at `maxPayload` bytes (the
 * ws default would buffer 100 MiB); an upgrade to any other path, or a plain HTTP request, is answered 404
 * and counted.
 *
 * Not `RpcServer.layerProtocolSocketServer` over a `SocketServer`, which starts a fiber for every WebSocket
 * message and writes every answer as a WebSocket message of its own: with a report every few seconds from
 * every agent that was most of the channel's CPU. Here the messages that arrive on all connections while
 * the event loop is busy are handed to the server by one fiber once it turns (`setImmediate`), and the
 * answers each connection gets meanwhile go out as one WebSocket message (NDJSON lines, which every RPC
 * client reads one by one) on the turn after, so a busy channel wakes one fiber per turn and encrypts and
 * writes once per connection and turn. That fiber answers a report on a connection whose certificate is
 * known itself (`makeInlineReportHealth`: nothing in it waits) and hands every other message to the server,
 * which never makes it wait on a handler: the server runs each request in a fiber of its own, and the one
 * request it would wait for, one whose ID is still in flight on its connection, is answered here with a
 * Defect instead (the server would drop its answer anyway).
 */
const makeChannelProtocol = (
  options: AgentChannelServerOptions,
  /** Shared with `AgentAuthenticationLive` (as `AgentConnections`): the channel adds and removes them. */
  connections: Map<number, ChannelConnection>,
  /** `ReportHealth` answered inline (see `makeInlineReportHealth`). */
  reportHealth: InlineProcedure
) =>
  Effect.gen(function* () {
    const path = options.path ?? "/agent"
    const { refusals, server } = yield* makeListenerServer("agent", options.limits, options.refusals, { ...options.tls, clientCertificates: "required" })
    const wss = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new WebSocketServer({
          noServer: true,
          clientTracking: false,
          // Reports are a few dozen bytes: compressing them would cost more CPU than it saves.
          perMessageDeflate: false,
          maxPayload: options.maxRequestBytes ?? MAX_REQUEST_BYTES
        })),
      (wss) => Effect.async<void>((resume) => wss.close(() => resume(Effect.void)))
    )
    const disconnects = yield* Mailbox.make<number>()
    const runtime = yield* Effect.runtime<never>()
    const notFound = (peer: string, what: string) => Runtime.runFork(runtime)(refusals.refuse("bad-request", peer, what))
    let nextClientId = 0

    // Answers: gathered per connection, written once the event loop turns.
    let unwritten: Array<ChannelConnection> = []
    let writeScheduled = false
    const writeOut = (connection: ChannelConnection) => {
      if (connection.out === "") return
      const data = connection.out
      connection.out = ""
      if (connection.ws.readyState === connection.ws.OPEN) connection.ws.send(data)
    }
    const writeAll = () => {
      writeScheduled = false
      const due = unwritten
      unwritten = []
      for (const connection of due) writeOut(connection)
    }
    const answer = (connection: ChannelConnection, response: RpcMessage.FromServerEncoded) => {
      if (response._tag === "Exit") connection.inFlight.delete(response.requestId)
      let encoded: string | Uint8Array | undefined
      try {
        encoded = connection.parser.encode(response)
      } catch (cause) {
        encoded = connection.parser.encode(RpcMessage.ResponseDefectEncoded(cause))
      }
      if (encoded === undefined) return
      if (connection.out === "") unwritten.push(connection)
      connection.out += typeof encoded === "string" ? encoded : Buffer.from(encoded).toString("utf8")
      if (connection.out.length >= MAX_BATCH_CHARS) writeOut(connection)
      if (!writeScheduled) {
        writeScheduled = true
        setImmediate(writeAll)
      }
    }

    // Requests: gathered from every connection, handed to the server by one fiber once the event loop turns.
    let received: Array<readonly [ChannelConnection, RpcMessage.FromClientEncoded]> = []
    let wake: (() => void) | undefined
    let wakeScheduled = false
    const wakeUp = () => {
      wakeScheduled = false
      const resume = wake
      wake = undefined
      resume?.()
    }
    const nextMessages = Effect.async<void>((resume) => {
      wake = () => resume(Effect.void)
    })

    const protocol = yield* RpcServer.Protocol.make((writeRequest) => {
      /** A message the server failed on (a defect): logged, and that connection is closed. */
      const handOver = (connection: ChannelConnection, message: RpcMessage.FromClientEncoded) =>
        writeRequest(connection.clientId, message).pipe(
          Effect.catchAllCause((cause) =>
            Effect.zipRight(
              Effect.logWarning("agent channel: a message could not be served; closing its connection", cause),
              Effect.sync(() => connection.ws.close(1011))
            ))
        )
      const serve = Effect.whileLoop({
        while: constTrue,
        body: () => {
          if (received.length === 0) return nextMessages
          const batch = received
          received = []
          return Effect.forEach(batch, ([connection, message]) => {
            // Its connection closed since: the server has been told, and must not see it again.
            if (!connections.has(connection.clientId)) return Effect.void
            if (message._tag === "Request" && AgentRpcs.requests.has(message.tag)) {
              // The server would hold this request until the one with its ID is done, and this fiber with it
              // (every connection's messages); it would then drop its answer anyway. No client reuses an ID.
              if (connection.inFlight.has(message.id)) return Effect.sync(() => answer(connection, RpcMessage.ResponseDefectEncoded(`request ${message.id} is already in flight`)))
              // An honest agent has a few requests in flight; more than this is a client to be rid of.
              if (connection.inFlight.size >= MAX_IN_FLIGHT) return Effect.sync(() => connection.ws.close(1008, "too many requests in flight"))
              // Once the connection's certificate is known to be an agent's, a report has nothing to wait for.
              if (message.tag === "ReportHealth" && connection.agent !== undefined) {
                return Effect.map(reportHealth(connection.clientId, message), (response) => answer(connection, response))
              }
              // Answered by exactly one Exit (an unknown procedure gets a Defect instead, so its ID is not kept).
              connection.inFlight.add(message.id)
            }
            return handOver(connection, message)
          }, { discard: true })
        },
        step: constVoid
      })
      return Effect.as(Effect.forkScoped(serve), {
        disconnects,
        send: (clientId: number, response: RpcMessage.FromServerEncoded) =>
          Effect.sync(() => {
            const connection = connections.get(clientId)
            if (connection !== undefined) answer(connection, response)
          }),
        end: () => Effect.void,
        clientIds: Effect.sync(() => new Set(connections.keys())),
        initialMessage: Effect.succeedNone,
        supportsAck: true,
        supportsTransferables: false,
        supportsSpanPropagation: true
      })
    })

    const accept = (ws: WebSocket, socket: TLSSocket) => {
      const connection: ChannelConnection = {
        clientId: nextClientId++,
        ws,
        socket,
        agent: undefined,
        parser: RpcSerialization.ndjson.unsafeMake(),
        out: "",
        inFlight: new Set()
      }
      connections.set(connection.clientId, connection)
      ws.on("message", (data: RawData) => {
        let messages: ReadonlyArray<unknown>
        try {
          messages = connection.parser.decode(bytesOf(data))
        } catch (cause) {
          // A line over the parser's limit closes the connection, as RpcServer's own socket protocol does. So
          // does broken JSON, after a Defect saying so: the parser keeps the broken line, so nothing after it
          // on this connection could be read.
          if (Predicate.isTagged(cause, "RpcSerializationError")) return ws.close(1009)
          answer(connection, RpcMessage.ResponseDefectEncoded(cause))
          writeOut(connection)
          return ws.close(1007, "not NDJSON")
        }
        for (const message of messages) {
          if (isFromClient(message)) received.push([connection, message])
          else answer(connection, RpcMessage.ResponseDefectEncoded("not an RPC message"))
        }
        if (received.length > 0 && wake !== undefined && !wakeScheduled) {
          wakeScheduled = true
          setImmediate(wakeUp)
        }
      })
      // ws closes the connection after an error (a message over maxPayload, a broken frame): "close" follows.
      ws.on("error", (cause) => Runtime.runFork(runtime)(Effect.logDebug("agent channel: connection error", cause)))
      ws.once("close", () => {
        connections.delete(connection.clientId)
        disconnects.unsafeOffer(connection.clientId)
      })
    }
    let serving = false

    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      notFound(request.socket.remoteAddress ?? "unknown", "not a WebSocket upgrade")
      response.writeHead(404, { connection: "close" }).end()
    })
    server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!serving || new URL(request.url ?? "/", "https://agent").pathname !== path) {
        notFound(request.socket.remoteAddress ?? "unknown", `upgrade to ${serving ? "an unknown path" : "a channel not serving"}`)
        socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        return
      }
      wss.handleUpgrade(request, socket, head, (ws) => accept(ws, request.socket as TLSSocket))
    })
    yield* Effect.acquireRelease(
      Effect.async<void, SocketServer.SocketServerError>((resume) => {
        const onError = (cause: Error) => resume(Effect.fail(new SocketServer.SocketServerError({ reason: "Open", cause })))
        server.once("error", onError)
        server.listen({ port: options.port, ...(options.host === undefined || options.host === "" ? {} : { host: options.host }) }, () => {
          server.off("error", onError)
          serving = true
          resume(Effect.void)
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          serving = false
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
          // Upgraded sockets are no longer the HTTP server's: it neither closes them nor finishes closing while they are open.
          for (const connection of connections.values()) connection.ws.terminate()
        })
    )
    const address = server.address()
    // Only its address is used (the callers' way to learn the bound port); the sockets are the protocol's.
    const sockets = SocketServer.SocketServer.of({
      address: typeof address === "string" || address === null
        ? { _tag: "UnixAddress", path: String(address) }
        : { _tag: "TcpAddress", hostname: address.address, port: address.port },
      run: () => Effect.dieMessage("the agent channel's sockets are served by its RPC protocol")
    })
    return { protocol, sockets }
  })

/**
 * Serves the agent channel at `wss://{host}:{port}{path}` until the layer's scope closes: TLS 1.3, the
 * agent's client certificate required at the handshake. The output includes `SocketServer.SocketServer`,
 * whose `address` gives the bound port. Needs `ClusterPki` and `AgentBackend`.
 */
export const AgentChannelServerLive = (options: AgentChannelServerOptions) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const refusals = yield* makeRefusalLog("agent")
      const connections = new Map<number, ChannelConnection>()
      // One instance of the handlers and of the authentication, for the RPC server and the inline report alike.
      const authenticate = yield* makeAgentAuthentication(refusals).pipe(
        Effect.provideService(AgentConnections, AgentConnections.of({ get: (clientId) => connections.get(clientId) }))
      )
      const { handlers, reportHealth: report } = yield* makeAgentHandlers({ ...options, refusals })
      const reportHealth = yield* makeInlineReportHealth(report, authenticate)
      const { protocol, sockets } = yield* makeChannelProtocol({ ...options, refusals }, connections, reportHealth)
      // No span per call: every agent reports every few seconds, so a trace of each would be most of the
      // channel's CPU and of any trace store; renewals still carry their own span (see the handler).
      return RpcServer.layer(AgentRpcs, { disableTracing: true }).pipe(
        Layer.provide(AgentRpcs.toLayer(handlers)),
        Layer.provide(Layer.succeed(AgentAuthentication, asMiddleware(authenticate))),
        Layer.provide(Layer.succeed(RpcServer.Protocol, protocol)),
        Layer.merge(Layer.succeed(SocketServer.SocketServer, sockets))
      )
    })
  )
