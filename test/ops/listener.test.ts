/**
 * The listeners under every endpoint, as a hostile client meets them: connections beyond the per-peer and
 * per-listener caps are closed on accept, half-sent headers and silent sockets are closed after seconds, a
 * wrong admin token is answered 401 — and every one of them is counted by endpoint and reason.
 */
import { connect, type Socket } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, TestClock, TestContext } from "effect"
import { type ListenerLimits, listenerLimits, parseDescriptorLimit } from "../../src/domain/listenerLimits.js"
import { makeHealthServer } from "../../src/http/HealthServer.js"
import { makeGuardedServer, makeRefusalLog } from "../../src/http/listener.js"
import { makePrometheusScrape } from "../../src/metrics/prometheus.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { makeAdminWorld } from "../admin/harness.js"
import { startReplica } from "./harness.js"
import { parsePrometheus, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"
import { httpsRequest } from "../support/tls.js"

const TIGHT: ListenerLimits = {
  maxConnections: 16,
  maxConnectionsPerPeer: 4,
  headersTimeoutMs: 500,
  requestTimeoutMs: 1_000,
  keepAliveTimeoutMs: 500,
  idleTimeoutMs: 800,
  maxHeaderBytes: 4 * 1024
}

interface OpenSocket {
  readonly socket: Socket
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>
  readonly received: () => string
}

const open = (port: number): Promise<OpenSocket> =>
  new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1")
    let received = ""
    socket.on("data", (chunk: Buffer) => { received += chunk.toString() })
    const closed = new Promise<void>((done) => socket.once("close", () => done()))
    socket.once("error", () => undefined)
    socket.once("connect", () => resolve({ socket, closed, received: () => received }))
    socket.once("error", reject)
  })

/** Whether the server closed `s` within `ms`. */
const closedWithin = (s: OpenSocket, ms: number) =>
  Promise.race([s.closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))])

const refusals = Effect.gen(function* () {
  const scrape = yield* makePrometheusScrape
  const families = yield* Effect.flatMap(scrape.text, (text) => Effect.promise(() => parsePrometheus(text)))
  return (endpoint: string, reason: string) => total(families, "nstance_endpoint_refusals_total", { endpoint, reason })
})

const healthServer = (limits: ListenerLimits) =>
  Effect.gen(function* () {
    const { replica } = yield* startReplica(makeMemoryStore(), "a")
    const address = yield* makeHealthServer(replica, { host: "127.0.0.1", port: 0, limits })
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("not TCP")
    return address.port
  })

/**
 * Opens `count` connections to `port` at once and says how many the server closed within 400 ms, and how
 * many refusals of `reason` the health endpoint counted meanwhile; every connection is closed after.
 */
const closedOnAccept = (port: number, count: number, reason: string) =>
  Effect.gen(function* () {
    const before = yield* refusals
    const sockets = yield* Effect.promise(() => Promise.all(Array.from({ length: count }, () => open(port))))
    const closed = yield* Effect.promise(() => Promise.all(sockets.map((s) => closedWithin(s, 400))))
    for (const s of sockets) s.socket.destroy()
    yield* Effect.promise(() => Promise.all(sockets.map((s) => s.closed)))
    yield* Effect.sleep("100 millis")
    const after = yield* refusals
    return { closed: closed.filter((c) => c).length, counted: after("health", reason) - before("health", reason) }
  })

describe("listener limits, as sized from the descriptor limit", () => {
  it("at 1,024 descriptors: 307 agent channels (38 a peer), 230 registration connections (28), 115 each for operator and health, 256 kept back", () => {
    expect(listenerLimits("agent", 1024)).toMatchObject({ maxConnections: 307, maxConnectionsPerPeer: 38 })
    expect(listenerLimits("registration", 1024)).toMatchObject({ maxConnections: 230, maxConnectionsPerPeer: 28 })
    expect(listenerLimits("operator", 1024)).toMatchObject({ maxConnections: 115, maxConnectionsPerPeer: 14 })
    expect(listenerLimits("health", 1024)).toMatchObject({ maxConnections: 115, maxConnectionsPerPeer: 14 })
    // A tiny limit still serves a little rather than nothing; a large one scales.
    expect(listenerLimits("health", 64)).toMatchObject({ maxConnections: 16, maxConnectionsPerPeer: 4 })
    expect(listenerLimits("agent", 65_536).maxConnections).toBe(19_660)
  })

  it("reads the soft open-files limit from /proc/self/limits text", () => {
    const text = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n"
    expect(parseDescriptorLimit(text)).toBe(1024)
    expect(parseDescriptorLimit("Max open files            unlimited            unlimited            files")).toBeUndefined()
    expect(parseDescriptorLimit("")).toBeUndefined()
  })
})

