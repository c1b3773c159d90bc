/**
 * The fold refuses impossible histories: two instances on one VMID, a second VMID for a cloned instance, an
 * event for an instance the log does not know, a repeated creation. Each is an anomaly recorded with its
 * seq, and the instances it touches are held — no saga step, delete or GC acts on them — while every other
 * instance goes on. First on the pure fold (and on any generated history: the fold never throws and its
 * snapshot keeps holds and VMID owners), then end to end: the segment giving instance B the VMID of
 * A's VM, replayed by a new leader on the simulator, deletes nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Chunk, Effect, Either, Equal, FastCheck, Fiber, HashMap, Option, Stream } from "effect"
import {
  Adopted,
  Cloned,
  CloneRequested,
  Configured,
  DeleteRequested,
  InstanceGone,
  InstanceRequested,
  LeaderElected,
  NodeChosen,
  ShardEvent,
  Started,
  StepFailed,
  VmDeleted
} from "../../src/domain/shard/events.js"
import { decodeState, encodeState, fold, getInstance, heldInstances, type State } from "../../src/domain/shard/state.js"
import { planReconcile } from "../../src/domain/shard/plan.js"
import { makeWorld } from "../support/simWorld.js"

const at = 1_700_000_000_000
const A = "webaaaaaaaaaaaaaaaaaaaaaaaaaa"
const B = "webbbbbbbbbbbbbbbbbbbbbbbbbbb"
const C = "webccccccccccccccccccccccccc"

/** `id` requested, cloned as `vmid` on pve1 and running. */
const running = (id: string, vmid: number) => [
  InstanceRequested.make({ instanceId: id, at, tenant: "shop", group: "web", kind: "web", specHash: "h", reason: "scale-up" }),
  NodeChosen.make({ instanceId: id, at, node: "pve1" }),
  CloneRequested.make({ instanceId: id, at, vmid, node: "pve1", templateVmid: 9000, templateNode: "pve1" }),
  Cloned.make({ instanceId: id, at, vmid, node: "pve1" }),
  Configured.make({ instanceId: id, at }),
  Started.make({ instanceId: id, at })
]

const instance = (state: State, id: string) => Option.getOrThrow(getInstance(state, id))
const json = (value: unknown) => JSON.parse(JSON.stringify(value))

