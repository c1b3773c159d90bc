/**
 * The preflight's reads against the simulator (in process, through the same endpoint table, schema checks
 * and decoders as the HTTP client): what the simulated cluster serves — `/version`, the token's privileges,
 * storages with their content types and nodes, bridges per node, templates per node — and what the
 * preflight makes of it when a test takes one of them away.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { PreflightReport } from "../../src/domain/pve/preflight.js"
import { ProxmoxApi } from "../../src/services/ProxmoxApi.js"
import { runPreflight } from "../../src/shard/Preflight.js"
import { ProxmoxApiSim, SimHandle } from "../../src/sim/ProxmoxApiSim.js"
import { parseConfig, shardConfigText } from "../support/shardConfig.js"

const config = (isoStorage = "local") =>
  parseConfig(shardConfigText({
    title: "preflight against the simulator", gcInterval: "1m", registrationTimeout: "5m", greeting: "hi",
    groups: [{ group: "web", kind: "web", cpu: 1, memoryMiB: 512, diskGiB: 4, size: 2 }]
  }).replace(`"cloud_init_iso_storage": "local"`, `"cloud_init_iso_storage": "${isoStorage}"`)).config

/** The part of the official schema that says what `GET /nodes/{node}/network` answers. */
const NetworkReturns = Schema.Struct({
  "GET /nodes/{node}/network": Schema.Struct({ returns: Schema.Struct({ items: Schema.Struct({ properties: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }) }) })
})
const Listing = Schema.Struct({ data: Schema.Array(Schema.Record({ key: Schema.String, value: Schema.Unknown })) })

const errors = (report: PreflightReport) => report.findings.filter((f) => f.severity === "error").map((f) => f.message)
const warnings = (report: PreflightReport) => report.findings.filter((f) => f.severity === "warning").map((f) => f.message)
const NODE_LOCAL = /^storage local \(cloud_init_iso_storage\) is node-local, not shared/

