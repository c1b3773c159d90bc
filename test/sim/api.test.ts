import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { parseUpid } from "../../src/domain/pve/upid.js"
import { PveSimulator, startSimulator, type RunningSimulator, type SimulatorOptions } from "../../src/sim/server.js"
import { asArray, asString, client, field, type Client } from "./client.js"

const withSim = async (options: SimulatorOptions, body: (sim: RunningSimulator, api: Client) => Promise<void>) => {
  const sim = await startSimulator({ http: true, ...options })
  try {
    await body(sim, client(sim))
  } finally {
    await sim.close()
  }
}

describe("auth", () => {
  it("answers 401 'No ticket' without a token and 'Authentication failed!' with a wrong one, with no body", () =>
    withSim({}, async (sim, api) => {
      const none = await api.call("GET", "/cluster/status", {}, { auth: null })
      expect([none.status, none.statusText, none.body]).toEqual([401, "No ticket", undefined])
      const wrong = await api.call("GET", "/cluster/status", {}, { auth: `PVEAPIToken=${sim.tokenId}=not-the-secret` })
      expect([wrong.status, wrong.statusText, wrong.body]).toEqual([401, "Authentication failed!", undefined])
      const right = await api.call("GET", "/cluster/status")
      expect(right.status).toBe(200)
    }))

  it("serves HTTPS with a self-signed certificate by default", async () => {
    const sim = await startSimulator({})
    try {
      expect(sim.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/api2\/json$/)
      expect(sim.tls?.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
      const a = await client(sim).call("GET", "/version")
      expect(field(a.data, "release")).toBe("9.0")
    } finally {
      await sim.close()
    }
  })

  it.scoped("is an Effect resource that closes with its scope", () =>
    Effect.gen(function* () {
      const sim = yield* PveSimulator({ http: true, nodes: 2 })
      const a = yield* Effect.promise(() => client(sim).call("GET", "/cluster/resources", { type: "node" }))
      expect(asArray(a.data).map((n) => field(n, "node"))).toEqual(["pve1", "pve2"])
    }))
})

describe("initial state and shapes", () => {
  it("has nodes pve1..N, a template per node and the two standard storages", () =>
    withSim({ nodes: 3 }, async (_sim, api) => {
      const vms = asArray((await api.call("GET", "/cluster/resources", { type: "vm" })).data)
      expect(vms.map((v) => [field(v, "vmid"), field(v, "node"), field(v, "name"), field(v, "template")])).toEqual([
        [9000, "pve1", "debian-13-template", 1], [9001, "pve2", "debian-13-template", 1], [9002, "pve3", "debian-13-template", 1]
      ])
      const config = (await api.call("GET", "/nodes/pve2/qemu/9001/config")).data
      expect(field(config, "template")).toBe(1)
      expect(field(config, "scsi0")).toBe("local-lvm:base-9001-disk-0,size=2G")
      expect(field(config, "ide2")).toBe("local-lvm:vm-9001-cloudinit,media=cdrom")
      expect(field(config, "boot")).toBe("order=scsi0")
      const storages = asArray((await api.call("GET", "/nodes/pve1/storage")).data)
      expect(storages.map((s) => [field(s, "storage"), field(s, "type"), field(s, "content"), field(s, "shared")])).toEqual([
        ["local", "dir", "iso,vztmpl,backup", 0], ["local-lvm", "lvmthin", "images,rootdir", 0]
      ])
    }))

  it("returns nextid as a string, lowest free from 100, and 400 for a taken VMID", () =>
    withSim({}, async (_sim, api) => {
      expect((await api.call("GET", "/cluster/nextid")).data).toBe("100")
      const taken = await api.call("GET", "/cluster/nextid", { vmid: 9000 })
      expect([taken.status, taken.body]).toEqual([400, { errors: { vmid: "VM 9000 already exists" }, data: null, message: "Parameter verification failed.\n" }])
      expect((await api.call("GET", "/cluster/nextid", { vmid: 4242 })).data).toBe("4242")
    }))

  it("answers a missing VM with PVE's config-file message", () =>
    withSim({}, async (_sim, api) => {
      const a = await api.call("GET", "/nodes/pve1/qemu/4242/status/current")
      expect([a.status, a.statusText, a.body]).toEqual([500, "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist",
        { data: null, message: "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist\n" }])
      // A VM that exists elsewhere is just as missing on this node.
      const other = await api.call("GET", "/nodes/pve1/qemu/9001/config")
      expect(other.statusText).toBe("Configuration file 'nodes/pve1/qemu-server/9001.conf' does not exist")
    }))

  it("rejects bad parameters with 400 and an errors object, for form and JSON bodies", () =>
    withSim({}, async (_sim, api) => {
      const form = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 99, full: "sure", colour: "red" })
      expect(form.status).toBe(400)
      expect(form.statusText).toBe("Parameter verification failed.")
      expect(form.body).toEqual({
        message: "Parameter verification failed.\n",
        errors: {
          newid: "value must have a minimum value of 100",
          full: "type check ('boolean') failed - got 'sure'",
          colour: "property is not defined in schema and the schema does not allow additional properties"
        },
        data: null
      })
      const json = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: "abc" }, { json: true })
      expect(json.errors).toEqual({ newid: "type check ('integer') failed - got 'abc'" })
      const path = await api.call("GET", "/nodes/pve1/qemu/12/config")
      expect(path.errors).toEqual({ vmid: "value must have a minimum value of 100" })
    }))

  it("decodes form bodies as pveproxy does: unencoded ';' and '=' break values, repeats become lists", () =>
    withSim({}, async (_sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      // `;` separates pairs and a value ends at its second `=`: this arrives as tags=a, b (no value), net0=virtio,bridge.
      const careless = await api.raw("POST", "/nodes/pve1/qemu/100/config", "tags=a;b&net0=virtio,bridge=vmbr0")
      expect(careless.errors?.["b"]).toBe("property is not defined in schema and the schema does not allow additional properties")
      expect(careless.errors?.["net0"]).toContain("duplicate key in comma-separated list property: model")
      const repeated = await api.raw("POST", "/nodes/pve1/qemu/100/config", "cores=2&cores=4")
      expect(repeated.errors).toEqual({ cores: "type check ('integer') failed - got 'ARRAY'" })
      expect(repeated.connection).toBe("close")
      const encoded = await api.raw("POST", "/nodes/pve1/qemu/100/config", `tags=${encodeURIComponent("a;b")}&net0=${encodeURIComponent("virtio,bridge=vmbr0")}`)
      expect(await api.waitTask(asString(encoded.data))).toBe("OK")
      const conflicting = await api.call("GET", "/nodes/pve1/qemu/100/config", { vmid: 101 })
      expect(conflicting.errors).toEqual({ vmid: "duplicate parameter (already defined in URI) with conflicting values!" })
      const text = await api.raw("POST", "/nodes/pve1/qemu/100/config", "cores=2", "text/plain")
      expect([text.status, text.statusText]).toEqual([506, "upload 'Content-Type 'text/plain' not implemented"])
      const skiplock = await api.call("POST", "/nodes/pve1/qemu/100/status/start", { skiplock: 1 })
      expect(skiplock.errors).toEqual({ skiplock: "Only root may use this option." })
    }))

  it("answers 501 for endpoints it does not have", () =>
    withSim({}, async (_sim, api) => {
      const a = await api.call("GET", "/nodes/pve1/lxc")
      expect([a.status, a.statusText]).toEqual([501, "Method 'GET /nodes/pve1/lxc' not implemented"])
    }))
})

