/**
 * Every metric nstance exports, as Effect `Metric`s (served as Prometheus text on `/metrics` by
 * `src/http/HealthServer.ts`), and the few helpers the instrumented code calls so that each call site
 * stays one line. Counters are made `incremental` so they export as Prometheus counters, not gauges.
 *
 * Label values come from fixed sets (endpoint path templates, phases, step names, outcomes), never from
 * instance IDs or VMIDs: the number of series stays fixed however many VMs a shard runs.
 *
 * Two kinds of figures: events are counted where they happen (PVE calls, saga steps, GC deletions,
 * registrations); states (lease, log seq, instances by phase, backlog) are gauges set from the replica's
 * current view each time `/metrics` is scraped, so they are never stale and need no code in the leader.
 */
import { Cause, Clock, Effect, Exit, HashMap, Metric, MetricBoundaries, MetricLabel, MetricState, Option } from "effect"
import { CONFIG_KEY, GROUPS_KEY } from "../domain/bucketKeys.js"
import { type PveCallSeries, type PveCallTable, pveCallsBetween, pveCallTable } from "../domain/pve/metrics.js"
import { PVE_POWER_STATES, type PvePowerState } from "../domain/pve/status.js"
import type { ReplicaRole } from "../domain/readiness.js"
import { isAtRest, SAGA_OF_PHASE } from "../domain/shard/sagaView.js"
import { type Phase, Phase as PhaseSchema, type State } from "../domain/shard/state.js"

/** Latency buckets (seconds) shared by PVE calls and saga steps: 5 ms … 5 min. */
const LATENCY_SECONDS = MetricBoundaries.fromIterable([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300])

/** `metric` with these labels (data-first: the piped form loses a counter's input type). */
const labelled = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>, labels: Readonly<Record<string, string>>): Metric.Metric<Type, In, Out> =>
  Metric.taggedWithLabels(metric, Object.entries(labels).map(([key, value]) => MetricLabel.make(key, value)))

const counter = (name: string, description: string): Metric.Metric.Counter<number> => Metric.counter(name, { description, incremental: true })

// --- events -------------------------------------------------------------------------------------------

const PVE_CALLS = "nstance_pve_calls"
const PVE_CALL_RETRIES = "nstance_pve_call_retries"
const PVE_CALL_SECONDS = "nstance_pve_call_seconds"

/** Labels: `endpoint` (`GET /cluster/resources`), `outcome` (`ok`, or the error class: transient, notFound, conflict, permanent, unauthorized, decode). */
export const pveCalls = counter(PVE_CALLS, "HTTP requests to the Proxmox VE API (each retry attempt and each task poll counts)")
/** Label: `endpoint`. The retry attempts among `nstance_pve_calls` (a transient failure tried again). */
export const pveCallRetries = counter(PVE_CALL_RETRIES, "Proxmox VE API requests that were retries of a transiently failed one")
/** Label: `endpoint`. */
export const pveCallSeconds = Metric.histogram(PVE_CALL_SECONDS, LATENCY_SECONDS, "Latency of one Proxmox VE API request in seconds")
/** Labels: `saga` (create, delete), `step` (place, template, iso, clone, configure, resize, start, delete), `outcome` (ok, retry, failed, error, interrupted). */
export const sagaStepSeconds = Metric.histogram("nstance_saga_step_seconds", LATENCY_SECONDS, "Duration of one saga step in seconds, by saga, step and outcome")
/** Label: `shard`. */
export const instancesStarted = counter("nstance_instances_started", "VMs the create saga brought to running (created, or adopted and started)")
/** Labels: `shard`, `kind` (vm-replaced: VM gone or stays stopped; orphan-vm: our tags, unknown to the log; orphan-iso). */
export const clonesAbandoned = counter("nstance_clones_abandoned", "Dead clones (killed by their node's reboot) whose locked placeholder was left for an operator to remove")

export const gcDeletions = counter("nstance_gc_deletions", "Deletions the garbage collector decided, by kind")
/** No labels: the agent endpoint's backend does not know the shard's name, and a process serves one shard. */
export const registrations = counter("nstance_registrations", "Agent registrations recorded in the event log")
/** Labels: `shard`, `object` (config.jsonc, groups.jsonc). */
export const configRejected = counter("nstance_config_rejected", "Versions of a stored config object that were not used (invalid; the last good config stayed in force)")

// --- states, set at scrape time ---------------------------------------------------------------------