describe("preflight against the simulated cluster", () => {
  it.scoped("serves what the preflight reads: version, privileges on every default path, storages, bridges (type any_bridge)", () =>
    Effect.gen(function* () {
      const pve = yield* ProxmoxApi
      expect(yield* pve.version()).toMatchObject({ version: "9.0.10", release: "9.0" })
      const permissions = yield* pve.permissions()
      expect(Object.keys(permissions).sort()).toEqual(["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"])
      expect(permissions["/vms"]?.["VM.Clone"]).toBe(true)
      expect((yield* pve.listStorage("pve1")).map((s) => [s.storage, s.content, s.shared])).toEqual([["local", "iso,vztmpl,backup", false], ["local-lvm", "images,rootdir", false]])
      expect((yield* pve.listNetwork("pve1")).map((i) => `${i.iface}:${i.type}`)).toEqual(["eno1:eth", "eno2:eth", "vmbr0:bridge", "vmbr1:bridge"])
      expect((yield* pve.listNetwork("pve1", { type: "any_bridge" })).map((i) => i.iface)).toEqual(["vmbr0", "vmbr1"])
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5 }))))

  it("answers the network listing with the official schema's fields only", async () => {
    const { readFileSync } = await import("node:fs")
    const { BUNDLED_SCHEMA_PATH, startSimulator } = await import("../../src/sim/server.js")
    const schema = Schema.decodeUnknownSync(NetworkReturns)(JSON.parse(readFileSync(BUNDLED_SCHEMA_PATH, "utf8")))
    const allowed = new Set(Object.keys(schema["GET /nodes/{node}/network"].returns.items.properties))
    const sim = await startSimulator({ http: true, nodes: 1 })
    try {
      const answer = await fetch(`${sim.url}/nodes/pve1/network`, { headers: { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}` } })
      const body = Schema.decodeUnknownSync(Listing)(await answer.json())
      expect(body.data.length).toBe(4)
      for (const entry of body.data) for (const key of Object.keys(entry)) expect(allowed.has(key), key).toBe(true)
      const refused = await fetch(`${sim.url}/nodes/pve1/network?type=bridges`, { headers: { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}` } })
      expect(refused.status).toBe(400)
    } finally {
      await sim.close()
    }
  })

  it.scoped("a cluster with everything: only the node-local ISO storage warning; a shared ISO storage gets none", () =>
    Effect.gen(function* () {
      const report = yield* runPreflight(config())
      expect(report.version).toBe("9.0.10")
      expect(errors(report)).toEqual([])
      expect(warnings(report)).toHaveLength(1)
      expect(warnings(report)[0]).toMatch(NODE_LOCAL)
      expect(report.unfit).toEqual({})
      expect((yield* runPreflight(config("cephfs"))).findings).toEqual([])
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5, sharedStorage: true }))))

  it.scoped("a privilege taken from the token: one error naming it and its path", () =>
    Effect.gen(function* () {
      const { model } = yield* SimHandle
      model.revokePrivilege("VM.Clone")
      model.revokePrivilege("Datastore.AllocateTemplate")
      expect(errors(yield* runPreflight(config()))).toEqual([
        "the API token lacks VM.Clone on /vms/9000, /vms/9001, /vms/9002: needed to clone the template (POST /nodes/{node}/qemu/{vmid}/clone)",
        "the API token lacks Datastore.AllocateTemplate on /storage/local: needed to upload cloud-init ISOs (POST /nodes/{node}/storage/{storage}/upload)"
      ])
      // Given back on the templates alone (an ACL of their own), VM.Clone is there again.
      for (const vmid of [9000, 9001, 9002]) model.setAcl(`/vms/${vmid}`, ["VM.Clone", "VM.Audit"])
      expect(errors(yield* runPreflight(config())).map((e) => e.split(":")[0])).toEqual(["the API token lacks Datastore.AllocateTemplate on /storage/local"])
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5 }))))

  it.scoped("a token created with fewer privileges (the simulator's option) is judged the same way", () =>
    Effect.gen(function* () {
      expect(errors(yield* runPreflight(config()))).toEqual([
        "the API token lacks SDN.Use on /sdn/zones/localnetwork/vmbr1: needed to attach VMs to the bridge (net0 of POST …/config; PVE 8 and later)"
      ])
    }).pipe(Effect.provide(ProxmoxApiSim({
      nodes: 2, seed: 5,
      privileges: ["Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.PowerMgmt", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Disk",
        "VM.Config.CDROM", "VM.Config.Options", "Datastore.Audit", "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate"]
    }))))

  it.scoped("a storage configured for some nodes only: a warning for the others, which are unfit for the group", () =>
    Effect.gen(function* () {
      const { model } = yield* SimHandle
      model.updateStorage("local-lvm", { nodes: ["pve1", "pve3"] })
      const report = yield* runPreflight(config())
      expect(warnings(report)[0]).toBe("storage local-lvm (StoragePool of shop/web) is not available on pve2")
      expect(report.unfit).toEqual({ "shop/web": { pve2: "no storage local-lvm" } })
      model.updateStorage("local-lvm", { nodes: [] })
      expect(errors(yield* runPreflight(config()))).toEqual(["storage local-lvm (StoragePool of shop/web) is not available on every node (pve1, pve2, pve3)"])
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5 }))))

  it.scoped("an ISO storage without iso content is an error", () =>
    Effect.gen(function* () {
      const { model } = yield* SimHandle
      model.updateStorage("local", { content: ["vztmpl", "backup"] })
      expect(errors(yield* runPreflight(config()))).toEqual([
        "storage local (cloud_init_iso_storage) on every node (pve1, pve2, pve3) does not take ISO images: its content is vztmpl,backup, iso is needed"
      ])
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5 }))))

  it.scoped("a bridge and a template missing on one node each: warnings naming them, and those nodes unfit", () =>
    Effect.gen(function* () {
      const { model } = yield* SimHandle
      model.removeInterface("pve3", "vmbr1")
      model.destroyTemplate(9001)
      const report = yield* runPreflight(config())
      expect(warnings(report).slice(0, 2)).toEqual([
        "bridge vmbr1 (subnet pool edge, shop/web) does not exist on pve3",
        "template debian-13-template (TemplateName of shop/web) is missing on pve2"
      ])
      expect(report.unfit).toEqual({ "shop/web": { pve2: "no template named debian-13-template", pve3: "no bridge vmbr1" } })
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5 }))))

  it.scoped("an offline node is not asked, and said so", () =>
    Effect.gen(function* () {
      const { model } = yield* SimHandle
      model.setNodeOnline("pve2", false)
      const report = yield* runPreflight(config())
      expect(warnings(report)[0]).toBe("node pve2 is offline: not checked (placement skips it while it is not online)")
      expect(model.requests.filter((r) => r.path.startsWith("/nodes/pve2/"))).toEqual([])
    }).pipe(Effect.provide(ProxmoxApiSim({ nodes: 3, seed: 5 }))))
})
