/**
 * The agent channel's own protocol (`AgentChannelServerLive`) at the wire: requests from every connection
 * handed to the RPC server together, the answers a connection gets together written as one WebSocket
 * message of NDJSON lines, anything that is not an RPC message answered with a Defect, and the endpoint
 * closing with channels still open.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted, Scope } from "effect"
import { WebSocket } from "ws"
import type { AgentIdentity } from "../../src/agent/AgentClient.js"
import { type AgentEndpoint, startAgentEndpoint } from "./harness.js"

const register = (endpoint: AgentEndpoint, instanceId: string) =>
  Effect.flatMap(endpoint.awaitRegistration(instanceId), (nonce) => endpoint.client.register({ nonce: nonce.jwt }))

const report = (id: string, instanceId: string) => request(id, { instanceId, status: "healthy" })

const request = (id: string, payload: unknown) => JSON.stringify({ _tag: "Request", id, tag: "ReportHealth", payload, headers: [] }) + "\n"

/** A raw channel: every WebSocket message received, as text, and a way to wait for `n` answer lines. */
const openRaw = (url: string, identity: AgentIdentity) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly ws: WebSocket; readonly messages: Array<string> }>((resolve, reject) => {
        const ws = new WebSocket(url, { ca: identity.caPem, cert: identity.certificatePem, key: Redacted.value(identity.privateKeyPem), minVersion: "TLSv1.3" })
        const messages: Array<string> = []
        ws.on("message", (data) => messages.push(data.toString()))
        ws.once("open", () => resolve({ ws, messages }))
        ws.once("error", reject)
      })),
    ({ ws }) => Effect.sync(() => ws.terminate())
  )

const lines = (messages: ReadonlyArray<string>): Array<Record<string, unknown>> =>
  messages.flatMap((message) => message.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as Record<string, unknown>))

const untilLines = (messages: ReadonlyArray<string>, n: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200 && lines(messages).length < n; i++) yield* Effect.sleep("25 millis")
    return lines(messages)
  })

