/**
 * What the shard leader does while it holds the lease. In this build the leader is read-only: every
 * reconcile interval it reloads the shard config, reads the cluster (nodes and VMs, two PVE calls), checks
 * that every group's template resolves on the nodes TOPSIS would choose and logs the placement plan. The
 * create/delete sagas of later issues plug in where the plan is logged; until then nothing is created,
 * which the log says plainly.
 */
import { Data, Duration, Effect, Either, Schedule } from "effect"
import {
  desiredGroups,
  formatProblem,
  type ParsedShardConfig,
  parseShardConfig,
  type ShardConfig,
  vmSpecFor
} from "../domain/config/index.js"
import { nodeResourcesFrom } from "../domain/placement.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { ProxmoxApi } from "../services/ProxmoxApi.js"
import { describePreflight, type GroupDemand, preflight } from "./preflight.js"

export const CONFIG_KEY = "config.jsonc"

export type ConfigSource =
  | { readonly _tag: "Store"; readonly key: string }
  | { readonly _tag: "Local"; readonly parsed: ParsedShardConfig; readonly path: string }

/** A config that could not be used this tick; the reason is logged and the next tick tries again. */
export class ConfigUnavailable extends Data.TaggedError("ConfigUnavailable")<{ readonly lines: ReadonlyArray<string> }> {
  override get message() {
    return this.lines.join("; ")
  }
}

/** Reads and validates the shard config from its source. */
export const loadConfig = Effect.fn("shard.loadConfig")(function* (source: ConfigSource) {
  if (source._tag === "Local") return source.parsed
  const store = yield* ObjectStore
  const object = yield* store.get(source.key).pipe(
    Effect.catchTag("NotFound", () =>
      Effect.fail(new ConfigUnavailable({ lines: [`no shard config at ${source.key}; upload one with nstance-admin config push`] })))
  )
  const parsed = parseShardConfig(new TextDecoder().decode(object.body))
  if (Either.isLeft(parsed)) {
    return yield* new ConfigUnavailable({
      lines: [
        `shard config ${source.key} is invalid; keeping the leader idle until it is fixed:`,
        ...parsed.left.problems.map(formatProblem)
      ]
    })
  }
  return parsed.right
})

/** The groups of `config` as the planner needs them; groups whose VM spec does not resolve are reported. */
export const groupDemands = (config: ShardConfig) => {
  const demands: Array<GroupDemand> = []
  const problems: Array<string> = []
  for (const group of desiredGroups(config)) {
    const spec = vmSpecFor(config, group.tenant, group.group)
    if (Either.isLeft(spec)) {
      problems.push(...spec.left.problems.map(formatProblem))
      continue
    }
    demands.push({
      tenant: group.tenant,
      group: group.group,
      size: group.size,
      cores: spec.right.cores,
      memoryMiB: spec.right.memoryMiB,
      template: spec.right.template
    })
  }
  return { demands, problems }
}

/** One look at the cluster: the preflight report's lines, or why there is none. */
export const inspectShard = Effect.fn("shard.inspect")(function* (source: ConfigSource) {
  const { config, warnings } = yield* loadConfig(source)
  const pve = yield* ProxmoxApi
  const [nodes, vms] = yield* Effect.all([pve.nodeResources(), pve.vmResources()], { concurrency: 2 })
  const { demands, problems } = groupDemands(config)
  const report = preflight({
    clusterId: config.cluster.id,
    shard: config.shard.id,
    nodes: nodes.map(nodeResourcesFrom),
    vms: vms
      .filter((vm) => vm.type === "qemu")
      .map((vm) => ({ vmid: vm.vmid, node: vm.node, name: vm.name, tags: vm.tags, template: vm.template, status: vm.status })),
    groups: demands
  })
  return {
    report,
    lines: [
      ...warnings.map((warning) => `config warning: ${formatProblem(warning)}`),
      ...problems.map((problem) => `group not planned: ${problem}`),
      ...describePreflight(report),
      `desired VMs: ${demands.reduce((sum, group) => sum + group.size, 0)}; creating VMs is not part of this build (plan only)`
    ]
  }
})

/**
 * The leader loop: inspect, log what changed, wait, repeat — until the lease's scope interrupts it. A
 * failed tick (store or PVE unreachable, bad config) is logged and retried at the next interval; it never
 * ends leadership by itself.
 */
export const leaderWork = (source: ConfigSource, interval: Duration.DurationInput) => (term: number) =>
  Effect.gen(function* () {
    yield* Effect.logInfo(`leader for term ${term}: inspecting the cluster every ${Duration.format(Duration.decode(interval))}`)
    let previous: ReadonlyArray<string> = []
    const tick = inspectShard(source).pipe(
      Effect.map(({ lines }) => lines),
      Effect.catchAll((error) =>
        Effect.succeed(error instanceof ConfigUnavailable ? error.lines : [`cluster not inspected: ${error.message}`])),
      Effect.tap((lines) => {
        if (lines.join("\n") === previous.join("\n")) return Effect.void
        previous = lines
        return Effect.forEach(lines, (line) => Effect.logInfo(line), { discard: true })
      })
    )
    yield* tick.pipe(Effect.repeat(Schedule.spaced(interval)))
  }).pipe(Effect.annotateLogs({ term }))
