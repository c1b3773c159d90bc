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
import { type HttpApp, HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse, Socket, SocketServer } from "@effect/platform"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { Cause, Context, Duration, Effect, Exit, FiberSet, Layer, Option, Runtime, Scope } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import { nonceHash } from "../domain/agent/nonce.js"
import { AgentBackend } from "../services/AgentBackend.js"
import { ClusterPki, type ClusterPkiShape, type VerifiedClientCertificate } from "../services/ClusterPki.js"
import {
  AgentAuthentication,
  AgentPeer,
  AgentRpcs,
  decodeStrict,
  MAX_REQUEST_BYTES,
  RegisterAgentPayload,
  RegistrationRpcs,
  RenewCertificatePayload,
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

/**
 * The agent channel's handlers; needs `ClusterPki`, `AgentBackend`, and an `AgentAuthentication`
 * (`AgentAuthenticationLive` on the network) that provides each request's `AgentPeer`.
 */
export const AgentHandlersLive = (options: AgentServiceOptions) =>
  AgentRpcs.toLayer(Effect.gen(function* () {
    const { backend, counted, issue, pki, requireLeader } = yield* makeCommon(options)
    /** The connection's certificate, which must be about the instance the request names. */
    const caller = (instanceId: string) =>
      Effect.flatMap(AgentPeer, (peer) =>
        peer.instanceId === instanceId
          ? Effect.succeed(peer)
          : Effect.fail(new InvalidCertificate({
            reason: "OtherInstance",
            detail: `the certificate is ${peer.instanceId}'s; the request is about ${instanceId}`
          })))
    return AgentRpcs.of({
      ReportHealth: (wire) =>
        counted("ReportHealth", Effect.gen(function* () {
          const payload = yield* decodeHealth(wire)
          const peer = yield* caller(payload.instanceId)
          yield* requireLeader
          yield* backend.recordHealth({ instanceId: peer.instanceId, certificateSerial: peer.serial }, payload.status ?? "healthy")
          return { ok: true as const }
        })),

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
        })).pipe(Effect.withSpan("agent.RenewCertificate"))
    })
  }))

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

/** The TLS connection an agent-channel request arrived on (provided per connection by the channel server). */
export class AgentConnection extends Context.Tag("nstance/AgentConnection")<AgentConnection, TLSSocket>() {}

/**
 * `AgentAuthentication` from the connection's client certificate: verified once per connection (the TLS
 * handshake checked the chain already), its validity checked again at every request, and an operator's
 * certificate refused. Refusals go to `refusals` when given.
 */
export const AgentAuthenticationLive = (refusals?: RefusalLog) =>
  Layer.effect(
    AgentAuthentication,
    Effect.gen(function* () {
      const certificateOf = makeConnectionCertificates(yield* ClusterPki)
      const refuse = (error: InvalidCertificate, peer: string) =>
        Effect.zipRight(refusals === undefined ? Effect.void : refusals.refuse("certificate", peer, error.reason), Effect.fail(error))
      return AgentAuthentication.of(() =>
        Effect.gen(function* () {
          const connection = yield* Effect.serviceOption(AgentConnection)
          if (Option.isNone(connection)) {
            return yield* refuse(new InvalidCertificate({ reason: "Missing", detail: "not a TLS connection" }), "unknown")
          }
          const peer = `${connection.value.remoteAddress ?? "unknown"}`
          return yield* certificateOf(connection.value).pipe(
            Effect.mapError((error) => new InvalidCertificate({ reason: error.reason, detail: error.detail })),
            Effect.flatMap(Option.match({
              onNone: () => Effect.fail(new InvalidCertificate({ reason: "Missing", detail: "no client certificate" })),
              onSome: (certificate) => agentsOnly(certificate)
            })),
            Effect.catchAll((error) => refuse(error, peer))
          )
        })
      )
    })
  )

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

