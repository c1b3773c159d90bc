/**
 * The agent side of the `Agent` RPC group, shared by the simulator's guests and `nstance-agent`:
 * register with the nonce from the user-data (a fresh Ed25519 key pair, the private key never leaves the
 * caller), then report health and renew the certificate with requests signed by that key. Transport
 * failures and HTTP 413 come back as typed errors too, so a caller never has to parse a defect. A replica
 * that does not lead answers `NotLeader{leaderAddr}`: the client follows that redirect once per call (to
 * `http://{leaderAddr}/agent`) and keeps talking to the leader afterwards.
 */
import { generateKeyPairSync } from "node:crypto"
import { type InvalidCertificate, type InvalidNonce, type InvalidPayload, type NonceReused, NotLeader, PayloadTooLarge, type UnknownInstance } from "../domain/agent/errors.js"
import { HttpClient, HttpClientError } from "@effect/platform"
import { ClusterTlsClient, connectionFailure } from "../layers/ClusterTlsClient.js"
import { RpcClient, RpcClientError, type RpcGroup, RpcSerialization } from "@effect/rpc"
import { Clock, Data, Effect, Layer, Redacted, Scope } from "effect"
import {
  type AgentHealthStatus,
  healthStatement,
  renewStatement,
  signStatement
} from "../domain/agent/signedRequest.js"
import { AgentRpcs, MAX_REQUEST_BYTES } from "../rpc/AgentRpc.js"

/** What a registered agent holds. Keep `privateKeyPem` on the VM; the rest is public. */
export interface AgentIdentity {
  readonly instanceId: string
  readonly certificatePem: string
  readonly caPem: string
  readonly publicKeyPem: string
  readonly privateKeyPem: Redacted.Redacted<string>
  /** Call `renew` this many seconds after the certificate was issued. */
  readonly renewAfterSeconds: number
}

export interface RegisterAgentRequest {
  /** The nonce from the instance's user-data. */
  readonly nonce: string | Redacted.Redacted<string>
  readonly ips?: { readonly ipv4?: string | undefined; readonly ipv6?: string | undefined }
  readonly hostname?: string | undefined
}

/** The endpoint could not be reached or did not answer with an RPC response. */
export class AgentTransportError extends Data.TaggedError("AgentTransportError")<{
  readonly url: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `agent endpoint ${this.url}: ${this.reason}`
  }
}

export type RegisterAgentError =
  | InvalidNonce
  | UnknownInstance
  | NonceReused
  | NotLeader
  | PayloadTooLarge
  | InvalidPayload
  | AgentTransportError
export type ReportHealthError = InvalidCertificate | UnknownInstance | NotLeader | PayloadTooLarge | InvalidPayload | AgentTransportError
export type RenewCertificateError = ReportHealthError

export interface AgentClient {
  /** The endpoint the client talks to now: the one it was made for, or the leader a redirect named. */
  readonly url: string
  readonly register: (request: RegisterAgentRequest) => Effect.Effect<AgentIdentity, RegisterAgentError>
  readonly reportHealth: (identity: AgentIdentity, status?: AgentHealthStatus) => Effect.Effect<void, ReportHealthError>
  /** A new key pair and a certificate for it, authorised by the current one. */
  readonly renew: (identity: AgentIdentity) => Effect.Effect<AgentIdentity, RenewCertificateError>
}

const newKeyPair = () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519")
  return {
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }) as string,
    privateKeyPem: Redacted.make(privateKey.export({ type: "pkcs8", format: "pem" }) as string)
  }
}

// Signing times strictly increase within the process: the server refuses a time it has already seen.
let lastSignedAt = 0
const nextSignedAt = Effect.map(Clock.currentTimeMillis, (now) => (lastSignedAt = Math.max(now, lastSignedAt + 1)))

const transportError = (url: string) => (error: RpcClientError.RpcClientError): Effect.Effect<never, AgentTransportError | PayloadTooLarge> => {
  const cause = error.cause
  if (HttpClientError.isHttpClientError(cause) && cause._tag === "ResponseError") {
    if (cause.response.status === 413) {
      return cause.response.json.pipe(
        Effect.map((body) => (body as { maxLength?: unknown } | null)?.maxLength),
        Effect.orElseSucceed(() => undefined),
        Effect.flatMap((max) => new PayloadTooLarge({ field: "body", maxLength: typeof max === "number" ? max : MAX_REQUEST_BYTES }))
      )
    }
    return Effect.fail(new AgentTransportError({ url, reason: `HTTP ${cause.response.status}`, cause }))
  }
  const reason = HttpClientError.isHttpClientError(cause) && cause._tag === "RequestError" ? connectionFailure(cause) : error.message
  return Effect.fail(new AgentTransportError({ url, reason, cause }))
}

/**
 * Non-2xx answers (413 from the body limit, a proxy's 502) become errors instead of bodies the NDJSON
 * parser would wait on. The protocol maps every client error to `RpcClientError`, so the added error type
 * does not escape; the option's signature just cannot say so.
 */
