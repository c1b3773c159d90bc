/**
 * PVE calls per create and per delete, counted where PVE sees them (the simulator's request log), from the
 * leader's start through its first five creates and then the five deletes of a scale to zero — the budget of
 * issue 25: at most 5 non-polling calls per create (its mutations and a share of one `/cluster/resources`
 * read) and 4 per delete. Task-status polls are not counted. Beside the budget, what the fewer reads must
 * not cost: a delete resumed in a new term checks the VM again, and a VM started again behind our back
 * between the stop and the delete is still stopped and deleted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, SubscriptionRef } from "effect"
import { allInstances, type State } from "../../src/domain/shard/state.js"
import type { RequestLogEntry } from "../../src/sim/model/state.js"
import { makeWorld, type World } from "../support/simWorld.js"
import { parseConfig, shardConfigText } from "../support/shardConfig.js"

const TASK_POLL = "GET /nodes/{node}/tasks/{upid}/status"
const NODES = 3
const VMS = 5

/**
 * One group of `size` VMs whose instance type asks for the template's own 2 GiB disk, so no create needs a
 * resize (as 2 of the 5 creates the issue counted did not); GC passes, a periodic cluster read of their own,
 * are out of the window (a 1 h interval).
 */
const configOf = (size: number) =>
  parseConfig(shardConfigText({
    title: "pve call budget",
    gcInterval: "1h",
    registrationTimeout: "2h",
    greeting: "hello",
    groups: [{ group: "web", kind: "web", cpu: 1, memoryMiB: 512, diskGiB: 2, size }]
  }))

/** Requests by endpoint template, task polls left out. */
const byEndpoint = (requests: ReadonlyArray<RequestLogEntry>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of requests) {
    const key = r.endpoint ?? `${r.method} ${r.path}`
    if (key !== TASK_POLL) out[key] = (out[key] ?? 0) + 1
  }
  return out
}

const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)

/**
 * The preflight's own checks at the term's start — one run: the version, the token's permissions, and each
 * node's storages and bridges. They are made once per term and every 5 minutes whatever the creates, so they
 * are listed but not charged to the creates (its nodes and VMs come from the shared cluster read, which is).
 */
const PREFLIGHT_RUN: Record<string, number> = {
  "GET /version": 1,
  "GET /access/permissions": 1,
  "GET /nodes/{node}/storage": NODES,
  "GET /nodes/{node}/network": NODES
}

const withoutPreflightRun = (counts: Record<string, number>) => {
  const out = { ...counts }
  for (const [endpoint, n] of Object.entries(PREFLIGHT_RUN)) {
    const left = (out[endpoint] ?? 0) - n
    if (left > 0) out[endpoint] = left
    else delete out[endpoint]
  }
  return out
}

const running = (size: number) => (state: State) => {
  const instances = allInstances(state)
  return instances.length === size && instances.every((i) => i.phase === "running") ? [] : [`${instances.map((i) => i.phase).join(", ")}`]
}

const atZero = (w: World) => Effect.map(w.state, (state) => (allInstances(state).length === 0 && w.vms().length === 0 ? [] : ["not yet at zero"]))

