/**
 * The preflight against PVE: a few reads (`GET /version`, `/access/permissions`, the shared `/cluster/resources`
 * for nodes and VMs, and per online node its storages and bridges) judged against what the shard config needs
 * (`src/domain/pve/preflight.ts`). The leader runs it when its term starts, again whenever a config change
 * alters what the shard needs (storages, templates, bridges, pools), and every `PREFLIGHT_INTERVAL` — about
 * ten GETs a run on a three-node cluster, so PVE barely notices. Its findings are logged when they change,
 * shown by `/readyz` and `nstance-admin status`; its per-group unfit nodes keep placement off nodes that lack
 * the group's template, storage or bridge. `nstance-server --validate` runs the same `runPreflight` once.
 */
import { Clock, Context, Deferred, Effect, Either, Layer, Option, Schedule, Stream, SubscriptionRef } from "effect"
import type { ShardConfig } from "../domain/config/index.js"
import {
  type ClusterFacts,
  evaluatePreflight,
  formatFinding,
  needsKey,
  type NodeFacts,
  type PreflightReport,
  type Read,
  shardNeeds,
  summarizeFindings,
  unfitNodesOf
} from "../domain/pve/preflight.js"
import { type ClusterResources, type PveError, ProxmoxApi } from "../services/ProxmoxApi.js"
import { ClusterView } from "./ClusterView.js"
import { PREFLIGHT_FIRST_WAIT, PREFLIGHT_INTERVAL } from "./policies.js"
import { ShardContext } from "./ShardContext.js"

/** A finished run: when it ended (Clock millis) and what it found. */
export interface PreflightRun {
  readonly at: number
  readonly report: PreflightReport
}

/** How many node reads one run makes at once (two each): PVE's API has three workers per node. */
const NODE_READS = 4

const read = <A>(effect: Effect.Effect<A, PveError>): Effect.Effect<Read<A>> =>
  effect.pipe(Effect.mapError((error) => error.message), Effect.either)

/**
 * The reads of one run; a failed read is kept as its error line, never fails the run. Nodes and VMs come from
 * one unfiltered `/cluster/resources` — `clusterRead`, the leader's shared read (`ClusterView`), or a read of
 * its own (`nstance-server --validate`).
 */
export const gatherFacts = (clusterRead?: Effect.Effect<ClusterResources, PveError>): Effect.Effect<ClusterFacts, never, ProxmoxApi> => Effect.gen(function* () {
  const pve = yield* ProxmoxApi
  const { version, permissions, cluster } = yield* Effect.all({
    version: read(pve.version()),
    permissions: read(pve.permissions()),
    cluster: read(clusterRead ?? pve.clusterResources())
  }, { concurrency: "unbounded" })
  const nodes = Either.map(cluster, (resources) => resources.nodes)
  const vms = Either.map(cluster, (resources) => resources.vms)
  const nodeFacts: Read<ReadonlyArray<NodeFacts>> = Either.isLeft(nodes)
    ? Either.left(nodes.left)
    : Either.right(yield* Effect.forEach(nodes.right, (entry) =>
      entry.status !== "online"
        ? Effect.succeed<NodeFacts>({ node: entry.node, status: entry.status })
        : Effect.all({
          storages: read(pve.listStorage(entry.node)),
          bridges: read(pve.listNetwork(entry.node, { type: "any_bridge" }))
        }).pipe(Effect.map((found): NodeFacts => ({ node: entry.node, status: entry.status, ...found }))), { concurrency: NODE_READS }))
  return {
    version,
    permissions,
    nodes: nodeFacts,
    vms: Either.map(vms, (list) => list.filter((vm) => vm.type === "qemu").map((vm) => ({ vmid: vm.vmid, node: vm.node, name: vm.name, template: vm.template, pool: vm.pool })))
  }
})

/** One preflight of `config` against the cluster: read, then judge. Never fails; what could not be read is a finding. */
export const runPreflight = (config: ShardConfig, clusterRead?: Effect.Effect<ClusterResources, PveError>): Effect.Effect<PreflightReport, never, ProxmoxApi> =>
  Effect.map(gatherFacts(clusterRead), (facts) => evaluatePreflight(shardNeeds(config), facts)).pipe(Effect.withSpan("preflight.run"))