describe("the agent channel's protocol", () => {
  it.scopedLive("answers every request of a burst, together in fewer WebSocket messages than answers", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const identity = yield* register(endpoint, "vmx05aaaa")
      const { messages, ws } = yield* openRaw(endpoint.agentUrl, identity)
      // The first request verifies the certificate; the burst after it finds the connection known.
      ws.send(report("0", identity.instanceId))
      yield* untilLines(messages, 1)
      for (let i = 1; i <= 20; i++) ws.send(report(String(i), identity.instanceId))
      const answers = yield* untilLines(messages, 21)
      expect(answers.map((answer) => [answer["_tag"], answer["requestId"], answer["exit"]])).toEqual(
        Array.from({ length: 21 }, (_, i) => ["Exit", String(i), { _tag: "Success", value: { ok: true } }])
      )
      expect(messages.length).toBeLessThan(21)
      expect(yield* endpoint.backend.healthReports).toHaveLength(21)
    }))

  it.scopedLive("answers a report on a connection it knows (inline) exactly as a connection's first one (by the RPC server)", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const identity = yield* register(endpoint, "vmx05eeee")
      yield* register(endpoint, "vmx05ffff")
      const known = yield* openRaw(endpoint.agentUrl, identity)
      known.ws.send(report("0", identity.instanceId))
      yield* untilLines(known.messages, 1)
      let sent = 1
      /** The answer to `payload` as a fresh connection's first request, and as the known connection's next. */
      const both = (payload: unknown) =>
        Effect.gen(function* () {
          const fresh = yield* openRaw(endpoint.agentUrl, identity)
          fresh.ws.send(request("1", payload))
          const first = (yield* untilLines(fresh.messages, 1))[0]
          known.ws.send(request(String(sent), payload))
          const inline = (yield* untilLines(known.messages, ++sent))[sent - 1]
          return [first?.["exit"], inline?.["exit"]] as const
        })
      const cases: ReadonlyArray<readonly [unknown, Record<string, unknown>]> = [
        [{ instanceId: identity.instanceId }, { _tag: "Success" }],
        [{ instanceId: "vmx05ffff" }, { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "InvalidCertificate", reason: "OtherInstance" } } }],
        [{ instanceId: "v".repeat(129) }, { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "PayloadTooLarge", field: "instanceId" } } }],
        [{ instanceId: identity.instanceId, status: "fine" }, { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "InvalidPayload", field: "status" } } }],
        [{ instanceId: 5 }, { _tag: "Failure", cause: { _tag: "Die" } }]
      ]
      for (const [payload, expected] of cases) {
        const [first, inline] = yield* both(payload)
        expect(first).toMatchObject(expected)
        expect(inline).toEqual(first)
      }
      yield* endpoint.backend.setLeaderRedirect(Option.some("127.0.0.9:1"))
      const [first, inline] = yield* both({ instanceId: identity.instanceId })
      expect(first).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "NotLeader", leaderAddr: "127.0.0.9:1" } } })
      expect(inline).toEqual(first)
      yield* endpoint.backend.setLeaderRedirect(Option.none())
      yield* endpoint.backend.forget(identity.instanceId)
      const [gone, goneInline] = yield* both({ instanceId: identity.instanceId })
      expect(gone).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "UnknownInstance" } } })
      expect(goneInline).toEqual(gone)
    }))

  it.scopedLive("refuses a request whose ID is still in flight with a Defect, and serves the rest", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const identity = yield* register(endpoint, "vmx05bbbb")
      const { messages, ws } = yield* openRaw(endpoint.agentUrl, identity)
      // The first request is in flight while the certificate is verified, so the second "7" finds it there.
      ws.send(report("7", identity.instanceId) + report("7", identity.instanceId) + report("8", identity.instanceId))
      const answers = yield* untilLines(messages, 3)
      expect(answers.filter((answer) => answer["_tag"] === "Defect")).toHaveLength(1)
      expect(answers.filter((answer) => answer["_tag"] === "Exit").map((answer) => answer["requestId"]).sort()).toEqual(["7", "8"])
      expect(yield* endpoint.backend.healthReports).toHaveLength(2)
      // Once answered, the ID may come again.
      ws.send(report("7", identity.instanceId))
      expect((yield* untilLines(messages, 4))[3]).toMatchObject({ _tag: "Exit", requestId: "7", exit: { _tag: "Success" } })
    }))

  it.scopedLive("answers a line that is not an RPC message with a Defect; broken JSON also closes the connection", () =>
    Effect.gen(function* () {
      const endpoint = yield* startAgentEndpoint()
      const identity = yield* register(endpoint, "vmx05cccc")
      const { messages, ws } = yield* openRaw(endpoint.agentUrl, identity)
      ws.send(JSON.stringify({ _tag: "Request", id: 1, tag: "ReportHealth", payload: {}, headers: [] }) + "\n")
      expect((yield* untilLines(messages, 1))[0]).toMatchObject({ _tag: "Defect" })
      ws.send(report("2", identity.instanceId))
      expect((yield* untilLines(messages, 2))[1]).toMatchObject({ _tag: "Exit", requestId: "2", exit: { _tag: "Success" } })
      const closed = Effect.promise(() => new Promise<number>((resolve) => ws.once("close", (code) => resolve(code))))
      ws.send("not json\n")
      expect(yield* closed.pipe(Effect.timeout("5 seconds"))).toBe(1007)
      expect(lines(messages)[2]).toMatchObject({ _tag: "Defect" })
    }))

  it.scopedLive("closes with channels still open, and they see the connection end", () =>
    Effect.gen(function* () {
      const endpointScope = yield* Scope.make()
      const endpoint = yield* Scope.extend(startAgentEndpoint(), endpointScope)
      const identity = yield* Scope.extend(register(endpoint, "vmx05dddd"), endpointScope)
      // The raw channel outlives the endpoint: it is the server that ends the connection here.
      const { messages, ws } = yield* openRaw(endpoint.agentUrl, identity)
      ws.send(report("1", identity.instanceId))
      yield* untilLines(messages, 1)
      const closed = Effect.promise(() => new Promise<void>((resolve) => ws.once("close", () => resolve())))
      yield* Scope.close(endpointScope, Exit.void).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "the endpoint did not close" }))
      yield* closed.pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "the channel was not closed" }))
    }))
})
