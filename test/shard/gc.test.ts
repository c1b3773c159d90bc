/**
 * The garbage collector and adoption against the HTTP simulator: VMs that vanish or stay stopped behind
 * the leader's back are replaced; VMs and ISOs that carry our marks but that the log does not know are
 * collected after the grace; a VM the original Go server made is adopted, counted and kept.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { allInstances } from "../../src/domain/shard/state.js"
import {
  freshInstanceId,
  GROUP,
  ISO_STORAGE,
  KIND,
  makeHarness,
  makeVmBehindOurBack,
  nonTemplateVms,
  OUR_TAGS,
  TENANT
} from "./leaderHarness.js"

const graces = { orphan: "1 second", vmLoss: "1 second" } as const
const idOf = (event: { readonly _tag: string }) => ("instanceId" in event ? String(event.instanceId) : "")

describe("GC and adoption (HTTP simulator)", () => {
  it.scopedLive("a VM deleted behind our back is replaced; its ISO is removed", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 2, graces })
      yield* h.leader(1)
      yield* h.waitUntil("2 running", h.convergence(2))
      const [victim] = allInstances(yield* h.state)
      // Gone as if `qm destroy` ran on the node: the VM and its disks, not our ISO.
      h.sim.model.vms.delete(victim!.vmid!)
      for (const [key, volume] of h.sim.model.volumes) if (volume.vmid === victim!.vmid) h.sim.model.volumes.delete(key)

      yield* h.waitUntil("replaced", Effect.map(h.state, (state) =>
        allInstances(state).some((i) => i.id === victim!.id) ? ["victim still in the log"] : []))
      yield* h.waitUntil("2 running again", h.convergence(2))
      const events = yield* h.events
      expect(events.find((e) => e._tag === "DeleteRequested" && idOf(e) === victim!.id)).toMatchObject({ reason: "vm-gone" })
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
      expect([...h.sim.model.volumes.values()].some((v) => v.volid.includes(victim!.id))).toBe(false)
    }), 20_000)

  it.scopedLive("a VM stopped behind our back is replaced after the grace", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 1, graces })
      yield* h.leader(1)
      yield* h.waitUntil("1 running", h.convergence(1))
      const [victim] = allInstances(yield* h.state)
      const stoppedAt = Date.now()
      yield* h.pve.stop(victim!.node!, victim!.vmid!).pipe(Effect.flatMap((upid) => h.pve.waitTask(victim!.node!, upid)), Effect.orDie)

      yield* h.waitUntil("replaced", Effect.map(h.state, (state) =>
        allInstances(state).some((i) => i.id === victim!.id) ? ["victim still in the log"] : []))
      yield* h.waitUntil("1 running again", h.convergence(1))
      const events = yield* h.events
      const request = events.find((e) => e._tag === "DeleteRequested" && idOf(e) === victim!.id)
      expect(request).toMatchObject({ reason: "not-ready" })
      // Not before the grace: the stop was seen on one pass, and acted on only a grace later.
      expect((request as unknown as { at: number }).at - stoppedAt).toBeGreaterThanOrEqual(1_000)
      expect(h.sim.model.vms.has(victim!.vmid!)).toBe(false)
    }), 20_000)

  it.scopedLive("an orphan VM with our tags and an instance-ID name is collected after the grace; orphan ISOs are deleted", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 1, graces })
      yield* h.leader(1)
      yield* h.waitUntil("1 running", h.convergence(1))
      const orphanName = freshInstanceId()
      const made = yield* makeVmBehindOurBack(h.pve, { name: orphanName, node: "pve2", tags: OUR_TAGS, start: true })
      const madeAt = Date.now()
      // Orphan ISOs of both conventions: ours for an unknown instance, and the original's for an unused VMID.
      const strayId = freshInstanceId()
      for (const filename of [`nstance-${strayId}.iso`, "user-data-4242.iso"]) {
        yield* h.pve.upload("pve3", ISO_STORAGE, { filename, content: "iso", data: new Uint8Array(2048) }).pipe(
          Effect.flatMap((upid) => h.pve.waitTask("pve3", upid)),
          Effect.orDie
        )
      }
      // Someone else's VM and ISO (no tags, other names) are never touched.
      const foreign = yield* makeVmBehindOurBack(h.pve, { name: "db-primary", node: "pve3", isoFile: "debian-13.iso" })

      yield* h.waitUntil("the orphan VM and ISOs are gone", Effect.map(h.events, (events) => [
        ...(events.some((e) => e._tag === "InstanceGone" && idOf(e) === orphanName) ? [] : ["no InstanceGone for the orphan"]),
        ...(h.sim.model.vms.has(made.vmid) ? [`VM ${made.vmid} still there`] : []),
        ...[...h.sim.model.volumes.values()].filter((v) => v.volid.includes(strayId) || v.volid.includes("user-data-4242")).map((v) => `${v.volid} still there`)
      ]))
      const events = yield* h.events
      const adopted = events.find((e) => e._tag === "Adopted" && idOf(e) === orphanName)
      expect(adopted).toMatchObject({ vmid: made.vmid })
      expect(events.find((e) => e._tag === "DeleteRequested" && idOf(e) === orphanName)).toMatchObject({ reason: "gc" })
      expect((adopted as unknown as { at: number }).at - madeAt).toBeGreaterThanOrEqual(1_000)
      expect(events.some((e) => e._tag === "InstanceGone" && idOf(e) === orphanName)).toBe(true)
      // The shard's own instance, the foreign VM and its ISO are untouched.
      expect(h.sim.model.vms.has(foreign.vmid)).toBe(true)
      expect([...h.sim.model.volumes.values()].some((v) => v.volid === `${ISO_STORAGE}:iso/debian-13.iso`)).toBe(true)
      h.sim.model.vms.delete(foreign.vmid)
      for (const [key, volume] of h.sim.model.volumes) if (volume.vmid === foreign.vmid || volume.volid.endsWith("debian-13.iso")) h.sim.model.volumes.delete(key)
      yield* h.waitUntil("1 running, nothing else", h.convergence(1))
    }), 20_000)

  it.scopedLive("a VM made the original server's way before the leader starts is adopted, counted and kept", () =>
    Effect.gen(function* () {
      const h = yield* makeHarness({ size: 1, graces })
      const name = freshInstanceId(KIND)
      // The original's notes block (legacy markers) and its ISO naming (`user-data-<vmid>.iso`).
      const description = [
        "Operator text stays.",
        "**DO NOT EDIT BELOW - managed by nstance**",
        `tenant: ${TENANT}`,
        `group: ${GROUP}`,
        `kind: ${KIND}`,
        "created: 2026-01-20T12:00:00Z",
        "**DO NOT EDIT ABOVE - managed by nstance**"
      ].join("\n")
      const vmid = yield* h.pve.nextId().pipe(Effect.orDie)
      const made = yield* makeVmBehindOurBack(h.pve, { name, node: "pve2", tags: OUR_TAGS, description, isoFile: `user-data-${vmid}.iso`, start: true })
      expect(made.vmid).toBe(vmid)

      yield* h.leader(1)
      yield* h.waitUntil("adopted", Effect.map(h.events, (events) => (events.some((e) => e._tag === "Adopted") ? [] : ["no Adopted yet"])))
      // Several GC passes and reconcile passes later, still the one VM: nothing created, nothing deleted.
      yield* Effect.sleep("3 seconds")
      const events = yield* h.events
      expect(events.find((e) => e._tag === "Adopted")).toMatchObject({ instanceId: name, vmid, node: "pve2", tenant: TENANT, group: GROUP, status: "running" })
      expect(events.filter((e) => e._tag === "InstanceRequested")).toEqual([])
      expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
      const [instance] = allInstances(yield* h.state)
      expect(instance).toMatchObject({ id: name, phase: "running", adopted: true, vmid })
      expect(nonTemplateVms(h.sim).map((vm) => vm.vmid)).toEqual([vmid])
      expect(h.sim.model.vms.get(vmid)!.status).toBe("running")
      // Its ISO is in use by an adopted VM: kept.
      expect([...h.sim.model.volumes.values()].some((v) => v.volid === `${ISO_STORAGE}:iso/user-data-${vmid}.iso`)).toBe(true)

      // Counted toward its group: growing the group to 2 creates exactly one.
      yield* h.setConfig({ size: 2 })
      yield* h.waitUntil("2 running", Effect.map(h.state, (state) => {
        const list = allInstances(state)
        return list.length === 2 && list.every((i) => i.phase === "running") ? [] : [list.map((i) => `${i.id}:${i.phase}`).join(", ")]
      }))
      expect((yield* h.events).filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
      expect(nonTemplateVms(h.sim)).toHaveLength(2)
      expect(h.sim.model.vms.get(vmid)?.status).toBe("running")
    }), 20_000)
})
