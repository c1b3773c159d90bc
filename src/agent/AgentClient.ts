/**
 * The agent side of the agent's two endpoints, shared by the simulator's guests and `nstance-agent`:
 * register over HTTPS with the nonce from the user-data (a fresh Ed25519 key pair, the private key never
 * leaves the caller), then report health and renew the certificate over the agent channel — one
 * persistent WebSocket, TLS 1.3 with that certificate as the client certificate, reopened with the new
 * certificate after a renewal. Both trust only the cluster CA, so neither the nonce nor the key's
 * certificate ever reaches a server the CA did not sign. Transport failures and HTTP 413 come back as typed
 * errors too, so a caller never has to parse a defect. A replica that does not lead answers
 * `NotLeader{leaderAddr}`: the client follows that redirect once per call and keeps talking to the leader
 * afterwards.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign } from "node:crypto"
import { type InvalidCertificate, type InvalidNonce, type InvalidPayload, type NonceReused, NotLeader, PayloadTooLarge, type UnknownInstance } from "../domain/agent/errors.js"
import { HttpClient, HttpClientError, Socket } from "@effect/platform"
import { ClusterTlsClient, connectionFailure } from "../layers/ClusterTlsClient.js"
import { RpcClient, RpcClientError, type RpcGroup, RpcSerialization } from "@effect/rpc"
import { type Context, Data, Effect, ExecutionStrategy, Exit, Layer, Redacted, Scope, Stream } from "effect"
import type { FileMessage } from "../domain/agent/fileMessages.js"
import { WebSocket } from "ws"
import type { AgentHealthStatus } from "../services/AgentBackend.js"
import { AgentRpcs, keyProofMessage, MAX_REQUEST_BYTES, RegistrationRpcs } from "../rpc/AgentRpc.js"

/** What a registered agent holds. Keep `privateKeyPem` on the VM; the rest is public. */
export interface AgentIdentity {
  readonly instanceId: string
  readonly certificatePem: string
  readonly caPem: string
  readonly publicKeyPem: string
  readonly privateKeyPem: Redacted.Redacted<string>
  /** Call `renew` this many seconds after the certificate was issued. */
  readonly renewAfterSeconds: number
  /** The agent channel (`wss://…/agent`), as the registration answer named it. */
  readonly agentUrl: string
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
export type FilesError = ReportHealthError

export interface AgentClient {
  /** The endpoint the client talks to now: the one it was made for, or the leader a redirect named. */
  readonly url: string
  readonly register: (request: RegisterAgentRequest) => Effect.Effect<AgentIdentity, RegisterAgentError>
  readonly reportHealth: (identity: AgentIdentity, status?: AgentHealthStatus) => Effect.Effect<void, ReportHealthError>
  /** A new key pair and a certificate for it, authorised by the current one. */
  readonly renew: (identity: AgentIdentity) => Effect.Effect<AgentIdentity, RenewCertificateError>
  /** Submits the public half of the key `name` with a signature proving the agent holds the private half. */
  readonly submitKey: (identity: AgentIdentity, name: string, privateKeyPem: Redacted.Redacted<string>) => Effect.Effect<void, FilesError>
  /**
   * The VM's file stream; it lasts while the channel does. A `NotLeader` naming the leader moves the channel
   * there before the stream fails, so the caller's next attempt reaches it.
   */
  readonly receiveFiles: (identity: AgentIdentity) => Stream.Stream<FileMessage, FilesError>
}

const newKeyPair = () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519")
  return {
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }) as string,
    privateKeyPem: Redacted.make(privateKey.export({ type: "pkcs8", format: "pem" }) as string)
  }
}

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

/** The registration endpoint's client. */
export type RegistrationRpcClient = RpcClient.RpcClient<RpcGroup.Rpcs<typeof RegistrationRpcs>, RpcClientError.RpcClientError>
/** The agent channel's client. */
export type AgentRpcClient = RpcClient.RpcClient<RpcGroup.Rpcs<typeof AgentRpcs>, RpcClientError.RpcClientError>

/**
 * How the client reaches the two endpoints: over TLS by default (`tlsTransport`); a simulation in virtual
 * time passes one that reaches the handlers in memory.
 */
