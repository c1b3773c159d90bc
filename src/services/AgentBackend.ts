/**
 * What the agent endpoint needs from the shard: whether this replica leads, what registration an instance
 * awaits, and where registrations, health reports and renewals go. The shard's leader implements it on its
 * event log; tests and the simulator use `AgentBackendMemory`. Nonces reach it only as hashes.
 */
import { Context, type Effect, type Option } from "effect"
import type { InvalidCertificate, NonceReused, NotLeader, UnknownInstance } from "../domain/agent/errors.js"

export type AgentHealthStatus = "healthy" | "degraded" | "unhealthy"

/** The agent a request came from, as its client certificate says. */
export interface AgentCaller {
  readonly instanceId: string
  /** The serial of the certificate it presented: anything but the instance's newest is superseded. */
  readonly certificateSerial: string
}

/** Where an instance stands with respect to registration. */
export type RegistrationState =
  /** No such instance on this shard (never created, deleted, or another shard's). */
  | { readonly _tag: "Unknown" }
  /** Created and waiting for its agent; only the nonce with this hash may register it. */
  | {
    readonly _tag: "Awaiting"
    readonly tenant: string
    readonly group: string
    readonly nonceHash: string
  }
  /** Its agent has registered already (with the nonce of that hash); any further nonce is a reuse. */
  | { readonly _tag: "Registered"; readonly nonceHash: string; readonly certificateSerial?: string | undefined }

export interface RegisteredAgent {
  readonly instanceId: string
  readonly ips: { readonly ipv4?: string | undefined; readonly ipv6?: string | undefined }
  readonly hostname?: string | undefined
  /** SHA-256 hex of the nonce that was used; the nonce itself never leaves the endpoint. */
  readonly nonceHash: string
  readonly certificateSerial: string
  readonly certificateNotAfter: Date
}

export interface RenewedCertificate {
  readonly instanceId: string
  /** The serial of the certificate the renewal was asked with: must still be the newest. */
  readonly presentedSerial: string
  readonly certificateSerial: string
  readonly certificateNotAfter: Date
}

/** A registered instance as its files need it: whose it is and what its agent registered. */
export interface RegisteredInstance {
  readonly instanceId: string
  readonly tenant: string
  readonly group: string
  readonly ipv4?: string | undefined
  readonly ipv6?: string | undefined
  readonly hostname?: string | undefined
}

export interface AgentBackendShape {
  /**
   * None while this replica leads the shard; otherwise the leader's address (empty when unknown), which
   * the endpoint returns as `NotLeader{leaderAddr}`. Checked before every procedure but `recordHealth`,
   * which checks leadership itself.
   */
  readonly leaderRedirect: Effect.Effect<Option.Option<string>>
  /** Fails `NotLeader` when leadership was lost since `leaderRedirect` was checked. */
  readonly registrationState: (instanceId: string) => Effect.Effect<RegistrationState, NotLeader>
  /**
   * Records the registration (`Registered{ips, hostname}` in the event log). Must be atomic with respect
   * to the state: a second registration of the same instance fails with `NonceReused`.
   */
  readonly recordRegistered: (registration: RegisteredAgent) => Effect.Effect<void, NonceReused | UnknownInstance | NotLeader>
  /**
   * Liveness: the instance's agent is up and says `status`. Fails `NotLeader{leaderAddr}` (as
   * `leaderRedirect` would name it) when this replica does not lead: the endpoint does not check
   * `leaderRedirect` first, so a report costs one leadership check. A superseded certificate fails
   * `InvalidCertificate{Superseded}`. In memory, never waiting: the agent channel answers reports in the
   * fiber that serves all its connections, so a report that waited would hold up every agent's.
   */
  readonly recordHealth: (caller: AgentCaller, status: AgentHealthStatus) => Effect.Effect<void, UnknownInstance | InvalidCertificate | NotLeader>
  /**
   * Makes `certificateSerial` the instance's only accepted certificate (`CertificateRenewed` in the log);
   * fails for an instance that is gone or a presented certificate already superseded, and then the new
   * certificate is never handed out.
   */
  readonly recordRenewed: (renewal: RenewedCertificate) => Effect.Effect<void, UnknownInstance | InvalidCertificate | NotLeader>
  /**
   * The caller's instance, registered and presenting its newest certificate (else `UnknownInstance` /
   * `InvalidCertificate{Superseded}`): what its files are made for. Fails `NotLeader` off the leader.
   */
  readonly registeredInstance: (caller: AgentCaller) => Effect.Effect<RegisteredInstance, UnknownInstance | InvalidCertificate | NotLeader>
  /** Records certificates issued for the instance's files (`FileCertificatesIssued`: file, serial, expiry). */
  readonly recordFileCertificates: (
    instanceId: string,
    certificates: ReadonlyArray<{ readonly file: string; readonly serial: string; readonly notAfter: Date }>
  ) => Effect.Effect<void, NotLeader>
}

export class AgentBackend extends Context.Tag("nstance/AgentBackend")<AgentBackend, AgentBackendShape>() {}
