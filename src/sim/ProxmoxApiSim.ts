/**
 * `ProxmoxApi` over the simulator's model in process: no HTTP, no sockets, and the model's clock and timers
 * are Effect's `Clock` — so under `TestClock` every PVE task, lock timeout, boot and `/cluster/resources` lag
 * moves only with `TestClock.adjust`, and saga, reconcile and GC tests run in milliseconds of wall time.
 *
 * What it shares with the HTTP path: the endpoint table, answer decoding, error classification, the retry
 * policy and `waitTask`'s polling schedule (all from `layers/pveCalls.ts`, as `ProxmoxApiHttp` uses them),
 * and on the simulator's side the model, fault controller and parameter schema (`makeSimCore`, as the HTTP
 * server builds them): a call is matched against the PVE API schema and its parameters checked exactly as
 * the server checks them, holds one of the 3 pveproxy workers while it runs, and scripted faults (HTTP
 * errors, lock timeouts, resets, the API away, answers lost after the effect, a loaded pveproxy's per-request
 * delay while `faults.slowRequests` is on) apply. Not modelled here: pveproxy's steady per-request latency
 * (`latency.requestMs`), token auth and the wire encoding itself — the HTTP simulator stays for those.
 */
import { Clock, Context, Duration, Effect, Layer, Runtime } from "effect"
import { PVE_SECONDS, LatencyRealistic, scaled } from "./latency.js"
import { type SimTime } from "./locks.js"
import { PveHttpError, type SimModel } from "./model.js"
import type { FaultController } from "./faults.js"
import { DEFAULT_TOKEN_ID, makeSimCore, type SimulatorOptions } from "./server.js"
import { validateParams } from "./schema.js"
import { NO_RESPONSE } from "../domain/pve/errors.js"
import {
  type CallSpec,
  decodeAnswer,
  formEntries,
  makeProxmoxApiShape,
  pveApiError,
  type RetrySettings,
  retryingCall,
  taskPollSchedule
} from "../layers/pveCalls.js"
import { type PveError, ProxmoxApi } from "../services/ProxmoxApi.js"

export interface SimHandleShape {
  readonly model: SimModel
  readonly faults: FaultController
}

/** The simulated cluster behind `ProxmoxApiSim`, for tests to look at and to script faults on. */
export class SimHandle extends Context.Tag("nstance/SimHandle")<SimHandle, SimHandleShape>() {}

export interface ProxmoxApiSimOptions extends Omit<SimulatorOptions, "port" | "http" | "tokenSecret"> {
  /** Default `LatencyRealistic`: real PVE durations cost nothing under TestClock. */
  readonly latency?: SimulatorOptions["latency"]
  /** Transient-failure retries, as `ProxmoxApiSettings.retry`. */
  readonly retry?: RetrySettings
  /** Task polling, as `ProxmoxApiSettings.taskPoll`. */
  readonly taskPoll?: { readonly initial?: Duration.DurationInput; readonly factor?: number; readonly max?: Duration.DurationInput }
  readonly taskTimeout?: Duration.DurationInput
  readonly taskVisibilityGrace?: Duration.DurationInput
}

/** The model's time source on the current runtime's Clock (TestClock in tests). */
const clockTime = (runtime: Runtime.Runtime<never>): SimTime => {
  const runSync = Runtime.runSync(runtime)
  const runPromise = Runtime.runPromise(runtime)
  return {
    now: () => runSync(Clock.currentTimeMillis),
    sleep: (ms) => (ms <= 0 ? Promise.resolve() : runPromise(Effect.sleep(Duration.millis(ms))))
  }
}

/** pveproxy puts the first line of a message in the status line; the HTTP client reads it from there. */
const statusMessage = (message: string, status: number): string => {
  const line = (message.split(/\r?\n/)[0] ?? "").replace(/[^\x20-\x7e]/g, "?").trim()
  return (line !== "" ? line : `HTTP ${status}`).replace(/\.$/, "")
}

const ROOT_ONLY = ["skiplock", "keepActive", "migratedfrom", "stateuri", "migration_type"]