describe("the fold refuses impossible histories", () => {
  const base = fold([LeaderElected.make({ term: 1, replica: "r" }), ...running(A, 9101), ...running(B, 9102), ...running(C, 9103)], undefined, 1)

  it("a Cloned giving B the VMID of A's VM holds both, keeps B's own VMID and leaves C alone", () => {
    const after = fold([Cloned.make({ instanceId: B, at, vmid: 9101, node: "pve1" })], base, 42)
    expect(after.anomalies).toBe(1)
    expect(after.recentAnomalies).toEqual([
      { seq: 42, event: "Cloned", instanceId: B, vmid: 9101, reason: `Cloned gives ${B} VMID 9101, which belongs to ${A}`, held: [B, A] }
    ])
    expect(instance(after, A)).toMatchObject({ vmid: 9101, phase: "running", held: { seq: 42 } })
    // Not applied: B is not "running as VM 9101", its phase did not go back to cloned.
    expect(instance(after, B)).toMatchObject({ vmid: 9102, phase: "running", held: { seq: 42 } })
    expect(instance(after, C)).toBe(instance(base, C))
    expect(heldInstances(after).map((i) => i.id)).toEqual([A, B])
    expect(HashMap.get(after.vmidOwners, 9101)).toEqual(Option.some(A))
    expect(HashMap.get(after.vmidOwners, 9102)).toEqual(Option.some(B))
  })

  it("a second VMID for an instance whose clone finished holds it", () => {
    const after = fold([CloneRequested.make({ instanceId: C, at, vmid: 9999, node: "pve2", templateVmid: 9000, templateNode: "pve2" })], base, 7)
    expect(instance(after, C)).toMatchObject({ vmid: 9103, node: "pve1", held: { seq: 7, reason: `CloneRequested gives ${C} VMID 9999, but its clone had finished as VM 9103` } })
    expect(heldInstances(after).map((i) => i.id)).toEqual([C])
    // The reservation still raises the high-water mark: the VMID is never handed out again.
    expect(after.vmidHighWater).toBe(9999)
  })

  it("an event for an unknown instance changes nothing, and one naming a known VMID holds that VMID's owner", () => {
    const quiet = fold([Started.make({ instanceId: "webzzzzzzzzzzzzzzzzzzzzzzzzzz", at })], base, 5)
    expect(quiet.recentAnomalies).toEqual([
      { seq: 5, event: "Started", instanceId: "webzzzzzzzzzzzzzzzzzzzzzzzzzz", reason: "Started for webzzzzzzzzzzzzzzzzzzzzzzzzzz, which the log does not know", held: [] }
    ])
    expect(heldInstances(quiet)).toEqual([])
    const claiming = fold([Cloned.make({ instanceId: "webzzzzzzzzzzzzzzzzzzzzzzzzzz", at, vmid: 9103, node: "pve1" })], base, 6)
    expect(heldInstances(claiming).map((i) => [i.id, i.held?.seq])).toEqual([[C, 6]])
    expect(claiming.recentAnomalies[0]).toMatchObject({ seq: 6, vmid: 9103, held: [C] })
  })

  it("an adoption of a VMID another instance owns holds both, and a repeated creation holds the instance", () => {
    const adopted = fold([Adopted.make({ instanceId: "dbsaaaaaaaaaaaaaaaaaaaaaaaaaa", at, vmid: 9102, node: "pve1", kind: "dbs", status: "running" })], base, 9)
    expect(heldInstances(adopted).map((i) => i.id)).toEqual(["dbsaaaaaaaaaaaaaaaaaaaaaaaaaa", B])
    expect(instance(adopted, "dbsaaaaaaaaaaaaaaaaaaaaaaaaaa").vmid).toBeUndefined()
    const repeated = fold([InstanceRequested.make({ instanceId: A, at, tenant: "x", group: "y", kind: "web", specHash: "h", reason: "operator" })], base, 10)
    expect(instance(repeated, A)).toMatchObject({ tenant: "shop", group: "web", held: { seq: 10 } })
  })

  it("held instances are never scaled away, but count towards their group", () => {
    const held = fold([Cloned.make({ instanceId: B, at, vmid: 9101, node: "pve1" })], base, 42)
    const target = { tenant: "shop", group: "web", kind: "web", specHash: "h", infraHash: "sha256:h", drainTimeoutMs: 0 }
    expect(planReconcile(held, [{ ...target, size: 1 }])).toEqual([{ _tag: "Delete", instanceId: C }])
    expect(planReconcile(held, [{ ...target, size: 4 }]).filter((a) => a._tag === "Create")).toHaveLength(1)
    // A group no longer in the config: its held instances stay.
    expect(planReconcile(held, [])).toEqual([{ _tag: "Delete", instanceId: C }])
  })

  it("an operator's delete is the one way out of a hold; any other delete request keeps it", () => {
    const held = fold([Cloned.make({ instanceId: B, at, vmid: 9101, node: "pve1" })], base, 42)
    const byGc = fold([DeleteRequested.make({ instanceId: B, at, reason: "gc" })], held, 43)
    expect(instance(byGc, B).held).toBeDefined()
    const byOperator = fold([DeleteRequested.make({ instanceId: B, at, reason: "operator" })], byGc, 44)
    expect(instance(byOperator, B).held).toBeUndefined()
    expect(instance(byOperator, A).held).toBeDefined()
  })

  it("a clone after the instance's VM was deleted is impossible, and the freed VMID may be claimed again", () => {
    const deleted = fold([DeleteRequested.make({ instanceId: C, at, reason: "scale-down" }), VmDeleted.make({ instanceId: C, at, vmid: 9103 })], base, 3)
    expect(HashMap.has(deleted.vmidOwners, 9103)).toBe(false)
    const late = fold([Cloned.make({ instanceId: C, at, vmid: 9200, node: "pve1" })], deleted, 4)
    expect(instance(late, C).held).toMatchObject({ seq: 4 })
    const gone = fold([InstanceGone.make({ instanceId: C, at })], deleted, 5)
    const reused = fold([...running("webddddddddddddddddddddddddd", 9103)], gone, 6)
    expect(heldInstances(reused)).toEqual([])
  })

  it("a 10 MB failure message is stored in the state cut to a few KB", () => {
    const after = fold([StepFailed.make({ instanceId: A, at, step: "clone", errorClass: "permanent", message: "x".repeat(10 * 1024 * 1024), attempt: 1 })], base, 50)
    const message = instance(after, A).lastError?.message ?? ""
    expect(message.length).toBeLessThanOrEqual(2048)
    expect(message).toMatch(/\[cut: 10485760 characters\]$/)
  })

  // Any history at all — events over a small pool of ids and VMIDs, so they collide — folds without
  // throwing, and a snapshot of the result keeps the holds, the anomalies and who owns which VMID.
  const ids = [A, B, C, "webddddddddddddddddddddddddd"]
  const anyEvent: FastCheck.Arbitrary<ShardEvent> = FastCheck.tuple(Arbitrary.make(ShardEvent), FastCheck.constantFrom(...ids), FastCheck.constantFrom(9101, 9102, 9103)).map(
    ([event, instanceId, vmid]) => ({ ...event, ...("instanceId" in event ? { instanceId } : {}), ...("vmid" in event ? { vmid } : {}) }) as ShardEvent
  )
  const request = FastCheck.constantFrom(...ids).map((instanceId) =>
    InstanceRequested.make({ instanceId, at, tenant: "t", group: "g", kind: "web", specHash: "h", reason: "scale-up" })
  )
  const histories = FastCheck.array(FastCheck.oneof({ arbitrary: anyEvent, weight: 4 }, { arbitrary: request, weight: 1 }), { maxLength: 80 })

  it.prop("any history folds without throwing, and survives a snapshot with its holds and VMID owners", [histories], ([events]) => {
    const finite = events.filter((e) => !("at" in e) || Number.isFinite(e.at))
    let state = base
    finite.forEach((event, i) => {
      state = fold([event], state, i + 2)
    })
    const decoded = decodeState(json(encodeState(state)))
    expect(Either.isRight(decoded)).toBe(true)
    if (Either.isLeft(decoded)) return
    expect(json(encodeState(decoded.right))).toEqual(json(encodeState(state)))
    expect(Equal.equals(decoded.right.vmidOwners, state.vmidOwners)).toBe(true)
    // A VMID never has two owners among the instances that still own one.
    const owned = new Map<number, string>()
    for (const [, i] of state.instances) {
      if (i.vmid === undefined || i.cleanup.vmDeleted) continue
      expect(owned.get(i.vmid)).toBeUndefined()
      owned.set(i.vmid, i.id)
    }
  })
})