const statusOk = HttpClient.filterStatusOk as <E, R>(client: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E, R>

/** The `Agent` group's client for one endpoint URL. */
export type AgentRpcClient = RpcClient.RpcClient<RpcGroup.Rpcs<typeof AgentRpcs>, RpcClientError.RpcClientError>

/**
 * Opens the RPC client of one endpoint URL: HTTP by default; a simulation in virtual time passes one that
 * reaches the endpoint's handlers in memory.
 */
export type AgentConnector = (url: string) => Effect.Effect<AgentRpcClient, never, Scope.Scope>

/**
 * One HTTPS connection pool to one agent endpoint, trusting only the cluster CA (TLS 1.3): the nonce, the
 * key's signatures and every report go to no server the CA did not sign — a forged `NotLeader` address
 * included, since every redirect is dialled through the same trust.
 */
export const tlsConnector = (caPem: string): AgentConnector => (url) =>
  Effect.gen(function* () {
    if (!url.startsWith("https://")) return yield* Effect.dieMessage(`agent endpoint ${url}: not an https:// URL; the agent speaks only TLS`)
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolHttp({ url, transformClient: statusOk }).pipe(
        Layer.provide(RpcSerialization.layerNdjson),
        Layer.provide(ClusterTlsClient(caPem))
      )
    )
    return yield* RpcClient.make(AgentRpcs).pipe(Effect.provide(protocol))
  })

const connectWith = (connector: AgentConnector) => (url: string) =>
  Effect.map(connector(url), (rpc) => ({ url, rpc, onTransport: transportError(url) }))

type Connection = Effect.Effect.Success<ReturnType<ReturnType<typeof connectWith>>>

/** Where a `NotLeader` sends the agent; undefined when it names no leader. */
export const redirectUrl = (leaderAddr: string): string | undefined => (leaderAddr === "" ? undefined : `https://${leaderAddr}/agent`)

/** A client of the agent endpoint at `url` (e.g. `https://10.0.0.2:8992/agent`), alive while the scope is. */
export const makeAgentClient = (url: string, connector: AgentConnector): Effect.Effect<AgentClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const connect = connectWith(connector)
    const scope = yield* Effect.scope
    const connections = new Map<string, Connection>()
    let current = yield* connect(url)
    connections.set(url, current)

    /** Runs `call` on the current endpoint; on `NotLeader` naming another endpoint, once more there. */
    const followingRedirect = <A, E>(call: (connection: Connection) => Effect.Effect<A, E>): Effect.Effect<A, E> =>
      call(current).pipe(
        Effect.catchIf(
          (error): error is E & NotLeader => error instanceof NotLeader,
          (error) =>
            Effect.gen(function* () {
              const target = redirectUrl(error.leaderAddr)
              if (target === undefined || target === current.url) return yield* Effect.fail(error)
              const known = connections.get(target)
              const next = known ?? (yield* Scope.extend(connect(target), scope))
              connections.set(target, next)
              yield* Effect.logDebug(`agent endpoint ${current.url} is not the leader; following the redirect to ${target}`)
              current = next
              return yield* call(next)
            })
        )
      )

    return {
      get url() {
        return current.url
      },
      register: (request) =>
        Effect.gen(function* () {
          const keys = newKeyPair()
          const result = yield* followingRedirect((c) =>
            c.rpc.RegisterAgent({
              nonce: Redacted.isRedacted(request.nonce) ? Redacted.value(request.nonce) : request.nonce,
              publicKeyPem: keys.publicKeyPem,
              privateIpv4: request.ips?.ipv4,
              privateIpv6: request.ips?.ipv6,
              hostname: request.hostname
            }).pipe(Effect.catchTag("RpcClientError", c.onTransport)))
          return {
            instanceId: result.instanceId,
            certificatePem: result.certificatePem,
            caPem: result.caPem,
            renewAfterSeconds: result.renewAfterSeconds,
            ...keys
          }
        }).pipe(Effect.withSpan("agentClient.register")),

      reportHealth: (identity, status = "healthy") =>
        followingRedirect((c) =>
          Effect.gen(function* () {
            // Signed per attempt: the server refuses a signing time it has already accepted.
            const signedAt = yield* nextSignedAt
            const statement = healthStatement({ certificatePem: identity.certificatePem, status, signedAt })
            yield* c.rpc.ReportHealth({
              certificatePem: identity.certificatePem,
              status,
              signedAt,
              signature: signStatement(Redacted.value(identity.privateKeyPem), statement)
            }).pipe(Effect.catchTag("RpcClientError", c.onTransport))
          })).pipe(Effect.withSpan("agentClient.reportHealth")),

      renew: (identity) =>
        Effect.gen(function* () {
          const keys = newKeyPair()
          const result = yield* followingRedirect((c) =>
            Effect.gen(function* () {
              const signedAt = yield* nextSignedAt
              const statement = renewStatement({ certificatePem: identity.certificatePem, publicKeyPem: keys.publicKeyPem, signedAt })
              return yield* c.rpc.RenewCertificate({
                certificatePem: identity.certificatePem,
                publicKeyPem: keys.publicKeyPem,
                signedAt,
                signature: signStatement(Redacted.value(identity.privateKeyPem), statement)
              }).pipe(Effect.catchTag("RpcClientError", c.onTransport))
            }))
          return {
            ...identity,
            certificatePem: result.certificatePem,
            caPem: result.caPem,
            renewAfterSeconds: result.renewAfterSeconds,
            ...keys
          }
        }).pipe(Effect.withSpan("agentClient.renew"))
    }
  })
