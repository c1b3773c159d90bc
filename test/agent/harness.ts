/**
 * An agent endpoint on 127.0.0.1 (port 0) over real HTTP, with a memory store PKI and an in-memory
 * backend, plus the clients tests talk to it with: the product's `AgentClient` and a raw RPC client for
 * requests the product client would never send.
 */
import { createPrivateKey, randomBytes } from "node:crypto"
import { pkiObjectKeys } from "../../src/domain/bucketKeys.js"
import { HttpServer } from "@effect/platform"
import { ClusterTlsClient } from "../../src/layers/ClusterTlsClient.js"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { Context, type Duration, Effect, Either, Layer } from "effect"
import { SignJWT } from "jose"
import { makeAgentClient, tlsConnector } from "../../src/agent/AgentClient.js"
import { makeMemoryAgentBackend } from "../../src/layers/AgentBackendMemory.js"
import { makeClusterPki, openSecret } from "../../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { AgentRpcs } from "../../src/rpc/AgentRpc.js"
import { AgentServerLive } from "../../src/rpc/AgentServer.js"
import { AgentBackend } from "../../src/services/AgentBackend.js"
import { ClusterPki } from "../../src/services/ClusterPki.js"

export const CLUSTER = "c1"
export const SHARD = "s1"

export const rawClient = (url: string, caPem: string) =>
  Effect.gen(function* () {
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolHttp({ url }).pipe(Layer.provide(RpcSerialization.layerNdjson), Layer.provide(ClusterTlsClient(caPem)))
    )
    return yield* RpcClient.make(AgentRpcs).pipe(Effect.provide(protocol))
  })

export const startAgentEndpoint = (options: { readonly maxRequestBytes?: number; readonly certificateTtl?: Duration.DurationInput } = {}) =>
  Effect.gen(function* () {
    const encryptionKey = new Uint8Array(randomBytes(32))
    const store = makeMemoryStore()
    const pki = yield* makeClusterPki(store, { clusterId: CLUSTER, encryptionKey })
    const backend = makeMemoryAgentBackend()
    const context = yield* Layer.build(
      AgentServerLive({
        cluster: CLUSTER,
        shard: SHARD,
        host: "127.0.0.1",
        port: 0,
        ...options,
        certificateTtl: options.certificateTtl ?? "1 hour",
        tls: { pki, hosts: ["127.0.0.1"] }
      }).pipe(Layer.provide(Layer.succeed(ClusterPki, pki)), Layer.provide(Layer.succeed(AgentBackend, backend)))
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    const url = `https://127.0.0.1:${address.port}/agent`
    const client = yield* makeAgentClient(url, tlsConnector(pki.caPem))
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

    return { pki, backend, url, port: address.port, client, raw, signOwn, awaitRegistration }
  })

export type AgentEndpoint = Effect.Effect.Success<ReturnType<typeof startAgentEndpoint>>
