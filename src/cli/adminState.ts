/**
 * `nstance-admin state` and `nstance-admin log`: what a shard knows, read offline straight from its bucket
 * (the event log replayed read-only, never written), so an operator can look at a shard whose servers are
 * down, and scripts can read it as JSON.
 */
import { Args, Command, Options } from "@effect/cli"
import { shardPrefix } from "../domain/bucketKeys.js"
import { Console, Effect, Option } from "effect"
import { boundText } from "../domain/errorText.js"
import type { ShardEvent } from "../domain/shard/events.js"
import { allInstances, describeAnomaly, type Instance, instancesByPhase, type State } from "../domain/shard/state.js"
import { replayStore } from "../layers/EventLogStore.js"
import { applyQuarantine, planQuarantine } from "../layers/logQuarantine.js"
import { objectStoreLayer } from "../layers/ObjectStoreFromFlags.js"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { UsageError } from "../inputFile.js"
import { escapeControl } from "./escape.js"

const storage = Options.choice("storage", ["s3", "gcs", "file"] as const).pipe(
  Options.withDescription("Where the shard's state lives: s3 (AWS_* env), gcs, or file (a directory)")
)
const bucket = Options.text("bucket").pipe(Options.withDescription("Bucket name (s3, gcs) or directory (file)"))
const shard = Options.text("shard").pipe(Options.withDescription("Shard ID; its objects live under shard/{shard}/ unless --prefix is given"))
const prefix = Options.text("prefix").pipe(Options.withDescription("Key prefix of the shard instead of shard/{shard}/"), Options.optional)
const json = Options.boolean("json").pipe(Options.withDescription("Print JSON for scripts instead of a table"))

interface StoreFlags {
  readonly storage: "s3" | "gcs" | "file"
  readonly bucket: string
  readonly shard: string
  readonly prefix: Option.Option<string>
}

/** The shard's log replayed read-only from its bucket. */
const replayed = (flags: StoreFlags) =>
  Effect.gen(function* () {
    const store = yield* ObjectStore
    return yield* replayStore(scopeStore(store, Option.getOrElse(flags.prefix, () => shardPrefix(flags.shard))))
  }).pipe(
    Effect.provide(objectStoreLayer({ storage: flags.storage, bucket: flags.bucket })),
    Effect.mapError((error) => new UsageError({ message: error.message }))
  )

const groupOf = (instance: Instance) => `${instance.tenant ?? "?"}/${instance.group ?? "?"}`

/** The state as plain JSON: what `--json` prints. */
export const stateJson = (state: State, seq: number, snapshotSeq: number) => ({
  term: state.term,
  leader: state.leader ?? null,
  seq,
  snapshotSeq,
  vmidHighWater: state.vmidHighWater,
  logId: state.logId ?? null,
  gone: state.goneCount,
  anomalies: state.anomalies,
  recentAnomalies: state.recentAnomalies,
  instances: allInstances(state).map((i) => ({
    id: i.id,
    tenant: i.tenant ?? null,
    group: i.group ?? null,
    phase: i.phase,
    node: i.node ?? null,
    vmid: i.vmid ?? null,
    adopted: i.adopted,
    failures: i.failures,
    lastError: i.lastError ?? null,
    deleteReason: i.deleteReason ?? null,
    held: i.held ?? null,
    abandonedVmids: i.abandonedVmids ?? []
  }))
})

/** The human view: a summary line, phases, then one line per instance grouped by group. */
export const describeState = (state: State, seq: number, snapshotSeq: number): ReadonlyArray<string> => {
  const phases = [...instancesByPhase(state)].map(([phase, list]) => `${phase} ${list.length}`).join(", ")
  const lines = [
    `term ${state.term}${state.leader === undefined ? "" : ` (leader ${escapeControl(state.leader)})`}, log seq ${seq}${snapshotSeq > 0 ? ` (from snapshot ${snapshotSeq})` : ""}, VMID high-water ${state.vmidHighWater}${state.logId === undefined ? "" : `, event log ${state.logId}`}`,
    `instances: ${allInstances(state).length}${phases === "" ? "" : ` (${phases})`}; gone ${state.goneCount}${state.anomalies > 0 ? `; ${state.anomalies} anomalies` : ""}`
  ]
  const byGroup = new Map<string, Array<Instance>>()
  for (const instance of allInstances(state)) {
    const list = byGroup.get(groupOf(instance)) ?? []
    list.push(instance)
    byGroup.set(groupOf(instance), list)
  }
  for (const [group, list] of [...byGroup].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push("", `${escapeControl(group)}: ${list.length}`)
    for (const i of list) {
      const where = i.vmid === undefined ? "" : `  VM ${i.vmid} on ${i.node ?? "?"}`
      const error = i.lastError === undefined ? "" : `  last error: ${i.lastError.step}: ${escapeControl(i.lastError.message)}`
      const held = i.held === undefined ? "" : `  HELD since seq ${i.held.seq}: ${escapeControl(i.held.reason)}`
      // A dead clone's placeholder is the operator's to remove: said beside the instance that left it.
      const left = (i.abandonedVmids ?? []).map((vmid) => `  left VM ${vmid} (dead clone, lock: clone; qm unlock ${vmid} && qm destroy ${vmid})`).join("")
      lines.push(`  ${i.id}  ${i.phase.padEnd(13)}${where}${i.ips.length === 0 ? "" : `  ${i.ips.map(escapeControl).join(", ")}`}${i.adopted ? "  (adopted)" : ""}${i.deleteReason === undefined ? "" : `  (${i.deleteReason})`}${held}${left}${error}`)
    }
  }
  if (state.recentAnomalies.length > 0) {
    lines.push("", `impossible events: ${state.anomalies}${state.anomalies > state.recentAnomalies.length ? ` (the newest ${state.recentAnomalies.length})` : ""}`)
    for (const anomaly of state.recentAnomalies) lines.push(`  ${escapeControl(describeAnomaly(anomaly))}`)
  }
  return lines
}

