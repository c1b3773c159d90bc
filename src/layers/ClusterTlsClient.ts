/**
 * The HTTP client every nstance client speaks through (nstance-admin, nstance-agent, the simulator's
 * guests): HTTPS, TLS 1.3 only, trusting only the cluster CA — not the system's store — so a credential
 * (the admin token, a registration nonce) goes to no server the cluster CA did not sign, whatever address a
 * `NotLeader` answer names. Undici's pool keeps connections alive and pipelines: a TLS handshake per call
 * would cost an agent's health report (and the server) several times the call itself.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Redacted } from "effect"
import { Agent } from "undici"

/** A client certificate the TLS handshake presents (an operator's), with its private key. */
export interface TlsClientCertificate {
  readonly certificatePem: string
  readonly privateKeyPem: Redacted.Redacted<string>
}

/** With `clientCertificate`, every connection presents it; the trust stays the cluster CA alone either way. */
export const ClusterTlsClient = (caPem: string, clientCertificate?: TlsClientCertificate) =>
  NodeHttpClient.layerUndiciWithoutDispatcher.pipe(
    Layer.provide(Layer.scoped(
      NodeHttpClient.Dispatcher,
      Effect.acquireRelease(
        Effect.sync(() =>
          new Agent({
            connect: {
              ca: caPem,
              minVersion: "TLSv1.3",
              maxVersion: "TLSv1.3",
              ...(clientCertificate === undefined
                ? {}
                : { cert: clientCertificate.certificatePem, key: Redacted.value(clientCertificate.privateKeyPem) })
            }
          })
        ),
        (agent) => Effect.promise(() => agent.destroy())
      )
    ))
  )

/** TLS failures a client meets, in the words an operator can act on. */
const TLS_FAILURES: Readonly<Record<string, string>> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "its TLS certificate is not signed by the cluster CA this client trusts",
  SELF_SIGNED_CERT_IN_CHAIN: "its TLS certificate is not signed by the cluster CA this client trusts",
  DEPTH_ZERO_SELF_SIGNED_CERT: "its TLS certificate is self-signed, not from the cluster CA",
  ERR_TLS_CERT_ALTNAME_INVALID: "its TLS certificate does not name the address dialled",
  CERT_HAS_EXPIRED: "its TLS certificate has expired",
  CERT_NOT_YET_VALID: "its TLS certificate is not valid yet (a clock off?)",
  ERR_SSL_WRONG_VERSION_NUMBER: "it does not speak TLS (plain HTTP?)",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ETIMEDOUT: "connection timed out",
  UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  ENOTFOUND: "the host name does not resolve"
}

/** Why a connection failed, from the first error code in `error`'s cause chain ("connection failed" without one). */
export const connectionFailure = (error: unknown): string => {
  let current: unknown = error
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    const code = "code" in current && typeof current.code === "string" ? current.code : undefined
    if (code !== undefined) return TLS_FAILURES[code] ?? `connection failed (${code})`
    current = "cause" in current ? current.cause : undefined
  }
  return "connection failed"
}
