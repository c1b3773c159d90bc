/**
 * Where a chaos run meets its checker (checker.ts): the samples of the simulated cluster taken as the world
 * runs, the product's log lines recorded into the history, the end state looked at while the world
 * converges, and the verdict and summary line at the end.
 */
import { Effect, Either, Logger, SubscriptionRef } from "effect"
import { desiredGroups } from "../../src/domain/config/index.js"
import { emptyState } from "../../src/domain/shard/state.js"
import { replayStore } from "../../src/layers/EventLogStore.js"
import { checkHistory, crossShardViolations, endStateProblems, fencingCounts, landedSegments, nonceViolations, type Violation } from "./checker.js"
import { shardView } from "./history.js"
import type { ChaosWorld } from "./state.js"

/** Never two VMs with one name: sampled after every PVE call and every clock step. */
export const sampleModel = (w: ChaosWorld): void => {
  const { history } = w
  const seen = new Map<string, number>()
  for (const vm of w.model.vms.values()) {
    if (vm.config.get("template") === "1") continue
    const name = vm.config.get("name")
    if (name === undefined) continue
    const other = seen.get(name)
    if (other !== undefined) {
      const problem = `two VMs named ${name}: ${other} and ${vm.vmid}`
      if (!history.samples.some((s) => s.problem === problem)) history.sample(problem)
    } else seen.set(name, vm.vmid)
  }
}

/** The product's log, into the history (annotated with the incarnation) and through the nonce-leak check. */
export const productLogger = (w: ChaosWorld) =>
  Logger.make(({ annotations, logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    let who = ""
    for (const [k, v] of annotations) if (k === "who") who = String(v)
    w.history.product(`${logLevel.label} ${who} ${text}`)
    if (w.registration.minted.length > 0) w.registration.leakCheck(text, "a product log line")
  })

/** What keeps the world from being converged, from every shard's log as a new leader would replay it. */
export const endProblems = (w: ChaosWorld): Effect.Effect<ReadonlyArray<string>> =>
  Effect.forEach(w.shards, (shard) =>
    replayStore(shard.store).pipe(
      Effect.either,
      Effect.zip(SubscriptionRef.get(shard.config)),
      Effect.map(([replayed, config]) => ({
        shard: shard.id,
        state: Either.getOrUndefined(replayed)?.state ?? emptyState,
        world: shard.world,
        registration: w.shape.registrationOn,
        infraHashes: new Map(desiredGroups(config.config).map((g) => [g.group, g.infraHash])),
        abandoned: w.logFacts.get(shard.id)?.abandoned ?? new Set<number>(),
        reserved: w.logFacts.get(shard.id)?.reserved ?? new Set<number>()
      }))
    )).pipe(Effect.map((ends) => endStateProblems(w.model, ends, w.foreignVmids)))

export interface Outcome {
  /** Virtual milliseconds from the faults' stop until converged (undefined: not within the bound). */
  readonly convergedAfterMs: number | undefined
  /** What kept it from converging at the last look. */
  readonly problems: ReadonlyArray<string>
}

/** Every rule the history breaks, in history order, and the convergence bound if missed. */
export const verdict = (w: ChaosWorld, outcome: Outcome): Array<Violation> => {
  const { history, shards, registration } = w
  const converged = outcome.convergedAfterMs !== undefined
  const violations: Array<Violation> = w.shape.twoShards
    ? [
      ...shards.flatMap((shard) => checkHistory(shardView(history, shard.id), { converged }).map((v) => ({ ...v, message: `${shard.id}: ${v.message}` }))),
      ...checkHistory({ pve: [], writes: [], marks: [], samples: history.samples, configs: [], flags: history.flags }),
      ...crossShardViolations(shards.map((shard) => ({ shard: shard.id, view: shardView(history, shard.id) })))
    ].sort((a, b) => a.at - b.at)
    : [...checkHistory(history, { converged }), ...(registration.on ? [...nonceViolations(history, registration.accepted), ...registration.leaks] : [])].sort((a, b) => a.at - b.at)
  if (outcome.convergedAfterMs === undefined) {
    violations.push({ rule: "convergence", at: history.index, message: `not converged within ${w.shape.boundMs / 60_000} min after the faults stopped: ${outcome.problems.slice(0, 8).join("; ")}` })
  }
  return violations
}

/** Fenced appends refused and deposed PVE calls landed, over every shard of the world. */
export const fencedOf = (w: ChaosWorld): { readonly appends: number; readonly pve: number } => {
  const views = w.shape.twoShards ? w.shards.map((shard) => shardView(w.history, shard.id)) : [w.history]
  return views.map(fencingCounts).reduce((a, b) => ({ appends: a.appends + b.appends, pve: a.pve + b.pve }), { appends: 0, pve: 0 })
}

/** How many instances retired, drained and were acknowledged (empty when none retired). */
const retirementSummary = (w: ChaosWorld): string => {
  let retired = 0
  let drains = 0
  let acked = 0
  for (const segment of landedSegments(w.history)) {
    for (const e of segment.events ?? []) {
      if (e._tag === "RetirementRequested") retired++
      else if (e._tag === "DrainStarted") drains++
      else if (e._tag === "DeleteRequested" && e.reason === "drain-acked") acked++
    }
  }
  const what = `${retired} retirement(s), ${drains} drain(s)${acked === 0 ? "" : `, ${acked} acknowledged`}`
  return w.shape.rollout !== undefined ? `rollout ×${w.shape.rollout.changes.length} (${what}), ` : retired > 0 ? `${what}, ` : ""
}

/** The run in one line (what `npm run chaos` prints per seed). */
export const summary = (w: ChaosWorld, faultCount: number, outcome: Outcome): string => {
  const { shape, history, registration } = w
  const { convergedAfterMs } = outcome
  return `seed ${shape.seed}: ${shape.twoShards ? `2 shards, ${shape.replicaCount}+${shape.replicaCountB}` : shape.replicaCount} replica(s), ${shape.nodes} nodes, ${shape.latency.name}, ${faultCount} faults, ${w.incarnations} incarnations, ` +
    `${history.pve.filter((c) => c.mutation).length} PVE mutations, ${history.writes.filter((wr) => wr.key.startsWith("log/") && wr.outcome === "applied").length} log segments, ` +
    `fenced ${fencedOf(w).appends} appends/${fencedOf(w).pve} PVE calls, ` +
    `${registration.on ? `registration on (${registration.minted.length} nonces, ${registration.accepted.length} registrations), ` : ""}` +
    `${retirementSummary(w)}` +
    `${convergedAfterMs === undefined ? "NOT converged" : `converged +${Math.round(convergedAfterMs / 1000)}s`}`
}
