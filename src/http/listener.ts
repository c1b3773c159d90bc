/**
 * The Node HTTP server under every endpoint a replica serves, with the limits of `listenerLimits`: a cap on
 * connections per listener and per peer address (the excess is closed as soon as it is accepted, before a
 * byte is read), seconds — not Node's five minutes — for headers, body and idle sockets, and bounded header
 * sizes. Every connection or request turned away is counted (`nstance_endpoint_refusals`) and logged at WARN
 * with the peer address, at most a few lines per listener every ten seconds; never a header or a body.
 */
import { readFile } from "node:fs/promises"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { TLSSocket } from "node:tls"
import type { HttpServerRequest } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import { Clock, Context, Duration, Effect, Layer, Metric, MetricLabel, Option, Ref, Runtime, Schedule, type Scope } from "effect"
import { CertificateRejected, type ClusterPkiShape, type VerifiedClientCertificate } from "../services/ClusterPki.js"
import { type ListenerLimits, listenerLimits, type ListenerName, parseDescriptorLimit, type RefusalReason } from "../domain/listenerLimits.js"

/** Labels: `endpoint` (registration, operator, health), `reason` (listener-full, peer-full, timeout, bad-request, token, …). */
export const endpointRefusals = Metric.counter("nstance_endpoint_refusals", {
  description: "Connections and requests an endpoint turned away, by endpoint and reason",
  incremental: true
})

/** The soft open-files limit of this process (1,024 when it cannot be read: the common default, and the safe guess). */
export const descriptorLimit: Effect.Effect<number> = Effect.promise(() =>
  readFile("/proc/self/limits", "utf8").then(parseDescriptorLimit, () => undefined)
).pipe(Effect.map((limit) => limit ?? 1024))

/** The limits of `listener` in this process. */
export const limitsFor = (listener: ListenerName): Effect.Effect<ListenerLimits> => Effect.map(descriptorLimit, (limit) => listenerLimits(listener, limit))

/** A TLS server certificate and its key (PEM). */
export interface TlsMaterial {
  readonly certificatePem: string
  readonly privateKeyPem: string
}

/**
 * Client certificates at the handshake: `required` refuses a client without one the cluster CA signed
 * (counted as a `certificate` refusal); `requested` asks for one and lets the app decide (the operator
 * endpoint, where a bearer token serves too); absent, none is asked for.
 */
export type ClientCertificateMode = "required" | "requested"

/** Serve TLS 1.3 with a certificate the cluster CA issues for `hosts`, renewed after two thirds of `ttl`. */
export interface ServerTls {
  readonly pki: ClusterPkiShape
  readonly hosts: ReadonlyArray<string>
  readonly ttl?: Duration.DurationInput
  readonly clientCertificates?: ClientCertificateMode
}

/** Server certificates live a week: a replica that cannot renew (its PKI gone) still serves for days. */
export const SERVER_CERTIFICATE_TTL = Duration.days(7)

/** A new server certificate after two thirds of its lifetime, for as long as the listener runs. */
export const serverCertificateRenewal = (ttl: Duration.Duration) => Schedule.spaced(Duration.millis(Math.floor((Duration.toMillis(ttl) * 2) / 3)))

/** Log lines per listener per window; refusals beyond them are counted and summed up in the next line. */
const LOGGED_PER_WINDOW = 5
const WINDOW_MS = 10_000

export interface RefusalLog {
  /** Counts a refusal and logs it unless this window's lines are used up. */
  readonly refuse: (reason: RefusalReason, peer: string, detail?: string) => Effect.Effect<void>
  /**
   * Counts a failed credential (token, nonce, certificate) from `host` and waits the penalty its recent
   * failures have earned before the answer goes out: guessing from one address slows to a crawl, while
   * one honest mistake costs 100 ms.
   */
  readonly penalize: (host: string) => Effect.Effect<void>
}

/** The refusal log of the listener a request arrived on (provided by `guardedServerLayer`). */
export class EndpointRefusals extends Context.Tag("nstance/EndpointRefusals")<EndpointRefusals, RefusalLog>() {}

