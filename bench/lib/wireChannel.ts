/**
 * A wire-level client of the agent channel for bench/registration.ts: the same TLS 1.3 WebSocket with the
 * agent's client certificate as `tlsTransport(caPem).channel`, and the same frames `RpcClient` sends (one
 * NDJSON `Request` per WebSocket message, one call per frame, never batched), but driven by plain callbacks
 * instead of an Effect fiber, span and schema per call. The product's client costs about as much CPU per
 * call as the server does, so on a two-core machine its processes could not offer the server more than
 * half the machine; this one costs a fraction of that, so what the bench measures is the server.
 *
 * A call counts as successful only when the server answered its request id with `Exit` `Success`
 * `{ ok: true }`; any other answer is counted by its error tag (`Fail` by the error's `_tag`, else the
 * cause's: `Die`, `Interrupt`), a `Defect` or a closed channel fails every call in flight.
 */
import { Redacted } from "effect"
import { type RawData, WebSocket } from "ws"
import type { AgentIdentity } from "../../src/agent/AgentClient.js"

/** "ok", or why the call failed (an error tag). */
export type CallOutcome = string

export interface WireChannel {
  /** Sends one `ReportHealth` for the channel's instance; `done` is called once, with its outcome. */
  readonly reportHealth: (done: (outcome: CallOutcome) => void) => void
  readonly close: () => Promise<void>
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const tagOf = (value: unknown): string => (isRecord(value) && typeof value["_tag"] === "string" ? value["_tag"] : "Malformed")

/** The outcome an encoded `Exit` stands for. */
const outcomeOf = (exit: unknown): CallOutcome => {
  if (!isRecord(exit)) return "Malformed"
  if (exit["_tag"] === "Success") return isRecord(exit["value"]) && exit["value"]["ok"] === true ? "ok" : "UnexpectedSuccessValue"
  const cause = exit["cause"]
  return isRecord(cause) && cause["_tag"] === "Fail" ? tagOf(cause["error"]) : tagOf(cause)
}

/** Opens the channel (TLS handshake and WebSocket upgrade) for `identity`; rejects when that fails. */
export const openWireChannel = (url: string, caPem: string, identity: AgentIdentity): Promise<WireChannel> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      ca: caPem,
      cert: identity.certificatePem,
      key: Redacted.value(identity.privateKeyPem),
      minVersion: "TLSv1.3",
      maxPayload: 1024 * 1024,
      handshakeTimeout: 10_000,
      perMessageDeflate: false
    })
    const pending = new Map<string, (outcome: CallOutcome) => void>()
    let closed: string | undefined
    let nextId = 0
    let buffer = ""
    // What RpcClient sends with tracing on (`traceId`/`spanId` of the caller's span), so the frames are as large.
    const prefix = '{"_tag":"Request","id":"'
    const suffix = `","tag":"ReportHealth","payload":${JSON.stringify({ instanceId: identity.instanceId, status: "healthy" })},` +
      `"traceId":"${"0123456789abcdef".repeat(2)}","spanId":"0123456789abcdef","sampled":true,"headers":[]}\n`

    const failAll = (outcome: CallOutcome) => {
      const callbacks = [...pending.values()]
      pending.clear()
      for (const done of callbacks) done(outcome)
    }
    const onAnswer = (message: unknown) => {
      switch (tagOf(message)) {
        case "Exit": {
          const id = isRecord(message) ? message["requestId"] : undefined
          const done = typeof id === "string" ? pending.get(id) : undefined
          if (done === undefined || typeof id !== "string") return
          pending.delete(id)
          done(outcomeOf(isRecord(message) ? message["exit"] : undefined))
          return
        }
        case "Defect":
          failAll("Defect")
          return
        default:
          return
      }
    }
    ws.on("message", (data: RawData) => {
      buffer += data.toString()
      let newline = buffer.indexOf("\n")
      while (newline !== -1) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        onAnswer(JSON.parse(line))
        newline = buffer.indexOf("\n")
      }
    })
    ws.once("error", (error) => {
      closed = "RpcClientError"
      failAll(closed)
      reject(error)
    })
    ws.once("close", () => {
      closed = "RpcClientError"
      failAll(closed)
    })
    ws.once("open", () =>
      resolve({
        reportHealth: (done) => {
          if (closed !== undefined) return done(closed)
          const id = String(nextId++)
          pending.set(id, done)
          ws.send(prefix + id + suffix)
        },
        close: () =>
          new Promise<void>((closedNow) => {
            if (ws.readyState === WebSocket.CLOSED) return closedNow()
            ws.once("close", () => closedNow())
            ws.close()
          })
      }))
  })
