/**
 * An in-process `AgentBackend`: the agent endpoint's backend in tests, benches and standalone simulator
 * runs, where no shard leader stands behind it. Besides the contract it lets the caller announce expected
 * registrations, flip leadership and read back everything recorded (which tests scan for leaked nonces).
 */
import { Clock, Effect, Layer, Option } from "effect"
import { type InvalidCertificate, NonceReused, NotLeader, UnknownInstance } from "../domain/agent/errors.js"
import { supersededRefusal } from "../domain/agent/supersession.js"
import {
  AgentBackend,
  type AgentBackendShape,
  type AgentHealthStatus,
  type RegisteredAgent,
  type RegistrationState,
  type RenewedCertificate
} from "../services/AgentBackend.js"

export interface HealthReport {
  readonly instanceId: string
  readonly status: AgentHealthStatus
  readonly atMillis: number
}

export interface MemoryAgentBackend extends AgentBackendShape {
  /** An instance now waits for registration with the nonce of `nonceHash`. */
  readonly expect: (instanceId: string, expected: { tenant: string; group: string; nonceHash: string }) => Effect.Effect<void>
  /** The instance is gone: later calls for it fail with `UnknownInstance`. */
  readonly forget: (instanceId: string) => Effect.Effect<void>
  /** None: this replica leads; Some(addr): `NotLeader{leaderAddr: addr}`. */
  readonly setLeaderRedirect: (redirect: Option.Option<string>) => Effect.Effect<void>
  readonly registrations: Effect.Effect<ReadonlyArray<RegisteredAgent>>
  readonly healthReports: Effect.Effect<ReadonlyArray<HealthReport>>
  readonly renewals: Effect.Effect<ReadonlyArray<RenewedCertificate>>
  /** What `recordFileCertificates` recorded. */
  readonly fileCertificates: Effect.Effect<ReadonlyArray<{ readonly instanceId: string; readonly file: string; readonly serial: string; readonly notAfter: Date }>>
}

export const makeMemoryAgentBackend = (): MemoryAgentBackend => {
  const states = new Map<string, RegistrationState>()
  /** Whose each instance is and what its agent registered, for `registeredInstance`. */
  const owners = new Map<string, { tenant: string; group: string }>()
  const registered = new Map<string, RegisteredAgent>()
  const fileCertificates: Array<{ instanceId: string; file: string; serial: string; notAfter: Date }> = []
  const registrations: Array<RegisteredAgent> = []
  const healthReports: Array<HealthReport> = []
  const renewals: Array<RenewedCertificate> = []
  let redirect: Option.Option<string> = Option.none()

  const state = (instanceId: string): RegistrationState => states.get(instanceId) ?? { _tag: "Unknown" }
  /** The registration of an instance whose newest certificate is `serial`. */
  const current = (instanceId: string, serial: string) =>
    Effect.suspend((): Effect.Effect<Extract<RegistrationState, { _tag: "Registered" }>, UnknownInstance | InvalidCertificate> => {
      const registered = state(instanceId)
      if (registered._tag !== "Registered") return Effect.fail(new UnknownInstance({ instanceId }))
      const refusal = supersededRefusal(instanceId, registered.certificateSerial, serial)
      return refusal === undefined ? Effect.succeed(registered) : Effect.fail(refusal)
    })

  return {
    leaderRedirect: Effect.sync(() => redirect),
    registrationState: (instanceId) => Effect.sync(() => state(instanceId)),
    recordRegistered: (registration) =>
      Effect.suspend((): Effect.Effect<void, NonceReused | UnknownInstance> => {
        const current = state(registration.instanceId)
        if (current._tag === "Unknown") return Effect.fail(new UnknownInstance({ instanceId: registration.instanceId }))
        if (current._tag === "Registered" || current.nonceHash !== registration.nonceHash) {
          return Effect.fail(new NonceReused({ instanceId: registration.instanceId }))
        }
        states.set(registration.instanceId, { _tag: "Registered", nonceHash: registration.nonceHash, certificateSerial: registration.certificateSerial })
        owners.set(registration.instanceId, { tenant: current.tenant, group: current.group })
        registered.set(registration.instanceId, registration)
        registrations.push(registration)
        return Effect.void
      }),
    recordHealth: (caller, status) =>
      Effect.suspend((): Effect.Effect<void, UnknownInstance | InvalidCertificate | NotLeader> =>
        Option.isSome(redirect)
          ? Effect.fail(new NotLeader({ leaderAddr: redirect.value }))
          : Effect.zipWith(current(caller.instanceId, caller.certificateSerial), Clock.currentTimeMillis, (_, atMillis) =>
            void healthReports.push({ instanceId: caller.instanceId, status, atMillis }))),
    recordRenewed: (renewal) =>
      Effect.map(current(renewal.instanceId, renewal.presentedSerial), (registered) => {
        states.set(renewal.instanceId, { ...registered, certificateSerial: renewal.certificateSerial })
        renewals.push(renewal)
      }),
    recordFileCertificates: (instanceId, certificates) =>
      Effect.sync(() => void fileCertificates.push(...certificates.map((c) => ({ instanceId, ...c })))),
    registeredInstance: (caller) =>
      Option.isSome(redirect)
        ? Effect.fail(new NotLeader({ leaderAddr: redirect.value }))
        : Effect.map(current(caller.instanceId, caller.certificateSerial), () => {
          const owner = owners.get(caller.instanceId) ?? { tenant: "", group: "" }
          const agent = registered.get(caller.instanceId)
          return { instanceId: caller.instanceId, ...owner, ipv4: agent?.ips.ipv4, ipv6: agent?.ips.ipv6, hostname: agent?.hostname }
        }),
    expect: (instanceId, expected) => Effect.sync(() => void states.set(instanceId, { _tag: "Awaiting", ...expected })),
    forget: (instanceId) => Effect.sync(() => void states.delete(instanceId)),
    setLeaderRedirect: (next) => Effect.sync(() => void (redirect = next)),
    registrations: Effect.sync(() => [...registrations]),
    healthReports: Effect.sync(() => [...healthReports]),
    renewals: Effect.sync(() => [...renewals]),
    fileCertificates: Effect.sync(() => [...fileCertificates])
  }
}

/** A fresh, empty backend that leads; use `makeMemoryAgentBackend` to also get the controls. */
export const AgentBackendMemory = Layer.sync(AgentBackend, makeMemoryAgentBackend)