describe("PVE calls per create and per delete (issue 25)", () => {
  it.scoped("5 creates from the leader's start: ≤ 5 non-polling calls each; 5 deletes: ≤ 4 each — and which calls", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 0, gcInterval: "1h", registrationTimeout: "2h" })
      const config = yield* SubscriptionRef.make(configOf(VMS))
      const from = w.model.requests.length
      yield* w.leader(1, { config })
      yield* w.advanceUntil(`${VMS} running`, Effect.map(w.state, running(VMS)))
      const startAndCreates = byEndpoint(w.model.requests.slice(from))
      // Exactly one preflight run happened in the window (what is set apart below).
      expect(startAndCreates["GET /version"]).toBe(1)
      const creates = withoutPreflightRun(startAndCreates)

      const deleteFrom = w.model.requests.length
      yield* SubscriptionRef.set(config, configOf(0))
      yield* w.advanceUntil("all deleted", atZero(w))
      const deletes = byEndpoint(w.model.requests.slice(deleteFrom))

      globalThis.console.log(
        `[figures] from the leader's start through ${VMS} creates: ${(total(creates) / VMS).toFixed(2)} non-polling calls per create ` +
          `${JSON.stringify(creates)} (+ the preflight run ${JSON.stringify(PREFLIGHT_RUN)}); ` +
          `per delete: ${(total(deletes) / VMS).toFixed(2)} ${JSON.stringify(deletes)}`
      )
      // The creates: their mutations, one shared cluster read (adoption, preflight, placement, templates and
      // storages alike) and one config read per template used (the per-node templates of three nodes) for
      // the tags, notes and disk size every clone of it starts with — no read of the clone itself.
      expect(creates).toEqual({
        "GET /cluster/resources": 1,
        "GET /nodes/{node}/qemu/{vmid}/config": NODES,
        "POST /nodes/{node}/storage/{storage}/upload": VMS,
        "POST /nodes/{node}/qemu/{vmid}/clone": VMS,
        "POST /nodes/{node}/qemu/{vmid}/config": VMS,
        "POST /nodes/{node}/qemu/{vmid}/status/start": VMS
      })
      expect(total(creates) / VMS).toBeLessThanOrEqual(5)
      // The deletes: the ownership check (one config read), the shutdown, the ISO, the VM — no status reads.
      expect(deletes).toEqual({
        "GET /nodes/{node}/qemu/{vmid}/config": VMS,
        "POST /nodes/{node}/qemu/{vmid}/status/shutdown": VMS,
        "DELETE /nodes/{node}/storage/{storage}/content/{volume}": VMS,
        "DELETE /nodes/{node}/qemu/{vmid}": VMS
      })
      expect(total(deletes) / VMS).toBeLessThanOrEqual(4)
    }))

  it.scoped("a delete resumed at delete-vm in a new term checks the VM again: another VM at the VMID is left alone", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "1h", registrationTimeout: "2h" })
      const creator = yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      yield* Fiber.interrupt(creator)
      const instance = allInstances(yield* w.state)[0]!
      const vmid = instance.vmid!
      const node = instance.node!
      yield* w.setConfig({ size: 0 })
      // Term 2 stops the VM and deletes its ISO, then dies: delete-vm is left for term 3.
      yield* w.crashLeader(2, { event: "IsoDeleted", mode: "after" })
      // Meanwhile our VM goes and PVE gives its VMID to someone else's VM.
      yield* w.drive(w.pve.deleteVm(node, vmid).pipe(Effect.flatMap((upid) => w.pve.waitTask(node, upid))))
      const templateVmid = instance.templateVmid!
      yield* w.drive(w.pve.clone(instance.templateNode!, templateVmid, { newid: vmid, name: "someone-else", full: true, storage: "local-lvm" }).pipe(
        Effect.flatMap((upid) => w.pve.waitTask(instance.templateNode!, upid))
      ))
      const from = w.model.requests.length
      yield* w.leader(3)
      yield* w.advanceUntil("the instance is gone", Effect.map(w.state, (state) => (allInstances(state).length === 0 ? [] : ["still there"])))
      const calls = w.model.requests.slice(from).filter((r) => r.path.includes(`/qemu/${vmid}`))
      expect(calls.map((r) => r.endpoint)).toContain("GET /nodes/{node}/qemu/{vmid}/config")
      expect(calls.filter((r) => r.method !== "GET")).toEqual([])
      expect(w.model.vms.get(vmid)?.config.get("name")).toBe("someone-else")
    }))

  it.scoped("a VM started again behind our back between the stop and the delete is stopped, then deleted, in the same run", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, gcInterval: "1h", registrationTimeout: "2h" })
      yield* w.leader(1, {
        wrapPve: (pve) => ({
          ...pve,
          // The ISO's delete comes between the stop step and the delete-vm step: someone starts the VM then.
          deleteVolume: (node, storage, volid) =>
            pve.deleteVolume(node, storage, volid).pipe(
              Effect.tap(() => {
                const vm = w.vms()[0]
                return vm === undefined ? Effect.void : pve.start(vm.node, vm.vmid).pipe(Effect.flatMap((upid) => pve.waitTask(vm.node, upid)), Effect.orDie)
              })
            )
        })
      })
      yield* w.advanceUntil("1 running", w.convergence(1))
      const vmid = w.vms()[0]!.vmid
      const from = w.model.requests.length
      yield* w.setConfig({ size: 0 })
      yield* w.advanceUntil("all deleted", atZero(w))
      const calls = byEndpoint(w.model.requests.slice(from).filter((r) => r.path.includes(`/qemu/${vmid}`)))
      // The refused destroy, then the status that explains it, the stop and the destroy again.
      expect(calls["DELETE /nodes/{node}/qemu/{vmid}"]).toBe(2)
      expect(calls["GET /nodes/{node}/qemu/{vmid}/status/current"]).toBe(1)
      expect(calls["POST /nodes/{node}/qemu/{vmid}/status/stop"]).toBe(1)
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "StepFailed")).toEqual([])
      expect(events.filter((e) => e._tag === "InstanceGone")).toHaveLength(1)
    }))
})