/** Failed credentials from one address within this window add up. */
const PENALTY_WINDOW_MS = 60_000
const PENALTY_STEP_MS = 100
const PENALTY_MAX_MS = 2_000
/** Addresses remembered at once; beyond it the oldest are forgotten (a spray of addresses cannot grow the map). */
const PENALTY_ADDRESSES = 10_000

/** The refusal counter and its bounded log for one listener. */
export const makeRefusalLog = (listener: ListenerName): Effect.Effect<RefusalLog> =>
  Effect.gen(function* () {
    const window = yield* Ref.make({ startedAt: Number.NEGATIVE_INFINITY, logged: 0, suppressed: 0 })
    const counter = (reason: RefusalReason) =>
      Metric.taggedWithLabels(endpointRefusals, [MetricLabel.make("endpoint", listener), MetricLabel.make("reason", reason)])
    const failures = new Map<string, { readonly count: number; readonly since: number }>()
    return {
      penalize: (host) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const before = failures.get(host)
          const recent = before !== undefined && now - before.since < PENALTY_WINDOW_MS ? before : { count: 0, since: now }
          failures.delete(host)
          failures.set(host, { count: recent.count + 1, since: recent.since })
          if (failures.size > PENALTY_ADDRESSES) {
            const oldest = failures.keys().next()
            if (oldest.done !== true) failures.delete(oldest.value)
          }
          yield* Effect.sleep(Math.min(PENALTY_MAX_MS, PENALTY_STEP_MS * (recent.count + 1)))
        }),
      refuse: (reason, peer, detail) =>
        Effect.gen(function* () {
          yield* Metric.increment(counter(reason))
          const now = yield* Clock.currentTimeMillis
          const line = yield* Ref.modify(window, (w) => {
            const fresh = now - w.startedAt >= WINDOW_MS
            const current = fresh ? { startedAt: now, logged: 0, suppressed: 0 } : w
            if (current.logged >= LOGGED_PER_WINDOW) return [undefined, { ...current, suppressed: current.suppressed + 1 }] as const
            const earlier = fresh && w.suppressed > 0 ? ` (${w.suppressed} more refusals on this endpoint were not logged)` : ""
            return [`${listener} endpoint: refused ${peer}: ${reason}${detail === undefined ? "" : ` (${detail})`}${earlier}`, { ...current, logged: current.logged + 1 }] as const
          })
          if (line !== undefined) yield* Effect.logWarning(line)
        })
    }
  })

/** What Node tells of a connection's remote end (a socket, or the `drop` event's data). */
interface Peer {
  readonly remoteAddress?: string | undefined
  readonly remotePort?: number | undefined
}

/** The remote address, an IPv4-mapped IPv6 one shown as IPv4; "unknown" once the socket is gone. */
const peerHost = (peer: Peer): string => {
  const host = peer.remoteAddress ?? "unknown"
  return host.startsWith("::ffff:") ? host.slice(7) : host
}

/** `host:port` of the remote end (IPv6 in brackets); "unknown" once the socket is gone. */
const peerOf = (peer: Peer): string => {
  const host = peerHost(peer)
  if (peer.remoteAddress === undefined) return host
  return host.includes(":") ? `[${host}]:${peer.remotePort ?? 0}` : `${host}:${peer.remotePort ?? 0}`
}

/** What a client error becomes: the status written back (when the socket still takes it) and the reason counted. */
const classifyClientError = (error: NodeJS.ErrnoException): { readonly status: number; readonly reason: RefusalReason } => {
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") return { status: 408, reason: "timeout" }
  if (error.code === "HPE_HEADER_OVERFLOW") return { status: 431, reason: "too-large" }
  return { status: 400, reason: "bad-request" }
}

/**
 * A Node HTTP server with `limits` applied, refusals reported to `refusals` on the runtime it was made in.
 * For `NodeHttpServer.layer(() => server, …)`.
 */
export interface GuardedServer {
  readonly server: Server<typeof IncomingMessage, typeof ServerResponse>
  /** Serves a renewed certificate to new connections (TLS servers; nothing on plain HTTP). */
  readonly setCertificate: (material: TlsMaterial) => void
}

