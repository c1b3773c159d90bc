/**
 * The agent endpoint: handlers for the `Agent` RPC group on top of the cluster PKI and an `AgentBackend`,
 * and a layer serving them over HTTP (NDJSON) with a request body limit. Registration order matters: the
 * nonce is verified (signature, expiry, kind, cluster/shard), matched by hash against the registration the
 * instance awaits, a certificate is issued for the agent's key, and only then is the registration recorded
 * — so a bad public key never burns the nonce, and a lost race to record never hands out a certificate.
 */
import type { ListenerLimits, RefusalReason } from "../domain/listenerLimits.js"
import { guardedServerLayer, makeRefusalLog, type RefusalLog, type ServerTls } from "../http/listener.js"
import { InvalidCertificate, InvalidNonce, InvalidPayload, NonceReused, NotLeader, UnknownInstance } from "../domain/agent/errors.js"
import { type HttpApp, HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { RpcSerialization, RpcServer } from "@effect/rpc"
import { Cause, Clock, Duration, Effect, Layer, Option } from "effect"
import { nonceHash } from "../domain/agent/nonce.js"
import {
  healthStatement,
  renewStatement,
  SIGNATURE_WINDOW_MILLIS,
  verifyStatement
} from "../domain/agent/signedRequest.js"
import { AgentBackend } from "../services/AgentBackend.js"
import { ClusterPki, type VerifiedClientCertificate } from "../services/ClusterPki.js"
import { AgentRpcs, decodeStrict, MAX_REQUEST_BYTES, RegisterAgentPayload, RenewCertificatePayload, ReportHealthPayload } from "./AgentRpc.js"

export interface AgentServiceOptions {
  /** The cluster and shard this endpoint serves: nonces minted for others are refused. */
  readonly cluster: string
  readonly shard: string
  /**
   * Lifetime of issued client certificates; agents are told to renew after two thirds of it. An effect is
   * read at every issue, so a config push (`certificates.agent.ttl`) applies without a restart.
   */
  readonly certificateTtl: Duration.DurationInput | Effect.Effect<Duration.Duration>
  /** Where refused requests are counted and logged (the endpoint's; absent: only the caller hears of them). */
  readonly refusals?: RefusalLog
}

/** The refusal a handler's error stands for; a redirect to the leader is not one. */
const refusalOf = (error: { readonly _tag: string }): RefusalReason | undefined => {
  switch (error._tag) {
    case "InvalidNonce":
    case "NonceReused":
    case "UnknownInstance":
      return "nonce"
    case "InvalidCertificate":
      return "certificate"
    case "InvalidPayload":
      return "payload"
    default:
      return undefined
  }
}

export interface AgentServerOptions extends AgentServiceOptions {
  /** Interface to bind (`shard.bind.agent_addr`'s host); default all interfaces. */
  readonly host?: string
  /** 0 picks a free port; read it from `HttpServer.HttpServer`'s address. */
  readonly port: number
  /** Default `/agent`. */
  readonly path?: HttpRouter.PathInput
  /** Largest request body read; larger ones get HTTP 413. Default `MAX_REQUEST_BYTES` (16 KiB). */
  readonly maxRequestBytes?: number
  /** Connection caps and timeouts (default: what the process's descriptor limit allows). */
  readonly limits?: ListenerLimits
  /** TLS 1.3 with a certificate from the cluster CA; absent: plain HTTP (tests of the handlers only). */
  readonly tls?: ServerTls
}

const decodeRegister = decodeStrict(RegisterAgentPayload)
const decodeHealth = decodeStrict(ReportHealthPayload)
const decodeRenew = decodeStrict(RenewCertificatePayload)

/** Beyond this many remembered signing times, those too old to be replayed anyway are dropped. */
const SIGNED_AT_MEMORY = 10_000

/** The `Agent` group's handlers; needs `ClusterPki` and `AgentBackend`. */
export const AgentHandlersLive = (options: AgentServiceOptions) =>
  AgentRpcs.toLayer(Effect.gen(function* () {
    const pki = yield* ClusterPki
    const backend = yield* AgentBackend
    const audience = { cluster: options.cluster, shard: options.shard }
    const certificateTtl = Effect.isEffect(options.certificateTtl)
      ? options.certificateTtl
      : Effect.succeed(Duration.decode(options.certificateTtl))
    // Per procedure and instance, the newest signing time accepted: a captured request cannot be replayed
    // on this replica. (After a failover the ±5 minute window alone bounds a replay.)
    const lastSignedAt = new Map<string, number>()

    const requireLeader = Effect.flatMap(backend.leaderRedirect, Option.match({
      onNone: () => Effect.void,
      onSome: (leaderAddr) => Effect.fail(new NotLeader({ leaderAddr }))
    }))

    const authenticate = (procedure: string, certificatePem: string, signedAt: number, signature: string, statement: Uint8Array) =>
      Effect.gen(function* () {
        const cert: VerifiedClientCertificate = yield* pki.verifyClientCertificate(certificatePem).pipe(
          Effect.mapError((e) => new InvalidCertificate({ reason: e.reason, detail: e.detail }))
        )
        if (!verifyStatement(cert.publicKeyPem, statement, signature)) {
          return yield* new InvalidCertificate({
            reason: "BadSignature",
            detail: "the request signature does not verify with the key of the certificate presented"
          })
        }
        const now = yield* Clock.currentTimeMillis
        if (Math.abs(now - signedAt) > SIGNATURE_WINDOW_MILLIS) {
          return yield* new InvalidCertificate({
            reason: "StaleSignature",
            detail: `signed at ${new Date(signedAt).toISOString()}, more than 5 minutes from the server's clock`
          })
        }
        const key = `${procedure}/${cert.instanceId}`
        const last = lastSignedAt.get(key)
        if (last !== undefined && signedAt <= last) {
          return yield* new InvalidCertificate({ reason: "StaleSignature", detail: "not newer than the last request accepted" })
        }
        if (lastSignedAt.size >= SIGNED_AT_MEMORY) {
          for (const [k, t] of lastSignedAt) if (t < now - SIGNATURE_WINDOW_MILLIS) lastSignedAt.delete(k)
        }
        lastSignedAt.set(key, signedAt)
        return cert
      })

    const issue = (instanceId: string, tenant: string, publicKeyPem: string) =>
      Effect.flatMap(certificateTtl, (ttl) =>
        pki.issueClientCertificate({ instanceId, tenant, publicKeyPem, ttl }).pipe(
          Effect.map((issued) => ({ ...issued, renewAfterSeconds: Math.max(1, Math.floor((Duration.toSeconds(ttl) * 2) / 3)) })),
          Effect.mapError((e) => new InvalidPayload({ field: "publicKeyPem", reason: e.reason }))
        ))

    // The RPC handlers do not see the connection, so the instance the request names stands in for the peer.
    const refusals = options.refusals
    const counted = <A, E extends { readonly _tag: string }, R>(procedure: string, handler: Effect.Effect<A, E, R>) =>
      refusals === undefined
        ? handler
        : handler.pipe(Effect.tapError((error) => {
          const reason = refusalOf(error)
          return reason === undefined ? Effect.void : refusals.refuse(reason, `an agent (${procedure})`, error._tag)
        }))

    return AgentRpcs.of({
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
          return { certificatePem: issued.certificatePem, caPem: pki.caPem, instanceId, renewAfterSeconds: issued.renewAfterSeconds }
        })).pipe(Effect.withSpan("agent.RegisterAgent")),

      ReportHealth: (wire) =>
        counted("ReportHealth", Effect.gen(function* () {
          const payload = yield* decodeHealth(wire)
          yield* requireLeader
          const status = payload.status ?? "healthy"
          const cert = yield* authenticate(
            "ReportHealth",
            payload.certificatePem,
            payload.signedAt,
            payload.signature,
            healthStatement({ certificatePem: payload.certificatePem, status, signedAt: payload.signedAt })
          )
          yield* backend.recordHealth(cert.instanceId, status)
          return { ok: true as const }
        })).pipe(Effect.withSpan("agent.ReportHealth")),

      RenewCertificate: (wire) =>
        counted("RenewCertificate", Effect.gen(function* () {
          const payload = yield* decodeRenew(wire)
          yield* requireLeader
          const cert = yield* authenticate(
            "RenewCertificate",
            payload.certificatePem,
            payload.signedAt,
            payload.signature,
            renewStatement(payload)
          )
          const issued = yield* issue(cert.instanceId, cert.tenant, payload.publicKeyPem)
          yield* backend.recordRenewed({
            instanceId: cert.instanceId,
            certificateSerial: issued.serial,
            certificateNotAfter: issued.notAfter
          })
          return { certificatePem: issued.certificatePem, caPem: pki.caPem, renewAfterSeconds: issued.renewAfterSeconds }
        })).pipe(Effect.withSpan("agent.RenewCertificate"))
    })
  }))

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
 * Serves the `Agent` group at `http://{host}:{port}{path}` until the layer's scope closes. The output
 * includes `HttpServer.HttpServer`, whose `address` gives the bound port. Needs `ClusterPki` and
 * `AgentBackend`.
 */
export const AgentServerLive = (options: AgentServerOptions) => {
  // A router of its own (not HttpRouter.Default): another server in the process must not share its routes.
  class AgentRouter extends HttpRouter.Tag(`nstance/AgentRouter/${++routerCount}`)<AgentRouter>() {}
  return Layer.unwrapEffect(Effect.map(makeRefusalLog("registration"), (refusals) => {
    const rpc = RpcServer.layer(AgentRpcs).pipe(
      Layer.provide(AgentHandlersLive({ ...options, refusals })),
      Layer.provide(RpcServer.layerProtocolHttp({ path: options.path ?? "/agent", routerTag: AgentRouter })),
      Layer.provide(RpcSerialization.layerNdjson)
    )
    return AgentRouter.serve(bodyLimit(options.maxRequestBytes ?? MAX_REQUEST_BYTES, refusals)).pipe(
      Layer.provide(rpc),
      Layer.provideMerge(guardedServerLayer("registration", options, options.limits, refusals, options.tls))
    )
  }))
}
