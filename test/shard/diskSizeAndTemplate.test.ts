/**
 * `DiskSize` in PVE's own size syntax (absolute, `+` relative, fractional) from the config to the VM's disk,
 * and clones that keep their template's tags and description beside nstance's tags and managed notes —
 * judged on the simulator's model, with the ownership readers (tags, notes) still finding ours.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, SubscriptionRef } from "effect"
import { formatDiskSize, parseDiskSize } from "../../src/domain/config/proxmox.js"
import { BEGIN_MARKER, END_MARKER, ownerByNotes, parseManagedNotes } from "../../src/domain/managedNotes.js"
import { hasAssociationTags } from "../../src/domain/pveTags.js"
import { allInstances } from "../../src/domain/shard/state.js"
import { startSimulator } from "../../src/sim/server.js"
import { CLUSTER, configText, makeWorld, OUR_TAGS, parseConfig, SHARD, type World } from "../support/simWorld.js"
import { client, field } from "../sim/client.js"

const TEMPLATE = "debian-13-template"
const TEMPLATE_NOTES = "Debian 13 base image.\nMaintained by team X; ask #infra before changing it.\n"

describe("PVE's size syntax", () => {
  it("parses what PVE's resize accepts and formats bytes back with the largest exact unit", () => {
    expect(parseDiskSize("+10G")).toEqual({ relative: true, bytes: 10 * 1024 ** 3 })
    expect(parseDiskSize("1.5T")).toEqual({ relative: false, bytes: 1.5 * 1024 ** 4 })
    expect(parseDiskSize("4096")).toEqual({ relative: false, bytes: 4096 })
    expect([parseDiskSize("10 G"), parseDiskSize("-1G"), parseDiskSize("1GB")]).toEqual([undefined, undefined, undefined])
    expect([formatDiskSize(12 * 1024 ** 3), formatDiskSize(2.5 * 1024 ** 3), formatDiskSize(1536), formatDiskSize(1000)]).toEqual(["12G", "2560M", "1536", "1000"])
  })

  it("the simulator resizes by a + amount and to a fractional absolute size, and refuses to shrink", async () => {
    const sim = await startSimulator({ http: true })
    try {
      const api = client(sim)
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, full: 1 })
      const scsi0 = async () => field((await api.call("GET", "/nodes/pve1/qemu/100/config")).data, "scsi0")
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi0", size: "+0.5G" })).toBe("OK")
      expect(await scsi0()).toBe("local-lvm:vm-100-disk-0,size=2560M")
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi0", size: "3.5G" })).toBe("OK")
      expect(await scsi0()).toBe("local-lvm:vm-100-disk-0,size=3584M")
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi0", size: "1.5G" })).toBe("shrinking disks is not supported")
      expect(await scsi0()).toBe("local-lvm:vm-100-disk-0,size=3584M")
    } finally {
      await sim.close()
    }
  })

  it("the simulator's clone copies the template's tags and description, as qemu-server does", async () => {
    const sim = await startSimulator({ http: true })
    try {
      const api = client(sim)
      sim.model.vms.get(9000)?.config.set("tags", "os-debian;team-x").set("description", TEMPLATE_NOTES)
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, full: 1 })
      const config = (await api.call("GET", "/nodes/pve1/qemu/100/config")).data
      expect([field(config, "tags"), field(config, "description")]).toEqual(["os-debian;team-x", TEMPLATE_NOTES])
    } finally {
      await sim.close()
    }
  })
})

/** A world of one VM whose group has `DiskSize` (the simulator's template disk is 2 GiB); runs it until the VM runs. */
const oneVm = (diskSize: string | undefined, prepare: (w: World) => void = () => {}) =>
  Effect.gen(function* () {
    const w = yield* makeWorld({ size: 1, gcInterval: "1s" })
    prepare(w)
    const text = configText({ size: 1, gcInterval: "1s" })
    const withArgs = diskSize === undefined ? text : text.replace(`"subnet_pool": "edge" }`, `"subnet_pool": "edge", "args": { "DiskSize": "${diskSize}" } }`)
    expect(withArgs.includes("DiskSize") || diskSize === undefined).toBe(true)
    yield* w.leader(1, { config: yield* SubscriptionRef.make(parseConfig(withArgs)) })
    yield* w.advanceUntil("1 running", Effect.map(w.state, (s) => (allInstances(s).some((i) => i.phase === "running") ? [] : ["not running yet"])))
    const instance = allInstances(yield* w.state)[0]!
    const vm = w.model.vms.get(instance.vmid ?? -1)!
    return { w, instance, vm }
  })