describe.skipIf(skipWithout("prometheus-parser"))("a guarded listener (health endpoint on loopback)", () => {
  it.scopedLive("connections beyond the per-peer cap are closed as soon as they are accepted, and counted as peer-full", () =>
    Effect.gen(function* () {
      const port = yield* healthServer(TIGHT)
      // The first four stay open (they sent nothing yet); the other six were closed on accept.
      expect(yield* closedOnAccept(port, 10, "peer-full")).toEqual({ closed: 6, counted: 6 })
    }))

  it.scopedLive("half-sent headers are closed after the header timeout, a silent socket after the idle timeout; both counted", () =>
    Effect.gen(function* () {
      // The idle timer well after the header deadline (checked every 500 ms), so each socket meets the one it tests.
      const port = yield* healthServer({ ...TIGHT, idleTimeoutMs: 2_500 })
      const before = yield* refusals
      const slow = yield* Effect.promise(() => open(port))
      slow.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
      const silent = yield* Effect.promise(() => open(port))
      expect(yield* Effect.promise(() => closedWithin(slow, 5_000))).toBe(true)
      expect(slow.received()).toMatch(/^HTTP\/1\.1 408 /)
      expect(yield* Effect.promise(() => closedWithin(silent, 5_000))).toBe(true)
      yield* Effect.sleep("100 millis")
      const after = yield* refusals
      expect(after("health", "timeout") - before("health", "timeout")).toBe(2)
    }))

  it.scopedLive("a response that takes longer than the idle timeout (a quiet watch stream) is not cut off; the socket's idle timer runs again after it", () =>
    Effect.gen(function* () {
      const { server } = yield* makeGuardedServer(TIGHT, yield* makeRefusalLog("operator"))
      server.on("request", (_request, response) => { setTimeout(() => response.end("late"), 2_000) })
      const port = yield* Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(typeof address === "object" && address !== null ? Effect.succeed(address.port) : Effect.dieMessage("no port"))
        })
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => { server.closeAllConnections(); server.close() }))
      const socket = yield* Effect.promise(() => open(port))
      socket.socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      yield* Effect.promise(() => closedWithin(socket, 2_500))
      expect(socket.received()).toMatch(/^HTTP\/1\.1 200 [\s\S]*late$/)
      // Kept alive after the answer, then closed (by keep-alive or the idle timer), not left open.
      expect(yield* Effect.promise(() => closedWithin(socket, 3_000))).toBe(true)
    }))

  it.scopedLive("beyond the listener's cap, connections from any address are dropped and counted as listener-full", () =>
    Effect.gen(function* () {
      const port = yield* healthServer({ ...TIGHT, maxConnections: 5, maxConnectionsPerPeer: 100 })
      expect(yield* closedOnAccept(port, 8, "listener-full")).toEqual({ closed: 3, counted: 3 })
    }))

  it.scopedLive("a wrong admin token gets 401 and is counted as a token refusal on the operator endpoint", () =>
    Effect.gen(function* () {
      const w = yield* makeAdminWorld({ lead: false })
      const before = yield* refusals
      const url = `https://${w.leader.address}/admin`
      const answer = yield* Effect.promise(() => httpsRequest(url, { body: "{}\n", headers: { authorization: "Bearer not-the-token" }, ca: w.pki.caPem }))
      expect(answer.status).toBe(401)
      const missing = yield* Effect.promise(() => httpsRequest(url, { body: "{}\n", ca: w.pki.caPem }))
      expect(missing.status).toBe(401)
      const after = yield* refusals
      expect(after("operator", "token") - before("operator", "token")).toBe(2)
    }))
})

describe("failed credentials from one address are slowed down", () => {
  it.effect("the n-th failure within a minute waits n × 100 ms (at most 2 s); another address is not slowed by it", () =>
    Effect.gen(function* () {
      const log = yield* makeRefusalLog("operator")
      yield* log.penalize("10.0.0.9").pipe(Effect.fork, Effect.tap(() => TestClock.adjust("100 millis")), Effect.flatMap(Fiber.join))
      const second = yield* Effect.fork(log.penalize("10.0.0.9"))
      yield* TestClock.adjust("150 millis")
      expect(Option.isNone(yield* Fiber.poll(second))).toBe(true)
      yield* TestClock.adjust("50 millis")
      expect(Option.isSome(yield* Fiber.poll(second))).toBe(true)
      const other = yield* Effect.fork(log.penalize("10.0.0.10"))
      yield* TestClock.adjust("100 millis")
      expect(Option.isSome(yield* Fiber.poll(other))).toBe(true)
      // A minute later the count starts again.
      yield* TestClock.adjust("61 seconds")
      const fresh = yield* Effect.fork(log.penalize("10.0.0.9"))
      yield* TestClock.adjust("100 millis")
      expect(Option.isSome(yield* Fiber.poll(fresh))).toBe(true)
    }).pipe(Effect.provide(TestContext.TestContext)))
})