describe("an impossible segment replayed by a new leader (simulated world)", () => {
  it.scoped("B given the VMID of A's VM: both held, no VM deleted, logged once naming the seq, instance and VMID; the group still grows", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, graces: { orphan: "30 seconds", vmLoss: "5 seconds" } })
      const first = yield* w.leader(1)
      yield* w.advanceUntil("2 running", w.convergence(2))
      yield* Fiber.interrupt(first)
      const state = yield* w.state
      const [a, b] = heldInstancesOrAll(state)
      // The segment: valid, but B's clone is said to have made A's VM.
      const seq = Chunk.size(yield* w.store.list("log/").pipe(Stream.runCollect, Effect.orDie)) + 1
      const segment = { seq, events: [{ _tag: "Cloned", v: 1, instanceId: b.id, at: yield* w.now, vmid: a.vmid, node: a.node }] }
      yield* w.store.put(`log/${String(seq).padStart(16, "0")}.json`, new TextEncoder().encode(JSON.stringify(segment))).pipe(Effect.orDie)
      const vmsBefore = w.vms().map((vm) => `${vm.vmid}:${vm.config.get("name")}`).sort()

      yield* w.leader(2)
      // Several GC passes past every grace: nothing is replaced, nothing collected.
      yield* w.advance("3 minutes")
      expect(w.vms().map((vm) => `${vm.vmid}:${vm.config.get("name")}`).sort()).toEqual(vmsBefore)
      const after = yield* w.state
      expect(heldInstances(after).map((i) => i.id).sort()).toEqual([a.id, b.id].sort())
      expect(Option.getOrThrow(getInstance(after, b.id)).vmid).toBe(b.vmid)
      const said = w.logs.filter((line) => line.includes("impossible event at"))
      expect(said).toHaveLength(1)
      expect(said[0]).toContain(`seq ${seq}`)
      expect(said[0]).toContain(b.id)
      expect(said[0]).toContain(`VMID ${a.vmid}`)
      expect((yield* w.events).filter((e) => e.seq > seq && "instanceId" in e && (e.instanceId === a.id || e.instanceId === b.id))).toEqual([])

      // The rest of the shard is managed as ever: a third instance is created and runs.
      yield* w.setConfig({ size: 3 })
      yield* w.advanceUntil("a third instance runs", Effect.map(w.state, (s) => {
        const others = [...HashMap.values(s.instances)].filter((i) => i.held === undefined)
        return others.length === 1 && others[0]?.phase === "running" ? [] : [`others: ${others.map((i) => i.phase).join(", ")}`]
      }))
      expect(w.vms()).toHaveLength(3)
      expect(w.defects()).toEqual([])
    }), 20_000)
})

/** The two running instances of a converged world, oldest first. */
const heldInstancesOrAll = (state: State) => {
  const all = [...HashMap.values(state.instances)].sort((x, y) => (x.id < y.id ? -1 : 1))
  if (all.length !== 2 || all.some((i) => i.vmid === undefined || i.node === undefined)) throw new Error("expected two running instances")
  return all as [typeof all[0] & { vmid: number; node: string }, typeof all[0] & { vmid: number; node: string }]
}
