/** Every ProxmoxApi call against the PVE simulator: the request PVE accepts and the decoded answer. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { Upid } from "../../src/domain/pve/schemas.js"
import { isoFileName, isoVolid } from "../../src/domain/pveNames.js"
import { setup } from "./support.js"

const waitOpt = (api: { readonly waitTask: (node: string, upid: Upid) => Effect.Effect<unknown, unknown> }, node: string, upid: Option.Option<Upid>) =>
  Option.match(upid, { onNone: () => Effect.void, onSome: (u) => Effect.asVoid(api.waitTask(node, u)) })

describe("ProxmoxApiHttp against the simulator", () => {
  it.scopedLive("reads cluster, node and VM state with decoded shapes", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      sim.model.refreshResources()
      const version = yield* api.version()
      expect(version.release).toBe("9.0")
      const perms = yield* api.permissions("/")
      expect(perms["/"]?.["VM.Clone"]).toBe(true)

      const nodes = yield* api.nodeResources()
      expect(nodes.map((n) => [n.node, n.status, n.type])).toEqual([["pve1", "online", "node"], ["pve2", "online", "node"], ["pve3", "online", "node"]])
      for (const n of nodes) {
        expect(typeof n.maxmem).toBe("number")
        expect(n.cpu).toBeGreaterThanOrEqual(0)
      }
      const vms = yield* api.vmResources()
      expect(vms.map((v) => [v.vmid, v.node, v.name, v.template, v.instanceStatus])).toEqual([
        [9000, "pve1", "debian-13-template", true, "Stopped"],
        [9001, "pve2", "debian-13-template", true, "Stopped"],
        [9002, "pve3", "debian-13-template", true, "Stopped"]
      ])
      // The unfiltered read: the same nodes and guests, and each node's storages with whether they are shared.
      const all = yield* api.clusterResources()
      expect(all.nodes.map((n) => n.node)).toEqual(nodes.map((n) => n.node))
      expect(all.vms.map((v) => [v.vmid, v.template, v.instanceStatus])).toEqual(vms.map((v) => [v.vmid, v.template, v.instanceStatus]))
      for (const node of ["pve1", "pve2", "pve3"]) {
        expect(all.storages.find((entry) => entry.node === node && entry.storage === "local-lvm")?.shared).toBe(false)
      }
      const cluster = yield* api.clusterStatus()
      expect(cluster.find((e) => e.type === "cluster")?.quorate).toBe(true)
      expect(cluster.filter((e) => e.type === "node").map((e) => [e.name, e.online])).toEqual([["pve1", true], ["pve2", true], ["pve3", true]])

      expect(yield* api.nextId()).toBe(100)
      expect(yield* api.nextId(12345)).toBe(12345)
      const taken = yield* Effect.flip(api.nextId(9000))
      expect(taken._tag).toBe("PveApiError")
      if (taken._tag === "PveApiError") {
        expect(taken.classification).toBe("conflict")
        expect(taken.errors?.["vmid"]).toBe("VM 9000 already exists")
      }

      const status = yield* api.nodeStatus("pve2")
      expect(status.memory.total).toBe(64 * 1024 ** 3)
      const qemu = yield* api.listQemu("pve1")
      expect(qemu.map((q) => [q.vmid, q.template, q.instanceStatus])).toEqual([[9000, true, "Stopped"]])
      const config = yield* api.vmConfig("pve1", 9000)
      expect([config.name, config.template, config.cores, config.memory, config.boot]).toEqual(["debian-13-template", true, 2, "2048", "order=scsi0"])
      expect(config["scsi0"]).toBe("local-lvm:base-9000-disk-0,size=2G")
      const current = yield* api.vmStatus("pve1", 9000)
      expect([current.vmid, current.status, current.instanceStatus, current.template]).toEqual([9000, "stopped", "Stopped", true])

      const storages = yield* api.listStorage("pve1", { content: "iso" })
      expect(storages.map((s) => [s.storage, s.shared, s.enabled])).toEqual([["local", false, true]])
    }))

  it.scopedLive("runs a whole VM lifecycle: clone, configure, resize, upload, start, pause, stop, delete", () =>
    Effect.gen(function* () {
      const { sim, api } = yield* setup()
      const name = "tst06dx9xy919t3v9kzd2xdsyzb3g"
      const cloneUpid = yield* api.clone("pve1", 9000, { newid: 10001, name, full: true, storage: "local-lvm", target: "pve1" })
      const cloned = yield* api.waitTask("pve1", cloneUpid)
      expect([cloned.status, cloned.exitstatus, cloned.type]).toEqual(["stopped", "OK", "qmclone"])

      const iso = new Uint8Array(64 * 1024).map((_, i) => i % 251)
      const uploadUpid = yield* api.upload("pve1", "local", { filename: isoFileName(name), content: "iso", data: iso })
      yield* api.waitTask("pve1", uploadUpid)
      const volid = isoVolid("local", name)
      const isos = yield* api.listStorageContent("pve1", "local", { content: "iso" })
      expect(isos.map((v) => [v.volid, v.size, v.format])).toEqual([[volid, iso.length, "iso"]])
      expect(sim.model.volume("pve1", volid)?.data).toEqual(iso)
      const attrs = yield* api.volumeAttributes("pve1", "local", volid)
      expect(attrs.size).toBe(iso.length)

      const description = "# DO NOT EDIT BELOW - managed by nstance #\ngroup: web\ncreated: 2026-01-20T12:00:00Z\n# DO NOT EDIT ABOVE - managed by nstance #"
      const configUpid = yield* api.updateConfig("pve1", 10001, {
        cores: 4, memory: 4096, net0: "virtio,bridge=vmbr0,tag=100", onboot: true, description,
        tags: "nstance;example-cluster;dev-1", ide2: `${volid},media=cdrom`, boot: "order=scsi0;ide2"
      })
      yield* waitOpt(api, "pve1", configUpid)
      const config = yield* api.vmConfig("pve1", 10001)
      expect([config.name, config.cores, config.memory, config.onboot, config.description, config.tags, config.ide2, config.boot, config.template])
        .toEqual([name, 4, "4096", true, description, "nstance;example-cluster;dev-1", `${volid},media=cdrom`, "order=scsi0;ide2", undefined])
      expect(config.net0).toBe("virtio,bridge=vmbr0,tag=100")

      yield* waitOpt(api, "pve1", yield* api.resize("pve1", 10001, "scsi0", "4G"))
      expect((yield* api.vmConfig("pve1", 10001))["scsi0"]).toMatch(/,size=4G$/)

      yield* api.waitTask("pve1", yield* api.start("pve1", 10001))
      expect((yield* api.vmStatus("pve1", 10001)).instanceStatus).toBe("Running")
      sim.model.setPaused(10001, true)
      const paused = yield* api.vmStatus("pve1", 10001)
      expect([paused.status, paused.qmpstatus, paused.instanceStatus]).toEqual(["running", "paused", "Suspended"])
      expect((yield* api.listQemu("pve1")).find((q) => q.vmid === 10001)?.instanceStatus).toBe("Running")
      sim.model.setPaused(10001, false)

      yield* api.waitTask("pve1", yield* api.shutdown("pve1", 10001, { timeout: 30, forceStop: true }))
      expect((yield* api.vmStatus("pve1", 10001)).instanceStatus).toBe("Stopped")
      yield* api.waitTask("pve1", yield* api.start("pve1", 10001))
      yield* api.waitTask("pve1", yield* api.stop("pve1", 10001, { timeout: 10 }))
      expect((yield* api.vmStatus("pve1", 10001)).instanceStatus).toBe("Stopped")

      const deleteUpid = yield* api.deleteVm("pve1", 10001, { purge: true, destroyUnreferencedDisks: true })
      const task = yield* api.taskStatus("pve1", deleteUpid)
      expect(task.upid).toBe(deleteUpid)
      yield* api.waitTask("pve1", deleteUpid)
      const gone = yield* Effect.flip(api.vmStatus("pve1", 10001))
      expect(gone._tag === "PveApiError" && gone.classification).toBe("notFound")
      yield* waitOpt(api, "pve1", yield* api.deleteVolume("pve1", "local", volid))
      expect(yield* api.listStorageContent("pve1", "local", { content: "iso" })).toEqual([])
      // the query the DELETE carried
      const del = sim.model.requests.find((r) => r.method === "DELETE" && r.path.endsWith("/qemu/10001"))
      expect(del?.query).toBe("?purge=1&destroy-unreferenced-disks=1")
    }))
})
