/**
 * Simulated guests' agents: a guest hook for `PveSimulator({ guestHook })` that does, for every booted VM
 * whose user-data carries `/etc/nstance/agent.json` (agent registration on), what the agent on a real VM
 * does — read the registration URL and nonce, call `RegisterAgent` over real HTTP with the VM's simulated
 * IPs (`10.20.{node number}.{vmid % 250}`) and hostname = instance ID, then `ReportHealth` on an interval
 * for as long as the simulator says that boot of the VM runs (a crash, stop or delete ends it), renewing its
 * certificate with `RenewCertificate` once the renew point the server gave has passed and signing later
 * reports with the new one; with `filesRoot`, it also keeps the VM's files there as `nstance-agent --files-dir`
 * does. A VM without `agent.json` boots as before, with no agent.
 */
import { join } from "node:path"
import { Clock, Duration, Effect, Either, FiberSet, Logger, LogLevel, Ref, Schedule, type Scope, Stream } from "effect"
import { makeFilesDir } from "../agent/filesDir.js"
import { type AgentClient, type AgentIdentity, makeAgentClient, type AgentTransport, type RenewCertificateError, tlsTransport } from "../agent/AgentClient.js"
import { type AgentRegistrationData, agentRegistrationOf } from "../domain/shard/userData.js"
import type { GuestBoot, GuestHook } from "./guest.js"
import type { SimModel } from "./model.js"

/** The simulated private IPv4 of a VM: `10.20.{node number}.{vmid % 250}`. */
export const simulatedIp = (node: string, vmid: number): string => `10.20.${Number(/(\d+)$/.exec(node)?.[1] ?? 0)}.${vmid % 250}`

/**
 * A refused renewal is retried on this schedule while the refusal may pass (the endpoint away, a leader
 * changing): 1, 2, 4, 8, 16 then 30 seconds apart, six retries in all.
 */
export const renewalRetry = Schedule.exponential("1 second").pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.intersect(Schedule.recurs(6))
)

/** After `renewalRetry` is spent, the agent keeps its certificate and starts over this much later. */
export const RENEWAL_PAUSE = Duration.minutes(1)

type RenewalError = RenewCertificateError["_tag"]
const TRANSIENT: ReadonlyArray<RenewalError> = ["AgentTransportError", "NotLeader"]
const isTransient = (error: RenewCertificateError): boolean => TRANSIENT.includes(error._tag)

/** The certificate an agent signs with, and when (Clock millis) to renew it. */
interface HeldCertificate {
  readonly identity: AgentIdentity
  readonly renewAt: number
}

export interface SimAgentsOptions {
  /** Interval of health reports (default 3 seconds). */
  readonly healthEvery?: Duration.DurationInput
  /** A boot for which this returns true gets no agent (a guest that never registers). */
  readonly mute?: (boot: GuestBoot) => boolean
  readonly log?: (line: string) => void
  /** How agents reach the endpoints (default TLS); a world in virtual time reaches them in memory. */
  readonly transport?: AgentTransport
  /**
   * Each registered agent keeps its VM's files in `{filesRoot}/{instance ID}` as `nstance-agent --files-dir`
   * does (keys made there, files written atomically, dropped ones removed); absent: agents ask for no files.
   */
  readonly filesRoot?: string
  /** Hears each VM's file names at every commit of its file stream. */
  readonly onFiles?: (instanceId: string, directory: string, names: ReadonlyArray<string>) => void
}

export interface SimAgents {
  readonly hook: GuestHook
  /** The simulator's model, which says whether a VM still runs; set it right after starting the simulator. */
  readonly attach: (model: SimModel) => void
  /** Every nonce token read from a user-data (tests check none of them leaks). */
  readonly nonces: ReadonlyArray<string>
  readonly registered: ReadonlyArray<{ readonly instanceId: string; readonly vmid: number; readonly ip: string }>
  readonly muted: ReadonlyArray<string>
}