/** One line per event: `seq  time  Tag  instance  details`. */
export const describeEvent = (seq: number, event: ShardEvent): string => {
  const { _tag, v: _v, ...rest } = event as ShardEvent & { readonly v: number }
  const fields = rest as Record<string, unknown>
  const at = typeof fields["at"] === "number" ? new Date(fields["at"]).toISOString().replace(/\.\d{3}Z$/, "Z") : "-"
  const id = typeof fields["instanceId"] === "string" ? fields["instanceId"] : "-"
  const details = Object.entries(fields)
    .filter(([key]) => key !== "at" && key !== "instanceId")
    .map(([key, value]) => `${key}=${boundText(typeof value === "string" ? value : JSON.stringify(value))}`)
    .join(" ")
  return escapeControl(`${String(seq).padStart(6)}  ${at}  ${_tag.padEnd(18)} ${id}${details === "" ? "" : `  ${details}`}`)
}

const stateCommand = Command.make("state", { storage, bucket, shard, prefix, json }, (flags) =>
  Effect.gen(function* () {
    const { state, seq, snapshotSeq } = yield* replayed(flags)
    if (flags.json) return yield* Console.log(JSON.stringify(stateJson(state, seq, snapshotSeq), null, 2))
    if (seq === 0) return yield* Console.log(`shard ${flags.shard}: the event log is empty (no leader has run yet)`)
    yield* Effect.forEach(describeState(state, seq, snapshotSeq), (line) => Console.log(line), { discard: true })
  })
).pipe(Command.withDescription("Print a shard's state (term, log seq, instances by phase and group), replayed offline from its bucket"))

const tail = Options.integer("tail").pipe(Options.withDescription("How many of the newest events to print (at most 100)"), Options.withDefault(20))

const logCommand = Command.make("log", { storage, bucket, shard, prefix, tail, json }, (flags) =>
  Effect.gen(function* () {
    if (flags.tail < 1 || flags.tail > 100) return yield* new UsageError({ message: `--tail ${flags.tail} must be between 1 and 100` })
    const { lastEvents } = yield* replayed(flags)
    const shown = lastEvents.slice(-flags.tail)
    if (flags.json) return yield* Console.log(JSON.stringify(shown.map(({ seq, event }) => ({ seq, ...event })), null, 2))
    yield* Effect.forEach(shown, ({ seq, event }) => Console.log(describeEvent(seq, event)), { discard: true })
  })
).pipe(Command.withDescription("Print the newest events of a shard's log, one line each, read offline from its bucket"))

const objectKey = Args.text({ name: "key" }).pipe(Args.withDescription("The object, relative to the shard prefix: log/{seq:016}.json or snapshot/{seq:016}.json"))
const yes = Options.boolean("yes").pipe(Options.withDescription("Do it (without: say what would be done)"))
const force = Options.boolean("force").pipe(Options.withDescription("Also move a segment shaped like one this version cannot read (known garbage only)"))

const quarantineCommand = Command.make("quarantine", { storage, bucket, shard, prefix, key: objectKey, yes, force }, (flags) =>
  Effect.gen(function* () {
    const store = scopeStore(yield* ObjectStore, Option.getOrElse(flags.prefix, () => shardPrefix(flags.shard)))
    const plan = yield* planQuarantine(store, flags.key, { force: flags.force })
    if (!flags.yes) {
      return yield* Console.log(escapeControl(`would move ${plan.key} (${plan.problem}) to ${plan.movedTo}; run again with --yes to do it`))
    }
    yield* applyQuarantine(store, plan)
    yield* Console.log(escapeControl(`moved ${plan.key} to ${plan.movedTo} (${plan.problem}); the next leader replays without it`))
  }).pipe(
    Effect.provide(objectStoreLayer({ storage: flags.storage, bucket: flags.bucket })),
    Effect.mapError((error) => new UsageError({ message: error.message }))
  )
).pipe(Command.withDescription(
  "Move a corrupt event-log object aside (to quarantine/ under the shard prefix): only the newest segment when it does not decode, or a snapshot that does not read"
))

export const stateCommands = [stateCommand, logCommand, quarantineCommand] as const