describe("tasks", () => {
  it("go from running to stopped with exitstatus OK and a parseable UPID", () =>
    withSim({}, async (sim, api) => {
      const a = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, name: "web1" })
      const upid = asString(a.data)
      expect(Option.getOrUndefined(parseUpid(upid))).toMatchObject({ node: "pve1", type: "qmclone", id: "9000", user: sim.tokenId })
      expect(upid).toMatch(/^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:qmclone:9000:nstance@pve!nstance-token:$/)
      const first = await api.call("GET", `/nodes/pve1/tasks/${encodeURIComponent(upid)}/status`)
      expect(field(first.data, "status")).toBe("running")
      expect(field(first.data, "exitstatus")).toBeUndefined()
      expect(await api.waitTask(upid)).toBe("OK")
      const config = (await api.call("GET", "/nodes/pve1/qemu/100/config")).data
      expect(field(config, "name")).toBe("web1")
      expect(field(config, "template")).toBeUndefined()
      expect(field(config, "scsi0")).toBe("local-lvm:base-9000-disk-0/vm-100-disk-0,size=2G")
    }))

  it("report injected failures and warnings in exitstatus", () =>
    withSim({}, async (sim, api) => {
      sim.faults.failTasks({ type: "qmclone", message: "storage migration failed", times: 1 })
      expect(await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })).toBe("clone failed: storage migration failed")
      // A failed clone leaves nothing behind, as PVE cleans up its half-made VM.
      expect((await api.call("GET", "/nodes/pve1/qemu/100/config")).status).toBe(500)
      expect(await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })).toBe("OK")
      sim.faults.taskWarnings({ type: "qmstart", count: 2, times: 1 })
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe("WARNINGS: 2")
    }))

  it("do not exist on another node", () =>
    withSim({}, async (_sim, api) => {
      const upid = asString((await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })).data)
      const a = await api.call("GET", `/nodes/pve2/tasks/${encodeURIComponent(upid)}/status`)
      expect([a.status, a.errors]).toEqual([400, { upid: "no such task" }])
      const garbled = await api.call("GET", "/nodes/pve1/tasks/UPID:nope/status")
      expect(garbled.errors).toEqual({ upid: "unable to parse worker upid" })
    }))
})

