/**
 * The recording, fault-injecting wrappers each replica incarnation runs on: a `ProxmoxApi` that records
 * every call (and samples the cluster after it), and an `ObjectStore` that records every write with its
 * outcome and injects the store faults in force — errors, latency, partitions, ambiguous writes, and the
 * crash right before or after a log write — and, in a deliberately broken build, changes what a leader logs.
 */
import { Duration, Effect, Either, Option, Schema, Stream } from "effect"
import { ShardEvent, type ShardEventEncoded } from "../../src/domain/shard/events.js"
import { segmentBody } from "../../src/layers/eventLog/format.js"
import { type ObjectStoreShape, StoreUnavailable } from "../../src/services/ObjectStore.js"
import type { ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { sampleModel } from "./checks.js"
import type { PveTarget, StoreWrite, Who } from "./history.js"
import type { ChaosWorld } from "./state.js"

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

  /** What a mutation acts on, read from the simulated cluster as the call starts (for the cross-shard rules). */
  const targetOf = (op: string, args: ReadonlyArray<unknown>): PveTarget | undefined => {
    if (!w.shape.twoShards || !MUTATIONS.has(op)) return undefined
    if (op === "deleteVolume" || op === "upload") {
      const arg = args[2]
      const file = op === "upload" && typeof arg === "object" && arg !== null && "filename" in arg ? arg.filename : arg
      const m = typeof file === "string" ? /nstance-([a-z0-9]+)\.iso$/.exec(file) : null
      return m === null ? undefined : { instance: m[1] }
    }
    if (op === "clone") return undefined
    const vmid = args[1]
    const vm = typeof vmid === "number" ? w.model.vms.get(vmid) : undefined
    return vm === undefined ? undefined : { vmid: vm.vmid, tags: vm.config.get("tags"), instance: vm.config.get("name") }
  }

  const wrapPve = (who: Who, term: number): ProxmoxApiShape => {
    const tap = <Args extends ReadonlyArray<unknown>, A, E>(op: string, f: (...args: Args) => Effect.Effect<A, E>, nameOf?: (...args: Args) => string | undefined) =>
      (...args: Args): Effect.Effect<A, E> =>
        Effect.suspend(() => {
          const mutation = MUTATIONS.has(op)
          const name = nameOf?.(...args)
          history.pveStart(who, term, op, mutation ? formatArgs(args) : "", mutation, name, targetOf(op, args))
          return f(...args).pipe(Effect.ensuring(Effect.sync(() => sampleModel(w))))
        })
    const p = w.simPve
    return {
      version: tap("version", p.version),
      permissions: tap("permissions", p.permissions),
      nodeResources: tap("nodeResources", p.nodeResources),
      vmResources: tap("vmResources", p.vmResources),
      clusterStatus: tap("clusterStatus", p.clusterStatus),
      nextId: tap("nextId", p.nextId),
      nodeStatus: tap("nodeStatus", p.nodeStatus),
      listQemu: tap("listQemu", p.listQemu),
      vmConfig: tap("vmConfig", p.vmConfig),
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
      taskStatus: tap("taskStatus", p.taskStatus),
      waitTask: tap("waitTask", p.waitTask)
    }
  }

  const wrapStore = (who: Who, term: number | undefined, base: ObjectStoreShape): ObjectStoreShape => {
    const gate = <A, E>(operation: string, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | StoreUnavailable> =>
      Effect.gen(function* () {
        if (storeFaults.latencyMs > 0) yield* Effect.sleep(Duration.millis(prng.int(0, storeFaults.latencyMs)))
        if (storeFaults.partitioned.has(who)) {
          while (storeFaults.partitioned.has(who)) yield* Effect.sleep("1 second")
          return yield* new StoreUnavailable({ operation, key, reason: "timed out (partitioned)" })
        }
        if (storeFaults.errorRate > 0 && prng.next() < storeFaults.errorRate) {
          return yield* new StoreUnavailable({ operation, key, reason: "503 Slow Down (injected)" })
        }
        return yield* effect
      })
    return {
      get: (key) => gate("get", key, base.get(key)),
      head: (key) => gate("head", key, base.head(key)),
      list: (prefix, startAfter) =>
        Stream.unwrap(gate("list", prefix, Effect.succeed(base.list(prefix, startAfter)))),
      delete: (key) =>
        Effect.suspend(() => {
          const wr = history.write({ who, term, op: "delete", key })
          return gate("delete", key, base.delete(key)).pipe(
            Effect.tapBoth({ onFailure: () => Effect.sync(() => history.settle(wr, "failed")), onSuccess: () => Effect.sync(() => history.settle(wr, "applied")) })
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
          const trigger = w.crashTrigger
          if (key.startsWith("log/") && term !== undefined && trigger !== undefined && trigger.who === who && --trigger.remaining <= 0) {
            w.crashTrigger = undefined
            if (trigger.mode === "before") {
              history.settle(wr, "hung")
              return crashFromWithin(who, `crash before log write ${key}`).pipe(Effect.zipRight(Effect.never))
            }
            return base.put(key, body, pre).pipe(
              Effect.tap(() => Effect.sync(() => history.settle(wr, "applied"))),
              Effect.zipRight(crashFromWithin(who, `crash after log write ${key}`)),
              Effect.zipRight(Effect.never)
            )
          }
          return gate("put", key, base.put(key, body, pre)).pipe(
            Effect.flatMap((result) => {
              if (w.chaosOn && storeFaults.ambiguousRate > 0 && prng.next() < storeFaults.ambiguousRate) {
                history.settle(wr, "ambiguous")
                return Effect.fail(new StoreUnavailable({ operation: "put", key, reason: "500 InternalError (injected; the write was applied)" }))
              }
              history.settle(wr, "applied")
              return Effect.succeed(result)
            }),
            Effect.tapError((error) => Effect.sync(() => {
              if (wr.outcome === undefined) history.settle(wr, error._tag === "PreconditionFailed" ? "rejected" : "failed")
            }))
          )
        })
    }
  }

  return { wrapPve, wrapStore }
}