describe("DiskSize through the create saga", () => {
  it.scoped("+3G grows the template's 2 GiB disk to 5G; the log records the configured size", () =>
    Effect.gen(function* () {
      const { w, instance, vm } = yield* oneVm("+3G")
      expect(vm.config.get("scsi0")).toMatch(/,size=5G$/)
      expect(instance.diskSize).toBe("+3G")
      // Sent to PVE as the absolute result, so a resize redone after a crash cannot grow the disk twice.
      expect(w.model.requests.filter((r) => r.endpoint === "PUT /nodes/{node}/qemu/{vmid}/resize")).toHaveLength(1)
      expect(w.logs.some((line) => line.includes("grown by 3G to 5G"))).toBe(true)
    }))

  it.scoped("an absolute fractional size (2.5G) is passed through", () =>
    Effect.gen(function* () {
      const { vm } = yield* oneVm("2.5G")
      expect(vm.config.get("scsi0")).toMatch(/,size=2560M$/)
    }))

  it.scoped("an absolute size below the template's disk keeps the disk, says so, and the VM still runs", () =>
    Effect.gen(function* () {
      const { w, instance, vm } = yield* oneVm("1G")
      expect(vm.config.get("scsi0")).toMatch(/,size=2G$/)
      expect(vm.status).toBe("running")
      expect(instance.lastError).toBeUndefined()
      expect(w.logs.filter((line) => line.includes("already larger than DiskSize 1G; PVE does not shrink disks, kept as is"))).toHaveLength(1)
    }))
})

describe("a clone keeps its template's tags and description", () => {
  it.scoped("template tags os-debian;team-x and its notes → the VM has both, with our tags and managed block; GC and adoption still know it", () =>
    Effect.gen(function* () {
      const { w, instance, vm } = yield* oneVm(undefined, (world) => {
        for (const template of world.model.vms.values()) {
          if (template.config.get("name") === TEMPLATE) template.config.set("tags", "os-debian;team-x").set("description", TEMPLATE_NOTES)
        }
      })
      expect(vm.config.get("tags")).toBe(`${OUR_TAGS};os-debian;team-x`)
      const description = vm.config.get("description") ?? ""
      // The template's text byte for byte, then our block.
      expect(description.startsWith(TEMPLATE_NOTES)).toBe(true)
      expect(description.indexOf(BEGIN_MARKER)).toBeGreaterThan(TEMPLATE_NOTES.length - 1)
      expect(description.endsWith(END_MARKER)).toBe(true)
      const state = yield* w.state
      expect(parseManagedNotes(description)).toMatchObject({ tenant: instance.tenant, group: instance.group, log: state.logId })
      expect(ownerByNotes(description, state.logId)).toEqual({ _tag: "ours" })
      expect(hasAssociationTags(vm.config.get("tags"), CLUSTER, SHARD)).toBe(true)
      // A few GC passes and a new leader's adoption pass later: the same VM, nothing deleted, adopted or held.
      yield* w.advance("5 seconds")
      yield* w.leader(2)
      yield* w.advance("5 seconds")
      const after = allInstances(yield* w.state)
      expect(after.map((i) => [i.id, i.vmid, i.phase, i.held])).toEqual([[instance.id, instance.vmid, "running", undefined]])
      const events = yield* w.events
      expect(events.filter((e) => e._tag === "DeleteRequested" || e._tag === "Adopted" || e._tag === "StepFailed")).toEqual([])
      expect(w.model.vms.get(vm.vmid)?.config.get("tags")).toBe(`${OUR_TAGS};os-debian;team-x`)
    }))
})

describe("a paused VM (qmpstatus paused) and the GC", () => {
  it.scoped("is not taken for stopped: PVE lists it running, so the GC keeps it past the loss grace", () =>
    Effect.gen(function* () {
      const { w, instance, vm } = yield* oneVm(undefined)
      w.model.setPaused(vm.vmid, true)
      // Well past the 20 s after which a stopped VM is replaced, with a GC pass every second.
      yield* w.advance("60 seconds")
      expect(allInstances(yield* w.state).map((i) => [i.id, i.vmid, i.phase])).toEqual([[instance.id, instance.vmid, "running"]])
      expect((yield* w.events).filter((e) => e._tag === "DeleteRequested")).toEqual([])
      expect(w.model.vms.get(vm.vmid)?.paused).toBe(true)
    }))
})