describe("request log", () => {
  it("records every call with its endpoint template and status, so benches can count calls per create", () =>
    withSim({}, async (sim, api) => {
      await api.call("GET", "/cluster/nextid")
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      await api.call("GET", "/nodes/pve1/qemu/4242/config")
      const counts = sim.model.requestCounts()
      expect(counts.get("GET /cluster/nextid")).toBe(1)
      expect(counts.get("POST /nodes/{node}/qemu/{vmid}/clone")).toBe(1)
      expect(counts.get("GET /nodes/{node}/tasks/{upid}/status")).toBeGreaterThanOrEqual(1)
      expect(sim.model.requests.at(-1)).toMatchObject({ method: "GET", path: "/nodes/pve1/qemu/4242/config", status: 500 })
    }))
})

describe("VM lifecycle semantics", () => {
  it("refuses to start a template", () =>
    withSim({}, async (_sim, api) => {
      expect(await api.task("POST", "/nodes/pve1/qemu/9000/status/start")).toBe("you can't start a vm if it's a template")
    }))

  it("refuses to destroy a running VM, then destroys it once stopped", () =>
    withSim({}, async (sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, full: 1 })
      await api.task("POST", "/nodes/pve1/qemu/100/status/start")
      const refused = await api.call("DELETE", "/nodes/pve1/qemu/100")
      expect([refused.status, refused.statusText]).toEqual([500, "VM 100 is running - destroy failed"])
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/stop")).toBe("OK")
      expect(await api.task("DELETE", "/nodes/pve1/qemu/100", { purge: 1, "destroy-unreferenced-disks": 1 })).toBe("OK")
      expect(sim.model.vms.has(100)).toBe(false)
      const disks = asArray((await api.call("GET", "/nodes/pve1/storage/local-lvm/content", { vmid: 100 })).data)
      expect(disks).toEqual([])
    }))

  it("shows a paused VM as status running with qmpstatus paused", () =>
    withSim({}, async (sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      await api.task("POST", "/nodes/pve1/qemu/100/status/start")
      sim.model.setPaused(100, true)
      const st = (await api.call("GET", "/nodes/pve1/qemu/100/status/current")).data
      expect([field(st, "status"), field(st, "qmpstatus")]).toEqual(["running", "paused"])
      const shutdown = await api.call("POST", "/nodes/pve1/qemu/100/status/shutdown")
      expect([shutdown.status, shutdown.statusText]).toEqual([500, "VM is paused - cannot shutdown"])
      // forceStop turns it into a stop (PVE warns in the API process, not in the task).
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/shutdown", { forceStop: 1 })).toBe("OK")
      const after = (await api.call("GET", "/nodes/pve1/qemu/100/status/current")).data
      expect([field(after, "status"), field(after, "qmpstatus")]).toEqual(["stopped", "stopped"])
    }))

  it("refuses to clone a template on local storage to another node, but not one on shared storage", () =>
    withSim({ sharedStorage: true }, async (sim, api) => {
      const local = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, target: "pve2", full: 1 })
      expect([local.status, local.statusText]).toEqual([500, "can't clone VM to node 'pve2' (VM uses local storage)"])
      const toLocal = await api.call("POST", "/nodes/pve1/qemu/9100/clone", { newid: 100, target: "pve2", full: 1, storage: "local-lvm" })
      expect(toLocal.statusText).toBe("can't clone to non-shared storage 'local-lvm'")
      const local2 = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, target: "pve2" })
      expect(local2.statusText).toBe("can't clone VM to node 'pve2' (VM uses local storage)")
      expect(await api.task("POST", "/nodes/pve1/qemu/9100/clone", { newid: 100, target: "pve2" })).toBe("OK")
      expect(sim.model.vms.get(100)?.node).toBe("pve2")
      expect((await api.call("GET", "/nodes/pve2/qemu/100/config")).status).toBe(200)
    }))

  it("links clones only from templates and only on the template's storage", () =>
    withSim({}, async (_sim, api) => {
      const withStorage = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, full: 0, storage: "local-lvm" })
      expect(withStorage.statusText).toBe("parameter 'storage' not allowed for linked clones")
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, full: 1 })
      const fromVm = await api.call("POST", "/nodes/pve1/qemu/100/clone", { newid: 101, full: 0 })
      expect(fromVm.statusText).toBe("Linked clone feature is not supported for 'local-lvm:vm-100-disk-0' (scsi0)")
      // The template cannot go while a linked clone uses its base disk.
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 102 })
      expect(await api.task("DELETE", "/nodes/pve1/qemu/9000")).toBe("base volume 'local-lvm:base-9000-disk-0' is still in use by linked cloned")
    }))

  it("refuses to clone onto an existing VMID: 500 on the same node, a task error when it lives elsewhere", () =>
    withSim({}, async (sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      const same = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      expect([same.status, same.statusText]).toEqual([500, "unable to create VM 100: config file already exists"])
      // The handler only sees its own node's config directory; pmxcfs refuses the file in the worker.
      expect(await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 9001 }))
        .toBe("close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/9001.conf' failed: File exists")
      expect(sim.model.vms.get(9001)?.node).toBe("pve2")
      const missing = await api.call("POST", "/nodes/pve1/qemu/4242/clone", { newid: 101 })
      expect(missing.statusText).toBe("unable to find configuration file for VM 4242 on node 'pve1'")
    }))

  it("resizes with +NG or an absolute size and refuses to shrink", () =>
    withSim({}, async (_sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100, full: 1 })
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi0", size: "+3G" })).toBe("OK")
      expect(field((await api.call("GET", "/nodes/pve1/qemu/100/config")).data, "scsi0")).toBe("local-lvm:vm-100-disk-0,size=5G")
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi0", size: "8G" })).toBe("OK")
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi0", size: "4G" })).toBe("shrinking disks is not supported")
      expect(await api.task("PUT", "/nodes/pve1/qemu/100/resize", { disk: "scsi1", size: "+1G" })).toBe("disk 'scsi1' does not exist")
      expect(field((await api.call("GET", "/nodes/pve1/qemu/100/config")).data, "scsi0")).toBe("local-lvm:vm-100-disk-0,size=8G")
    }))

  it("stores config changes: tags ;-joined, net0 replaced, ide2 only with an existing ISO, PUT synchronous", () =>
    withSim({}, async (_sim, api) => {
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      expect(await api.task("POST", "/nodes/pve1/qemu/100/config", {
        tags: ";nstance;cluster-a;nstance", cores: 4, memory: 4096, onboot: 1, net0: "virtio,bridge=vmbr1,tag=20", description: "hello"
      })).toBe("OK")
      const c = (await api.call("GET", "/nodes/pve1/qemu/100/config")).data
      expect([field(c, "tags"), field(c, "cores"), field(c, "memory"), field(c, "onboot"), field(c, "net0"), field(c, "description")])
        .toEqual(["nstance;cluster-a", 4, "4096", 1, "virtio,bridge=vmbr1,tag=20", "hello"])
      const noMedia = await api.call("POST", "/nodes/pve1/qemu/100/config", { ide2: "local:iso/nope.iso" })
      expect(noMedia.errors).toEqual({ ide2: "explicit 'media=cdrom' is required for iso images" })
      const noStorage = await api.call("POST", "/nodes/pve1/qemu/100/config", { ide2: "nas:iso/x.iso,media=cdrom" })
      expect(noStorage.statusText).toBe("storage 'nas' does not exist")
      const badBoot = await api.call("POST", "/nodes/pve1/qemu/100/config", { boot: "order=scsi0;virtio3" })
      expect(await api.waitTask(asString(badBoot.data))).toBe("invalid bootorder: device 'virtio3' does not exist'")
      // PVE accepts an ISO that is not there (yet); the VM then fails to start.
      expect(await api.task("POST", "/nodes/pve1/qemu/100/config", { ide2: "local:iso/nope.iso,media=cdrom" })).toBe("OK")
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe("volume 'local:iso/nope.iso' does not exist")
      const put = await api.call("PUT", "/nodes/pve1/qemu/100/config", { delete: "description", cores: 2 })
      expect([put.status, put.body]).toEqual([200, { data: null }])
      const after = (await api.call("GET", "/nodes/pve1/qemu/100/config")).data
      expect([field(after, "description"), field(after, "cores")]).toEqual([undefined, 2])
      const stale = await api.call("PUT", "/nodes/pve1/qemu/100/config", { cores: 3, digest: asString(field(c, "digest")) })
      expect(stale.statusText).toBe("checksum mismatch (file change by other user?)")
      const nothing = await api.call("PUT", "/nodes/pve1/qemu/100/config", {})
      expect(nothing.statusText).toBe("no options specified")
    }))

  it("uploads an ISO (multipart), lists it, attaches it and deletes it", () =>
    withSim({}, async (sim, api) => {
      const bytes = new Uint8Array(4096).fill(7)
      const up = await api.upload("pve1", "local", "user-data-100.iso", bytes)
      expect(up.status).toBe(200)
      expect(Option.getOrUndefined(parseUpid(asString(up.data)))?.type).toBe("imgcopy")
      expect(await api.waitTask(asString(up.data))).toBe("OK")
      const content = asArray((await api.call("GET", "/nodes/pve1/storage/local/content", { content: "iso" })).data)
      expect(content.map((v) => [field(v, "volid"), field(v, "size"), field(v, "format")])).toEqual([["local:iso/user-data-100.iso", 4096, "iso"]])
      expect(sim.model.volume("pve1", "local:iso/user-data-100.iso")?.data).toEqual(bytes)
      // Local storage: the ISO is not on the other nodes.
      expect(asArray((await api.call("GET", "/nodes/pve2/storage/local/content")).data)).toEqual([])
      const wrongStorage = await api.upload("pve1", "local-lvm", "x.iso", bytes)
      expect(wrongStorage.statusText).toBe("can't upload to storage type 'lvmthin'")
      const wrongContent = await api.upload("pve1", "local", "x.tar.gz", bytes, "vztmpl")
      expect(wrongContent.status).toBe(200)
      const wrongExt = await api.upload("pve1", "local", "x.txt", bytes)
      expect(wrongExt.errors).toEqual({ filename: "wrong file extension" })
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      expect(await api.task("POST", "/nodes/pve1/qemu/100/config", { ide2: "local:iso/user-data-100.iso,media=cdrom", boot: "order=scsi0;ide2" })).toBe("OK")
      const vol = await api.call("GET", `/nodes/pve1/storage/local/content/${encodeURIComponent("local:iso/user-data-100.iso")}`)
      expect(field(vol.data, "size")).toBe(4096)
      expect(await api.task("DELETE", `/nodes/pve1/storage/local/content/${encodeURIComponent("local:iso/user-data-100.iso")}`)).toBe("OK")
      const gone = await api.call("GET", "/nodes/pve1/storage/local/content/local:iso/user-data-100.iso")
      expect([gone.status, gone.statusText]).toEqual([500, "volume_size_info on 'local:iso/user-data-100.iso' failed - no format"])
      // Deleting it again is not an error for PVE, only a warning in the task.
      expect(await api.task("DELETE", "/nodes/pve1/storage/local/content/local:iso/user-data-100.iso")).toBe("WARNINGS: 1")
      // The VM still points at the ISO; starting it now fails like PVE when a volume is missing.
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe("volume 'local:iso/user-data-100.iso' does not exist")
    }))
})

