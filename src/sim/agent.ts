/**
 * Simulated guests' agents: a guest hook for `PveSimulator({ guestHook })` that does, for every booted VM
 * whose user-data carries `/etc/nstance/agent.json` (agent registration on), what the agent on a real VM
 * does — read the registration URL and nonce, call `RegisterAgent` over real HTTP with the VM's simulated
 * IPs (`10.20.{node number}.{vmid % 250}`) and hostname = instance ID, then `ReportHealth` on an interval
 * for as long as the simulator says that boot of the VM runs (a crash, stop or delete ends it). A VM without
 * `agent.json` boots as before, with no agent.
 */
import { Duration, Effect, FiberSet, Schedule, type Scope } from "effect"
import { type AgentIdentity, makeAgentClient } from "../agent/AgentClient.js"
import { AGENT_CONFIG_PATH, mimeParts } from "../domain/shard/userData.js"
import type { GuestBoot, GuestHook } from "./guest.js"
import type { SimModel } from "./model.js"

export interface AgentSettingsFile {
  readonly registrationUrl: string
  readonly nonce: string
}

/** `agent.json` as the user-data's cloud-config part writes it; undefined when the user-data has none. */
export const agentSettingsOf = (userData: string): AgentSettingsFile | undefined => {
  for (const part of mimeParts(userData) ?? []) {
    if (!part.body.includes(AGENT_CONFIG_PATH)) continue
    const line = /^\s*content:\s*(".*")\s*$/m.exec(part.body)
    if (line === null) continue
    try {
      const parsed = JSON.parse(JSON.parse(line[1]!) as string) as { registration_url?: unknown; nonce?: unknown }
      if (typeof parsed.registration_url === "string" && typeof parsed.nonce === "string") {
        return { registrationUrl: parsed.registration_url, nonce: parsed.nonce }
      }
    } catch {
      return undefined
    }
  }
  return undefined
}

/** The simulated private IPv4 of a VM: `10.20.{node number}.{vmid % 250}`. */
export const simulatedIp = (node: string, vmid: number): string => `10.20.${Number(/(\d+)$/.exec(node)?.[1] ?? 0)}.${vmid % 250}`

export interface SimAgentsOptions {
  /** Interval of health reports (default 3 seconds). */
  readonly healthEvery?: Duration.DurationInput
  /** A boot for which this returns true gets no agent (a guest that never registers). */
  readonly mute?: (boot: GuestBoot) => boolean
  readonly log?: (line: string) => void
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

    const agent = (boot: GuestBoot, settings: AgentSettingsFile) =>
      Effect.gen(function* () {
        const startedAt = model?.vms.get(boot.vmid)?.startedAt
        // This boot of this VM: a restart makes a new boot, with an agent of its own.
        const alive = Effect.sync(() => {
          const vm = model?.vms.get(boot.vmid)
          return vm !== undefined && vm.status === "running" && vm.config.get("name") === boot.name && vm.startedAt === startedAt
        })
        const ip = simulatedIp(boot.node, boot.vmid)
        const client = yield* makeAgentClient(settings.registrationUrl)
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
        for (;;) {
          yield* Effect.sleep(healthEvery)
          if (!(yield* alive)) return
          yield* client.reportHealth(identity).pipe(Effect.catchAll((error) => Effect.sync(() => log(`sim agent ${boot.instanceId}: health report failed: ${error._tag}`))))
        }
      }).pipe(Effect.scoped)

    const hook: GuestHook = (boot) => {
      const settings = agentSettingsOf(boot.userData)
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
