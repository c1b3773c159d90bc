/**
 * Ownership beyond tags, in the simulated world: every VM names the event log that owns it in its notes, so
 * a server pointed at another (empty) bucket for a live shard adopts and deletes nothing of it and says how to
 * adopt deliberately; `adopt --from-log` does that; and a step never acts on a VMID from the log without
 * finding the instance's own VM there — an impossible or wrong record holds the instance, it never deletes
 * another VM.
 */
import { describe, expect, it } from "@effect/vitest"
import { RpcTest } from "@effect/rpc"
import { Chunk, Effect, Fiber, Layer, Option, Redacted, Schema, Stream, SubscriptionRef } from "effect"
import { Cloned, ShardEvent } from "../../src/domain/shard/events.js"
import { allInstances, type State } from "../../src/domain/shard/state.js"
import { replayStore, segmentKey } from "../../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../../src/layers/ObjectStoreMemory.js"
import { AdminRpcs } from "../../src/rpc/AdminRpc.js"
import { AdminHandlersLive } from "../../src/rpc/AdminServer.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import type { ProxmoxApiShape } from "../../src/services/ProxmoxApi.js"
import { ShardReplica } from "../../src/shard/ShardReplica.js"
import { buildReplica } from "../support/stackReplica.js"
import { leaseDouble } from "../support/leaseDouble.js"
import { CONFIG_KEY } from "../../src/domain/bucketKeys.js"
import {
  configText,
  freshInstanceId,
  GROUP,
  idOf,
  KIND,
  makeVmBehindOurBack,
  makeWorld,
  OUR_TAGS,
  parseConfig,
  SHARD,
  TENANT,
  type World
} from "../support/simWorld.js"

const graces = { orphan: "1 second", vmLoss: "1 second", unknownIso: "1 second" } as const

const MUTATING = new Set(["clone", "updateConfig", "resize", "start", "stop", "shutdown", "deleteVm", "upload", "deleteVolume"])

/** Wraps a PVE client so that every mutating call it makes is listed in `calls`. */
const recording = (calls: Array<string>) => (pve: ProxmoxApiShape): ProxmoxApiShape => {
  const wrapped: Record<string, unknown> = { ...pve }
  for (const [name, method] of Object.entries(pve)) {
    if (typeof method !== "function" || !MUTATING.has(name)) continue
    wrapped[name] = (...args: Array<unknown>) => {
      calls.push(`${name} ${String(args[1])}`)
      return (method as (...a: Array<unknown>) => unknown)(...args)
    }
  }
  return wrapped as unknown as ProxmoxApiShape
}

const stateOf = (store: ObjectStoreShape): Effect.Effect<State> => replayStore(store).pipe(Effect.map((r) => r.state), Effect.orDie)

const Segment = Schema.parseJson(Schema.Struct({ seq: Schema.Int, events: Schema.Array(ShardEvent) }))
const eventsOf = (store: ObjectStoreShape) =>
  Effect.gen(function* () {
    const keys = yield* store.list("log/").pipe(Stream.runCollect, Effect.map((c) => Chunk.toReadonlyArray(c).map((m) => m.key)))
    const out: Array<ShardEvent> = []
    for (const key of keys) out.push(...Schema.decodeUnknownSync(Segment)(new TextDecoder().decode((yield* store.get(key)).body)).events)
    return out
  }).pipe(Effect.orDie)

const descriptionOf = (w: World, vmid: number) => decodeURIComponent(w.model.vms.get(vmid)?.config.get("description") ?? "")

const adminClient = RpcTest.makeClient(AdminRpcs)
type AdminClient = Effect.Effect.Success<typeof adminClient>

/**
 * A leader with an admin endpoint (in process): on its own store and config (`size`) — a second shard log, as
 * a server on the wrong bucket — unless `on` gives the world's; with the calls it makes.
 */
const adminLeader = (w: World, size: number, on?: { readonly store: ObjectStoreShape; readonly term: number }) =>
  Effect.gen(function* () {
    const store = on?.store ?? makeMemoryStore()
    const config = on === undefined ? yield* SubscriptionRef.make(parseConfig(configText({ size }))) : w.config
    const replica = on === undefined ? "wrong-bucket" : `replica-${on.term}`
    const { lease } = yield* leaseDouble(replica, Effect.succeed(Option.some({ id: replica, address: "127.0.0.1:8991", term: 1 })))
    const handle = yield* buildReplica({ id: replica, config, lease, store, leader: false })
    const calls: Array<string> = []
    yield* w.leader(on?.term ?? 1, { store, config, handle, replica, wrapPve: recording(calls) })
    const handlers = AdminHandlersLive({ token: Redacted.make("t".repeat(32)), source: { _tag: "Store", key: CONFIG_KEY, shard: SHARD }, store }).pipe(
      Layer.provide(Layer.succeed(ShardReplica, handle))
    )
    /** Runs an admin call against this log's leader, as `nstance-admin` would, on the world's clock. */
    const admin = <A, E>(call: (client: AdminClient) => Effect.Effect<A, E>) =>
      w.drive(Effect.scoped(Effect.flatMap(adminClient, call)).pipe(Effect.provide(handlers)))
    return { store, config, calls, handle, admin, state: stateOf(store), events: eventsOf(store) }
  })