describe("cluster-wide state", () => {
  it("keeps VMIDs unique when 20 clones race for one ID: one wins, the rest fail as PVE fails them", () =>
    withSim({}, async (sim, api) => {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        api.call("POST", `/nodes/pve${(i % 3) + 1}/qemu/${9000 + (i % 3)}/clone`, { newid: 100, name: `racer-${i}` })))
      // Racers whose handler already sees the placeholder on their own node get the 500; the rest fork a
      // task that loses on the 1 s config lock (same node) or on pmxcfs (another node).
      const outcomes = await Promise.all(answers.map(async (a) => (a.status === 200 ? api.waitTask(asString(a.data)) : `HTTP ${a.status} ${a.statusText}`)))
      expect(outcomes.filter((o) => o === "OK").length).toBe(1)
      for (const o of outcomes.filter((x) => x !== "OK")) {
        expect(o).toMatch(/^(HTTP 500 unable to create VM 100: config file already exists|can't lock file '\/var\/lock\/qemu-server\/lock-100\.conf' - got timeout|close \(rename\) atomic file '\/etc\/pve\/nodes\/pve\d\/qemu-server\/100\.conf' failed: File exists)$/)
      }
      await sim.model.settle()
      const winner = sim.model.vms.get(100)
      expect(winner?.config.get("name")).toMatch(/^racer-\d+$/)
      expect(winner?.config.get("lock")).toBeUndefined()
    }))

  it("gives 20 concurrent nextid+clone clients 20 distinct VMs", () =>
    withSim({}, async (sim, api) => {
      let conflicts = 0
      const createOne = async (i: number): Promise<number> => {
        for (;;) {
          const id = Number((await api.call("GET", "/cluster/nextid")).data)
          const a = await api.call("POST", "/nodes/pve1/qemu/9000/clone", { newid: id, name: `vm-${i}` })
          const outcome = a.status === 200 ? await api.waitTask(asString(a.data)) : a.statusText
          if (outcome === "OK") return id
          expect(outcome).toMatch(/already exists|got timeout/)
          conflicts++
        }
      }
      const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => createOne(i)))
      expect(new Set(ids).size).toBe(20)
      const names = [...sim.model.vms.values()].map((vm) => vm.config.get("name")).filter((n) => n?.startsWith("vm-"))
      expect(names.length).toBe(20)
      // They all asked nextid at once, so most of them collided at least once.
      expect(conflicts).toBeGreaterThan(0)
    }))

  it("shows started VMs in node resources, after the refresh interval", () =>
    withSim({}, async (sim, api) => {
      const before = asArray((await api.call("GET", "/cluster/resources", { type: "node" })).data).find((n) => field(n, "node") === "pve1")
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      await api.task("POST", "/nodes/pve1/qemu/100/config", { memory: 8192 })
      await api.task("POST", "/nodes/pve1/qemu/100/status/start")
      // Fresh state is on the node endpoints at once …
      expect(field((await api.call("GET", "/nodes/pve1/qemu/100/status/current")).data, "status")).toBe("running")
      // … while /cluster/resources only catches up on pvestatd's next tick.
      sim.model.refreshResources()
      const vm = asArray((await api.call("GET", "/cluster/resources", { type: "vm" })).data).find((v) => field(v, "vmid") === 100)
      expect([field(vm, "status"), field(vm, "maxmem")]).toEqual(["running", 8192 * 1024 * 1024])
      const after = asArray((await api.call("GET", "/cluster/resources", { type: "node" })).data).find((n) => field(n, "node") === "pve1")
      expect(Number(field(after, "mem")) - Number(field(before, "mem"))).toBe(8192 * 1024 * 1024)
      expect(Number(field(after, "cpu"))).toBeGreaterThan(Number(field(before, "cpu")))
      const status = (await api.call("GET", "/nodes/pve1/status")).data
      expect(field(field(status, "memory"), "used")).toBe(field(after, "mem"))
    }))

  it("lists a just-cloned VM on its node at once but in /cluster/resources only after a refresh", () =>
    withSim({ latency: { name: "slow-refresh", timeScale: 1, requestMs: [0, 0], jitter: 0 } }, async (sim, api) => {
      // timeScale 1: the refresh interval is the real 10 s, so the lag is certain within this test.
      sim.model.refreshResources()
      sim.model.createForeignVm("pve2", 555)
      const onNode = asArray((await api.call("GET", "/nodes/pve2/qemu")).data).map((v) => field(v, "vmid"))
      expect(onNode).toContain(555)
      const cluster = asArray((await api.call("GET", "/cluster/resources", { type: "vm" })).data).map((v) => field(v, "vmid"))
      expect(cluster).not.toContain(555)
      sim.model.refreshResources()
      const later = asArray((await api.call("GET", "/cluster/resources", { type: "vm" })).data).map((v) => field(v, "vmid"))
      expect(later).toContain(555)
    }))
})
