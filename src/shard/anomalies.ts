/**
 * Says, once per leadership term, every impossible event the fold found (`src/domain/shard/state.ts`): at
 * the replay, then as the log grows. Each line names the seq, the instance and the VMID, and which
 * instances are held because of it — the operator's starting point (`nstance-admin log`, `state`).
 */
import { Effect, Stream } from "effect"
import { type Anomaly, describeAnomaly, heldInstances, type State } from "../domain/shard/state.js"
import { EventLog } from "../services/EventLog.js"

const annotations = (a: Anomaly) => ({
  seq: a.seq,
  event: a.event,
  ...(a.instanceId === undefined ? {} : { instance: a.instanceId }),
  ...(a.vmid === undefined ? {} : { vmid: a.vmid })
})

/** Logs the anomalies of every state the log goes through, each once; runs until interrupted. */
export const reportAnomalies = Effect.gen(function* () {
  const log = yield* EventLog
  // Entries are shared between the fold's states, so identity tells a new one from one already said.
  let said = new Set<Anomaly>()
  let first = true
  const report = (state: State) =>
    Effect.gen(function* () {
      const now = new Set<Anomaly>()
      for (const anomaly of state.recentAnomalies) {
        now.add(anomaly)
        if (said.has(anomaly)) continue
        yield* Effect.logError(`event log: impossible event at ${describeAnomaly(anomaly)}`).pipe(Effect.annotateLogs(annotations(anomaly)))
      }
      if (first) {
        first = false
        const oldest = state.recentAnomalies[0]?.seq ?? Number.POSITIVE_INFINITY
        const listed = state.recentAnomalies.length
        if (state.anomalies > listed) yield* Effect.logWarning(`event log: ${state.anomalies} impossible events in all; the newest ${listed} are listed`)
        // Instances held by anomalies older than the listed ones are still held: each is said once too.
        for (const instance of heldInstances(state)) {
          if (instance.held === undefined || instance.held.seq >= oldest) continue
          yield* Effect.logError(`${instance.id}: held since seq ${instance.held.seq} (${instance.held.reason}); no saga step, delete or GC acts on it`).pipe(
            Effect.annotateLogs({ seq: instance.held.seq, instance: instance.id, ...(instance.vmid === undefined ? {} : { vmid: instance.vmid }) })
          )
        }
      }
      said = now
    })
  return yield* Stream.runForEach(log.changes, report).pipe(Effect.zipRight(Effect.never))
})
