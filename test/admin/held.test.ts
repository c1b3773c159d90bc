/**
 * Instances held by an impossible history are shown where an operator looks: `status` lists them with the
 * seq, VMID and reason, and the impossible events themselves; `instances` marks them; nothing acts on them
 * (the group is over its size, yet neither is scaled away) until the operator deletes one, which releases it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeAdminWorld } from "./harness.js"

const A = "webaaaaaaaaaaaaaaaaaaaaaaaaaa"
const B = "webbbbbbbbbbbbbbbbbbbbbbbbbbb"

/** `id` cloned as VM 500 on pve1 and started. */
const life = (id: string) => [
  { _tag: "InstanceRequested", v: 1, instanceId: id, at: 1, tenant: "shop", group: "web", kind: "web", specHash: "h", reason: "scale-up" },
  { _tag: "NodeChosen", v: 1, instanceId: id, at: 2, node: "pve1" },
  { _tag: "CloneRequested", v: 1, instanceId: id, at: 3, vmid: 500, node: "pve1", templateVmid: 9000, templateNode: "pve1" },
  { _tag: "Cloned", v: 1, instanceId: id, at: 4, vmid: 500, node: "pve1" },
  { _tag: "Configured", v: 1, instanceId: id, at: 5 },
  { _tag: "Started", v: 1, instanceId: id, at: 6 }
]

const lines = (text: string) => text.split("\n").filter((line) => line !== "")

describe("held instances over the admin endpoint", () => {
  it.scopedLive("status and instances show them with seq, VMID and reason; an operator's delete releases one", () =>
    Effect.gen(function* () {
      const world = yield* makeAdminWorld({
        size: 1,
        beforeLead: (_, store) =>
          store.put("log/0000000000000001.json", new TextEncoder().encode(JSON.stringify({ seq: 1, events: [...life(A), ...life(B)] }))).pipe(Effect.orDie, Effect.asVoid)
      })
      const rpc = yield* world.client()
      const status = yield* rpc.Status()
      expect(status.held?.map((h) => [h.instanceId, h.vmid, h.seq])).toEqual([[A, 500, 1], [B, null, 1]])
      // The reservation and the clone's result are each impossible: both are recorded.
      expect(status.anomalies).toBe(2)
      expect(status.recentAnomalies).toEqual([
        { seq: 1, event: "CloneRequested", instanceId: B, vmid: 500, reason: `CloneRequested gives ${B} VMID 500, which belongs to ${A}`, held: [B, A] },
        { seq: 1, event: "Cloned", instanceId: B, vmid: 500, reason: `Cloned gives ${B} VMID 500, which belongs to ${A}`, held: [B, A] }
      ])

      const admin = (args: ReadonlyArray<string>) => world.admin([...args, "--server", world.leader.address])
      const text = lines((yield* admin(["status"])).stdout)
      expect(text).toContain(`  ${A}  VM 500  since seq 1: CloneRequested gives ${B} VMID 500, which belongs to ${A}`)
      expect(text).toContain(`  seq 1  CloneRequested  ${B}  VM 500: CloneRequested gives ${B} VMID 500, which belongs to ${A}`)
      const table = lines((yield* admin(["instances"])).stdout)
      expect(table.filter((line) => line.includes("HELD since seq 1"))).toHaveLength(2)

      // Two members of a group of one, yet nothing is scaled away or replaced: both stay held.
      yield* Effect.sleep("2 seconds")
      expect((yield* rpc.ListInstances({})).map((i) => [i.id, i.phase])).toEqual([[A, "running"], [B, "running"]])

      yield* rpc.DeleteInstance({ instanceId: B })
      const after = yield* rpc.Status()
      expect(after.held?.map((h) => h.instanceId)).toEqual([A])
    }), 20_000)
})
