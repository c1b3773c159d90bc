/**
 * Raw HTTPS for tests that speak to a TLS endpoint without the product's clients: a request that trusts the
 * given CA (or nothing), with the TLS versions a test wants to try.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { request } from "node:https"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { Effect } from "effect"
import type { SecureVersion } from "node:tls"

export interface HttpsAnswer {
  readonly status: number
  readonly text: string
}

export interface HttpsOptions {
  readonly method?: string
  /** A string is sent with Content-Length; chunks are sent chunked (no Content-Length). */
  readonly body?: string | ReadonlyArray<Uint8Array>
  readonly headers?: Readonly<Record<string, string>>
  /** The CA the server's certificate must chain to (absent: the system's). */
  readonly ca?: string
  readonly minVersion?: SecureVersion
  readonly maxVersion?: SecureVersion
}

/** One request to `url`; rejects when the connection or the handshake fails (the error says why). */
export const httpsRequest = (url: string, options: HttpsOptions = {}): Promise<HttpsAnswer> =>
  new Promise((resolve, reject) => {
    const target = new URL(url)
    const req = request({
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      method: options.method ?? "POST",
      headers: { "content-type": "application/ndjson", ...options.headers },
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.minVersion === undefined ? {} : { minVersion: options.minVersion }),
      ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion }),
      agent: false
    }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => { text += chunk })
      response.on("end", () => resolve({ status: response.statusCode ?? 0, text }))
      response.on("error", reject)
    })
    req.on("error", reject)
    if (typeof options.body === "string" || options.body === undefined) {
      req.end(options.body)
    } else {
      for (const chunk of options.body) req.write(chunk)
      req.end()
    }
  })

/** `caPem` in a file of its own, removed when the scope closes. */
export const writeCaFile = (caPem: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const directory = await mkdtemp(join(tmpdir(), "nstance-ca-"))
      await writeFile(join(directory, "ca.crt"), caPem)
      return join(directory, "ca.crt")
    }),
    (file) => Effect.promise(() => rm(dirname(file), { recursive: true, force: true }))
  )