export const makeGuardedServer = (
  limits: ListenerLimits,
  refusals: RefusalLog,
  /** TLS 1.3 with this certificate and key; absent: plain HTTP. */
  tls?: TlsMaterial & { readonly clientCertificates?: { readonly mode: ClientCertificateMode; readonly caPem: string } }
): Effect.Effect<GuardedServer> =>
  Effect.map(Effect.runtime<never>(), (runtime) => {
    const report = (reason: RefusalReason, peer: string, detail?: string) => Runtime.runFork(runtime)(refusals.refuse(reason, peer, detail))
    const httpOptions = {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node checks the header and request deadlines on this interval (30 s by default, which would let a
      // slow client hold its socket for half a minute past its deadline).
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs)
    }
    const secure: HttpsServer | undefined = tls === undefined
      ? undefined
      : createHttpsServer({
        ...httpOptions,
        cert: tls.certificatePem,
        key: tls.privateKeyPem,
        minVersion: "TLSv1.3",
        handshakeTimeout: limits.headersTimeoutMs,
        // Never rejected inside the handshake: TLS 1.3 reports that to the server as a bare reset, so a
        // required certificate is checked once the handshake is done (below), where the reason is known.
        ...(tls.clientCertificates === undefined ? {} : { ca: tls.clientCertificates.caPem, requestCert: true, rejectUnauthorized: false })
      })
    const server: Server<typeof IncomingMessage, typeof ServerResponse> = secure ?? createServer(httpOptions)
    if (tls?.clientCertificates?.mode === "required") {
      secure?.on("secureConnection", (socket: TLSSocket) => {
        if (socket.authorized) return
        const reason = socket.authorizationError
        report("certificate", peerOf(socket), reason === null ? "no client certificate" : String(reason))
        socket.destroy()
      })
    }
    // A client that does not speak TLS 1.3 (plain HTTP, TLS 1.2, a handshake that never ends) is refused here.
    server.on("tlsClientError", (error: NodeJS.ErrnoException, socket: Duplex & Peer) => {
      if (error.code !== "ECONNRESET") report("tls", peerOf(socket), error.code ?? error.message)
      socket.destroy()
    })
    server.maxConnections = limits.maxConnections
    server.on("drop", (data?: Peer) => {
      report("listener-full", peerOf(data ?? {}), `${limits.maxConnections} connections open`)
    })
    const perPeer = new Map<string, number>()
    server.on("connection", (socket: Socket) => {
      const host = peerHost(socket)
      const open = perPeer.get(host) ?? 0
      if (open >= limits.maxConnectionsPerPeer) {
        report("peer-full", peerOf(socket), `${open} connections open from this address`)
        socket.destroy()
        return
      }
      perPeer.set(host, open + 1)
      socket.once("close", () => {
        const left = (perPeer.get(host) ?? 1) - 1
        if (left <= 0) perPeer.delete(host)
        else perPeer.set(host, left)
      })
      socket.setTimeout(limits.idleTimeoutMs)
      socket.once("timeout", () => {
        report("timeout", peerOf(socket), `no traffic for ${limits.idleTimeoutMs / 1000} s`)
        socket.destroy()
      })
    })
    // The idle timeout is for sockets nobody is answering: while a response is under way (an admin watch
    // stream may stay quiet for minutes) it is off, and it is armed again once that response has ended.
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      const socket = request.socket
      socket.setTimeout(0)
      response.once("close", () => {
        if (!socket.destroyed) socket.setTimeout(limits.idleTimeoutMs)
      })
    })
    server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex & Peer) => {
      const { reason, status } = classifyClientError(error)
      // A connection reset by the peer is its own business, not a refusal; a TLS failure was counted as one already.
      if (error.code !== "ECONNRESET" && error.code?.startsWith("ERR_SSL") !== true) report(reason, peerOf(socket), error.code)
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${status === 408 ? "Request Timeout" : status === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      socket.destroy()
    })
    return {
      server,
      setCertificate: (material) =>
        secure?.setSecureContext({
          cert: material.certificatePem,
          key: material.privateKeyPem,
          ...(tls?.clientCertificates === undefined ? {} : { ca: tls.clientCertificates.caPem })
        })
    }
  })

/**
 * A guarded server for `listener` (the limits given, or those the process's descriptor limit allows),
 * over TLS 1.3 when `tls` is given, its certificate renewed in place for as long as the scope is open.
 * It does not listen yet: the caller attaches its handlers first.
 */