/** Labels: `shard`, `replica`, `phase`. The leader's folded log; 0 on a standby (it has no state). */
export const instances = Metric.gauge("nstance_instances", { description: "Instances by phase in the leader's folded event log (0 on a standby)" })
/** Labels: `shard`, `replica`, `state` (running, paused, suspended, stopped, unknown). The leader's last GC pass; 0 on a standby. */
export const instancesPveState = Metric.gauge("nstance_instances_pve_state", {
  description: "Instances by their VM's state in PVE as the leader's last GC pass saw it (paused and suspended guests apart from running; 0 on a standby)"
})
/** Labels: `shard`, `replica`. */
export const reconcileBacklog = Metric.gauge("nstance_reconcile_backlog", { description: "Instances not at rest (a create or delete saga has work to do); 0 on a standby" })
/** Labels: `shard`, `replica`. */
export const eventLogSeq = Metric.gauge("nstance_event_log_seq", { description: "Sequence number of the last durable event log segment (leader; 0 on a standby)" })
/** Labels: `shard`, `replica`, `state` (leader, starting, standby, fenced, unreachable); the current state is 1, the others 0. */
export const leaseState = Metric.gauge("nstance_lease_state", { description: "This replica's lease state: 1 for the current one, 0 for the others" })
/** Labels: `shard`, `replica`. */
export const leaseTerm = Metric.gauge("nstance_lease_term", { description: "Lease term: this replica's while it leads, else the last leader's seen (0 when none)" })
/** Labels: `shard`, `replica`, `object` (config.jsonc, groups.jsonc). */
export const configStale = Metric.gauge("nstance_config_stale", {
  description: "1 while the stored object is invalid and this replica keeps the last good config in force, else 0"
})

/** The stored objects a shard's config is made of (the `object` label of the config metrics). */
export const CONFIG_OBJECTS: ReadonlyArray<string> = [CONFIG_KEY, GROUPS_KEY]

export const PHASES: ReadonlyArray<Phase> = PhaseSchema.literals
const ROLES: ReadonlyArray<ReplicaRole> = ["leader", "starting", "standby", "fenced", "unreachable", "log-corrupt"]

// --- helpers for the instrumented code --------------------------------------------------------------

const errorOutcome = (error: unknown): string => {
  if (typeof error !== "object" || error === null || !("_tag" in error)) return "error"
  if (error._tag === "StepError" && "retryable" in error) return error.retryable === true ? "retry" : "failed"
  return "error"
}

/**
 * Times one saga step of an instance in `phase` and counts a VM brought to running. Wrapped around the
 * step by the saga runner: `Effect.exit(step.pipe(timedSagaStep(shard, phase)))`.
 */
export const timedSagaStep = (shard: string, phase: Phase) => <A, E, R>(step: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(step)
    const ended = yield* Clock.currentTimeMillis
    const saga = phase === "deleting" ? "delete" : "create"
    const outcome = Exit.isSuccess(exit)
      ? "ok"
      : Cause.isInterruptedOnly(exit.cause) ? "interrupted" : Option.match(Cause.failureOption(exit.cause), { onNone: () => "error", onSome: errorOutcome })
    // The step label is the work of the phase the step ran from: a delete is one label.
    yield* Metric.update(labelled(sagaStepSeconds, { saga, step: SAGA_OF_PHASE[phase], outcome }), (ended - started) / 1000)
    // The start step's success is the moment a VM runs for this instance (the log has `Started`).
    if (Exit.isSuccess(exit) && phase === "starting") yield* Metric.increment(labelled(instancesStarted, { shard }))
    return yield* exit
  })

/** The outcome label of a failed PVE call: its error class, or `decode` for an answer that does not decode. */
const pveOutcome = (error: { readonly _tag: string; readonly classification?: string }) =>
  error._tag === "PveDecodeError" ? "decode" : error.classification ?? "error"

/** Counts and times one PVE request to `endpoint` (`GET /version`); `attempt` > 1 also counts it as a retry. */
export const countedPveCall = (endpoint: string, attempt = 1) => <A, E extends { readonly _tag: string; readonly classification?: string }, R>(
  call: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(call)
    const ended = yield* Clock.currentTimeMillis
    // An interrupted request (its saga or term ended) got no answer from PVE: not counted.
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) return yield* exit
    const outcome = Exit.isSuccess(exit) ? "ok" : Option.match(Cause.failureOption(exit.cause), { onNone: () => "error", onSome: pveOutcome })
    yield* Metric.increment(labelled(pveCalls, { endpoint, outcome }))
    if (attempt > 1) yield* Metric.increment(labelled(pveCallRetries, { endpoint }))
    yield* Metric.update(labelled(pveCallSeconds, { endpoint }), (ended - started) / 1000)
    return yield* exit
  })

/** The `nstance_pve_*` series of the registry now, as figures per endpoint (since the process started). */
export const readPveCalls: Effect.Effect<PveCallTable> = Effect.map(Metric.snapshot, (pairs) => {
  const series: Array<PveCallSeries> = []
  for (const { metricKey, metricState } of pairs) {
    const label = (key: string) => metricKey.tags.find((tag) => tag.key === key)?.value ?? ""
    const endpoint = label("endpoint")
    if (metricKey.name === PVE_CALLS && MetricState.isCounterState(metricState)) {
      series.push({ kind: "calls", endpoint, outcome: label("outcome"), count: Number(metricState.count) })
    } else if (metricKey.name === PVE_CALL_RETRIES && MetricState.isCounterState(metricState)) {
      series.push({ kind: "retries", endpoint, count: Number(metricState.count) })
    } else if (metricKey.name === PVE_CALL_SECONDS && MetricState.isHistogramState(metricState)) {
      series.push({ kind: "seconds", endpoint, sumSeconds: metricState.sum })
    }
  }
  return pveCallTable(series)
})

