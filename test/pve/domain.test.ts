/** Pure parts of the PVE client: decoding PVE's documented shapes, error classification, status mapping, UPIDs. */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Option, ParseResult, Schema } from "effect"
import { classifyPveError, classifyTaskFailure, isTaskSuccess, type PveErrorClass } from "../../src/domain/pve/errors.js"
import { meanMs, pveCallsBetween, pveCallTable } from "../../src/domain/pve/metrics.js"
import {
  BooleanFromPve,
  ClusterResourceEntry,
  ClusterStatusEntry,
  Envelope,
  NextId,
  NodeResource,
  NodeStatus,
  NumberFromStringOrNumber,
  OptionalUpidAnswer,
  Permissions,
  PveVersion,
  QemuListEntry,
  StorageContentEntry,
  StorageEntry,
  TaskStatus,
  UpidAnswer,
  VmConfig,
  VmResource,
  VmStatusCurrent
} from "../../src/domain/pve/schemas.js"
import { pveInstanceStatus } from "../../src/domain/pve/status.js"
import { parseUpid } from "../../src/domain/pve/upid.js"

const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../fixtures/pve/${name}`, import.meta.url), "utf8"))

const decode = <A, I>(schema: Schema.Schema<A, I>, name: string): A => {
  const result = Schema.decodeUnknownEither(Envelope(schema))(fixture(name))
  if (Either.isLeft(result)) throw new Error(`${name}: ${ParseResult.TreeFormatter.formatErrorSync(result.left)}`)
  return result.right.data
}

describe("decoding PVE's documented answers", () => {
  it("cluster resources (vm): numbers as strings, 0/1 and \"0\" templates, missing names", () => {
    const vms = decode(Schema.Array(VmResource), "cluster-resources-vm.json")
    expect(vms.map((v) => [v.vmid, v.type, v.node, v.name, v.template, v.status, v.tags, v.lock])).toEqual([
      [100, "qemu", "pve-a", "web-1", false, "running", "nstance;example-cluster;dev-1", undefined],
      [9000, "qemu", "pve-a", "debian-13-template", true, "stopped", undefined, undefined],
      [101, "qemu", "pve-b", undefined, false, "stopped", undefined, "clone"],
      [200, "lxc", "pve-b", "ct-1", false, "running", "go-proxmox+cloud-init", undefined]
    ])
    expect(vms[2]?.maxmem).toBe(536870912)
  })

  it("cluster resources (node): an offline node without usage figures", () => {
    const nodes = decode(Schema.Array(NodeResource), "cluster-resources-node.json")
    expect(nodes.map((n) => [n.node, n.status, n.maxmem, n.cpu])).toEqual([["pve-a", "online", 68719476736, 0.0521], ["pve-b", "offline", undefined, undefined]])
  })

  it("cluster resources (unfiltered): nodes, guests and storages decoded; pools, SDN and network entries skipped; a bad node entry named", () => {
    const answer = {
      data: [
        { id: "node/pve-a", type: "node", node: "pve-a", status: "online", maxmem: 68719476736, mem: 1, cpu: 0.05, maxcpu: 16 },
        { id: "qemu/9000", type: "qemu", vmid: "9000", node: "pve-a", status: "stopped", name: "debian-13-template", template: 1 },
        { id: "storage/pve-a/ceph-vm", type: "storage", storage: "ceph-vm", node: "pve-a", status: "available", content: "images,rootdir", plugintype: "rbd", shared: 1 },
        { id: "storage/pve-a/local-lvm", type: "storage", storage: "local-lvm", node: "pve-a", status: "available", content: "images", plugintype: "lvmthin", shared: 0 },
        { id: "pool/web", type: "pool", pool: "web" },
        { id: "sdn/pve-a/localnetwork", type: "sdn", sdn: "localnetwork", node: "pve-a", status: "ok" },
        { id: "network/pve-a/fabric/f1", type: "network", network: "f1", "network-type": "fabric" }
      ]
    }
    const decoded = Schema.decodeUnknownEither(Envelope(Schema.Array(ClusterResourceEntry)))(answer)
    if (Either.isLeft(decoded)) throw new Error(ParseResult.TreeFormatter.formatErrorSync(decoded.left))
    const entries = decoded.right.data
    expect(entries.map((e) => e.type)).toEqual(["node", "qemu", "storage", "storage", "pool", "sdn", "network"])
    expect(entries.flatMap((e) => ("vmid" in e ? [[e.vmid, e.template]] : []))).toEqual([[9000, true]])
    expect(entries.flatMap((e) => ("storage" in e ? [[e.storage, e.shared]] : []))).toEqual([["ceph-vm", true], ["local-lvm", false]])
    const bad = Schema.decodeUnknownEither(Envelope(Schema.Array(ClusterResourceEntry)))({ data: [{ id: "node/x", type: "node", status: "online" }] })
    expect(Either.isLeft(bad)).toBe(true)
  })

  it("cluster resources (unfiltered): a guest is decoded for the fields nstance reads, as strictly as before; its usage figures are not decoded or kept", () => {
    const decode = Schema.decodeUnknownEither(Envelope(Schema.Array(ClusterResourceEntry)))
    const guest = { id: "qemu/101", type: "qemu", vmid: 101, node: "pve-a", status: "running", name: "web01", tags: "nstance;acme;pve-a", template: 0, lock: "backup", pool: "web" }
    const decoded = decode({ data: [{ ...guest, cpu: "not a number", maxmem: { gib: 4 }, uptime: 12 }] })
    if (Either.isLeft(decoded)) throw new Error(ParseResult.TreeFormatter.formatErrorSync(decoded.left))
    expect(decoded.right.data).toEqual([{ ...guest, template: false }])
    // What is read is still checked: a guest without a node, or with a VMID that is no integer, fails the read.
    for (const broken of [{ ...guest, node: undefined }, { ...guest, vmid: "10x" }, { ...guest, template: "maybe" }]) {
      expect(Either.isLeft(decode({ data: [broken] }))).toBe(true)
    }
  })

  it("cluster status, nextid (a JSON string), version, permissions", () => {
    const status = decode(Schema.Array(ClusterStatusEntry), "cluster-status.json")
    expect(status.map((s) => [s.type, s.name, s.online, s.quorate])).toEqual([["cluster", "lab", undefined, true], ["node", "pve-a", true, undefined], ["node", "pve-b", false, undefined]])
    expect(decode(NextId, "nextid.json")).toBe(100)
    expect(decode(PveVersion, "version.json").release).toBe("8.3")
    expect(decode(Permissions, "access-permissions.json")).toEqual({ "/": { "VM.Allocate": true, "VM.Clone": true, "Sys.Audit": true, "Datastore.Audit": true } })
  })

  it("VM config: typed keys decoded, every other key kept", () => {
    const config = decode(VmConfig, "qemu-config.json")
    expect([config.cores, config.memory, config.onboot, config.tags, config.boot, config.ide2, config.template]).toEqual([
      2, "2048", true, "production;webserver", "order=scsi0;ide2;net0", "local:iso/debian-12.iso,media=cdrom", undefined
    ])
    expect(config["scsihw"]).toBe("virtio-scsi-single")
    expect(config["agent"]).toBe("1")
    const legacy = decode(VmConfig, "qemu-config-legacy.json")
    expect([legacy.memory, legacy.cores, legacy.template]).toEqual([1024, 1, true])
  })

  it("status/current: paused, stopped with a string vmid; extra nested fields ignored", () => {
    const paused = decode(VmStatusCurrent, "status-current-paused.json")
    expect([paused.vmid, paused.status, paused.qmpstatus, paused.agent, paused.template]).toEqual([101, "running", "paused", true, false])
    expect(pveInstanceStatus(paused.status, paused.qmpstatus)).toBe("Suspended")
    const stopped = decode(VmStatusCurrent, "status-current-stopped.json")
    expect([stopped.vmid, pveInstanceStatus(stopped.status, stopped.qmpstatus)]).toEqual([102, "Stopped"])
  })

  it("qemu list, node status, storages, storage content", () => {
    const list = decode(Schema.Array(QemuListEntry), "qemu-list.json")
    expect(list.map((q) => [q.vmid, q.template, q.cpus, q.pid, q.lock])).toEqual([[9000, true, 2, undefined, undefined], [101, false, 2, 123456, undefined], [102, false, undefined, undefined, "backup"]])
    const node = decode(NodeStatus, "node-status.json")
    expect([node.memory.total, node.cpuinfo?.cpus, node.loadavg?.[0]]).toEqual([68719476736, 16, "0.83"])
    const storages = decode(Schema.Array(StorageEntry), "nodes-storage.json")
    expect(storages.map((s) => [s.storage, s.enabled, s.shared, s.total])).toEqual([["local", true, false, 100861726720], ["cephfs", true, true, 4398046511104], ["nas", false, true, undefined]])
    const content = decode(Schema.Array(StorageContentEntry), "storage-content.json")
    expect(content.map((c) => [c.volid, c.size, c.vmid])).toEqual([
      ["local:iso/nstance-tst06dx9xy919t3v9kzd2xdsyzb3g.iso", 376832, undefined], ["local:iso/debian-12.iso", 658505728, undefined], ["local-lvm:vm-101-disk-0", 34359738368, 101]
    ])
  })

  it("task status: running (no exitstatus), OK, failed with string numbers", () => {
    expect(decode(TaskStatus, "task-status-running.json").exitstatus).toBeUndefined()
    expect(decode(TaskStatus, "task-status-ok.json").exitstatus).toBe("OK")
    const failed = decode(TaskStatus, "task-status-failed.json")
    expect([failed.pid, failed.exitstatus, isTaskSuccess(failed.exitstatus ?? "")]).toEqual([1223477, "start failed: QEMU exited with code 1", false])
  })

  it("UPID answers and the optional (null) answer of POST …/config", () => {
    expect(decode(UpidAnswer, "qemu-clone-upid.json")).toMatch(/^UPID:pve-a:/)
    expect(decode(OptionalUpidAnswer, "qemu-config-post-null.json")).toBeNull()
    const bad = Schema.decodeUnknownEither(Envelope(UpidAnswer))({ data: "not-a-upid" })
    expect(Either.isLeft(bad)).toBe(true)
  })

  it("strict where PVE is strict: a non-numeric vmid and an unknown task state are refused with the field's path", () => {
    const result = Schema.decodeUnknownEither(Envelope(Schema.Array(VmResource)))({ data: [{ id: "qemu/1", type: "qemu", vmid: "abc", node: "x", status: "running" }] })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(ParseResult.ArrayFormatter.formatErrorSync(result.left)[0]?.path).toEqual(["data", 0, "vmid"])
    expect(Either.isLeft(Schema.decodeUnknownEither(TaskStatus)({ ...(fixture("task-status-ok.json") as { data: object }).data, status: "paused" }))).toBe(true)
  })

  it.prop("NumberFromStringOrNumber reads a number and its decimal string alike", [FastCheck.double({ noNaN: true, noDefaultInfinity: true })], ([n]) => {
    const decode = Schema.decodeUnknownSync(NumberFromStringOrNumber)
    expect(decode(n)).toBe(n)
    expect(decode(String(n))).toBe(Object.is(n, -0) ? 0 : n)
  })

  it("BooleanFromPve accepts 0/1/\"0\"/\"1\"/true/false and nothing else", () => {
    const decode = Schema.decodeUnknownEither(BooleanFromPve)
    expect([0, 1, "0", "1", true, false].map((v) => Either.getOrThrow(decode(v)))).toEqual([false, true, false, true, true, false])
    for (const bad of [2, "yes", "", null]) expect(Either.isLeft(decode(bad))).toBe(true)
  })
})

describe("classifyPveError", () => {
  const table: ReadonlyArray<readonly [number, string, Readonly<Record<string, string>> | undefined, PveErrorClass]> = [
    [500, "Internal Server Error", undefined, "transient"],
    [500, "", undefined, "transient"],
    [503, "Service Unavailable", undefined, "transient"],
    [595, "No route to host", undefined, "transient"],
    [596, "Connection timed out", undefined, "transient"],
    [500, "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout", undefined, "transient"],
    [500, "VM is locked (clone)", undefined, "transient"],
    [500, "VM 101 is locked (backup)", undefined, "transient"],
    [500, "got no worker upid - start worker failed", undefined, "transient"],
    [500, "cluster not ready - no quorum?", undefined, "transient"],
    [0, "ECONNRESET: read ECONNRESET", undefined, "transient"],
    [0, "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:8006", undefined, "transient"],
    [0, "UND_ERR_SOCKET: other side closed", undefined, "transient"],
    [0, "request timed out after 30s", undefined, "transient"],
    [0, "TLS certificate not trusted (DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate)", undefined, "permanent"],
    [0, "TypeError: action is not a function", undefined, "permanent"],
    [400, "Parameter verification failed", { vmid: "VM 200 already exists" }, "conflict"],
    [500, "unable to create VM 200: config file already exists", undefined, "conflict"],
    [500, "Configuration file 'nodes/pve1/qemu-server/123.conf' does not exist", undefined, "notFound"],
    [500, "unable to find configuration file for VM 123 on node 'pve1'", undefined, "notFound"],
    [500, "volume 'local:iso/x.iso' does not exist", undefined, "notFound"],
    [404, "Not Found", undefined, "notFound"],
    [400, "Parameter verification failed", { upid: "no such task" }, "notFound"],
    [400, "Parameter verification failed", { newid: "value must have a minimum value of 100" }, "permanent"],
    [500, "VM 101 is running - destroy failed", undefined, "permanent"],
    [500, "parameter 'storage' not allowed for linked clones", undefined, "permanent"],
    [501, "Method 'GET /nodes/x/bogus' not implemented", undefined, "permanent"],
    [401, "Authentication failed!", undefined, "unauthorized"],
    [403, "Permission check failed (/vms/101, VM.Allocate)", undefined, "unauthorized"]
  ]
  it.each(table)("%i %s %o → %s", (status, message, errors, expected) => {
    expect(classifyPveError(status, message, errors)).toBe(expected)
  })

  it("task exit statuses", () => {
    expect(["OK", "WARNINGS: 3"].map(isTaskSuccess)).toEqual([true, true])
    expect(["", "WARNINGS:", "command failed", "OK but not really"].map(isTaskSuccess)).toEqual([false, false, false, false])
    expect(classifyTaskFailure("can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout")).toBe("transient")
    expect(classifyTaskFailure("clone failed: close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/101.conf' failed: File exists")).toBe("conflict")
    expect(classifyTaskFailure("start failed: QEMU exited with code 1")).toBe("permanent")
  })
})

describe("pveInstanceStatus", () => {
  it.each([
    ["running", undefined, "Running"],
    ["running", "running", "Running"],
    ["running", "paused", "Suspended"],
    ["running", "suspended", "Suspended"],
    ["running", "prelaunch", "Unknown"],
    ["stopped", undefined, "Stopped"],
    ["paused", undefined, "Suspended"],
    ["unknown", undefined, "Unknown"],
    [undefined, undefined, "Unknown"]
  ] as const)("%s / %s → %s", (status, qmp, expected) => {
    expect(pveInstanceStatus(status, qmp)).toBe(expected)
  })
})

describe("parseUpid", () => {
  it("splits a UPID into node, type and id", () => {
    const upid = parseUpid("UPID:pve-a:0012AB34:0A1B2C3D:6790A1B2:qmclone:9000:nstance@pve!nstance-token:")
    expect(Option.map(upid, (u) => [u.node, u.type, u.id, u.user, u.pid])).toEqual(Option.some(["pve-a", "qmclone", "9000", "nstance@pve!nstance-token", 0x12ab34]))
    expect(Option.map(parseUpid("UPID:pve1:00001000:00000001:6790A1B2:imgcopy::root@pam:"), (u) => u.id)).toEqual(Option.some(""))
    for (const bad of ["", "UPID:pve1", "UPID:pve1:zz:00000001:6790A1B2:qmstart:1:root@pam:", "upid:pve1:00001000:00000001:6790A1B2:qmstart:1:root@pam:"]) {
      expect(Option.isNone(parseUpid(bad))).toBe(true)
    }
  })
})

describe("PVE call figures read off the metric series", () => {
  it("folds outcomes into count and errors, adds retries and latency, and subtracts a baseline", () => {
    const before = pveCallTable([
      { kind: "calls", endpoint: "GET /version", outcome: "ok", count: 1 },
      { kind: "seconds", endpoint: "GET /version", sumSeconds: 0.003 },
      { kind: "calls", endpoint: "GET /cluster/status", outcome: "ok", count: 4 }
    ])
    const after = pveCallTable([
      { kind: "calls", endpoint: "GET /version", outcome: "ok", count: 2 },
      { kind: "calls", endpoint: "GET /version", outcome: "transient", count: 2 },
      { kind: "retries", endpoint: "GET /version", count: 2 },
      { kind: "seconds", endpoint: "GET /version", sumSeconds: 0.303 },
      { kind: "calls", endpoint: "GET /cluster/status", outcome: "ok", count: 4 }
    ])
    const v = after.get("GET /version")
    expect([v?.count, v?.errors, v?.retries]).toEqual([4, 2, 2])
    const delta = pveCallsBetween(before, after)
    // An endpoint with no new request is left out.
    expect([...delta.keys()]).toEqual(["GET /version"])
    const d = delta.get("GET /version")
    expect([d?.count, d?.errors, d?.retries]).toEqual([3, 2, 2])
    expect(d === undefined ? 0 : meanMs(d)).toBeCloseTo(100, 6)
    expect(pveCallsBetween(after, after).size).toBe(0)
  })
})
