/**
 * The agent and operator endpoints as a stranger on the network meets them: TLS 1.3 only, a certificate
 * from the cluster CA, nothing readable on the wire — and clients that send a credential only to a server
 * the cluster CA signed, whatever address a `NotLeader` answer names.
 */
import { randomBytes } from "node:crypto"
import { connect, createServer as createTcpServer, type Socket } from "node:net"
import { createServer as createTlsServer } from "node:tls"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Logger, LogLevel, Redacted } from "effect"
import { callAdmin } from "../../src/admin/AdminClient.js"
import { makeAgentClient, tlsTransport } from "../../src/agent/AgentClient.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { startAgentEndpoint } from "../agent/harness.js"
import { adminConfigText, makeAdminWorld, TOKEN } from "../admin/harness.js"
import { httpsRequest } from "../support/tls.js"
import { makePrometheusScrape } from "../../src/metrics/prometheus.js"

/** A TCP relay on loopback to `port` that keeps every byte it passes, both ways. */
const recordingRelay = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly bytes: () => Buffer; readonly close: () => void }>((resume) => {
      const chunks: Array<Buffer> = []
      const sockets = new Set<Socket>()
      const relay = createTcpServer((client) => {
        const upstream = connect(port, "127.0.0.1")
        sockets.add(client).add(upstream)
        client.on("data", (chunk: Buffer) => { chunks.push(chunk); upstream.write(chunk) })
        upstream.on("data", (chunk: Buffer) => { chunks.push(chunk); client.write(chunk) })
        client.on("close", () => upstream.destroy())
        upstream.on("close", () => client.destroy())
        client.on("error", () => undefined)
        upstream.on("error", () => undefined)
      })
      relay.listen(0, "127.0.0.1", () => {
        const address = relay.address()
        const bound = typeof address === "object" && address !== null ? address.port : 0
        resume(Effect.succeed({
          port: bound,
          bytes: () => Buffer.concat(chunks),
          close: () => { for (const socket of sockets) socket.destroy(); relay.close() }
        }))
      })
    }),
    (relay) => Effect.sync(relay.close)
  )

/** Another CA's PKI: a certificate from it is as good as self-signed to our clients. */
const foreignPki = makeClusterPki(makeMemoryStore(), { clusterId: "elsewhere", encryptionKey: new Uint8Array(randomBytes(32)) }).pipe(
  Effect.orDie,
  Logger.withMinimumLogLevel(LogLevel.None)
)

/** `nstance_endpoint_refusals_total{endpoint, reason="tls"}` as /metrics shows it now. */
const tlsRefusals = (endpoint: string) =>
  Effect.map(Effect.flatMap(makePrometheusScrape, (scrape) => scrape.text), (text) => {
    const line = text.split("\n").find((l) => l.startsWith("nstance_endpoint_refusals_total{") && l.includes(`endpoint="${endpoint}"`) && l.includes(`reason="tls"`))
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
  })

const failure = (promise: Promise<unknown>) => Effect.promise(() => promise.then(() => "answered", (error: unknown) => (error instanceof Error ? (error as NodeJS.ErrnoException).code ?? error.message : String(error))))

