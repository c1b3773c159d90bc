/**
 * The agent endpoint's backend. Every replica serves the endpoint (`agentEndpoint.ts`); what answers a
 * request is the current leadership term's `AgentTerm`, reached through the replica's handle
 * (`withLeader`), and a standby — or a deposed leader, whose term is unpublished the moment the lease is
 * lost — answers `NotLeader{leaderAddr}`. Within a term, what an instance awaits comes from the folded
 * event log (the hash of its newest nonce, `NonceIssued`), a registration becomes `Registered{ips,
 * hostname}` in the log, and health reports are kept in memory as last-seen times for the liveness check
 * of that same term. A leader fenced before its lease notices finds out at its next append and answers
 * `NotLeader` too.
 */
import { Clock, Context, Effect, Layer, Option } from "effect"
import { CertificateRenewed, FileCertificatesIssued, Registered } from "../domain/shard/events.js"
import { getInstance, type Instance } from "../domain/shard/state.js"
import { type InvalidCertificate, NonceReused, NotLeader, UnknownInstance } from "../domain/agent/errors.js"
import { supersededRefusal } from "../domain/agent/supersession.js"
import type { AgentBackendShape, RegistrationState } from "../services/AgentBackend.js"
import { EventLog } from "../services/EventLog.js"
import { recordRegistration } from "../metrics/metrics.js"
import { ShardContext } from "./ShardContext.js"
import { NotLeaderHere, ShardReplica, type ShardReplicaShape, withLeader } from "./ShardReplica.js"

/** Last health report per instance (epoch millis, Effect `Clock`), shared with the liveness check. */
export type HealthSeen = Map<string, number>

/** Where `instance` stands with respect to registration. */
export const registrationStateOf = (instance: Instance | undefined): RegistrationState => {
  if (instance === undefined || instance.nonceHash === undefined) return { _tag: "Unknown" }
  switch (instance.phase) {
    case "starting":
    case "running":
      return { _tag: "Awaiting", tenant: instance.tenant ?? "", group: instance.group ?? "", nonceHash: instance.nonceHash }
    case "registered":
      return { _tag: "Registered", nonceHash: instance.nonceHash, certificateSerial: instance.certificateSerial }
    default:
      return { _tag: "Unknown" }
  }
}

/** The leader-side backend of one term; `leaderRedirect` is always None (the term is the leader). */
export const makeAgentBackendShard = (healthSeen: HealthSeen) =>
  Effect.gen(function* () {
    const log = yield* EventLog
    // Check and append under one permit: two registrations of one instance never both succeed.
    const lock = yield* Effect.makeSemaphore(1)
    const instance = (instanceId: string) => Effect.map(log.state, (state) => Option.getOrUndefined(getInstance(state, instanceId)))
    /** A registered instance whose newest certificate is `serial`. */
    const registeredWith = (instanceId: string, serial: string): Effect.Effect<Instance, UnknownInstance | InvalidCertificate> =>
      Effect.flatMap(instance(instanceId), (current): Effect.Effect<Instance, UnknownInstance | InvalidCertificate> => {
        if (current === undefined || current.phase !== "registered") return Effect.fail(new UnknownInstance({ instanceId }))
        const refusal = supersededRefusal(instanceId, current.certificateSerial, serial)
        return refusal === undefined ? Effect.succeed(current) : Effect.fail(refusal)
      })
    /** An append that failed (fenced, bucket away): the agent hears `NotLeader` and retries. */
    const notRecorded = (instanceId: string, what: string) => <A, E extends { readonly _tag: string }>(append: Effect.Effect<A, E>) =>
      append.pipe(Effect.catchAll((error) =>
        Effect.logWarning(`${instanceId}: ${what} not recorded (${error._tag}); the agent will retry`).pipe(
          Effect.zipRight(Effect.fail(new NotLeader({ leaderAddr: "" })))
        )))

    const backend: AgentBackendShape = {
      leaderRedirect: Effect.succeed(Option.none()),
      registrationState: (instanceId) => Effect.map(instance(instanceId), registrationStateOf),
      recordRegistered: (registration) =>
        lock.withPermits(1)(Effect.gen(function* () {
          const { instanceId } = registration
          const state = registrationStateOf(yield* instance(instanceId))
          if (state._tag === "Unknown") return yield* new UnknownInstance({ instanceId })
          if (state._tag === "Registered" || state.nonceHash !== registration.nonceHash) return yield* new NonceReused({ instanceId })
          const ips = [registration.ips.ipv4, registration.ips.ipv6].filter((ip): ip is string => ip !== undefined && ip !== "")
          const at = yield* Clock.currentTimeMillis
          yield* log.append([Registered.make({
            instanceId,
            at,
            ips,
            ...(registration.hostname === undefined ? {} : { hostname: registration.hostname }),
            certificateSerial: registration.certificateSerial
          })]).pipe(notRecorded(instanceId, "registration"))
          healthSeen.set(instanceId, at)
          yield* recordRegistration
          yield* Effect.logInfo(`${instanceId}: registered (${ips.join(", ") || "no IPs"})${registration.hostname === undefined ? "" : ` as ${registration.hostname}`}`)
        })),
      recordHealth: (caller) =>
        Effect.gen(function* () {
          yield* registeredWith(caller.instanceId, caller.certificateSerial)
          healthSeen.set(caller.instanceId, yield* Clock.currentTimeMillis)
        }),
      // Under the registration permit: of two renewals with one certificate, only the first is recorded.
      recordRenewed: (renewal) =>
        lock.withPermits(1)(Effect.gen(function* () {
          yield* registeredWith(renewal.instanceId, renewal.presentedSerial)
          const at = yield* Clock.currentTimeMillis
          yield* log.append([CertificateRenewed.make({ instanceId: renewal.instanceId, at, certificateSerial: renewal.certificateSerial })]).pipe(
            notRecorded(renewal.instanceId, "certificate renewal")
          )
        })),
      recordFileCertificates: (instanceId, certificates) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) =>
          log.append([FileCertificatesIssued.make({
            instanceId,
            at,
            certificates: certificates.map((c) => ({ file: c.file, serial: c.serial, notAfter: c.notAfter.getTime() }))
          })])).pipe(notRecorded(instanceId, "file certificate issuance"), Effect.asVoid),
      registeredInstance: (caller) =>
        Effect.map(registeredWith(caller.instanceId, caller.certificateSerial), (current) => ({
          instanceId: caller.instanceId,
          tenant: current.tenant ?? "",
          group: current.group ?? "",
          ipv4: current.ips.find((ip) => !ip.includes(":")),
          ipv6: current.ips.find((ip) => ip.includes(":")),
          hostname: current.hostname
        }))
    }
    return backend
  })

