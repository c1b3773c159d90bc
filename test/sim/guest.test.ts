import { describe, expect, it } from "@effect/vitest"
import { cloudInitSeed, InvalidCloudInitInput } from "../../src/domain/cloudInit.js"
import { IsoBuildError } from "../../src/services/IsoBuilder.js"
import { seedIsoBytes } from "../../src/layers/IsoBuilder9660.js"
import { parseMetaData } from "../../src/domain/noCloudSeed.js"
import { startSimulator, type GuestBoot, type SimulatorOptions, type RunningSimulator } from "../../src/sim/server.js"
import { client, type Client } from "./client.js"

const ID = "web06dx9xy919t3v9kzd2xdsyzb3g"

const withSim = async (options: SimulatorOptions, body: (sim: RunningSimulator, api: Client) => Promise<void>) => {
  const sim = await startSimulator({ http: true, ...options })
  try {
    await body(sim, client(sim))
  } finally {
    await sim.close()
  }
}

const seedIso = (instanceId: string, userData: string): Uint8Array => {
  const seed = cloudInitSeed({ instanceId, userData })
  if (seed instanceof InvalidCloudInitInput) throw seed
  const iso = seedIsoBytes(seed)
  if (iso instanceof IsoBuildError) throw iso
  return iso
}

/** The create path a client performs: clone, upload the seed ISO, attach it, start. */
const createWithIso = async (api: Client, vmid: number, iso: Uint8Array) => {
  await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: vmid, name: ID })
  const up = await api.upload("pve1", "local", `user-data-${vmid}.iso`, iso)
  expect(await api.waitTask(String(up.data))).toBe("OK")
  expect(await api.task("POST", `/nodes/pve1/qemu/${vmid}/config`, { ide2: `local:iso/user-data-${vmid}.iso,media=cdrom`, boot: "order=scsi0;ide2" })).toBe("OK")
  expect(await api.task("POST", `/nodes/pve1/qemu/${vmid}/status/start`)).toBe("OK")
}

describe("guest boot", () => {
  it("reads the attached cloud-init ISO and calls the hook with parsed meta-data and user-data", async () => {
    const boots: Array<GuestBoot> = []
    await withSim({ guestHook: (boot) => { boots.push(boot) } }, async (sim, api) => {
      await createWithIso(api, 100, seedIso(ID, "#cloud-config\nruncmd: [echo nonce-123]\n"))
      await sim.model.settle()
      expect(boots).toHaveLength(1)
      expect(boots[0]).toMatchObject({
        node: "pve1", vmid: 100, name: ID, instanceId: ID, volumeId: "cidata",
        metaData: { "instance-id": ID, "local-hostname": ID },
        userData: "#cloud-config\nruncmd: [echo nonce-123]\n"
      })
      expect(sim.model.boots.map((b) => [b.vmid, b.outcome, b.instanceId])).toEqual([[100, "booted", ID]])
    })
  })

  it("records a VM without a readable seed as a boot failure, not a crash", async () => {
    const boots: Array<GuestBoot> = []
    await withSim({ guestHook: (boot) => { boots.push(boot) } }, async (sim, api) => {
      // The template's own PVE cloud-init drive: no uploaded seed.
      await api.task("POST", "/nodes/pve1/qemu/9000/clone", { newid: 100 })
      expect(await api.task("POST", "/nodes/pve1/qemu/100/status/start")).toBe("OK")
      // Bytes that are not an ISO at all.
      await createWithIso(api, 101, new Uint8Array(64 * 1024).fill(1))
      await sim.model.settle()
      expect(boots).toEqual([])
      const failures = sim.model.boots.map((b) => [b.vmid, b.outcome, b.reason?.split(":")[0]])
      expect(failures).toEqual([
        [100, "failed", "ide2 local-lvm"],
        [101, "failed", "ISO unreadable"]
      ])
      expect(sim.model.vms.get(101)?.status).toBe("running")
    })
  })

  it("records a failing hook as a boot failure with its message", async () => {
    await withSim({ guestHook: () => { throw new Error("agent could not register") } }, async (sim, api) => {
      await createWithIso(api, 100, seedIso(ID, "echo hi"))
      await sim.model.settle()
      expect(sim.model.boots.map((b) => [b.outcome, b.instanceId, b.reason])).toEqual([["failed", ID, "guest hook failed: agent could not register"]])
    })
  })
})

describe("meta-data parsing", () => {
  it.each([
    ["plain", "instance-id: a1\nlocal-hostname: web\n", { "instance-id": "a1", "local-hostname": "web" }],
    ["double-quoted", "instance-id: \"i: x # y\"\n", { "instance-id": "i: x # y" }],
    ["single-quoted", "instance-id: 'it''s'\n", { "instance-id": "it's" }],
    ["CRLF and nested keys ignored", "instance-id: a\r\n  nested: x\r\n", { "instance-id": "a" }]
  ] as const)("reads %s values", (_label, text, expected) => {
    expect(parseMetaData(text)).toEqual(expected)
  })
})
