/**
 * `source: "url"` user-data fetched over @effect/platform's HttpClient, against an HTTP server on 127.0.0.1:
 * a 200 body comes back byte for byte (after redirects), anything else — a 404, a port nobody listens on, an
 * answer slower than the timeout — is a transient failure (the create waits and retries), and a body larger
 * than the limit is a permanent one, read no further than the limit. The HttpClient is a Layer: a test
 * double stands in for it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { MAX_USERDATA_FETCH_BYTES } from "../../src/domain/config/userdata.js"
import { UserDataSourceHttp } from "../../src/layers/UserDataSourceHttp.js"
import { UserDataSource } from "../../src/services/UserDataSource.js"
import { freeLoopbackPort } from "../../src/app/embedded.js"

/** An HTTP server on 127.0.0.1 for the test's scope; `requests` counts what reached it by path. */
const serve = (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Server; readonly base: string; readonly requests: Map<string, number> }>((resume) => {
      const requests = new Map<string, number>()
      const server = createServer((req, res) => {
        requests.set(req.url ?? "", (requests.get(req.url ?? "") ?? 0) + 1)
        handler(req, res)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests })))
    }),
    ({ server }) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

const body = "#!/bin/sh\necho {{ .Instance.ID }}\n"

const handler = (req: IncomingMessage, res: ServerResponse) => {
  switch (req.url) {
    case "/user-data":
      res.writeHead(200, { "content-type": "text/plain" }).end(body)
      return
    case "/moved":
      res.writeHead(302, { location: "/user-data" }).end()
      return
    case "/large":
      res.writeHead(200, { "content-length": String(MAX_USERDATA_FETCH_BYTES + 1) }).end(Buffer.alloc(MAX_USERDATA_FETCH_BYTES + 1, 0x41))
      return
    case "/large-chunked":
      // No length announced: the reader must stop at the limit by itself.
      res.writeHead(200)
      for (let i = 0; i < 20; i++) res.write(Buffer.alloc(8 * 1024, 0x41))
      res.end()
      return
    case "/slow":
      setTimeout(() => res.writeHead(200).end(body), 2_000).unref()
      return
    default:
      res.writeHead(404).end("not found")
  }
}

const fetchWith = (url: string) =>
  Effect.flatMap(UserDataSource, (source) => source.fetch(new URL(url))).pipe(
    Effect.either,
    Effect.provide(UserDataSourceHttp({ timeout: "500 millis" }).pipe(Layer.provide(NodeHttpClient.layerUndici)))
  )

describe("user-data from a URL (HttpClient against 127.0.0.1)", () => {
  it.scopedLive("a 200 answer's body, byte for byte, also after a redirect", () =>
    Effect.gen(function* () {
      const { base, requests } = yield* serve(handler)
      for (const path of ["/user-data", "/moved"]) {
        const result = yield* fetchWith(`${base}${path}`)
        expect(Either.map(result, (bytes) => new TextDecoder().decode(bytes))).toEqual(Either.right(body))
      }
      expect(requests.get("/user-data")).toBe(2)
    }))

  it.scopedLive("a 404, a closed port and a slow answer are transient; a too-large body is not", () =>
    Effect.gen(function* () {
      const { base } = yield* serve(handler)
      const closed = yield* freeLoopbackPort
      const failure = (result: Either.Either<Uint8Array, { readonly transient: boolean; readonly message: string }>) =>
        Either.isLeft(result) ? { transient: result.left.transient, message: result.left.message } : { transient: undefined, message: "succeeded" }
      expect(failure(yield* fetchWith(`${base}/missing?token=secret`))).toEqual({
        transient: true,
        message: `user-data from ${base}/missing?…: HTTP 404 (only 200 is accepted)`
      })
      const refused = failure(yield* fetchWith(`http://127.0.0.1:${closed}/user-data`))
      expect(refused.transient).toBe(true)
      expect(refused.message).toMatch(new RegExp(`^user-data from http://127\\.0\\.0\\.1:${closed}/user-data: .*ECONNREFUSED`))
      expect(failure(yield* fetchWith(`${base}/slow`))).toEqual({ transient: true, message: `user-data from ${base}/slow: no complete answer within 500ms` })
      for (const path of ["/large", "/large-chunked"]) {
        expect(failure(yield* fetchWith(`${base}${path}`))).toEqual({ transient: false, message: `user-data from ${base}${path}: the answer is larger than 96 KiB` })
      }
    }))

  it.effect("the HttpClient is a Layer: a double answering 503 is a transient failure", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const double = Layer.succeed(HttpClient.HttpClient, HttpClient.make((request) => {
        seen.push(`${request.method} ${request.url}`)
        return Effect.succeed(HttpClientResponse.fromWeb(request, new Response("busy", { status: 503 })))
      }))
      const result = yield* Effect.flatMap(UserDataSource, (source) => source.fetch(new URL("https://config.example/ud"))).pipe(
        Effect.either,
        Effect.provide(UserDataSourceHttp().pipe(Layer.provide(double)))
      )
      expect(seen).toEqual(["GET https://config.example/ud"])
      expect(Either.isLeft(result) && result.left.transient).toBe(true)
      expect(Either.isLeft(result) && result.left.reason).toBe("HTTP 503 (only 200 is accepted)")
    }))
})
