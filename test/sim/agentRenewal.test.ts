/**
 * Simulated agents renew their certificates: the agent endpoints' real handlers reached in memory (TLS would
 * check certificates against the wall clock) with a short certificate TTL, everything on one TestClock, and
 * a recording backend that notes, for every health report it accepts, the serial of the certificate the
 * report came with (as the server's own certificate check read it).
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Option, Redacted, TestClock } from "effect"
import { withAgentRegistration } from "../../src/domain/shard/userData.js"
import { makeMemoryAgentBackend } from "../../src/layers/AgentBackendMemory.js"
import { makeClusterPki } from "../../src/layers/ClusterPkiStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import type { AgentBackendShape } from "../../src/services/AgentBackend.js"
import { makeAgentEndpoints, memoryTransport } from "../support/agentMemory.js"
import { makeSimAgents } from "../../src/sim/agent.js"
import { makeSimCore } from "../../src/sim/server.js"

const ID = "web06dx9xy919t3v9kzd2xdsyzb3g"
const CLUSTER = "c1"
const SHARD = "s1"
/** Renew after 400 s, expire after 600 s. */
const TTL = Duration.minutes(10)
/** No multiple of it is a renew point below, so a report and a renewal never fall on the same instant. */
const HEALTH_EVERY = Duration.seconds(110)

const realPause = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 2)))

/** Waits (in real time: the endpoint does real I/O) until `done` holds. */
const eventually = <E, R>(what: string, done: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1_500; i++) {
      if (yield* done) return
      yield* realPause
    }
    return yield* Effect.dieMessage(`timed out waiting for ${what}`)
  })

/** The agent's two fibers (health reports, renewal) are both asleep on the TestClock again. */
const quiet = eventually("the agent to sleep again", Effect.map(TestClock.sleeps(), (s) => Chunk.size(s) === 2))

/**
 * The agent endpoints, whose backend records, with their Clock time, accepted health reports (and the
 * serial of the certificate each came with), renewals, and requests refused as not-leader.
 */
const startRecordingEndpoint = Effect.gen(function* () {
  const pki = yield* makeClusterPki(makeMemoryStore(), { clusterId: CLUSTER, encryptionKey: new Uint8Array(randomBytes(32)) })
  const base = makeMemoryAgentBackend()
  const health: Array<{ readonly at: number; readonly serial: string | undefined }> = []
  const renewals: Array<{ readonly at: number; readonly serial: string; readonly notAfter: number }> = []
  const refusedAt: Array<number> = []
  const backend: AgentBackendShape = {
    ...base,
    leaderRedirect: Effect.tap(base.leaderRedirect, (redirect) =>
      Option.isSome(redirect) ? Effect.map(Clock.currentTimeMillis, (at) => void refusedAt.push(at)) : Effect.void),
    recordHealth: (caller, status) =>
      Effect.gen(function* () {
        yield* base.recordHealth(caller, status)
        health.push({ at: yield* Clock.currentTimeMillis, serial: caller.certificateSerial })
      }),
    recordRenewed: (renewal) =>
      Effect.gen(function* () {
        yield* base.recordRenewed(renewal)
        renewals.push({ at: yield* Clock.currentTimeMillis, serial: renewal.certificateSerial, notAfter: renewal.certificateNotAfter.getTime() })
      })
  }
  const url = "https://127.0.0.1:8992/agent"
  const endpoints = yield* makeAgentEndpoints(pki, { registration: backend, channel: backend }, {
    cluster: CLUSTER,
    shard: SHARD,
    certificateTtl: TTL,
    agentUrl: "wss://127.0.0.1:8994/agent"
  })
  return { pki, base, url, transport: memoryTransport(endpoints), health, renewals, refusedAt }
})

/**
 * A running VM in the simulator, an agent booted on it with a fresh nonce, registered; returns at the
 * registration instant with both agent fibers asleep.
 */
