/**
 * The operator side of the `Admin` RPC group (what `nstance-admin` uses): a client for one server address
 * that sends the admin token or presents an operator certificate, turns HTTP-level refusals into typed errors (401 → `Unauthenticated`, 413 →
 * `PayloadTooLarge`, nothing listening → `AdminUnreachable`), and `callAdmin`, which follows a standby's
 * `NotLeader{leaderAddr}` once to the leader it names.
 */
import { HttpClient, HttpClientError, HttpClientRequest } from "@effect/platform"
import { ClusterTlsClient, connectionFailure, type TlsClientCertificate } from "../layers/ClusterTlsClient.js"
import { RpcClient, type RpcClientError, type RpcGroup, RpcSerialization } from "@effect/rpc"
import { Data, Effect, Layer, Redacted, type Scope } from "effect"
import { ADMIN_HEADER, type AdminRpcs, AdminRpcs as Rpcs, MAX_ADMIN_REQUEST_BYTES, NotLeader, PayloadTooLarge, Unauthenticated } from "../rpc/AdminRpc.js"

/** Nothing answered at the address, or not with an admin RPC response. */
export class AdminUnreachable extends Data.TaggedError("AdminUnreachable")<{
  readonly address: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `no admin endpoint answers at ${this.address} (${this.reason}); is nstance-server running there with an admin token?`
  }
}

export type AdminRpcClient = RpcClient.RpcClient<RpcGroup.Rpcs<typeof AdminRpcs>, RpcClientError.RpcClientError>

export interface AdminConnection {
  /** `host:port` this client talks to. */
  readonly address: string
  readonly rpc: AdminRpcClient
}

/** `host:port` (or an `https://` URL) → the endpoint URL. */
export const adminUrl = (address: string): string =>
  /^https:\/\//.test(address) ? address : `https://${address}/admin`

/**
 * What a client proves and checks: the bearer token it sends (cluster-wide), or the operator certificate it
 * presents at the handshake (its tenant only) — and the cluster CA the server's certificate must come from.
 */
export interface AdminCredentials {
  readonly token?: Redacted.Redacted<string>
  readonly certificate?: TlsClientCertificate
  /** PEM of the cluster CA (`pki/{cluster}/ca.crt` in the bucket). */
  readonly caPem: string
}

/** HTTP-level answers of the endpoint as typed errors; everything else is the endpoint being unreachable. */
export const transportError = (address: string) =>
  (error: RpcClientError.RpcClientError): Effect.Effect<never, AdminUnreachable | Unauthenticated | PayloadTooLarge> => {
    const cause = error.cause
    if (HttpClientError.isHttpClientError(cause) && cause._tag === "ResponseError") {
      const status = cause.response.status
      if (status === 401) return Effect.fail(new Unauthenticated())
      if (status === 413) return Effect.fail(new PayloadTooLarge({ field: "body", maxLength: MAX_ADMIN_REQUEST_BYTES }))
      return Effect.fail(new AdminUnreachable({ address, reason: `HTTP ${status}`, cause }))
    }
    const reason = HttpClientError.isHttpClientError(cause) && cause._tag === "RequestError" ? connectionFailure(cause) : error.message
    return Effect.fail(new AdminUnreachable({ address, reason, cause }))
  }

/** Non-2xx answers become errors (see `AgentClient.ts` for why the cast is sound). */
const statusOk = HttpClient.filterStatusOk as <E, R>(client: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E, R>

/** A client of the admin endpoint at `address`, alive while the scope is. */
export const connectAdmin = (address: string, credentials: AdminCredentials): Effect.Effect<AdminConnection, never, Scope.Scope> =>
  Effect.gen(function* () {
    const token = credentials.token
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolHttp({
        url: adminUrl(address),
        transformClient: (client) =>
          statusOk(token === undefined ? client : HttpClient.mapRequest(client, HttpClientRequest.setHeader(ADMIN_HEADER, `Bearer ${Redacted.value(token)}`)))
      }).pipe(Layer.provide(RpcSerialization.layerNdjson), Layer.provide(ClusterTlsClient(credentials.caPem, credentials.certificate)))
    )
    const rpc = yield* RpcClient.make(Rpcs).pipe(Effect.provide(protocol))
    return { address, rpc }
  })

/**
 * Runs `call` against `address`; when that replica is a standby naming the leader, runs it once more
 * against the leader (never further: two standbys pointing at each other must not loop). Transport
 * failures arrive typed; the result says which address answered.
 */
export const callAdmin = <A, E>(
  address: string,
  credentials: AdminCredentials,
  call: (rpc: AdminRpcClient) => Effect.Effect<A, E | RpcClientError.RpcClientError>
): Effect.Effect<{ readonly value: A; readonly address: string }, Exclude<E, RpcClientError.RpcClientError> | AdminUnreachable | Unauthenticated | PayloadTooLarge> => {
  const once = (at: string) =>
    Effect.scoped(Effect.flatMap(connectAdmin(at, credentials), (connection) =>
      call(connection.rpc).pipe(
        Effect.catchIf(isRpcClientError, transportError(at)),
        Effect.map((value) => ({ value, address: at }))
      )))
  return once(address).pipe(
    Effect.catchIf(
      (error): error is NotLeader & Exclude<E, RpcClientError.RpcClientError> => error instanceof NotLeader && error.leaderAddr !== "" && error.leaderAddr !== address,
      (error) => once(error.leaderAddr)
    )
  ) as Effect.Effect<{ readonly value: A; readonly address: string }, Exclude<E, RpcClientError.RpcClientError> | AdminUnreachable | Unauthenticated | PayloadTooLarge>
}

const isRpcClientError = <E>(error: E | RpcClientError.RpcClientError): error is RpcClientError.RpcClientError =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "RpcClientError"