/** Reads the PVE calls made since it was built (benches, tests); make another for a new span. */
export interface PveCallsReader {
  readonly snapshot: Effect.Effect<PveCallTable>
}

/**
 * A reader of the PVE call figures relative to a baseline taken now. The registry is process-wide: the
 * figures include every client's calls in this process during the span, not one client's.
 */
export const makePveCallsReader: Effect.Effect<PveCallsReader> = Effect.map(readPveCalls, (before) => ({
  snapshot: Effect.map(readPveCalls, (after) => pveCallsBetween(before, after))
}))

export type GcDeletionKind = "vm-replaced" | "orphan-vm" | "orphan-iso"

/** Adds the deletions of one GC pass (zero counts leave the series untouched). */
export const recordGcDeletions = (shard: string, counts: Partial<Record<GcDeletionKind, number>>) =>
  Effect.forEach(Object.entries(counts), ([kind, n]) =>
    n === undefined || n === 0 ? Effect.void : Metric.incrementBy(labelled(gcDeletions, { shard, kind }), n), { discard: true })

/** Counts one registration recorded in the log. */
export const recordRegistration = Metric.increment(registrations)

/** Label: `kind` (certificate, env, json, string, secret, storage). A file sent to an agent (new or changed). */
const filesDelivered = counter("nstance_agent_files_delivered", "Files sent to agents over their channel (each new or changed version of a file)")
/** Label: `kind` (server, client). */
const fileCertificatesIssued = counter("nstance_agent_file_certificates_issued", "Certificates issued by the cluster CA for keys agents hold (certificate files)")
/** Label: `reason` (key-missing, secret-missing, secret-undecryptable, storage-missing, render, too-large, store, certificate). */
const fileDeliveryFailures = counter("nstance_agent_file_delivery_failures", "Files that could not be made or sent to an agent, by reason")

export const recordFileDelivered = (kind: string) => Metric.increment(labelled(filesDelivered, { kind }))
export const recordFileCertificateIssued = (kind: string) => Metric.increment(labelled(fileCertificatesIssued, { kind }))
export const recordFileDeliveryFailure = (reason: string) => Metric.increment(labelled(fileDeliveryFailures, { reason }))

/** Counts one version of `object` that was not used. */
export const recordConfigRejected = (shard: string, object: string) => Metric.increment(labelled(configRejected, { shard, object }))

// --- scrape-time gauges ---------------------------------------------------------------------------------

export interface ReplicaFigures {
  readonly shard: string
  readonly replica: string
  readonly role: ReplicaRole
  readonly term: number
  /** The leader's folded state and log seq; none on a standby. */
  readonly log: Option.Option<{ readonly state: State; readonly seq: number }>
  /** The config objects not in force as stored (the last good config is). */
  readonly configHeld?: ReadonlyArray<string>
  /** PVE's state of each instance's VM as the leader's last GC pass saw it; none on a standby. */
  readonly pveStates?: ReadonlyMap<string, PvePowerState>
}

/** Sets every state gauge of one replica; every phase and role is written, so none keeps a stale value. */
export const setReplicaGauges = (figures: ReplicaFigures) =>
  Effect.gen(function* () {
    const tag = (metric: Metric.Metric.Gauge<number>, extra: Readonly<Record<string, string>> = {}) =>
      labelled(metric, { shard: figures.shard, replica: figures.replica, ...extra })
    const counts = new Map<Phase, number>(PHASES.map((phase) => [phase, 0]))
    let backlog = 0
    if (Option.isSome(figures.log)) {
      for (const [, instance] of HashMap.entries(figures.log.value.state.instances)) {
        counts.set(instance.phase, (counts.get(instance.phase) ?? 0) + 1)
        if (!isAtRest(instance.phase)) backlog++
      }
    }
    for (const [phase, n] of counts) yield* Metric.set(tag(instances, { phase }), n)
    const pveCounts = new Map<PvePowerState, number>(PVE_POWER_STATES.map((state) => [state, 0]))
    for (const state of figures.pveStates?.values() ?? []) pveCounts.set(state, (pveCounts.get(state) ?? 0) + 1)
    for (const [state, n] of pveCounts) yield* Metric.set(tag(instancesPveState, { state }), n)
    yield* Metric.set(tag(reconcileBacklog), backlog)
    yield* Metric.set(tag(eventLogSeq), Option.match(figures.log, { onNone: () => 0, onSome: (log) => log.seq }))
    for (const role of ROLES) yield* Metric.set(tag(leaseState, { state: role }), role === figures.role ? 1 : 0)
    yield* Metric.set(tag(leaseTerm), figures.term)
    for (const object of CONFIG_OBJECTS) yield* Metric.set(tag(configStale, { object }), figures.configHeld?.includes(object) === true ? 1 : 0)
  })