describe("the agent endpoint over TLS", () => {
  it.scopedLive("plain HTTP, TLS 1.2 and a client trusting another CA get no answer; TLS 1.3 with the cluster CA does", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const plain = yield* failure(fetch(endpoint.url.replace("https://", "http://"), { method: "POST", body: "{}\n" }))
      expect(plain).not.toBe("answered")
      const tls12 = yield* failure(httpsRequest(endpoint.url, { body: "{}\n", ca: endpoint.pki.caPem, maxVersion: "TLSv1.2" }))
      expect(tls12).toMatch(/ERR_SSL|alert|protocol version|EPROTO/i)
      const other = yield* foreignPki
      const wrongCa = yield* failure(httpsRequest(endpoint.url, { body: "{}\n", ca: other.caPem }))
      expect(wrongCa).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|unable to verify|CERT/i)
      const good = yield* Effect.promise(() => httpsRequest(endpoint.url, { body: "{}\n", ca: endpoint.pki.caPem }))
      expect(good.status).toBe(200)
    }))

  it.scopedLive("the agent channel: plain HTTP and TLS 1.2 get no answer, nor TLS 1.3 without an agent's certificate", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const channel = endpoint.agentUrl.replace("wss://", "https://")
      expect(yield* failure(fetch(channel.replace("https://", "http://")))).not.toBe("answered")
      expect(yield* failure(httpsRequest(channel, { body: "{}\n", ca: endpoint.pki.caPem, maxVersion: "TLSv1.2" }))).toMatch(/ERR_SSL|alert|protocol version|EPROTO/i)
      expect(yield* failure(httpsRequest(channel, { body: "{}\n", ca: endpoint.pki.caPem }))).not.toBe("answered")
    }))

  it.scopedLive("a registration recorded on the wire holds neither the nonce nor the issued certificate in clear", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const relay = yield* recordingRelay(endpoint.port)
      const minted = yield* endpoint.awaitRegistration("vmx09wire")
      const client = yield* makeAgentClient(`https://127.0.0.1:${relay.port}/agent`, tlsTransport(endpoint.pki.caPem))
      const identity = yield* client.register({ nonce: minted.jwt })
      expect(identity.instanceId).toBe("vmx09wire")
      const wire = relay.bytes()
      expect(wire.length).toBeGreaterThan(1000)
      const nonce = Redacted.value(minted.jwt)
      expect(wire.includes(Buffer.from(nonce))).toBe(false)
      // Not even a piece of it, nor the JWT's header, nor the PEM of the certificate issued.
      expect(wire.includes(Buffer.from(nonce.slice(nonce.length - 24)))).toBe(false)
      expect(wire.includes(Buffer.from("RegisterAgent"))).toBe(false)
      expect(wire.includes(Buffer.from(identity.certificatePem.split("\n")[1] ?? "-"))).toBe(false)
    }))
})

describe("the operator endpoint over TLS", () => {
  it.scopedLive("a NotLeader naming a host without a certificate from the cluster CA never receives the token", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      // A server an attacker controls, with a certificate from another CA, that keeps whatever it is sent.
      const other = yield* foreignPki
      const issued = yield* other.issueServerCertificate({ hosts: ["127.0.0.1"], ttl: "1 hour" })
      const received: Array<Buffer> = []
      const rogue = createTlsServer({ cert: issued.certificatePem, key: issued.privateKeyPem }, (socket) => {
        socket.on("data", (chunk: Buffer) => { received.push(chunk) })
        socket.on("error", () => undefined)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => rogue.close()))
      const rogueAddress = yield* Effect.async<string>((resume) => {
        rogue.listen(0, "127.0.0.1", () => {
          const address = rogue.address()
          resume(Effect.succeed(`127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`))
        })
      })
      // The shard's config names the rogue as where the leader serves operators (a planted or stale entry);
      // a standby started on it redirects there.
      yield* world.putConfig(adminConfigText(0, rogueAddress))
      const standby = yield* world.standby
      const followed = yield* Effect.either(callAdmin(standby.address, world.credentials, (rpc) => rpc.ListGroups()))
      expect(Either.isLeft(followed)).toBe(true)
      if (Either.isLeft(followed)) {
        expect(followed.left.message).toBe(`no admin endpoint answers at ${rogueAddress} (its TLS certificate is not signed by the cluster CA this client trusts); is nstance-server running there with an admin token?`)
      }
      const bytes = Buffer.concat(received)
      expect(bytes.includes(Buffer.from(Redacted.value(TOKEN)))).toBe(false)
      expect(bytes.includes(Buffer.from("Bearer"))).toBe(false)
    }))

  it.scopedLive("plain HTTP and TLS 1.2 are refused and counted; the right CA and the token are served", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({ size: 0 })
      const url = `https://${world.leader.address}/admin`
      const before = yield* tlsRefusals("operator")
      const plain = yield* failure(fetch(url.replace("https://", "http://"), { method: "POST", body: "{}\n" }))
      expect(plain).not.toBe("answered")
      const tls12 = yield* failure(httpsRequest(url, { body: "{}\n", ca: world.pki.caPem, maxVersion: "TLSv1.2" }))
      expect(tls12).not.toBe("answered")
      yield* Effect.sleep("100 millis")
      expect((yield* tlsRefusals("operator")) - before).toBe(2)
      const status = yield* callAdmin(world.leader.address, world.credentials, (rpc) => rpc.Status())
      expect(status.value).toMatchObject({ cluster: "acme", leader: "replica-1" })
    }))
})