describe("ownership beyond tags (simulated world)", () => {
  it.scoped("a server on another, empty bucket adopts and deletes nothing of the live shard; it holds and says how to adopt", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 3, graces })
      yield* w.leader(1)
      yield* w.advanceUntil("3 running", w.convergence(3))
      const live = yield* w.state
      expect(live.logId).toMatch(/^log[0-9a-z]{26}$/)
      // Every VM the create saga made names its log.
      for (const vm of w.vms()) expect(descriptionOf(w, vm.vmid)).toContain(`log: ${live.logId}`)
      const before = w.vms().map((vm) => vm.vmid).sort()

      // The mistake: the same shard, an empty bucket, and a config that would scale the group down to 1.
      const wrong = yield* adminLeader(w, 1)
      // Reconcile and GC passes (1 s apart, orphan grace 1 s) for a while.
      yield* w.advance("15 seconds")

      expect(w.vms().map((vm) => vm.vmid).sort()).toEqual(before)
      expect(yield* w.convergence(3)).toEqual([])
      expect(wrong.calls).toEqual([])
      const theirs = yield* wrong.events
      expect(theirs.map((e) => e._tag).filter((tag) => tag !== "VmidsSeen")).toEqual(["LeaderElected", "LogIdentity"])
      const wrongLog = (yield* wrong.state).logId
      expect(wrongLog).toMatch(/^log/)
      expect(wrongLog).not.toBe(live.logId)
      // Said once, as an error naming the live log and the command.
      const said = w.logs.filter((line) => line.includes(`adopt --from-log ${live.logId}`) && line.includes("ERROR"))
      expect(said).toHaveLength(1)
      expect(said[0]).toContain(`this shard's event log ${wrongLog} is new, but 3 VMs with this shard's tags belong to another log`)
      // And `nstance-admin status` says it too.
      const status = yield* wrong.admin((rpc) => rpc.Status())
      expect(status.logId).toBe(wrongLog)
      expect(status.ownership).toContain(`nstance-admin adopt --from-log ${live.logId}`)
      expect(status.instances).toBe(0)

      // The live shard goes on as before: a scale-up there is not disturbed by the other server.
      yield* w.setConfig({ size: 4 })
      yield* w.advanceUntil("4 running", w.convergence(4))
      yield* w.advance("5 seconds")
      expect(wrong.calls).toEqual([])
      expect(w.vms()).toHaveLength(4)
      // The held server keeps looking: its status counts the live shard's new VM too.
      expect((yield* wrong.admin((rpc) => rpc.Status())).ownership).toContain("is new, but 4 VMs with this shard's tags")
    }))

  it.scoped("`adopt --from-log` takes the other log's VMs over: recorded, notes rewritten, managed from then on", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, graces })
      const first = yield* w.leader(1)
      yield* w.advanceUntil("2 running", w.convergence(2))
      const oldLog = (yield* w.state).logId!
      const vms = w.vms().map((vm) => vm.vmid).sort()
      // The operator moves the shard to a new bucket: the old server is stopped, a new one starts there.
      yield* Fiber.interrupt(first)
      const moved = yield* adminLeader(w, 2)
      yield* w.advance("10 seconds")
      expect(moved.calls).toEqual([])
      expect(allInstances(yield* moved.state)).toEqual([])

      // A log ID that names nothing is refused, saying which logs there are.
      const typo = yield* Effect.flip(moved.admin((rpc) => rpc.AdoptVms({ fromLog: `log${"0".repeat(26)}` })))
      expect(typo).toMatchObject({ _tag: "NothingToAdopt" })
      expect(typo.message).toContain(oldLog)

      const result = yield* moved.admin((rpc) => rpc.AdoptVms({ fromLog: oldLog }))
      expect(result.adopted.map((vm) => vm.vmid).sort()).toEqual(vms)
      expect(result.unstamped).toEqual([])
      const newLog = (yield* moved.state).logId!
      const adopted = allInstances(yield* moved.state)
      expect(adopted.map((i) => i.vmid).sort()).toEqual(vms)
      expect(adopted.every((i) => i.adopted && i.phase === "running" && i.tenant === TENANT && i.group === GROUP)).toBe(true)
      // Their notes name the new log now (nothing else in them changed), so the old log would leave them alone.
      for (const vmid of vms) {
        expect(descriptionOf(w, vmid)).toContain(`log: ${newLog}`)
        expect(descriptionOf(w, vmid)).not.toContain(oldLog)
        expect(descriptionOf(w, vmid)).toContain(`group: ${GROUP}`)
      }
      const status = yield* moved.admin((rpc) => rpc.Status())
      expect(status.ownership).toBeUndefined()

      // From now on they are the new log's: a scale-down deletes one of them, a scale-up creates.
      yield* SubscriptionRef.set(moved.config, parseConfig(configText({ size: 1 })))
      yield* w.advanceUntil("one deleted", Effect.sync(() => (w.vms().length === 1 ? [] : [`${w.vms().length} VMs`])))
      yield* w.advance("5 seconds")
      expect(w.vms()).toHaveLength(1)
      expect(vms).toContain(w.vms()[0]!.vmid)
    }))

  it.scoped("a VM whose notes name another log is never collected, even by a log that has instances of its own", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
      yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      const other = `log${"7".repeat(26)}`
      const name = freshInstanceId(KIND)
      const made = yield* w.drive(makeVmBehindOurBack(w.pve, {
        name, node: "pve2", tags: OUR_TAGS, start: true,
        description: `# DO NOT EDIT BELOW - managed by nstance #\ntenant: ${TENANT}\ngroup: ${GROUP}\nlog: ${other}\n# DO NOT EDIT ABOVE - managed by nstance #`
      }))
      yield* w.advance("20 seconds")
      expect(w.model.vms.get(made.vmid)?.status).toBe("running")
      expect((yield* w.events).filter((e) => idOf(e) === name)).toEqual([])
      expect(w.logs.filter((line) => line.includes(`belong to another event log, not this one: ${other} (VM ${made.vmid})`))).toHaveLength(1)
      expect(yield* Effect.map(w.state, (s) => allInstances(s).length)).toBe(1)
    }))

  it.scoped("a VM of the original server is adopted, kept, and its notes get this log's identity in their own style", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
      const name = freshInstanceId(KIND)
      const description = ["Operator text stays.", "**DO NOT EDIT BELOW - managed by nstance**", `tenant: ${TENANT}`, `group: ${GROUP}`, "**DO NOT EDIT ABOVE - managed by nstance**"].join("\n")
      const made = yield* w.drive(makeVmBehindOurBack(w.pve, { name, node: "pve2", tags: OUR_TAGS, description, start: true }))
      yield* w.leader(1)
      yield* w.advanceUntil("adopted and stamped", Effect.sync(() => (descriptionOf(w, made.vmid).includes("log: log") ? [] : [descriptionOf(w, made.vmid)])))
      const logId = (yield* w.state).logId
      expect(descriptionOf(w, made.vmid)).toBe(description.replace("\n**DO NOT EDIT ABOVE", `\nlog: ${logId}\n**DO NOT EDIT ABOVE`))
      yield* w.advance("10 seconds")
      expect(allInstances(yield* w.state).map((i) => i.id)).toEqual([name])
      expect(w.vms().map((vm) => vm.vmid)).toEqual([made.vmid])
    }))

  it.scoped("an impossible Cloned segment (B given A's VMID) deletes no VM", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, graces })
      const first = yield* w.leader(1)
      yield* w.advanceUntil("2 running", w.convergence(2))
      const [a, b] = allInstances(yield* w.state)
      yield* Fiber.interrupt(first)
      const seq = (yield* replayStore(w.store).pipe(Effect.orDie)).seq
      const forged = Schema.encodeSync(ShardEvent)(Cloned.make({ instanceId: b!.id, at: 0, vmid: a!.vmid!, node: a!.node! }))
      yield* w.store.put(segmentKey(seq + 1), new TextEncoder().encode(JSON.stringify({ seq: seq + 1, events: [forged] }))).pipe(Effect.orDie)
      const calls: Array<string> = []
      yield* w.leader(2, { wrapPve: recording(calls) })
      yield* w.advance("30 seconds")
      // Both VMs are still there and running; nothing was done to either.
      for (const i of [a!, b!]) {
        expect(w.model.vms.get(i.vmid!)?.config.get("name")).toBe(i.id)
        expect(w.model.vms.get(i.vmid!)?.status).toBe("running")
      }
      expect(calls.filter((call) => !call.startsWith("upload"))).toEqual([])
      expect((yield* w.events).filter((e) => e._tag === "DeleteRequested")).toEqual([])
    }))

  it.scoped("a wrong VMID from the log that passes the fold is checked on PVE: the instance is held, the other VM untouched", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
      // Someone else's VM, untagged.
      const db = yield* w.drive(makeVmBehindOurBack(w.pve, { name: "db-primary", node: "pve1", start: true }))
      // The leader dies right before recording its clone: the log says "cloning", the clone exists.
      yield* w.crashLeader(1, { event: "Cloned", mode: "before" })
      const [b] = allInstances(yield* w.state)
      expect(b!.phase).toBe("cloning")
      yield* w.advanceUntil("the clone landed", Effect.sync(() => (w.vms().some((vm) => vm.config.get("name") === b!.id && vm.config.get("lock") === undefined) ? [] : ["no clone yet"])))
      const clone = w.vms().find((vm) => vm.config.get("name") === b!.id)!.vmid
      // A hand-edited segment claims the clone went to the database's VMID: a VMID no instance has, so the fold takes it.
      const seq = (yield* replayStore(w.store).pipe(Effect.orDie)).seq
      const forged = Schema.encodeSync(ShardEvent)(Cloned.make({ instanceId: b!.id, at: 0, vmid: db.vmid, node: db.node }))
      yield* w.store.put(segmentKey(seq + 1), new TextEncoder().encode(JSON.stringify({ seq: seq + 1, events: [forged] }))).pipe(Effect.orDie)
      expect(allInstances(yield* w.state)[0]).toMatchObject({ phase: "cloned", vmid: db.vmid })
      const before = new Map(w.model.vms.get(db.vmid)!.config)

      yield* w.leader(2)
      yield* w.advanceUntil("held", Effect.map(w.state, (s) => (allInstances(s)[0]?.held === undefined ? ["not held"] : [])))
      yield* w.advance("20 seconds")
      const events = yield* w.events
      expect(events.find((e) => e._tag === "VmMismatched")).toMatchObject({ instanceId: b!.id, vmid: db.vmid, found: "db-primary", step: "configure" })
      expect(w.logs.some((line) => line.includes("ERROR") && line.includes(`is named db-primary, while ${b!.id} is VM ${clone}`))).toBe(true)
      // The database VM was neither configured nor started nor deleted; the instance's own clone is still there.
      expect(new Map(w.model.vms.get(db.vmid)!.config)).toEqual(before)
      expect(w.model.vms.get(clone)?.config.get("name")).toBe(b!.id)
      expect(events.filter((e) => e._tag === "DeleteRequested" || e._tag === "Configured")).toEqual([])
    }))

  it.scoped("a delete never touches a VM named after the instance whose notes name another log; an operator's delete drops only the record", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
      const leader = yield* adminLeader(w, 1, { store: w.store, term: 1 })
      yield* w.advanceUntil("1 running", w.convergence(1))
      const [i] = allInstances(yield* w.state)
      const own = (yield* w.state).logId!
      const other = `log${"9".repeat(26)}`
      // Another log took the VM over (its notes rewritten) while this log still lists it.
      yield* w.drive(w.pve.updateConfig(i!.node!, i!.vmid!, { description: descriptionOf(w, i!.vmid!).replace(own, other) }).pipe(Effect.orDie))
      yield* w.setConfig({ size: 0 })
      yield* w.advanceUntil("held", Effect.map(w.state, (s) => (allInstances(s)[0]?.held === undefined ? ["not held"] : [])))
      yield* w.advance("10 seconds")
      expect(w.model.vms.get(i!.vmid!)?.status).toBe("running")
      expect((yield* w.events).find((e) => e._tag === "VmMismatched")).toMatchObject({ instanceId: i!.id, otherLog: other, step: "stop" })
      const status = yield* leader.admin((rpc) => rpc.Status())
      expect(status.held?.map((h) => h.instanceId)).toEqual([i!.id])

      // The operator's decision: the instance goes from this log; the other log's VM stays as it is.
      const callsBefore = leader.calls.length
      yield* leader.admin((rpc) => rpc.DeleteInstance({ instanceId: i!.id }))
      yield* w.advanceUntil("gone from the log", Effect.map(w.state, (s) => (allInstances(s).length === 0 ? [] : ["still there"])))
      yield* w.advance("10 seconds")
      expect(w.model.vms.get(i!.vmid!)?.status).toBe("running")
      expect(leader.calls.slice(callsBefore).filter((call) => call.endsWith(` ${i!.vmid}`))).toEqual([])
    }))
})
