/**
 * ProxmoxApi over PVE's HTTPS API: token auth, form-encoded bodies (as PVE's own tools send them), the
 * `{"data": …}` envelope unwrapped and decoded, failures classified in one place and only transient ones
 * retried (bounded, jittered, logged). Each client owns its undici Agent, so `insecure_tls` affects that
 * client alone — never the process (no NODE_TLS_REJECT_UNAUTHORIZED).
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Data, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { Agent, type Dispatcher, FormData } from "undici"
import { NO_RESPONSE } from "../domain/pve/errors.js"
import { type PveError, ProxmoxApi } from "../services/ProxmoxApi.js"
import {
  type CallSpec,
  decodeAnswer,
  ErrorBody,
  formEntries,
  makeProxmoxApiShape,
  pveApiError,
  pveDecodeError,
  retryingCall,
  taskPollSchedule
} from "./pveCalls.js"

export const DEFAULT_API_URL = "https://localhost:8006/api2/json"

export interface ProxmoxApiSettings {
  /** Default `https://localhost:8006/api2/json`. */
  readonly apiUrl?: string
  /** `user@realm!tokenid` */
  readonly tokenId: string
  readonly tokenSecret: string | Redacted.Redacted<string>
  /** Skip certificate verification for this client only. */
  readonly insecureTls?: boolean
  /** Extra CA certificate(s) (PEM) to trust, e.g. the cluster's own pve-root-ca. */
  readonly ca?: string
  /** Bound on one HTTP request (default 30 s); a timeout is transient. */
  readonly requestTimeout?: Duration.DurationInput
  /** Transient-failure retries: total attempts (default 5), first delay (200 ms, doubling, capped at 5 s). */
  readonly retry?: { readonly attempts?: number; readonly baseDelay?: Duration.DurationInput; readonly maxDelay?: Duration.DurationInput }
  /** Task polling: first delay (150 ms), growth factor (1.6), cap (2.5 s). */
  readonly taskPoll?: { readonly initial?: Duration.DurationInput; readonly factor?: number; readonly max?: Duration.DurationInput }
  /** Default bound of `waitTask` (10 min). */
  readonly taskTimeout?: Duration.DurationInput
  /** How long "no such task" right after submission counts as "not visible yet" (10 s). */
  readonly taskVisibilityGrace?: Duration.DurationInput
}

export class PveSettingsError extends Data.TaggedError("PveSettingsError")<{ readonly field: string; readonly problem: string }> {
  override get message() {
    return `Proxmox API settings: ${this.field} ${this.problem}`
  }
}

const TOKEN_ID = /^[^\s@!=]+@[^\s@!=]+![^\s@!=]+$/

/** Header the interceptor below copies the HTTP reason phrase into: PVE's message lives there. */
const STATUS_TEXT_HEADER = "x-nstance-pve-status-text"

/**
 * @effect/platform's response has no `statusText`, and PVE puts its error message in the status line
 * (`500 VM 101 is running - destroy failed`); this undici interceptor hands the reason phrase on as a header.
 */
const statusTextInterceptor: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) =>
  dispatch(options, {
    onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
    onRequestUpgrade: (controller, status, headers, socket) => handler.onRequestUpgrade?.(controller, status, headers, socket),
    onResponseStart: (controller, status, headers, statusMessage) =>
      handler.onResponseStart?.(controller, status, { ...headers, [STATUS_TEXT_HEADER]: statusMessage ?? "" }, statusMessage),
    onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
    onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
    onResponseError: (controller, error) => handler.onResponseError?.(controller, error)
  })


const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null && !Array.isArray(u)

/** The codes and messages along an error's `cause` chain (undici wraps socket and TLS errors). */
const describeCause = (cause: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = cause
  for (let depth = 0; depth < 5 && isRecord(current); depth++) {
    const code = typeof current["code"] === "string" ? current["code"] : undefined
    const message = typeof current["message"] === "string" ? current["message"] : undefined
    const text = [code, message].filter((s) => s !== undefined && s !== "").join(": ")
    if (text !== "" && !parts.includes(text)) parts.push(text)
    current = current["cause"]
  }
  if (parts.length === 0) return String(cause)
  return parts.join(" <- ")
}

const tlsHint = (text: string) =>
  /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(text)
    ? `TLS certificate not trusted (${text}); set insecure_tls for this provider or trust the PVE CA`
    : text