/** Agents for the simulator's guests; each runs in a fiber interrupted when the scope closes. */
export const makeSimAgents = (options: SimAgentsOptions = {}): Effect.Effect<SimAgents, never, Scope.Scope> =>
  Effect.gen(function* () {
    const run = yield* FiberSet.makeRuntime<never>()
    const healthEvery = Duration.decode(options.healthEvery ?? "3 seconds")
    const log = options.log ?? (() => {})
    let model: SimModel | undefined
    const nonces: Array<string> = []
    const registered: Array<{ instanceId: string; vmid: number; ip: string }> = []
    const muted: Array<string> = []

    const agent = (boot: GuestBoot, settings: AgentRegistrationData) =>
      Effect.gen(function* () {
        const startedAt = model?.vms.get(boot.vmid)?.startedAt
        // This boot of this VM: a restart makes a new boot, with an agent of its own.
        const alive = Effect.sync(() => {
          const vm = model?.vms.get(boot.vmid)
          return vm !== undefined && vm.status === "running" && vm.config.get("name") === boot.name && vm.startedAt === startedAt
        })
        const ip = simulatedIp(boot.node, boot.vmid)
        const client = yield* makeAgentClient(settings.registrationUrl, options.transport ?? tlsTransport(settings.caPem))
        // The renew point counts from before the request: the certificate was issued no earlier than that.
        const askedAt = yield* Clock.currentTimeMillis
        const identity: AgentIdentity | undefined = yield* client.register({ nonce: settings.nonce, ips: { ipv4: ip }, hostname: boot.instanceId }).pipe(
          // The leader may not be listening yet (or changing): retry while the VM runs; a refusal is final.
          Effect.retry({
            schedule: Schedule.spaced("300 millis"),
            while: (error) => error._tag === "AgentTransportError" || error._tag === "NotLeader"
          }),
          Effect.tapError((error) => Effect.sync(() => log(`sim agent ${boot.instanceId} (VM ${boot.vmid}): registration refused: ${error._tag}`))),
          Effect.orElseSucceed(() => undefined),
          Effect.raceFirst(Effect.repeat(alive, { schedule: Schedule.spaced("200 millis"), while: (up) => up }).pipe(Effect.as(undefined)))
        )
        if (identity === undefined) return
        registered.push({ instanceId: boot.instanceId, vmid: boot.vmid, ip })
        log(`sim agent ${boot.instanceId} (VM ${boot.vmid}): registered as ${ip}`)
        const held = yield* Ref.make<HeldCertificate>({ identity, renewAt: askedAt + identity.renewAfterSeconds * 1000 })
        // Renewal runs beside the reports, so a slow or retried renewal never delays a report.
        yield* Effect.forkScoped(renewCertificates(boot, client, held, alive))
        if (options.filesRoot !== undefined) yield* Effect.forkScoped(receiveFiles(boot, client, held, alive, join(options.filesRoot, boot.instanceId)))
        for (;;) {
          yield* Effect.sleep(healthEvery)
          if (!(yield* alive)) return
          const current = yield* Ref.get(held)
          yield* client.reportHealth(current.identity).pipe(Effect.catchAll((error) => Effect.sync(() => log(`sim agent ${boot.instanceId}: health report failed: ${error._tag}`))))
        }
      }).pipe(Effect.scoped)

    /**
     * Sleeps until the renew point, renews (retrying on `renewalRetry` while the refusal may pass) and
     * holds the new certificate; gives up only on a refusal that cannot pass (the certificate expired or
     * rejected, the instance unknown), leaving the reports to fail and the server to judge the instance.
     */
    const renewCertificates = (boot: GuestBoot, client: AgentClient, held: Ref.Ref<HeldCertificate>, alive: Effect.Effect<boolean>) =>
      Effect.gen(function* () {
        const who = `sim agent ${boot.instanceId} (VM ${boot.vmid})`
        for (;;) {
          const current = yield* Ref.get(held)
          const now = yield* Clock.currentTimeMillis
          yield* Effect.sleep(Duration.millis(Math.max(0, current.renewAt - now)))
          if (!(yield* alive)) return
          const askedAt = yield* Clock.currentTimeMillis
          const outcome = yield* client.renew(current.identity).pipe(
            Effect.tapError((error) => Effect.sync(() => log(`${who}: certificate renewal failed: ${error.message}`))),
            Effect.retry({ schedule: renewalRetry, while: isTransient }),
            Effect.either
          )
          if (Either.isRight(outcome)) {
            const renewed = outcome.right
            yield* Ref.set(held, { identity: renewed, renewAt: askedAt + renewed.renewAfterSeconds * 1000 })
            log(`${who}: certificate renewed`)
            continue
          }
          if (!isTransient(outcome.left)) {
            log(`${who}: certificate renewal refused (${outcome.left._tag}); no further attempts`)
            return
          }
          const again = (yield* Clock.currentTimeMillis) + Duration.toMillis(RENEWAL_PAUSE)
          log(`${who}: certificate renewal still failing (${outcome.left._tag}); trying again in ${Duration.format(RENEWAL_PAUSE)}`)
          yield* Ref.set(held, { identity: current.identity, renewAt: again })
        }
      })

    /**
     * The VM's file stream into `directory` while the VM runs: reopened 2 s after it ends (a renewal
     * supersedes the certificate it was opened with; a leader changes), with the certificate held then.
     */
    const receiveFiles = (boot: GuestBoot, client: AgentClient, held: Ref.Ref<HeldCertificate>, alive: Effect.Effect<boolean>, directory: string) =>
      Effect.gen(function* () {
        const who = `sim agent ${boot.instanceId} (VM ${boot.vmid})`
        const files = yield* makeFilesDir(
          directory,
          (name, key) => Effect.flatMap(Ref.get(held), (current) => client.submitKey(current.identity, name, key)),
          (names) => Effect.sync(() => options.onFiles?.(boot.instanceId, directory, names))
        )
        // A simulator runs many guests: their agents' per-file lines would drown the shard's own.
        const once = Effect.flatMap(Ref.get(held), (current) => client.receiveFiles(current.identity).pipe(Stream.runForEach(files.apply))).pipe(
          Logger.withMinimumLogLevel(LogLevel.Warning)
        )
        yield* once.pipe(
          Effect.catchAll((error) => Effect.sync(() => log(`${who}: file stream ended: ${error.message}`))),
          Effect.zipRight(Effect.sleep("2 seconds")),
          Effect.repeat({ while: () => true }),
          Effect.raceFirst(Effect.repeat(alive, { schedule: Schedule.spaced("1 second"), while: (up) => up }))
        )
      }).pipe(Effect.catchAll((error) => Effect.sync(() => log(`sim agent ${boot.instanceId}: files directory: ${error.message}`))))

    const hook: GuestHook = (boot) => {
      const settings = agentRegistrationOf(boot.userData)
      if (settings === undefined) return
      nonces.push(settings.nonce)
      if (options.mute?.(boot) === true) {
        muted.push(boot.instanceId)
        log(`sim agent ${boot.instanceId} (VM ${boot.vmid}): muted, never registers`)
        return
      }
      run(agent(boot, settings))
    }

    return {
      hook,
      attach: (m) => void (model = m),
      get nonces() { return [...nonces] },
      get registered() { return [...registered] },
      get muted() { return [...muted] }
    }
  })
