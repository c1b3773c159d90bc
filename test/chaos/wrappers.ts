/**
 * The recording, fault-injecting wrappers each replica incarnation runs on: a `ProxmoxApi` that records
 * every call (and samples the cluster after it), and an `ObjectStore` that records every write with its
 * outcome and injects the store faults in force — errors, latency, partitions, ambiguous writes, and the
 * crash right before or after a log write — and, in a deliberately broken build, changes what a leader logs.
 */
import { Duration, Effect, Either, Fiber, Option, Schema, Stream } from "effect"
import { ShardEvent, type ShardEventEncoded } from "../../src/domain/shard/events.js"
import { segmentBody } from "../../src/layers/eventLog/format.js"
import type { VmConfig } from "../../src/domain/pve/schemas.js"
import { type ObjectStoreShape, type Precondition, StoreUnavailable } from "../../src/services/ObjectStore.js"
import type { ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { sampleModel } from "./checks.js"
import type { GroupSizes } from "./config.js"
import type { PveCall, PveTarget, StoreWrite, Who, WriteOutcome } from "./history.js"
import { type ChaosWorld, logFactsOf, pushConfig } from "./state.js"

/** How long a store client waits before it gives up on a write (late-landing partitions: the write itself lands later). */
const LATE_TIMEOUT_MS = 10_000

const MUTATIONS = new Set(["clone", "updateConfig", "resize", "start", "stop", "shutdown", "deleteVm", "upload", "deleteVolume"])

/** Call arguments as one short line for the history (no upload bytes, no long notes). */
const formatArgs = (args: ReadonlyArray<unknown>): string =>
  args.map((a) => {
    if (a instanceof Uint8Array) return `<${a.byteLength} B>`
    if (typeof a === "object" && a !== null) {
      return JSON.stringify(a, (k, v: unknown) => (v instanceof Uint8Array ? `<${v.byteLength} B>` : k === "description" ? "…" : v))
    }
    return String(a)
  }).join(",").slice(0, 200)

const SegmentBody = Schema.parseJson(Schema.Struct({ seq: Schema.Number, events: Schema.Array(Schema.encodedSchema(ShardEvent)) }))
const decodeSegmentBody = Schema.decodeUnknownEither(SegmentBody)
const textDecoder = new TextDecoder()

export interface Wrappers {
  /** The PVE client of `who`'s leader term `term`. */
  readonly wrapPve: (who: Who, term: number) => ProxmoxApiShape
  /** `base` as `who` sees it: in leader term `term`, or (undefined) for its lease. */
  readonly wrapStore: (who: Who, term: number | undefined, base: ObjectStoreShape) => ObjectStoreShape
}

/** `crashFromWithin`: how a replica's own store call ends its incarnation when the crash trigger fires. */
export const makeWrappers = (w: ChaosWorld, crashFromWithin: (who: Who, reason: string) => Effect.Effect<void>): Wrappers => {
  const { history, prng, storeFaults } = w
  /** `retire-deletes-at-once`: per writer, the deletes it is to log with its next segment. */
  const brokenDeletes = new Map<Who, ReadonlyArray<ShardEventEncoded>>()

  /**
   * The broken leader of `retire-deletes-at-once`: each instance it retires it deletes with its next log
   * segment, before any replacement can be ready. Its own folded state does not know (it folds what it meant
   * to write), but every later leader replays the store, and the checker reads it.
   */
  const deleteAtRetirement = (who: Who, events: ReadonlyArray<ShardEventEncoded>): ReadonlyArray<ShardEventEncoded> => {
    const due = brokenDeletes.get(who) ?? []
    brokenDeletes.set(who, events.flatMap((e): ReadonlyArray<ShardEventEncoded> =>
      e._tag === "RetirementRequested" ? [{ _tag: "DeleteRequested", v: 1, instanceId: e.instanceId, at: e.at, reason: "retired" }] : []))
    return due.length === 0 ? events : [...events, ...due]
  }

  /** What a mutation acts on, read from the simulated cluster as the call starts (the ownership and cross-shard rules). */
  const targetOf = (op: string, args: ReadonlyArray<unknown>): PveTarget | undefined => {
    if (!MUTATIONS.has(op)) return undefined
    if (op === "deleteVolume" || op === "upload") {
      const arg = args[2]
      const file = op === "upload" && typeof arg === "object" && arg !== null && "filename" in arg ? arg.filename : arg
      const m = typeof file === "string" ? /nstance-([a-z0-9]+)\.iso$/.exec(file) : null
      return m === null ? undefined : { instance: m[1] }
    }
    if (op === "clone") return undefined
    const vmid = args[1]
    const vm = typeof vmid === "number" ? w.model.vms.get(vmid) : undefined
    if (vm === undefined) return undefined
    const name = vm.config.get("name")
    const foreign = name === undefined ? w.foreignVmids.has(vm.vmid) : name.startsWith("foreign")
    return { vmid: vm.vmid, tags: vm.config.get("tags"), instance: name, ...(foreign ? { foreign } : {}) }
  }

  /** The group an instance ID belongs to (IDs begin with their kind, which is the group's name here). */
  const groupOf = (id: string | undefined): keyof GroupSizes | undefined =>
    id?.startsWith("web") === true ? "web" : id?.startsWith("api") === true ? "api" : undefined

  /** Arms the narrow-window faults at a leader's call: a pause, or a scale-down of the group whose clone starts. */
  const atCall = (who: Who, term: number, op: string, name: string | undefined, mode: "before" | "after") =>
    Effect.zipRight(arm(who, term, op, name, mode), w.pauses.pveGate(who))

  /** The narrow-window faults armed for this call, without waiting at the pause they may start. */
  const arm = (who: Who, term: number, op: string, name: string | undefined, mode: "before" | "after") =>
    Effect.suspend(() => {
      const trigger = w.pauseTrigger
      const effects: Array<Effect.Effect<void>> = []
      if (mode === "before" && op === "clone" && w.scaleDownAtClone && term > 0) {
        const group = groupOf(name)
        const shard = w.shards.find((sh) => sh.id === (history.shardOf.get(who) ?? sh.id))
        if (group !== undefined && shard !== undefined && shard.world.sizes[group] > 0) {
          w.scaleDownAtClone = false
          w.crashAfterClone = who
          w.faults.slowTasks({ type: "qmclone", factor: 20, times: 1 })
          shard.world = { ...shard.world, sizes: { ...shard.world.sizes, [group]: shard.world.sizes[group] - 1 } }
          w.say(`fault: ${group} scaled down to ${shard.world.sizes[group]} while ${name ?? "?"} clones (slowed)`)
          effects.push(pushConfig(w, shard))
        }
      }
      const reboot = w.rebootAtClone
      if (mode === "after" && op === "clone" && reboot !== undefined && term > 0 && w.chaosOn) {
        w.rebootAtClone = undefined
        effects.push(Effect.sleep(Duration.millis(reboot.delayMs)).pipe(
          Effect.zipRight(Effect.sync(() => {
            // The node whose worker holds a placeholder now (the template's); else one running a clone task.
            const placeholder = [...w.model.vms.values()].find((vm) => vm.config.get("lock") === "clone" && !vm.config.has("name"))
            const cloning = [...w.model.tasks.values()].find((task) => task.type === "qmclone" && task.status === "running")
            const node = placeholder?.node ?? cloning?.node
            if (node === undefined) return
            w.say(`fault: node ${node} reboots ${reboot.delayMs} ms after ${who}'s clone of ${name ?? "?"} took effect (down ${reboot.downMs / 1000}s)`)
            w.model.rebootNode(node, reboot.downMs)
          })),
          Effect.forkIn(w.worldScope)
        ))
      }
      if (mode === "after" && op === "clone" && w.crashAfterClone === who) {
        // Its successor finds the instance deleting and its clone still running: the placeholder window.
        w.crashAfterClone = undefined
        effects.push(crashFromWithin(who, "crash right after a clone went out"))
      }
      if (trigger !== undefined && trigger.mode === mode && term > 0 && term >= trigger.minTerm && trigger.ops.has(op) && w.chaosOn) {
        w.pauseTrigger = undefined
        w.say(`fault: ${who} (term ${term}) paused for ${trigger.forMs / 1000}s ${mode === "before" ? "as" : "after"} its ${op} ${mode === "before" ? "goes out" : "took effect, before it reads the answer"}`)
        effects.push(w.pauses.pause(who, trigger.forMs, trigger.lagMs, w.pvePauses, w.worldScope))
      }
      return Effect.all(effects, { discard: true })
    })

  /** What a term's `vmConfig` answers in a build that breaks the delete's look at a VM (`delete-*` break modes). */
  const brokenLook = (who: Who, vmid: number, config: VmConfig): VmConfig => {
    const facts = logFactsOf(w, who)
    const owner = facts.ownerOf.get(vmid)
    if (owner === undefined || !facts.deleting.has(owner)) return config
    if (w.breakMode === "delete-skips-ownership" && config.name !== undefined && config.name !== owner) {
      const { description: _notes, ...rest } = config
      return { ...rest, name: owner }
    }
    if (w.breakMode === "delete-ignores-placeholder" && config.name === undefined && config.lock !== undefined) {
      const { lock: _lock, ...rest } = config
      return rest
    }
    return config
  }

  const wrapPve = (who: Who, term: number): ProxmoxApiShape => {
    /** Clones in flight by their task's UPID: their outcome is their task's. */
    const clones = new Map<string, PveCall>()
    const tap = <Args extends ReadonlyArray<unknown>, A, E>(op: string, f: (...args: Args) => Effect.Effect<A, E>, nameOf?: (...args: Args) => string | undefined) =>
      (...args: Args): Effect.Effect<A, E> =>
        Effect.suspend(() => {
          if (w.dead.has(who)) return Effect.never
          const mutation = MUTATIONS.has(op)
          const name = nameOf?.(...args)
          // A call made while its replica is paused (a timer of the world's clock fired) would really be made
          // once it resumes: it starts then. One made before the pause is on its way, and lands after it.
          const issued = w.pauses.isPaused(who)
            ? Effect.map(w.pauses.pveGate(who), () => history.pveStart(who, term, op, mutation ? formatArgs(args) : "", mutation, name, targetOf(op, args)))
            : Effect.sync(() => history.pveStart(who, term, op, mutation ? formatArgs(args) : "", mutation, name, targetOf(op, args)))
          return Effect.flatMap(issued, (call) => atCall(who, term, op, name, "before").pipe(
            Effect.zipRight(Effect.suspend(() => {
              if (mutation) call.landedAt = history.next()
              return f(...args)
            })),
            Effect.tapBoth({
              onFailure: () => Effect.sync(() => { if (op === "clone") call.ok = false }),
              onSuccess: (answer) => Effect.sync(() => { if (op === "clone" && typeof answer === "string") clones.set(answer, call) })
            }),
            Effect.tap(() => atCall(who, term, op, name, "after")),
            Effect.ensuring(Effect.sync(() => sampleModel(w)))
          ))
        })
    const p = w.simPve
    const waitTask = tap("waitTask", p.waitTask)
    const vmConfig = tap("vmConfig", p.vmConfig)
    return {
      version: tap("version", p.version),
      permissions: tap("permissions", p.permissions),
      nodeResources: tap("nodeResources", p.nodeResources),
      vmResources: tap("vmResources", p.vmResources),
      clusterResources: tap("clusterResources", p.clusterResources),
      clusterStatus: tap("clusterStatus", p.clusterStatus),
      nextId: tap("nextId", p.nextId),
      nodeStatus: tap("nodeStatus", p.nodeStatus),
      listQemu: tap("listQemu", p.listQemu),
      vmConfig: w.breakMode === "delete-skips-ownership" || w.breakMode === "delete-ignores-placeholder"
        ? (node, vmid) => Effect.map(vmConfig(node, vmid), (config) => brokenLook(who, vmid, config))
        : vmConfig,
      vmStatus: tap("vmStatus", p.vmStatus),
      clone: tap("clone", p.clone, (_node, _vmid, o) => o.name),
      updateConfig: tap("updateConfig", p.updateConfig),
      resize: tap("resize", p.resize),
      start: tap("start", p.start),
      stop: tap("stop", p.stop),
      shutdown: tap("shutdown", p.shutdown),
      deleteVm: tap("deleteVm", p.deleteVm),
      listStorage: tap("listStorage", p.listStorage),
      listNetwork: tap("listNetwork", p.listNetwork),
      listStorageContent: tap("listStorageContent", p.listStorageContent),
      volumeAttributes: tap("volumeAttributes", p.volumeAttributes),
      upload: tap("upload", p.upload),
      deleteVolume: w.breakMode === "skip-iso-delete"
        ? tap("deleteVolume(skipped)", (_node: string, _storage: string, _volid: string) => Effect.succeed(Option.none()))
        : tap("deleteVolume", p.deleteVolume),
      listTasks: tap("listTasks", p.listTasks),
      taskStatus: tap("taskStatus", p.taskStatus),
      waitTask: (node, upid, options) =>
        waitTask(node, upid, options).pipe(Effect.tapBoth({
          onFailure: () => Effect.sync(() => { const c = clones.get(upid); if (c !== undefined) c.ok = false }),
          onSuccess: () => Effect.sync(() => {
            const c = clones.get(upid)
            if (c === undefined) return
            c.ok = true
            c.okAt = history.next()
          })
        }))
    }
  }

  /** What a segment that landed says, kept in `logFacts`; and the rules best judged the moment it lands. */
  const landedSegment = (wr: StoreWrite) => {
    const facts = logFactsOf(w, wr.who)
    for (const e of wr.events ?? []) {
      switch (e._tag) {
        case "LeaderElected":
          facts.term = Math.max(facts.term, e.term)
          break
        case "CloneRequested":
        case "Cloned":
        case "Adopted": {
          const holder = facts.ownerOf.get(e.vmid)
          if (holder !== undefined && holder !== e.instanceId && facts.vmidOf.get(holder) === e.vmid && !facts.gone.has(holder)) {
            history.flag("vmid-unique", `VMID ${e.vmid} reserved for ${e.instanceId} (${e._tag}) while ${holder} still holds it (${wr.who} t${wr.term ?? "-"}, segment ${wr.seq})`)
          }
          facts.vmidOf.set(e.instanceId, e.vmid)
          facts.ownerOf.set(e.vmid, e.instanceId)
          if (e._tag === "CloneRequested") facts.reserved.add(e.vmid)
          break
        }
        case "DeleteRequested":
          facts.deleting.add(e.instanceId)
          break
        case "CloneAbandoned": {
          // Only a placeholder that is there, nameless and locked by its clone, may be reported dead.
          const vm = w.model.vms.get(e.vmid)
          if (vm === undefined || vm.config.has("name") || vm.config.get("lock") !== "clone") {
            history.flag("clone-abandoned", `${e.instanceId} reports VM ${e.vmid} a dead clone, but it is ${vm === undefined ? "gone" : `named ${vm.config.get("name") ?? "-"}, lock ${vm.config.get("lock") ?? "none"}`} (${wr.who} t${wr.term ?? "-"}, segment ${wr.seq})`)
          } else if ([...w.model.tasks.values()].some((task) => task.type === "qmclone" && task.status === "running" && task.log.some((line) => line.endsWith(` with ID ${e.vmid}`)))) {
            history.flag("clone-abandoned", `${e.instanceId} reports VM ${e.vmid} a dead clone while its clone still runs (${wr.who} t${wr.term ?? "-"}, segment ${wr.seq})`)
          }
          facts.abandoned.add(e.vmid)
          if (facts.ownerOf.get(e.vmid) === e.instanceId) facts.ownerOf.delete(e.vmid)
          if (facts.vmidOf.get(e.instanceId) === e.vmid) facts.vmidOf.delete(e.instanceId)
          break
        }
        case "VmDeleted":
          if (facts.ownerOf.get(e.vmid) === e.instanceId) facts.ownerOf.delete(e.vmid)
          break
        case "InstanceGone": {
          facts.gone.add(e.instanceId)
          const vmid = facts.vmidOf.get(e.instanceId)
          if (vmid !== undefined && facts.ownerOf.get(vmid) === e.instanceId) facts.ownerOf.delete(vmid)
          // The saga says the instance is gone: nothing of it may be left (the GC cleaning it later does not count).
          const left: Array<string> = []
          for (const vm of w.model.vms.values()) {
            const name = vm.config.get("name")
            if (name === e.instanceId) left.push(`VM ${vm.vmid} named after it`)
            else if (vm.vmid === vmid && name === undefined && !w.foreignVmids.has(vm.vmid) && cloneInFlight(e.instanceId, vmid)) left.push(`VM ${vm.vmid} still being cloned (lock: ${vm.config.get("lock") ?? "none"})`)
          }
          for (const volume of w.model.volumes.values()) if (volume.volid.endsWith(`nstance-${e.instanceId}.iso`)) left.push(`ISO ${volume.volid}`)
          if (left.length > 0) history.flag("saga-orphan", `${e.instanceId} recorded gone (${wr.who} t${wr.term ?? "-"}, segment ${wr.seq}) with ${left.join(", ")} left behind`)
          break
        }
        default:
          break
      }
    }
  }

  /**
   * Whether the placeholder at `vmid` is a clone of `id`: the last clone onto `vmid` that went out (of any
   * replica, of either shard) was for `id`, and its outcome is not known yet.
   */
  const cloneInFlight = (id: string, vmid: number) => {
    const last = history.pve.filter((c) => c.op === "clone" && c.landedAt !== undefined && c.args.includes(`"newid":${vmid},`)).at(-1)
    return last !== undefined && last.name === id && last.ok === undefined
  }

  /** A new VMID for an instance is waste when its last one holds its own VM. */
  const judgeVmidChange = (wr: StoreWrite) => {
    for (const e of wr.events ?? []) {
      if (e._tag !== "CloneRequested") continue
      const before = logFactsOf(w, wr.who).vmidOf.get(e.instanceId)
      if (before === undefined || before === e.vmid) continue
      // Free now is no proof: the VM that held it may have gone since (another shard's, an operator's, a failed clone).
      if (w.model.vms.get(before)?.config.get("name") === e.instanceId) {
        history.flag("vmid-bound", `${e.instanceId} reserves VMID ${e.vmid} while its VMID ${before} is its own VM (${wr.who} t${wr.term ?? "-"})`)
      }
    }
  }

  const settle = (wr: StoreWrite, outcome: WriteOutcome) => {
    history.settle(wr, outcome)
    if ((outcome === "applied" || outcome === "ambiguous") && wr.key.startsWith("log/")) landedSegment(wr)
  }

  const wrapStore = (who: Who, term: number | undefined, base: ObjectStoreShape): ObjectStoreShape => {
    const gate = <A, E>(operation: string, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | StoreUnavailable> =>
      Effect.gen(function* () {
        // A crashed incarnation's leader work makes no more calls (its lease may still resign as its scope closes).
        if (term !== undefined && w.dead.has(who)) return yield* Effect.never
        yield* w.pauses.gate(who)
        if (storeFaults.latencyMs > 0) yield* Effect.sleep(Duration.millis(prng.int(0, storeFaults.latencyMs)))
        if (storeFaults.partitioned.has(who)) {
          while (storeFaults.partitioned.has(who)) yield* Effect.sleep("1 second")
          return yield* new StoreUnavailable({ operation, key, reason: "timed out (partitioned)" })
        }
        if (storeFaults.lateLanding.has(who)) {
          yield* waitHealed(who)
          return yield* new StoreUnavailable({ operation, key, reason: "timed out (partitioned)" })
        }
        if (storeFaults.errorRate > 0 && prng.next() < storeFaults.errorRate) {
          return yield* new StoreUnavailable({ operation, key, reason: "503 Slow Down (injected)" })
        }
        const result = yield* effect
        // A paused replica does not read the answer of a call that went out before the pause until it resumes.
        yield* w.pauses.gate(who)
        return result
      })
    /** The log's conditional write as a broken build makes it (`lost-append-ok`, `unconditional-append`). */
    const putAs = (key: string, body: Uint8Array, pre: Precondition | undefined, wr: StoreWrite) => {
      if (!key.startsWith("log/") || term === undefined) return base.put(key, body, pre)
      if (w.breakMode === "unconditional-append") return base.put(key, body)
      if (w.breakMode === "lost-append-ok") {
        return base.put(key, body, pre).pipe(Effect.catchTag("PreconditionFailed", () =>
          Effect.sync(() => {
            settle(wr, "rejected")
            return { etag: "taken-as-written" }
          })))
      }
      return base.put(key, body, pre)
    }
    return {
      get: (key) => gate("get", key, base.get(key)),
      head: (key) => gate("head", key, base.head(key)),
      list: (prefix, startAfter) =>
        Stream.unwrap(gate("list", prefix, Effect.succeed(base.list(prefix, startAfter)))),
      delete: (key) =>
        Effect.suspend(() => {
          const wr = history.write({ who, term, op: "delete", key })
          return gate("delete", key, base.delete(key)).pipe(
            Effect.tapBoth({ onFailure: () => Effect.sync(() => settle(wr, "failed")), onSuccess: () => Effect.sync(() => settle(wr, "applied")) })
          )
        }),
      put: (key, written, pre) =>
        Effect.suspend(() => {
          let seq: number | undefined
          let events: StoreWrite["events"]
          let body = written
          if (w.registration.minted.length > 0) w.registration.leakCheck(textDecoder.decode(body), `store object ${key}`)
          if (key.startsWith("log/")) {
            const decoded = decodeSegmentBody(textDecoder.decode(body))
            if (Either.isRight(decoded)) {
              seq = decoded.right.seq
              events = decoded.right.events
              if (w.breakMode === "retire-deletes-at-once" && term !== undefined) {
                const broken = deleteAtRetirement(who, events)
                if (broken !== events) body = segmentBody(seq, broken)
                events = broken
              }
            }
          }
          const wr = history.write({ who, term, op: "put", key, seq, events })
          if (key.startsWith("log/")) judgeVmidChange(wr)
          const trigger = w.crashTrigger
          if (key.startsWith("log/") && term !== undefined && trigger !== undefined && trigger.who === who && --trigger.remaining <= 0) {
            w.crashTrigger = undefined
            if (trigger.mode === "before") {
              history.settle(wr, "hung")
              return crashFromWithin(who, `crash before log write ${key}`).pipe(Effect.zipRight(Effect.never))
            }
            return base.put(key, body, pre).pipe(
              Effect.tap(() => Effect.sync(() => settle(wr, "applied"))),
              Effect.zipRight(crashFromWithin(who, `crash after log write ${key}`)),
              Effect.zipRight(Effect.never)
            )
          }
          if (storeFaults.lateLanding.has(who)) {
            // The PUT is on its way and lands once the partition heals; the writer's client gives up first.
            return Effect.gen(function* () {
              yield* waitHealed(who).pipe(
                Effect.zipRight(putAs(key, body, pre, wr)),
                Effect.tapBoth({
                  onFailure: (error) => Effect.sync(() => { if (wr.outcome === undefined) settle(wr, error._tag === "PreconditionFailed" ? "rejected" : "failed") }),
                  onSuccess: () => Effect.sync(() => { if (wr.outcome === undefined) settle(wr, "applied") })
                }),
                Effect.ignore,
                Effect.forkIn(w.worldScope)
              )
              yield* Effect.sleep(Duration.millis(LATE_TIMEOUT_MS))
              return yield* new StoreUnavailable({ operation: "put", key, reason: "timed out (partitioned; the write may still land)" })
            })
          }
          // A pause armed for the next append holds the segment right before it goes out (a late-landing PUT).
          const armed = term !== undefined && key.startsWith("log/") ? arm(who, term, "append", undefined, "before") : Effect.void
          const wasPaused = w.pauses.isPaused(who)
          const put = gate("put", key, putAs(key, body, pre, wr)).pipe(
            Effect.flatMap((result) => {
              if (wr.outcome !== undefined) return Effect.succeed(result)
              if (w.chaosOn && storeFaults.ambiguousRate > 0 && prng.next() < storeFaults.ambiguousRate) {
                settle(wr, "ambiguous")
                return Effect.fail(new StoreUnavailable({ operation: "put", key, reason: "500 InternalError (injected; the write was applied)" }))
              }
              settle(wr, "applied")
              return Effect.succeed(result)
            }),
            Effect.tapError((error) => Effect.sync(() => {
              if (wr.outcome === undefined) settle(wr, error._tag === "PreconditionFailed" ? "rejected" : "failed")
            }))
          )
          // The PUT the pause caught is on the wire: it lands (and is settled) when the replica resumes, even if
          // its term was interrupted meanwhile (what it finds then is the newer leader's segment: refused). One
          // made while paused would really be made after the resume, and is interrupted with its term.
          const sent = Effect.suspend(() => !wasPaused && w.pauses.isPaused(who) ? Effect.flatMap(Effect.forkIn(put, w.worldScope), Fiber.join) : put)
          return Effect.zipRight(armed, sent)
        })
    }
  }

  /** Until `who`'s late-landing partition heals. */
  const waitHealed = (who: Who) =>
    Effect.gen(function* () {
      while (storeFaults.lateLanding.has(who)) yield* Effect.sleep("1 second")
    })

  return { wrapPve, wrapStore }
}