export const makeProxmoxApiSim = (options: ProxmoxApiSimOptions = {}) =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const time = clockTime(runtime)
    const latency = options.latency ?? LatencyRealistic
    const { model, faults, schema } = makeSimCore({ ...options, latency, time })
    yield* Effect.addFinalizer(() => Effect.promise(() => model.close(0)))
    const user = options.tokenId ?? DEFAULT_TOKEN_ID

    type Outcome = { readonly _tag: "ok"; readonly data: unknown } | { readonly _tag: "error"; readonly status: number; readonly message: string; readonly errors?: Readonly<Record<string, string>> }

    /** What the HTTP server would do with this request, minus the wire: faults, schema, checks, handler. */
    const serve = async (spec: CallSpec<unknown>): Promise<Outcome> => {
      const reset: Outcome = { _tag: "error", status: NO_RESPONSE, message: "ECONNRESET: socket hang up (simulated connection reset)" }
      const outage = faults.apiDecision()
      if (outage !== undefined) {
        if (outage._tag === "Reset") return reset
        if (outage._tag === "Status") return { _tag: "error", status: outage.status, message: outage.message }
      }
      const delayMs = faults.requestDelayMs()
      if (delayMs > 0) await time.sleep(delayMs)
      const injected = faults.httpDecision(spec.method, spec.path)
      if (injected?._tag === "LostAnswer") {
        // The call is served (a clone forks, a config is written), and then its answer never arrives.
        await handle(spec)
        return injected.status === 0 ? reset : { _tag: "error", status: injected.status, message: injected.message }
      }
      if (injected !== undefined) {
        if (injected._tag === "Reset") return reset
        if (injected._tag === "Status") return { _tag: "error", status: injected.status, message: injected.message }
        await time.sleep(scaled(latency, PVE_SECONDS.lockTimeout))
        const vmid = /\/qemu\/(\d+)/.exec(spec.path)?.[1] ?? "0"
        return { _tag: "error", status: 500, message: `can't lock file '/var/lock/qemu-server/lock-${vmid}.conf' - got timeout` }
      }
      return handle(spec)
    }

    /** The call itself, past the faults: schema, checks, handler. */
    const handle = async (spec: CallSpec<unknown>): Promise<Outcome> => {
      const failWith = (error: PveHttpError): Outcome => ({
        _tag: "error", status: error.status, message: error.message,
        ...(error.errors === undefined ? {} : { errors: error.errors })
      })
      const matched = schema.match(spec.method, spec.path)
      const handler = matched !== undefined && "endpoint" in matched ? model.routes[`${matched.endpoint.method} ${matched.endpoint.path}`] : undefined
      if (matched === undefined || !("endpoint" in matched) || handler === undefined) {
        return { _tag: "error", status: 501, message: `Method '${spec.method} ${spec.path}' not implemented` }
      }
      const input: Record<string, unknown> = Object.fromEntries(formEntries(spec.form ?? {}))
      // Query parameters win over body parameters, as in pveproxy's extract_params.
      for (const [key, value] of formEntries(spec.query ?? {})) input[key] = value
      if (spec.upload !== undefined) {
        input["content"] = spec.upload.content
        input["filename"] = spec.upload.filename
        input["tmpfilename"] = model.parkUpload(spec.upload.data)
      }
      for (const [name, value] of Object.entries(matched.pathParams)) {
        const given = input[name]
        if (given !== undefined && given !== value) {
          return failWith(new PveHttpError({ status: 400, message: "Parameter verification failed.", errors: { [name]: "duplicate parameter (already defined in URI) with conflicting values!" } }))
        }
        input[name] = value
      }
      const checked = validateParams(matched.endpoint, input)
      if ("errors" in checked) {
        const tmp = input["tmpfilename"]
        if (typeof tmp === "string") model.uploads.delete(tmp)
        return failWith(new PveHttpError({ status: 400, message: "Parameter verification failed.", errors: checked.errors }))
      }
      for (const rootOnly of ROOT_ONLY) {
        const v = checked.params[rootOnly]
        if (v !== undefined && v !== "0" && v !== "") {
          return failWith(new PveHttpError({ status: 400, message: "Parameter verification failed.", errors: { [rootOnly]: "Only root may use this option." } }))
        }
      }
      try {
        // Through JSON, as on the wire: what a client decodes is what PVE would have sent.
        return { _tag: "ok", data: JSON.parse(JSON.stringify({ data: await handler(checked.params, { user }) }) ?? "{}") }
      } catch (error) {
        if (error instanceof PveHttpError) return failWith(error)
        return { _tag: "error", status: 500, message: error instanceof Error ? error.message : String(error) }
      }
    }

    /** One call: holds a pveproxy worker, is logged in the model's request log, answers or fails as PVE would. */
    const exchange = <A>(spec: CallSpec<A>, attempt: number): Effect.Effect<A, PveError> =>
      Effect.gen(function* () {
        const started = time.now()
        const query = formEntries(spec.query ?? {})
        const outcome = yield* Effect.promise(async () => {
          const release = await model.workers.acquire()
          const queuedMs = time.now() - started
          try {
            const result = await serve(spec as CallSpec<unknown>)
            const m = schema.match(spec.method, spec.path)
            model.logRequest({
              at: started, method: spec.method, path: spec.path, query: query.length > 0 ? `?${new URLSearchParams(query).toString()}` : "",
              status: result._tag === "ok" ? 200 : result.status, endpoint: m !== undefined && "endpoint" in m ? `${m.endpoint.method} ${m.endpoint.path}` : undefined,
              durationMs: time.now() - started, queuedMs
            })
            return result
          } finally {
            release()
          }
        })
        if (outcome._tag === "error") {
          const errors = outcome.errors === undefined
            ? undefined
            : Object.fromEntries(Object.entries(outcome.errors).map(([k, v]) => [k, v.trim()]))
          const message = outcome.status === NO_RESPONSE ? outcome.message : statusMessage(outcome.message, outcome.status)
          return yield* Effect.fail(pveApiError(spec, attempt, outcome.status, message, errors))
        }
        return yield* decodeAnswer(spec, outcome.data)
      })

    const api = makeProxmoxApiShape({
      exchange,
      call: retryingCall(exchange, options.retry),
      pollSchedule: taskPollSchedule(options.taskPoll),
      defaultTaskTimeout: options.taskTimeout ?? "10 minutes",
      visibilityGraceMs: Duration.toMillis(Duration.decode(options.taskVisibilityGrace ?? "10 seconds"))
    })
    return Context.make(ProxmoxApi, api).pipe(Context.add(SimHandle, SimHandle.of({ model, faults })))
  })

/** The in-process simulator as `ProxmoxApi` plus its `SimHandle`; the model settles no tasks on release. */
export const ProxmoxApiSim = (options: ProxmoxApiSimOptions = {}): Layer.Layer<ProxmoxApi | SimHandle> =>
  Layer.scopedContext(makeProxmoxApiSim(options))
