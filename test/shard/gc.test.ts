/**
 * The garbage collector and adoption in the simulated world: VMs that vanish or stay stopped behind the
 * leader's back are replaced; VMs and ISOs that carry our marks but that the log does not know are
 * collected after the grace; a VM the original Go server made is adopted, counted and kept.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, SubscriptionRef } from "effect"
import { InvalidInstanceId, parseInstanceId, storageKeyOf } from "../../src/domain/instanceId.js"
import { isoFileName } from "../../src/domain/pveNames.js"
import { allInstances } from "../../src/domain/shard/state.js"
import {
  freshInstanceId,
  GROUP,
  idOf,
  ISO_STORAGE,
  KIND,
  makeVmBehindOurBack,
  makeWorld,
  OUR_TAGS,
  TENANT
} from "../support/simWorld.js"

const graces = { orphan: "1 second", vmLoss: "1 second", unknownIso: "1 second" } as const

describe("GC and adoption (simulated world)", () => {
  it.scoped("a VM deleted behind our back is replaced; its ISO is removed", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, graces })
      yield* w.leader(1)
      yield* w.advanceUntil("2 running", w.convergence(2))
      const [victim] = allInstances(yield* w.state)
      // Gone as if `qm destroy` ran on the node: the VM and its disks, not our ISO.
      w.model.vms.delete(victim!.vmid!)
      for (const [key, volume] of w.model.volumes) if (volume.vmid === victim!.vmid) w.model.volumes.delete(key)

      yield* w.advanceUntil("replaced", Effect.map(w.state, (state) =>
        allInstances(state).some((i) => i.id === victim!.id) ? ["victim still in the log"] : []))
      yield* w.advanceUntil("2 running again", w.convergence(2))
      const events = yield* w.events
      expect(events.find((e) => e._tag === "DeleteRequested" && idOf(e) === victim!.id)).toMatchObject({ reason: "vm-gone" })
      expect(events.filter((e) => e._tag === "InstanceRequested")).toHaveLength(3)
      expect([...w.model.volumes.values()].some((v) => v.volid.includes(victim!.id))).toBe(false)
    }))

  it.scoped("a VM stopped behind our back is replaced after the grace", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
      yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      const [victim] = allInstances(yield* w.state)
      // The stop is under way from here (it takes milliseconds): the grace counts from no earlier than this.
      const stoppedAt = yield* w.now
      yield* w.drive(w.pve.stop(victim!.node!, victim!.vmid!).pipe(Effect.flatMap((upid) => w.pve.waitTask(victim!.node!, upid)), Effect.orDie))

      yield* w.advanceUntil("replaced", Effect.map(w.state, (state) =>
        allInstances(state).some((i) => i.id === victim!.id) ? ["victim still in the log"] : []))
      yield* w.advanceUntil("1 running again", w.convergence(1))
      const events = yield* w.events
      const request = events.find((e) => e._tag === "DeleteRequested" && idOf(e) === victim!.id)
      expect(request).toMatchObject({ reason: "not-ready" })
      // Not before the grace: the stop was seen on one pass, and acted on only a grace later.
      expect(request !== undefined && "at" in request ? request.at - stoppedAt : 0).toBeGreaterThanOrEqual(1_000)
      expect(w.model.vms.has(victim!.vmid!)).toBe(false)
    }))

  it.scoped("an orphan VM with our tags and an instance-ID name is collected after the grace; orphan ISOs are deleted", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
      yield* w.leader(1)
      yield* w.advanceUntil("1 running", w.convergence(1))
      const orphanName = freshInstanceId()
      const made = yield* w.drive(makeVmBehindOurBack(w.pve, { name: orphanName, node: "pve2", tags: OUR_TAGS, start: true }))
      const madeAt = w.model.vms.get(made.vmid)!.createdAt
      // Orphan ISOs of both conventions: ours for an instance this shard never knew (collected after its grace),
      // and the original's for an unused VMID.
      const strayId = freshInstanceId()
      for (const filename of [isoFileName(strayId), "user-data-4242.iso"]) {
        yield* w.drive(w.pve.upload("pve3", ISO_STORAGE, { filename, content: "iso", data: new Uint8Array(2048) }).pipe(
          Effect.flatMap((upid) => w.pve.waitTask("pve3", upid)),
          Effect.orDie
        ))
      }
      // Someone else's VM and ISO (no tags, other names) are never touched.
      const foreign = yield* w.drive(makeVmBehindOurBack(w.pve, { name: "db-primary", node: "pve3", isoFile: "debian-13.iso" }))

      yield* w.advanceUntil("the orphan VM and ISOs are gone", Effect.map(w.events, (events) => [
        ...(events.some((e) => e._tag === "InstanceGone" && idOf(e) === orphanName) ? [] : ["no InstanceGone for the orphan"]),
        // By name: its VMID is free again once it is gone, and the foreign VM below may well get it.
        ...(w.vms().some((vm) => vm.config.get("name") === orphanName) ? [`VM ${orphanName} still there`] : []),
        ...[...w.model.volumes.values()].filter((v) => v.volid.includes(strayId) || v.volid.includes("user-data-4242")).map((v) => `${v.volid} still there`)
      ]))
      const events = yield* w.events
      const adopted = events.find((e) => e._tag === "Adopted" && idOf(e) === orphanName)
      expect(adopted).toMatchObject({ vmid: made.vmid })
      expect(events.find((e) => e._tag === "DeleteRequested" && idOf(e) === orphanName)).toMatchObject({ reason: "gc" })
      expect(adopted !== undefined && "at" in adopted ? adopted.at - madeAt : 0).toBeGreaterThanOrEqual(1_000)
      expect(events.some((e) => e._tag === "InstanceGone" && idOf(e) === orphanName)).toBe(true)
      // The orphan's disks went with it.
      expect(w.vms().filter((vm) => vm.config.get("name") === orphanName)).toEqual([])
      expect([...w.model.volumes.values()].filter((v) => v.content === "images" && v.vmid !== undefined && !w.model.vms.has(v.vmid))).toEqual([])
      // The shard's own instance, the foreign VM and its ISO are untouched.
      expect(w.model.vms.has(foreign.vmid)).toBe(true)
      expect([...w.model.volumes.values()].some((v) => v.volid === `${ISO_STORAGE}:iso/debian-13.iso`)).toBe(true)
      w.model.vms.delete(foreign.vmid)
      for (const [key, volume] of w.model.volumes) if (volume.vmid === foreign.vmid || volume.volid.endsWith("debian-13.iso")) w.model.volumes.delete(key)
      yield* w.advanceUntil("1 running, nothing else", w.convergence(1))
      expect((yield* w.events).filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
    }))

  it.scoped("a VM made the original server's way before the leader starts is adopted, counted and kept", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 1, graces })
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
      const vmid = yield* w.pve.nextId().pipe(Effect.orDie)
      const made = yield* w.drive(makeVmBehindOurBack(w.pve, { name, node: "pve2", tags: OUR_TAGS, description, isoFile: `user-data-${vmid}.iso`, start: true }))
      expect(made.vmid).toBe(vmid)

      yield* w.leader(1)
      yield* w.advanceUntil("adopted", Effect.map(w.events, (events) => (events.some((e) => e._tag === "Adopted") ? [] : ["no Adopted yet"])))
      // Several GC passes (1 s apart) and reconcile passes later, still the one VM: nothing created, nothing deleted.
      yield* w.advance("10 seconds")
      const events = yield* w.events
      expect(events.find((e) => e._tag === "Adopted")).toMatchObject({ instanceId: name, vmid, node: "pve2", tenant: TENANT, group: GROUP, status: "running" })
      expect(events.filter((e) => e._tag === "InstanceRequested")).toEqual([])
      expect(events.filter((e) => e._tag === "DeleteRequested")).toEqual([])
      const [instance] = allInstances(yield* w.state)
      expect(instance).toMatchObject({ id: name, phase: "running", adopted: true, vmid })
      expect(w.vms().map((vm) => vm.vmid)).toEqual([vmid])
      expect(w.model.vms.get(vmid)!.status).toBe("running")
      // The operator's text and the notes block are left as they were.
      expect(decodeURIComponent(w.model.vms.get(vmid)!.config.get("description") ?? "")).toContain("Operator text stays.")
      // Its ISO is in use by an adopted VM: kept.
      expect([...w.model.volumes.values()].some((v) => v.volid === `${ISO_STORAGE}:iso/user-data-${vmid}.iso`)).toBe(true)

      // Counted toward its group: growing the group to 2 creates exactly one.
      yield* w.setConfig({ size: 2 })
      yield* w.advanceUntil("2 running", Effect.map(w.state, (state) => {
        const list = allInstances(state)
        return list.length === 2 && list.every((i) => i.phase === "running") ? [] : [list.map((i) => `${i.id}:${i.phase}`).join(", ")]
      }))
      expect((yield* w.events).filter((e) => e._tag === "InstanceRequested")).toHaveLength(1)
      expect(w.vms()).toHaveLength(2)
      expect(w.model.vms.get(vmid)?.status).toBe("running")
    }))

  it.scoped("an adopted VM of the original is rotated only when the infra hash of its record differs from its group's", () =>
    Effect.gen(function* () {
      const w = yield* makeWorld({ size: 2, graces, defaultDrainTimeout: "0s" })
      const current = (yield* SubscriptionRef.get(w.config)).config.groups[TENANT]![GROUP]!.infraHash
      const made: Array<{ readonly name: string; readonly vmid: number }> = []
      for (const [node, hash] of [["pve1", current], ["pve2", "sha256:0000000000000000000000000000000000000000000000000000000000000000"]] as const) {
        const name = freshInstanceId(KIND)
        const description = ["**DO NOT EDIT BELOW - managed by nstance**", `tenant: ${TENANT}`, `group: ${GROUP}`, `kind: ${KIND}`, "**DO NOT EDIT ABOVE - managed by nstance**"].join("\n")
        const vm = yield* w.drive(makeVmBehindOurBack(w.pve, { name, node, tags: OUR_TAGS, description, start: true }))
        made.push({ name, vmid: vm.vmid })
        // The original's bucket record of the instance (Go's field names; only the hash is read).
        const parsed = parseInstanceId(name)
        if (parsed instanceof InvalidInstanceId) return yield* Effect.dieMessage(parsed.message)
        const record = { instance_id: name, tenant: TENANT, group: GROUP, status: "pending", infra_config_hash: hash }
        yield* w.store.put(`instance/${TENANT}.${storageKeyOf(parsed)}.json`, new TextEncoder().encode(JSON.stringify(record))).pipe(Effect.orDie)
      }
      const [same, stale] = made as [typeof made[0], typeof made[0]]
      yield* w.leader(1)
      yield* w.advanceUntil("the stale one replaced and gone", Effect.map(w.state, (state) => {
        const all = allInstances(state)
        const running = all.filter((i) => i.phase === "running")
        const replaced = running.length === 2 && all.length === 2 && running.some((i) => i.id === same.name) && !all.some((i) => i.id === stale.name)
        return replaced ? [] : [all.map((i) => `${i.id}:${i.phase}`).join(", ")]
      }))
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "Adopted").map((e) => e._tag === "Adopted" && [e.instanceId, e.infraHash])).toEqual(
        expect.arrayContaining([[same.name, current], [stale.name, `sha256:${"0".repeat(64)}`]])
      )
      expect(events.filter((e) => e._tag === "RetirementRequested").map((e) => e._tag === "RetirementRequested" && [e.instanceId, e.reason])).toEqual([[stale.name, "config-drift"]])
      expect(w.model.vms.get(same.vmid)?.status).toBe("running")
      expect(w.model.vms.has(stale.vmid)).toBe(false)
    }))
})
