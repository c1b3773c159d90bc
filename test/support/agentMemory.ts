/**
 * The agent endpoints reached in memory, for worlds on a TestClock or a virtual clock, where real TLS
 * cannot run (its certificate checks read the wall clock). The client certificate a TLS handshake would
 * carry travels beside each agent-channel call instead, and is checked exactly as the TLS one is.
 */
import { RpcTest } from "@effect/rpc"
import { Clock, Effect, Layer, type Scope } from "effect"
import type { AgentIdentity, AgentRpcClient, AgentTransport, RegistrationRpcClient } from "../../src/agent/AgentClient.js"
import { InvalidCertificate } from "../../src/domain/agent/errors.js"
import { AgentAuthentication, AgentRpcs, RegistrationRpcs } from "../../src/rpc/AgentRpc.js"
import { AgentHandlersLive, type AgentServiceOptions, authenticateAgentCertificate, RegistrationHandlersLive, type RegistrationServiceOptions } from "../../src/rpc/AgentServer.js"
import { AgentBackend, type AgentBackendShape } from "../../src/services/AgentBackend.js"
import { ClusterPki, type ClusterPkiShape, type VerifiedClientCertificate } from "../../src/services/ClusterPki.js"

/** A replica's two agent endpoints, reached in memory. */
export interface AgentEndpoints {
  readonly registration: RegistrationRpcClient
  readonly channel: AgentRpcClient
}

/** The in-memory stand-in for the TLS client certificate of an agent-channel call (base64 of its PEM). */
const CERTIFICATE_HEADER = "x-test-client-certificate"

/**
 * `AgentAuthentication` in memory: the certificate from the call's header, checked as the TLS one is — the
 * chain once per certificate (a TLS connection verifies it once, at its first request), its expiry at every
 * call — so a world's thousands of health reports do not each parse and verify X.509 again.
 */
export const AgentAuthenticationInMemory = (pki: ClusterPkiShape) => {
  const verified = new Map<string, VerifiedClientCertificate>()
  return Layer.succeed(AgentAuthentication, AgentAuthentication.of(({ headers }) =>
    Effect.gen(function* () {
      const encoded = headers[CERTIFICATE_HEADER]
      if (encoded === undefined) return yield* new InvalidCertificate({ reason: "Missing", detail: "no client certificate" })
      const known = verified.get(encoded)
      if (known !== undefined) {
        if ((yield* Clock.currentTimeMillis) <= known.notAfter.getTime()) return known
        return yield* new InvalidCertificate({ reason: "Expired", detail: `expired at ${known.notAfter.toISOString()}` })
      }
      const certificate = yield* authenticateAgentCertificate(pki, Buffer.from(encoded, "base64").toString("utf8"))
      verified.set(encoded, certificate)
      return certificate
    })
  ))
}

/** Both endpoints' handlers on `pki` and `backend`, reached in memory for as long as the scope is open. */
export const makeAgentEndpoints = (
  pki: ClusterPkiShape,
  backends: { readonly registration: AgentBackendShape; readonly channel: AgentBackendShape },
  options: RegistrationServiceOptions & AgentServiceOptions
): Effect.Effect<AgentEndpoints, never, Scope.Scope> =>
  Effect.gen(function* () {
    const services = (backend: AgentBackendShape) => Layer.merge(Layer.succeed(ClusterPki, pki), Layer.succeed(AgentBackend, backend))
    const registration = RegistrationHandlersLive(options).pipe(Layer.provide(services(backends.registration)))
    const channel = Layer.merge(AgentHandlersLive(options).pipe(Layer.provide(services(backends.channel))), AgentAuthenticationInMemory(pki))
    return {
      registration: yield* RpcTest.makeClient(RegistrationRpcs).pipe(Effect.provide(registration)),
      channel: yield* RpcTest.makeClient(AgentRpcs).pipe(Effect.provide(channel))
    }
  })

/** The agent channel's calls on `channel`, each carrying `identity`'s certificate. */
export const presenting = (channel: AgentRpcClient, identity: AgentIdentity): AgentRpcClient => {
  const headers = { [CERTIFICATE_HEADER]: Buffer.from(identity.certificatePem).toString("base64") }
  return {
    ReportHealth: (payload) => channel.ReportHealth(payload, { headers }),
    RenewCertificate: (payload) => channel.RenewCertificate(payload, { headers }),
    SubmitKey: (payload) => channel.SubmitKey(payload, { headers }),
    ReceiveFiles: (payload) => channel.ReceiveFiles(payload, { headers })
  }
}

/** A transport to one replica's endpoints in memory, whatever the URL. */
export const memoryTransport = (endpoints: AgentEndpoints): AgentTransport => ({
  registration: () => Effect.succeed(endpoints.registration),
  channel: (_url, identity) => Effect.succeed(presenting(endpoints.channel, identity))
})