export interface AgentTransport {
  /** The registration endpoint at `url` (`https://…/agent`). */
  readonly registration: (url: string) => Effect.Effect<RegistrationRpcClient, never, Scope.Scope>
  /** The agent channel at `url` (`wss://…/agent`), authenticated as `identity`. */
  readonly channel: (url: string, identity: AgentIdentity) => Effect.Effect<AgentRpcClient, never, Scope.Scope>
}

const requireScheme = (url: string, scheme: "https://" | "wss://") =>
  url.startsWith(scheme) ? Effect.void : Effect.dieMessage(`agent endpoint ${url}: not a ${scheme} URL; the agent speaks only TLS`)

/**
 * Both endpoints over TLS 1.3 trusting only the cluster CA: the nonce, the certificate and every report go
 * to no server the CA did not sign — a forged `NotLeader` address included, since every redirect is
 * dialled through the same trust. Registration is one HTTPS connection pool; the channel one WebSocket
 * with the identity's certificate and key as the TLS client certificate.
 */
export const tlsTransport = (caPem: string): AgentTransport => ({
  registration: (url) =>
    Effect.gen(function* () {
      yield* requireScheme(url, "https://")
      const protocol = yield* Layer.build(
        RpcClient.layerProtocolHttp({ url, transformClient: statusOk }).pipe(
          Layer.provide(RpcSerialization.layerNdjson),
          Layer.provide(ClusterTlsClient(caPem))
        )
      )
      return yield* RpcClient.make(RegistrationRpcs).pipe(Effect.provide(protocol))
    }),
  channel: (url, identity) =>
    Effect.gen(function* () {
      yield* requireScheme(url, "wss://")
      const tlsWebSocket: Context.Tag.Service<typeof Socket.WebSocketConstructor> = (target, protocols) =>
        // ws's client is the browser API's shape, which is what Socket.makeWebSocket drives.
        new WebSocket(target, protocols, {
          ca: caPem,
          cert: identity.certificatePem,
          key: Redacted.value(identity.privateKeyPem),
          minVersion: "TLSv1.3",
          maxPayload: 1024 * 1024,
          handshakeTimeout: 10_000
        }) as unknown as globalThis.WebSocket
      const protocol = yield* Layer.build(
        RpcClient.layerProtocolSocket().pipe(
          Layer.provide(Socket.layerWebSocket(url)),
          Layer.provide(Layer.succeed(Socket.WebSocketConstructor, tlsWebSocket)),
          Layer.provide(RpcSerialization.layerNdjson)
        )
      )
      return yield* RpcClient.make(AgentRpcs).pipe(Effect.provide(protocol))
    })
})

/** Where a `NotLeader` from the registration endpoint sends the agent; undefined when it names no leader. */
export const redirectUrl = (leaderAddr: string): string | undefined => (leaderAddr === "" ? undefined : `https://${leaderAddr}/agent`)

/** Where a `NotLeader` from the agent channel sends the agent; undefined when it names no leader. */
export const channelRedirectUrl = (leaderAddr: string): string | undefined => (leaderAddr === "" ? undefined : `wss://${leaderAddr}/agent`)

/**
 * Runs `call` against the endpoint `current()` names; on `NotLeader` naming another endpoint, moves there
 * (`moveTo`) and runs it once more.
 */