export const makeListenerServer = (
  listener: ListenerName,
  limits?: ListenerLimits,
  /** The listener's refusal log when the app behind it refuses requests too (default: a fresh one). */
  refusalLog?: RefusalLog,
  /** TLS 1.3 with certificates from the cluster CA; absent: plain HTTP. */
  tls?: ServerTls
): Effect.Effect<GuardedServer & { readonly refusals: RefusalLog }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const applied = limits ?? (yield* limitsFor(listener))
    const refusals = refusalLog ?? (yield* makeRefusalLog(listener))
    const ttl = Duration.decode(tls?.ttl ?? SERVER_CERTIFICATE_TTL)
    const issue = tls === undefined ? undefined : tls.pki.issueServerCertificate({ hosts: tls.hosts, ttl })
    const first = issue === undefined ? undefined : yield* issue
    const clientCertificates = tls?.clientCertificates === undefined ? undefined : { mode: tls.clientCertificates, caPem: tls.pki.caPem }
    const guarded = yield* makeGuardedServer(
      applied,
      refusals,
      first === undefined ? undefined : { ...first, ...(clientCertificates === undefined ? {} : { clientCertificates }) }
    )
    if (issue !== undefined) {
      // Renewed in place: connections open keep their session, new ones get the new certificate.
      yield* issue.pipe(
        Effect.tap((next) => Effect.sync(() => guarded.setCertificate(next))),
        Effect.tap((next) => Effect.logInfo(`${listener} endpoint: TLS certificate renewed (serial ${next.serial}, valid until ${next.notAfter.toISOString()})`)),
        Effect.schedule(serverCertificateRenewal(ttl)),
        // On the wall clock, as the certificate's validity is (see issueServerCertificate).
        Effect.withClock(Clock.make()),
        Effect.forkScoped
      )
    }
    return { ...guarded, refusals }
  })

/**
 * `NodeHttpServer.layer` on a guarded server for `listener`: the limits given, or those the process's
 * descriptor limit allows.
 */
export const guardedServerLayer = (
  listener: ListenerName,
  listen: { readonly port: number; readonly host?: string | undefined },
  limits?: ListenerLimits,
  /** The listener's refusal log when the app behind it refuses requests too (default: a fresh one). */
  refusalLog?: RefusalLog,
  /** TLS 1.3 with certificates from the cluster CA; absent: plain HTTP. */
  tls?: ServerTls
) =>
  Layer.unwrapScoped(
    Effect.map(makeListenerServer(listener, limits, refusalLog, tls), ({ refusals, server }) =>
      Layer.merge(
        NodeHttpServer.layer(() => server, { port: listen.port, ...(listen.host === undefined || listen.host === "" ? {} : { host: listen.host }) }),
        Layer.succeed(EndpointRefusals, refusals)
      ))
  )

/** The TLS connection `request` arrived on; None over plain HTTP. */
export const tlsSocketOf = (request: HttpServerRequest.HttpServerRequest): Option.Option<TLSSocket> => {
  const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
  return socket instanceof TLSSocket ? Option.some(socket) : Option.none()
}

/**
 * The client certificate each TLS connection presented, verified by the cluster PKI at the connection's
 * first request (TLS 1.3 fixes it for the connection's life: no renegotiation); later requests on it only
 * have its expiry looked at again. None: the connection presented no certificate. What the certificate is
 * for (an agent's, an operator's) is the caller's to judge.
 */
export const makeConnectionCertificates = (pki: ClusterPkiShape) => {
  const verified = new WeakMap<TLSSocket, VerifiedClientCertificate>()
  return (socket: TLSSocket): Effect.Effect<Option.Option<VerifiedClientCertificate>, CertificateRejected> =>
    Effect.gen(function* () {
      const known = verified.get(socket)
      if (known !== undefined) {
        if ((yield* Clock.currentTimeMillis) <= known.notAfter.getTime()) return Option.some(known)
        return yield* new CertificateRejected({ reason: "Expired", detail: `expired at ${known.notAfter.toISOString()}` })
      }
      const pem = socket.getPeerX509Certificate()?.toString()
      if (pem === undefined) return Option.none()
      const certificate = yield* pki.verifyClientCertificate(pem)
      verified.set(socket, certificate)
      return Option.some(certificate)
    })
}