export const makeProxmoxApiHttp = (settings: ProxmoxApiSettings) =>
  Effect.gen(function* () {
    const apiUrl = (settings.apiUrl ?? DEFAULT_API_URL).replace(/\/+$/, "")
    const parsedUrl = yield* Effect.try({
      try: () => new URL(apiUrl),
      catch: () => new PveSettingsError({ field: "apiUrl", problem: `must be an http(s) URL, got ${JSON.stringify(apiUrl)}` })
    })
    if (parsedUrl.protocol !== "https:" && parsedUrl.protocol !== "http:") {
      return yield* new PveSettingsError({ field: "apiUrl", problem: `must be an http(s) URL, got ${JSON.stringify(apiUrl)}` })
    }
    if (!TOKEN_ID.test(settings.tokenId)) {
      return yield* new PveSettingsError({ field: "tokenId", problem: `must look like user@realm!tokenid, got ${JSON.stringify(settings.tokenId)}` })
    }
    const secret = typeof settings.tokenSecret === "string" ? settings.tokenSecret : Redacted.value(settings.tokenSecret)
    if (secret.trim() === "") return yield* new PveSettingsError({ field: "tokenSecret", problem: "is empty" })
    const authorization = Redacted.make(`PVEAPIToken=${settings.tokenId}=${secret}`)

    const requestTimeout = Duration.decode(settings.requestTimeout ?? "30 seconds")
    const pollSchedule = taskPollSchedule(settings.taskPoll)
    const defaultTaskTimeout = settings.taskTimeout ?? "10 minutes"
    const visibilityGraceMs = Duration.toMillis(Duration.decode(settings.taskVisibilityGrace ?? "10 seconds"))

    const agent = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Agent({
          connect: {
            rejectUnauthorized: settings.insecureTls !== true,
            ...(settings.ca === undefined ? {} : { ca: settings.ca })
          },
          keepAliveTimeout: 4_000
        })
      ),
      (a) => Effect.promise(() => a.destroy())
    )
    const client = NodeHttpClient.makeUndici(agent.compose(statusTextInterceptor))

    const buildRequest = <A>(spec: CallSpec<A>): HttpClientRequest.HttpClientRequest => {
      const query = spec.query === undefined ? [] : formEntries(spec.query)
      const url = `${apiUrl}${spec.path}${query.length > 0 ? `?${new URLSearchParams(query).toString()}` : ""}`
      let request = HttpClientRequest.make(spec.method)(url).pipe(
        HttpClientRequest.setHeader("Authorization", Redacted.value(authorization)),
        HttpClientRequest.setHeader("Accept", "application/json")
      )
      if (spec.upload !== undefined) {
        const form = new FormData()
        form.append("content", spec.upload.content)
        // undici's own FormData: the global one belongs to Node's bundled undici, which this Agent cannot serialise.
        form.append("filename", new Blob([Uint8Array.from(spec.upload.data)]), spec.upload.filename)
        request = HttpClientRequest.bodyFormData(request, form)
      }
      else if (spec.form !== undefined) {
        // URLSearchParams encodes `;`, `=` and `,` inside values, which pveproxy would otherwise split on.
        request = HttpClientRequest.bodyText(request, new URLSearchParams(formEntries(spec.form)).toString(), "application/x-www-form-urlencoded")
      }
      return request
    }

    /** One HTTP exchange: status ≥ 400 and transport failures become PveApiError, a bad body PveDecodeError. */
    const exchange = <A>(spec: CallSpec<A>, attempt: number): Effect.Effect<A, PveError> => {
      const apiError = (status: number, pveMessage: string, errors?: Readonly<Record<string, string>>) =>
        pveApiError(spec, attempt, status, pveMessage, errors)
      const transport = (error: HttpClientError.HttpClientError) => apiError(NO_RESPONSE, tlsHint(describeCause(error.cause ?? error)))
      const decodeError = (field: string, problem: string) => pveDecodeError(spec, field, problem)

      const run = Effect.gen(function* () {
        const response = yield* client.execute(buildRequest(spec)).pipe(Effect.mapError(transport))
        const text = yield* response.text.pipe(Effect.mapError(transport))
        let json: unknown
        let jsonOk = true
        try {
          json = text === "" ? undefined : JSON.parse(text)
        } catch {
          jsonOk = false
        }
        if (response.status >= 400) {
          const body = jsonOk ? Schema.decodeUnknownOption(ErrorBody)(json) : Option.none()
          const statusText = (response.headers[STATUS_TEXT_HEADER] ?? "").trim()
          const bodyMessage = Option.flatMap(body, (b) => Option.fromNullable(b.message)).pipe(Option.getOrElse(() => ""))
          const pveMessage = (statusText !== "" ? statusText : bodyMessage.trim() !== "" ? bodyMessage.trim() : `HTTP ${response.status}`).replace(/\.$/, "")
          const rawErrors = Option.flatMap(body, (b) => Option.fromNullable(b.errors))
          const errors = Option.map(rawErrors, (e) =>
            Object.fromEntries(Object.entries(e).map(([k, v]) => [k, (typeof v === "string" ? v : JSON.stringify(v)).trim()]))
          )
          return yield* Effect.fail(apiError(response.status, pveMessage, Option.getOrUndefined(errors)))
        }
        // pveproxy never redirects: a 3xx comes from something in front of it (a login page, http → https),
        // and its body is not the API's. One line naming where it points, not a decode failure of that body.
        if (response.status >= 300) {
          const location = response.headers["location"]
          return yield* Effect.fail(apiError(
            response.status,
            `redirected${location === undefined ? "" : ` to ${location.slice(0, 200)}`}: PROXMOX_API_URL must be the API itself (https://<host>:8006/api2/json)`
          ))
        }
        if (!jsonOk) return yield* Effect.fail(decodeError("(body)", `not JSON: ${JSON.stringify(text.slice(0, 80))}`))
        return yield* decodeAnswer(spec, json)
      })
      // Counted (nstance_pve_* metrics) by `retryingCall` and `waitTask` around each exchange, not here.
      return run.pipe(
        Effect.timeoutFail({ duration: requestTimeout, onTimeout: () => apiError(NO_RESPONSE, `request timed out after ${Duration.format(requestTimeout)}`) })
      )
    }

    /** A call with bounded, jittered retries of transient failures; each retry is logged. */
    const call = retryingCall(exchange, settings.retry)

    return makeProxmoxApiShape({ call, exchange, pollSchedule, defaultTaskTimeout, visibilityGraceMs })
  })

/** The HTTP client as a Layer; its undici Agent lives as long as the Layer. */
export const ProxmoxApiHttp = (settings: ProxmoxApiSettings): Layer.Layer<ProxmoxApi, PveSettingsError> =>
  Layer.scoped(ProxmoxApi, makeProxmoxApiHttp(settings))