const followingRedirect = <A, E>(
  current: () => string,
  redirect: (leaderAddr: string) => string | undefined,
  moveTo: (url: string) => Effect.Effect<void>,
  call: Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  call.pipe(
    Effect.catchIf(
      (error): error is E & NotLeader => error instanceof NotLeader,
      (error) =>
        Effect.gen(function* () {
          const target = redirect(error.leaderAddr)
          if (target === undefined || target === current()) return yield* Effect.fail(error)
          yield* Effect.logDebug(`agent endpoint ${current()} is not the leader; following the redirect to ${target}`)
          yield* moveTo(target)
          return yield* call
        })
    )
  )

/**
 * A client of the registration endpoint at `url` (e.g. `https://10.0.0.2:8992/agent`) and, once
 * registered, of the agent channel; alive while the scope is.
 */
export const makeAgentClient = (url: string, transport: AgentTransport): Effect.Effect<AgentClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const registrations = new Map<string, RegistrationRpcClient>()
    let registrationUrl = url
    const registration = Effect.suspend(() => {
      const known = registrations.get(registrationUrl)
      if (known !== undefined) return Effect.succeed(known)
      const target = registrationUrl
      return Effect.tap(Scope.extend(transport.registration(target), scope), (client) => Effect.sync(() => void registrations.set(target, client)))
    })

    // One open channel, for one certificate at one address: a renewal or a redirect closes it and opens the next.
    let channelUrl: string | undefined
    let open: { readonly url: string; readonly certificatePem: string; readonly client: AgentRpcClient; readonly scope: Scope.CloseableScope } | undefined
    const channel = (identity: AgentIdentity) =>
      Effect.gen(function* () {
        const target = channelUrl ?? identity.agentUrl
        if (open !== undefined && open.url === target && open.certificatePem === identity.certificatePem) return open.client
        if (open !== undefined) yield* Scope.close(open.scope, Exit.void)
        const channelScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        const client = yield* Scope.extend(transport.channel(target, identity), channelScope)
        open = { url: target, certificatePem: identity.certificatePem, client, scope: channelScope }
        return client
      })
    const channelCall = <A, E>(identity: AgentIdentity, call: (client: AgentRpcClient) => Effect.Effect<A, E | RpcClientError.RpcClientError>) =>
      followingRedirect(
        () => channelUrl ?? identity.agentUrl,
        channelRedirectUrl,
        (target) => Effect.sync(() => void (channelUrl = target)),
        Effect.suspend(() => {
          const target = channelUrl ?? identity.agentUrl
          return Effect.flatMap(channel(identity), (client) =>
            call(client).pipe(
              Effect.catchIf((error): error is RpcClientError.RpcClientError => error instanceof RpcClientError.RpcClientError, transportError(target))
            ))
        })
      )

    return {
      get url() {
        return registrationUrl
      },
      register: (request) =>
        Effect.gen(function* () {
          const keys = newKeyPair()
          const result = yield* followingRedirect(
            () => registrationUrl,
            redirectUrl,
            (target) => Effect.sync(() => void (registrationUrl = target)),
            Effect.flatMap(registration, (rpc) =>
              rpc.RegisterAgent({
                nonce: Redacted.isRedacted(request.nonce) ? Redacted.value(request.nonce) : request.nonce,
                publicKeyPem: keys.publicKeyPem,
                privateIpv4: request.ips?.ipv4,
                privateIpv6: request.ips?.ipv6,
                hostname: request.hostname
              }).pipe(Effect.catchTag("RpcClientError", transportError(registrationUrl))))
          )
          return {
            instanceId: result.instanceId,
            certificatePem: result.certificatePem,
            caPem: result.caPem,
            renewAfterSeconds: result.renewAfterSeconds,
            agentUrl: result.agentUrl,
            ...keys
          }
        }).pipe(Effect.withSpan("agentClient.register")),

      reportHealth: (identity, status = "healthy") =>
        channelCall(identity, (rpc) => rpc.ReportHealth({ instanceId: identity.instanceId, status })).pipe(
          Effect.asVoid,
          Effect.withSpan("agentClient.reportHealth")
        ),

      submitKey: (identity, name, privateKeyPem) =>
        Effect.gen(function* () {
          const privateKey = createPrivateKey(Redacted.value(privateKeyPem))
          const publicKeyPem = createPublicKey(privateKey).export({ type: "spki", format: "pem" }) as string
          const proof = cryptoSign(null, keyProofMessage(identity.instanceId, name), privateKey).toString("base64")
          yield* channelCall(identity, (rpc) => rpc.SubmitKey({ instanceId: identity.instanceId, name, publicKeyPem, proof }))
        }).pipe(Effect.withSpan("agentClient.submitKey")),

      receiveFiles: (identity) =>
        Stream.unwrap(Effect.gen(function* () {
          const target = channelUrl ?? identity.agentUrl
          const rpc = yield* channel(identity)
          return rpc.ReceiveFiles({ instanceId: identity.instanceId }).pipe(
            Stream.catchAll((error): Stream.Stream<never, FilesError> => {
              if (error instanceof RpcClientError.RpcClientError) return Stream.fromEffect(transportError(target)(error))
              if (error instanceof NotLeader) {
                const next = channelRedirectUrl(error.leaderAddr)
                if (next !== undefined) channelUrl = next
              }
              return Stream.fail(error)
            })
          )
        })),

      renew: (identity) =>
        Effect.gen(function* () {
          const keys = newKeyPair()
          const result = yield* channelCall(identity, (rpc) => rpc.RenewCertificate({ instanceId: identity.instanceId, publicKeyPem: keys.publicKeyPem }))
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
