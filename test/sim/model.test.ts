import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { startSimulator } from "../../src/sim/server.js"
import type { SimModel } from "../../src/sim/model.js"

const user = { user: "nstance@pve!nstance-token" }

const call = async (model: SimModel, key: string, params: Record<string, string>): Promise<unknown> => {
  const handler = model.routes[key]
  if (handler === undefined) throw new Error(`no route ${key}`)
  return handler(params, user)
}

/** Runs an operation to its end, swallowing PVE errors: the property is about state, not outcomes. */
const settle = async (model: SimModel, op: Promise<unknown>) => {
  try {
    await op
  } catch {
    // a refused call changes nothing
  }
  await model.settle()
}

type Op =
  | { readonly _tag: "clone"; readonly vmid: number; readonly full: boolean; readonly fail: boolean }
  | { readonly _tag: "start" | "stop" | "destroy"; readonly vmid: number }

const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  FastCheck.record({ _tag: FastCheck.constant("clone" as const), vmid: FastCheck.integer({ min: 100, max: 104 }), full: FastCheck.boolean(), fail: FastCheck.boolean() }),
  FastCheck.record({ _tag: FastCheck.constantFrom("start" as const, "stop" as const, "destroy" as const), vmid: FastCheck.integer({ min: 100, max: 104 }) })
)

describe("model invariants", () => {
  it("never leaks or shares disks, whatever clones, starts, stops, destroys and failures happen", async () => {
    await FastCheck.assert(FastCheck.asyncProperty(FastCheck.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
      const sim = await startSimulator({ http: true, seed: 3 })
      try {
        const model = sim.model
        for (const o of ops) {
          const base = { node: "pve1", vmid: String(o.vmid) }
          if (o._tag === "clone") {
            if (o.fail) sim.faults.failTasks({ type: "qmclone", times: 1 })
            await settle(model, call(model, "POST /nodes/{node}/qemu/{vmid}/clone", { node: "pve1", vmid: "9000", newid: String(o.vmid), full: o.full ? "1" : "0" }))
            sim.faults.reset()
          } else if (o._tag === "start") {
            await settle(model, call(model, "POST /nodes/{node}/qemu/{vmid}/status/start", base))
          } else if (o._tag === "stop") {
            await settle(model, call(model, "POST /nodes/{node}/qemu/{vmid}/status/stop", base))
          } else {
            await settle(model, call(model, "DELETE /nodes/{node}/qemu/{vmid}", base))
          }
        }
        // Every image volume belongs to a VM that exists and references it; no two VMs reference one volume.
        const referenced = new Map<string, number>()
        for (const vm of model.vms.values()) {
          expect(vm.config.get("lock")).toBeUndefined()
          for (const [key, value] of vm.config) {
            if (!/^(?:scsi|ide|virtio|sata)\d+$/.test(key)) continue
            const file = value.split(",")[0] ?? ""
            if (!file.startsWith("local-lvm:")) continue
            expect(referenced.has(file)).toBe(false)
            referenced.set(file, vm.vmid)
            expect(model.volume(vm.node, file)).toBeDefined()
          }
        }
        for (const v of model.volumes.values()) {
          if (v.content !== "images") continue
          expect(referenced.get(v.volid)).toBe(v.vmid)
        }
        // A running VM is never a template, and every running VM's memory shows on its node.
        for (const vm of model.vms.values()) if (vm.status === "running") expect(vm.config.get("template")).toBeUndefined()
      } finally {
        await sim.close()
      }
    }), { numRuns: 25, seed: 20261123 })
  })
})