/**
 * A `SocketServer` of agent-channel WebSockets on a guarded TLS server: each connection runs with its TLS
 * socket as `AgentConnection`, so `AgentAuthenticationLive` can read the client certificate. Messages are
 * capped at `maxPayload` bytes (the ws default would buffer 100 MiB); an upgrade to any other path, or a
 * plain HTTP request, is answered 404 and counted.
 */
const makeChannelSocketServer = (options: AgentChannelServerOptions) =>
  Effect.gen(function* () {
    const path = options.path ?? "/agent"
    const { refusals, server } = yield* makeListenerServer("agent", options.limits, options.refusals, { ...options.tls, clientCertificates: "required" })
    const wss = yield* Effect.acquireRelease(
      Effect.sync(() => new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: options.maxRequestBytes ?? MAX_REQUEST_BYTES })),
      (wss) => Effect.async<void>((resume) => wss.close(() => resume(Effect.void)))
    )
    let onConnection: ((ws: WebSocket, socket: TLSSocket) => void) | undefined
    const runtime = yield* Effect.runtime<never>()
    const notFound = (peer: string, what: string) => Runtime.runFork(runtime)(refusals.refuse("bad-request", peer, what))
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      notFound(request.socket.remoteAddress ?? "unknown", "not a WebSocket upgrade")
      response.writeHead(404, { connection: "close" }).end()
    })
    server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      const accept = onConnection
      if (accept === undefined || new URL(request.url ?? "/", "https://agent").pathname !== path) {
        notFound(request.socket.remoteAddress ?? "unknown", `upgrade to ${accept === undefined ? "a channel not yet serving" : "an unknown path"}`)
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
          resume(Effect.void)
        })
      }),
      () => Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    const address = server.address()
    return SocketServer.SocketServer.of({
      address: typeof address === "string" || address === null
        ? { _tag: "UnixAddress", path: String(address) }
        : { _tag: "TcpAddress", hostname: address.address, port: address.port },
      run: <R, E, _>(handler: (socket: Socket.Socket) => Effect.Effect<_, E, R>) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const fibers = yield* FiberSet.make().pipe(Scope.extend(scope))
          const runFork = yield* FiberSet.runtime(fibers)<R>()
          onConnection = (ws, socket) => {
            // ws's server-side WebSocket is the browser API's shape, which is what Socket.fromWebSocket takes.
            const webSocket = ws as unknown as globalThis.WebSocket
            runFork(Socket.fromWebSocket(Effect.acquireRelease(Effect.succeed(webSocket), (open) => Effect.sync(() => open.close()))).pipe(
              Effect.flatMap(handler),
              Effect.catchAllCause((cause) => Effect.logDebug("agent channel: connection ended", cause)),
              Effect.provideService(AgentConnection, socket)
            ))
          }
          return yield* Effect.never.pipe(Effect.ensuring(Effect.zipRight(
            Effect.sync(() => void (onConnection = undefined)),
            Scope.close(scope, Exit.void)
          )))
        })
    })
  })

/**
 * Serves the agent channel at `wss://{host}:{port}{path}` until the layer's scope closes: TLS 1.3, the
 * agent's client certificate required at the handshake. The output includes `SocketServer.SocketServer`,
 * whose `address` gives the bound port. Needs `ClusterPki` and `AgentBackend`.
 */
export const AgentChannelServerLive = (options: AgentChannelServerOptions) =>
  Layer.unwrapEffect(Effect.map(makeRefusalLog("agent"), (refusals) => {
    const sockets = Layer.scoped(SocketServer.SocketServer, makeChannelSocketServer({ ...options, refusals }))
    // No span per call: every agent reports every few seconds, so a trace of each would be most of the
    // channel's CPU and of any trace store; renewals still carry their own span (see the handler).
    return RpcServer.layer(AgentRpcs, { disableTracing: true }).pipe(
      Layer.provide(AgentHandlersLive({ ...options, refusals })),
      Layer.provide(AgentAuthenticationLive(refusals)),
      Layer.provide(RpcServer.layerProtocolSocketServer),
      Layer.provide(RpcSerialization.layerNdjson),
      Layer.provideMerge(sockets)
    )
  }))