const bootRegisteredAgent = (startAt: number) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(Date.now())
    const endpoint = yield* startRecordingEndpoint
    yield* TestClock.setTime(startAt)
    const { model } = makeSimCore({ nodes: 1, log: () => {} })
    yield* Effect.addFinalizer(() => Effect.promise(() => model.close(0)))
    yield* Effect.promise(async () => {
      const user = { user: "nstance@pve!nstance-token" }
      await model.routes["POST /nodes/{node}/qemu/{vmid}/clone"]?.({ node: "pve1", vmid: "9000", newid: "100", name: ID }, user)
      await model.settle()
      await model.routes["POST /nodes/{node}/qemu/{vmid}/status/start"]?.({ node: "pve1", vmid: "100" }, user)
      await model.settle()
    })
    expect(model.vms.get(100)?.status).toBe("running")

    const minted = yield* endpoint.pki.mintNonce({ instanceId: ID, cluster: CLUSTER, shard: SHARD, tenant: "acme", group: "web", ttl: "10 minutes" })
    yield* endpoint.base.expect(ID, { tenant: "acme", group: "web", nonceHash: minted.hash })
    const agents = yield* makeSimAgents({ healthEvery: HEALTH_EVERY, transport: endpoint.transport })
    agents.attach(model)
    const userData = withAgentRegistration("", { registrationUrl: endpoint.url, nonce: Redacted.value(minted.jwt), caPem: endpoint.pki.caPem })
    yield* Effect.promise(async () => agents.hook({ node: "pve1", vmid: 100, name: ID, instanceId: ID, metaData: {}, userData, volumeId: "cidata" }))
    yield* eventually("registration", Effect.map(endpoint.base.registrations, (r) => r.length === 1))
    // The health and renewal fibers asleep, beside the interrupted wait-while-running one.
    yield* eventually("the agent's fibers to sleep", Effect.map(TestClock.sleeps(), (s) => Chunk.size(s) === 3))
    const [registration] = yield* endpoint.base.registrations
    if (registration === undefined) return yield* Effect.dieMessage("no registration recorded")
    return { ...endpoint, registration }
  })

/**
 * Moves the clock to `startAt + seconds` from one sleeper's deadline to the next, letting the agent act at
 * each: every call it makes reaches the endpoint at the very instant the agent woke for it.
 */
const runUntil = (startAt: number, seconds: number) =>
  Effect.gen(function* () {
    const target = startAt + seconds * 1000
    for (;;) {
      const next = Chunk.reduce(yield* TestClock.sleeps(), Infinity, (a, b) => Math.min(a, b))
      yield* TestClock.setTime(Math.min(next, target))
      yield* quiet
      if (next >= target) return
    }
  })

describe("simulated agent certificate renewal", () => {
  it.scoped("renews every renew point, before expiry, and reports with the new certificate", () =>
    Effect.gen(function* () {
      const startAt = Date.now()
      const seconds = (at: number) => (at - startAt) / 1000
      const { registration, health, renewals } = yield* bootRegisteredAgent(startAt)
      yield* runUntil(startAt, 19 * 110)

      // Renewed at each renew point (two thirds of the TTL after the certificate before), never after expiry.
      expect(renewals.map((r) => seconds(r.at))).toEqual([400, 800, 1200, 1600, 2000])
      const chain = [
        { serial: registration.certificateSerial, notAfter: registration.certificateNotAfter.getTime() },
        ...renewals
      ]
      expect(new Set(chain.map((c) => c.serial)).size).toBe(chain.length)
      renewals.forEach((renewal, i) => expect(renewal.at).toBeLessThan(chain[i]!.notAfter))

      // One accepted report every 110 s, the whole time, each with the newest certificate at the time.
      expect(health.map((h) => seconds(h.at))).toEqual(Array.from({ length: 19 }, (_, i) => 110 * (i + 1)))
      for (const report of health) {
        const newest = chain.filter((c, i) => i === 0 || renewals[i - 1]!.at < report.at).at(-1)
        expect(report.serial).toBe(newest?.serial)
        expect(report.at).toBeLessThan(newest!.notAfter)
      }
      // Long after the first certificate expired, reports still go through.
      expect(health.filter((h) => h.at > chain[0]!.notAfter).length).toBe(14)
    }))

  it.scoped("retries a refused renewal on its schedule and then reports with the certificate it got", () =>
    Effect.gen(function* () {
      const startAt = Date.now() + Duration.toMillis(Duration.days(1))
      const seconds = (at: number) => (at - startAt) / 1000
      const { registration, base, health, renewals, refusedAt } = yield* bootRegisteredAgent(startAt)
      yield* runUntil(startAt, 395)
      // The endpoint answers not-leader, naming no leader (an election under way), from just before the
      // renew point (400 s) to 418 s.
      yield* base.setLeaderRedirect(Option.some(""))
      yield* runUntil(startAt, 418)
      yield* base.setLeaderRedirect(Option.none())
      yield* runUntil(startAt, 460)

      // Renewal attempts at the renew point and 1, 2, 4 and 8 s after each failure were refused; the attempt
      // 16 s after the last refusal got through.
      expect(refusedAt.map(seconds)).toEqual([400, 401, 403, 407, 415])
      expect(renewals.map((r) => seconds(r.at))).toEqual([431])
      expect(health.map((h) => [seconds(h.at), h.serial])).toEqual([
        ...Array.from({ length: 3 }, (_, i) => [110 * (i + 1), registration.certificateSerial]),
        [440, renewals[0]!.serial]
      ])
    }))
})
