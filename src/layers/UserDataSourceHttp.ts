/**
 * UserDataSource over @effect/platform's HttpClient: `GET` with a 5 s bound on the whole exchange (the
 * original waits forever, inside its single reconciler worker: behaviour §12 item 20), redirects followed
 * up to 5 times, only a 200 accepted, and the body read up to `MAX_USERDATA_FETCH_BYTES` — a larger one is
 * cut off, not buffered. The client is a Layer, so tests swap in their own.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Duration, Effect, Layer, Stream } from "effect"
import { MAX_USERDATA_FETCH_BYTES, redactedUrl } from "../domain/config/userdata.js"
import { UserDataFetchFailed, UserDataSource } from "../services/UserDataSource.js"

/** The longest a fetch may take, connection, redirects and body included. */
export const USER_DATA_FETCH_TIMEOUT = Duration.seconds(5)
export const USER_DATA_MAX_REDIRECTS = 5

const KIB = (bytes: number) => `${bytes / 1024} KiB`

/** The codes and messages along an error's cause chain (undici wraps socket errors), without the URL's query. */
const describe = (error: HttpClientError.HttpClientError): string => {
  const parts: Array<string> = []
  let current: unknown = error.cause ?? error
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const code = "code" in current && typeof current.code === "string" ? current.code : undefined
    const message = "message" in current && typeof current.message === "string" ? current.message : undefined
    const text = [code, message].filter((s) => s !== undefined && s !== "").join(": ")
    if (text !== "" && !parts.includes(text)) parts.push(text)
    current = "cause" in current ? current.cause : undefined
  }
  return parts.length === 0 ? "request failed" : parts.join(" <- ").replace(/\?\S*/g, "?…")
}

export interface UserDataSourceSettings {
  /** Bound on one fetch (default `USER_DATA_FETCH_TIMEOUT`). */
  readonly timeout?: Duration.DurationInput
}

export const makeUserDataSourceHttp = (settings: UserDataSourceSettings = {}) => Effect.gen(function* () {
  const timeout = Duration.decode(settings.timeout ?? USER_DATA_FETCH_TIMEOUT)
  const client = (yield* HttpClient.HttpClient).pipe(HttpClient.followRedirects(USER_DATA_MAX_REDIRECTS))
  const fetch = Effect.fn("UserDataSource.fetch")(function* (url: URL) {
    const shown = redactedUrl(url)
    const failed = (reason: string, transient: boolean) => new UserDataFetchFailed({ url: shown, reason, transient })
    const tooLarge = () => failed(`the answer is larger than ${KIB(MAX_USERDATA_FETCH_BYTES)}`, false)
    const exchange = Effect.gen(function* () {
      const response = yield* client.get(url, { headers: { accept: "*/*", "user-agent": "nstance" } }).pipe(
        Effect.mapError((error) => failed(describe(error), true))
      )
      if (response.status !== 200) return yield* failed(`HTTP ${response.status} (only 200 is accepted)`, true)
      const declared = Number(response.headers["content-length"] ?? Number.NaN)
      if (declared > MAX_USERDATA_FETCH_BYTES) return yield* tooLarge()
      const chunks: Array<Uint8Array> = []
      let size = 0
      yield* response.stream.pipe(
        Stream.mapError((error) => failed(describe(error), true)),
        Stream.runForEachWhile((chunk) =>
          Effect.sync(() => {
            size += chunk.length
            if (size > MAX_USERDATA_FETCH_BYTES) return false
            chunks.push(chunk)
            return true
          })
        )
      )
      if (size > MAX_USERDATA_FETCH_BYTES) return yield* tooLarge()
      const body = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        body.set(chunk, offset)
        offset += chunk.length
      }
      return body
    })
    return yield* exchange.pipe(
      Effect.timeoutFail({ duration: timeout, onTimeout: () => failed(`no complete answer within ${Duration.format(timeout)}`, true) })
    )
  })
  return UserDataSource.of({ fetch })
})

/** On whatever HttpClient the context has (tests give their own). */
export const UserDataSourceHttp = (settings: UserDataSourceSettings = {}): Layer.Layer<UserDataSource, never, HttpClient.HttpClient> =>
  Layer.effect(UserDataSource, makeUserDataSourceHttp(settings))

/** With its own undici connection pool, released with the layer. */
export const UserDataSourceLive: Layer.Layer<UserDataSource> = UserDataSourceHttp().pipe(Layer.provide(NodeHttpClient.layerUndici))