export interface PreflightShape {
  /** The newest finished run; none before the first one finished. */
  readonly latest: Effect.Effect<Option.Option<PreflightRun>>
  /**
   * The nodes the VMs of `tenant/group` must not go to, with why. Waits for the term's first run (at most
   * `PREFLIGHT_FIRST_WAIT`; without it nothing is excluded: the create's own steps still check).
   */
  readonly unfitNodes: (tenant: string, group: string) => Effect.Effect<ReadonlyMap<string, string>>
  /**
   * Lets the runs begin. The term calls it once the log is replayed and the cluster read: a run reads and
   * decodes the cluster and every node's storages and bridges, and beside a replay of a large log it would
   * only delay the moment the new leader acts.
   */
  readonly begin: Effect.Effect<void>
}

export class Preflight extends Context.Tag("nstance/Preflight")<Preflight, PreflightShape>() {}

/** Findings as log lines: every one at the first run, afterwards only what appeared and what went away. */
const logChanges = (before: Option.Option<PreflightRun>, report: PreflightReport) =>
  Effect.gen(function* () {
    const old = Option.match(before, { onNone: () => new Set<string>(), onSome: (run) => new Set(run.report.findings.map(formatFinding)) })
    const now = new Set(report.findings.map(formatFinding))
    for (const finding of report.findings) {
      const line = formatFinding(finding)
      if (old.has(line)) continue
      yield* finding.severity === "error" ? Effect.logError(`preflight: ${line}`) : Effect.logWarning(`preflight: ${line}`)
    }
    for (const line of old) if (!now.has(line)) yield* Effect.logInfo(`preflight: resolved: ${line}`)
    if (Option.isNone(before)) yield* Effect.logInfo(`preflight against PVE ${report.version ?? "(no answer)"}: ${summarizeFindings(report.findings)}`)
  })

/** The term's preflight: its first run starts once the term has taken over (`begin`), the loop ends with the term. */
export const PreflightLive = Layer.scoped(
  Preflight,
  Effect.gen(function* () {
    const shard = yield* ShardContext
    const pve = yield* ProxmoxApi
    const view = yield* ClusterView
    const latest = yield* SubscriptionRef.make(Option.none<PreflightRun>())
    const first = yield* Deferred.make<void>()
    const started = yield* Deferred.make<void>()
    const runOnce = Effect.gen(function* () {
      const config = (yield* SubscriptionRef.get(shard.config)).config
      // The cluster read is the one placement uses: a run at the term's start costs no read of its own.
      const report = yield* runPreflight(config, view.resources).pipe(Effect.provideService(ProxmoxApi, pve))
      const before = yield* SubscriptionRef.get(latest)
      yield* SubscriptionRef.set(latest, Option.some({ at: yield* Clock.currentTimeMillis, report }))
      yield* logChanges(before, report)
    }).pipe(
      // A run never fails (a read that fails is a finding); a defect is logged and the next run tries again.
      Effect.catchAllDefect((defect) => Effect.logError("preflight: the run died", defect)),
      Effect.ensuring(Deferred.succeed(first, undefined))
    )
    // A run at the start (the config's first value), on every change of what the config needs, and on a timer.
    const needsChanged = shard.config.changes.pipe(Stream.map((parsed) => needsKey(shardNeeds(parsed.config))), Stream.changes)
    const ticks = Stream.fromSchedule(Schedule.spaced(PREFLIGHT_INTERVAL))
    yield* Deferred.await(started).pipe(
      Effect.zipRight(Stream.merge(needsChanged, ticks).pipe(Stream.runForEach(() => runOnce))),
      Effect.forkScoped
    )
    return Preflight.of({
      begin: Deferred.succeed(started, undefined).pipe(Effect.asVoid),
      latest: SubscriptionRef.get(latest),
      unfitNodes: (tenant, group) =>
        Deferred.await(first).pipe(
          Effect.timeout(PREFLIGHT_FIRST_WAIT),
          Effect.ignore,
          Effect.zipRight(SubscriptionRef.get(latest)),
          Effect.map(Option.match({ onNone: () => new Map<string, string>(), onSome: (run) => unfitNodesOf(run.report, tenant, group) }))
        )
    })
  })
)
