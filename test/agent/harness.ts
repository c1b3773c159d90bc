/**
 * The agent's two endpoints on 127.0.0.1 (port 0) over real TLS — registration and the agent channel —
 * with a memory store PKI and an in-memory backend, plus the clients tests talk to them with: the
 * product's `AgentClient` and raw RPC clients for requests the product client would never send.
 */
import { createPrivateKey, randomBytes } from "node:crypto"
import { pkiObjectKeys } from "../../src/domain/bucketKeys.js"
import { HttpServer, SocketServer } from "@effect/platform"
import { ClusterTlsClient } from "../../src/layers/ClusterTlsClient.js"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { Context, type Duration, Effect, Either, Layer } from "effect"
import { SignJWT } from "jose"
import { type AgentIdentity, makeAgentClient, tlsTransport } from "../../src/agent/AgentClient.js"
import { makeMemoryAgentBackend } from "../../src/layers/AgentBackendMemory.js"
import { makeClusterPki, openSecret } from "../../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { RegistrationRpcs } from "../../src/rpc/AgentRpc.js"
import { AgentChannelServerLive, RegistrationServerLive } from "../../src/rpc/AgentServer.js"
import { AgentBackend, type AgentBackendShape } from "../../src/services/AgentBackend.js"
import { ClusterPki, type ClusterPkiShape } from "../../src/services/ClusterPki.js"
import type { FileDeliveryShape } from "../../src/shard/FileDelivery.js"

export const CLUSTER = "c1"
export const SHARD = "s1"

export const rawClient = (url: string, caPem: string) =>
  Effect.gen(function* () {
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolHttp({ url }).pipe(Layer.provide(RpcSerialization.layerNdjson), Layer.provide(ClusterTlsClient(caPem)))
    )
    return yield* RpcClient.make(RegistrationRpcs).pipe(Effect.provide(protocol))
  })

/** A raw agent-channel client presenting `identity`'s certificate (the product's transport, none of its checks). */
export const rawChannel = (url: string, identity: AgentIdentity) => tlsTransport(identity.caPem).channel(url, identity)

export interface AgentEndpointOptions {
  readonly maxRequestBytes?: number
  readonly certificateTtl?: Duration.DurationInput
  /** The file stream, made with the endpoint's PKI and backend (absent: none). */
  readonly files?: (pki: ClusterPkiShape, backend: AgentBackendShape) => Effect.Effect<FileDeliveryShape>
}

export const startAgentEndpoint = (endpointOptions: AgentEndpointOptions = {}) =>
  Effect.gen(function* () {
    const { files: makeFiles, ...options } = endpointOptions
    const encryptionKey = new Uint8Array(randomBytes(32))
    const store = makeMemoryStore()
    const pki = yield* makeClusterPki(store, { clusterId: CLUSTER, encryptionKey })
    const backend = makeMemoryAgentBackend()
    const files = makeFiles === undefined ? undefined : yield* makeFiles(pki, backend)
    const services = Layer.merge(Layer.succeed(ClusterPki, pki), Layer.succeed(AgentBackend, backend))
    const certificateTtl = options.certificateTtl ?? "1 hour"
    const channel = yield* Layer.build(
      AgentChannelServerLive({ host: "127.0.0.1", port: 0, ...options, ...(files === undefined ? {} : { files }), certificateTtl, tls: { pki, hosts: ["127.0.0.1"] } }).pipe(Layer.provide(services))
    )
    const channelAddress = Context.get(channel, SocketServer.SocketServer).address
    if (channelAddress._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    const agentUrl = `wss://127.0.0.1:${channelAddress.port}/agent`
    const context = yield* Layer.build(
      RegistrationServerLive({
        cluster: CLUSTER,
        shard: SHARD,
        host: "127.0.0.1",
        port: 0,
        ...options,
        certificateTtl,
        agentUrl,
        tls: { pki, hosts: ["127.0.0.1"] }
      }).pipe(Layer.provide(services))
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    const url = `https://127.0.0.1:${address.port}/agent`
    const client = yield* makeAgentClient(url, tlsTransport(pki.caPem))
    const raw = yield* rawClient(url, pki.caPem)

    const keys = pkiObjectKeys(CLUSTER)
    const nonceKey = createPrivateKey(Either.getOrThrow(openSecret(encryptionKey, (yield* store.get(keys.nonceKey)).body, keys.nonceKey)))
    /** Arbitrary claims signed with the cluster's real nonce key. */
    const signOwn = (claims: Record<string, unknown>) =>
      Effect.promise(() => new SignJWT(claims).setProtectedHeader({ alg: "EdDSA" }).sign(nonceKey))

    /** Mints a nonce for `instanceId` and tells the backend the instance awaits it. */
    const awaitRegistration = (instanceId: string, tenant = "acme") =>
      Effect.gen(function* () {
        const minted = yield* pki.mintNonce({ instanceId, cluster: CLUSTER, shard: SHARD, tenant, group: "web", ttl: "10 minutes" })
        yield* backend.expect(instanceId, { tenant, group: "web", nonceHash: minted.hash })
        return minted
      })

    return { pki, backend, url, port: address.port, agentUrl, agentPort: channelAddress.port, client, raw, signOwn, awaitRegistration }
  })

export type AgentEndpoint = Effect.Effect.Success<ReturnType<typeof startAgentEndpoint>>
