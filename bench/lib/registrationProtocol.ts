/**
 * The messages between bench/registration.ts (the server process) and its client processes
 * (bench/lib/registrationClient.ts), over Node's IPC channel. Nonces never travel here: the server writes
 * them to a file only the user can read and names the file; the client reads it and removes it at once.
 *
 * A run is two steps so that several client processes measure over the same window: every client prepares
 * (reads its nonces or opens its channels, warms up outside the clock) and says `Prepared`; once all have,
 * the server sends `Go` to all, starts its own CPU window, and closes it at the last `Done`.
 */
import { Schema } from "effect"

/** The file of nonces the server hands a client (mode 0600, in a directory of its own, removed once read). */
export const NoncesFile = Schema.parseJson(Schema.Struct({ nonces: Schema.Array(Schema.Redacted(Schema.String)) }))

/** Server → client. */
export const ServerMessage = Schema.Union(
  /** Where the endpoints are and the CA to trust; the first message. */
  Schema.TaggedStruct("Setup", { registrationUrl: Schema.String, caPem: Schema.String }),
  /** Register the nonces of `noncesFile` (`{ nonces: [...] }`) at `concurrency`: the first `warmup` now, the rest on Go. */
  Schema.TaggedStruct("PrepareRegister", { noncesFile: Schema.String, warmup: Schema.Int, concurrency: Schema.Int }),
  /** Register every nonce of `noncesFile` now and keep the identities for the ReportHealth runs. */
  Schema.TaggedStruct("Enroll", { noncesFile: Schema.String, concurrency: Schema.Int }),
  /**
   * Open one agent channel for each of the first `agents` identities and keep `inFlight` ReportHealth calls
   * going on each for `warmupSeconds` now, then for `seconds` on Go, with the client `client` names.
   */
  Schema.TaggedStruct("PrepareHealth", {
    agents: Schema.Int,
    inFlight: Schema.Int,
    warmupSeconds: Schema.Number,
    seconds: Schema.Number,
    /** `wire`: bench/lib/wireChannel.ts; `agent`: the product's `tlsTransport(caPem).channel` and RpcClient. */
    client: Schema.Literal("wire", "agent")
  }),
  Schema.TaggedStruct("Go", {}),
  Schema.TaggedStruct("Exit", {})
)
export type ServerMessage = typeof ServerMessage.Type

/** What one client process measured over one run. */
export const ClientFigures = Schema.Struct({
  /** Calls answered with success. */
  ok: Schema.Int,
  /** Calls that failed, by error tag (`RpcClientError`, `InvalidNonce`, …; `Die` for a defect). */
  errors: Schema.Record({ key: Schema.String, value: Schema.Int }),
  /** Calls still unanswered when the run was cut off. */
  unfinished: Schema.Int,
  /** From Go to the last answer (or the cut-off). */
  seconds: Schema.Number,
  /** Latency of every successful call in ms, ascending. */
  samplesMs: Schema.Array(Schema.Number),
  /** user + system CPU of the client process over the run. */
  cpuSeconds: Schema.Number
})
export type ClientFigures = typeof ClientFigures.Type

/** Client → server. */
export const ClientMessage = Schema.Union(
  Schema.TaggedStruct("Ready", {}),
  /** Ready for Go; `warmupErrors` are the failures of the warm-up, by tag. */
  Schema.TaggedStruct("Prepared", { warmupErrors: Schema.Record({ key: Schema.String, value: Schema.Int }) }),
  Schema.TaggedStruct("Enrolled", { agents: Schema.Int, errors: Schema.Record({ key: Schema.String, value: Schema.Int }) }),
  Schema.TaggedStruct("Done", { figures: ClientFigures }),
  Schema.TaggedStruct("Failed", { message: Schema.String })
)
export type ClientMessage = typeof ClientMessage.Type