/** The agent registration state of one leadership term: its backend and the health last-seen times. */
export interface AgentTermShape {
  readonly healthSeen: HealthSeen
  readonly backend: AgentBackendShape
}

export class AgentTerm extends Context.Tag("nstance/AgentTerm")<AgentTerm, AgentTermShape>() {}

/** Fresh for each term: reports sent to an earlier term's leader are not carried over. */
export const AgentTermLive = Layer.effect(
  AgentTerm,
  Effect.gen(function* () {
    const healthSeen: HealthSeen = new Map()
    return { healthSeen, backend: yield* makeAgentBackendShard(healthSeen) }
  })
)

/**
 * The backend of an agent endpoint (`registration` or the `agent` channel) on any replica: each call runs
 * on the current term's `AgentTerm`, or fails `NotLeader` with where the leader serves that endpoint.
 */
export const makeAgentBackendReplica = (replica: ShardReplicaShape, endpoint: "registration" | "agent"): AgentBackendShape => {
  const onLeader = <A, E>(f: (term: AgentTermShape) => Effect.Effect<A, E>): Effect.Effect<A, E | NotLeader> =>
    // Annotated with the term, as the leader scope's own lines are.
    withLeader(endpoint, Effect.flatMap(Effect.all([AgentTerm, ShardContext]), ([term, shard]) => f(term).pipe(Effect.annotateLogs({ term: shard.term })))).pipe(
      Effect.catchIf(
        (error): error is NotLeaderHere => error instanceof NotLeaderHere,
        (error) => Effect.fail(new NotLeader({ leaderAddr: error.leaderAddr }))
      ),
      Effect.provideService(ShardReplica, replica)
    )
  return {
    leaderRedirect: Effect.flatMap(replica.currentTerm, (term) =>
      Option.isSome(term) ? Effect.succeedNone : Effect.map(replica.leaderAddress(endpoint), Option.some)),
    registrationState: (instanceId) => onLeader((term) => term.backend.registrationState(instanceId)),
    recordRegistered: (registration) => onLeader((term) => term.backend.recordRegistered(registration)),
    // The hot path: `onLeader`'s check without its provide and annotation (recording a report neither uses the
    // term's services nor logs). The term is read once, as `withLeader` does: a report accepted goes to the
    // `healthSeen` of the term that was current, and a deposed replica (its term unpublished) answers NotLeader.
    recordHealth: (caller, status) =>
      Effect.flatMap(replica.currentTerm, (term) =>
        Option.isSome(term)
          ? Context.get(term.value.context, AgentTerm).backend.recordHealth(caller, status)
          : Effect.flatMap(replica.leaderAddress(endpoint), (leaderAddr) => Effect.fail(new NotLeader({ leaderAddr })))),
    recordRenewed: (renewal) => onLeader((term) => term.backend.recordRenewed(renewal)),
    registeredInstance: (caller) => onLeader((term) => term.backend.registeredInstance(caller)),
    recordFileCertificates: (instanceId, certificates) => onLeader((term) => term.backend.recordFileCertificates(instanceId, certificates))
  }
}
