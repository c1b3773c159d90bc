/**
 * `--volumes-dir`: the simulator keeps every uploaded volume's bytes on disk where PVE's storages keep them
 * (`<node>/<storage>/template/iso/<name>`, `shared/<storage>/…` for a shared storage), written whole when the
 * upload task ends and removed with the volume — so what a VM boots can be read from outside.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { simCommand } from "../../src/sim/command.js"
import { startSimulator } from "../../src/sim/server.js"
import { runCommand } from "../support/cli.js"
import { asString, client } from "./client.js"

const dir = mkdtempSync(join(tmpdir(), "nstance-sim-volumes-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("simulator --volumes-dir", () => {
  it("keeps uploads as files in PVE's layout and removes them with the volume", async () => {
    const volumes = join(dir, "a")
    const sim = await startSimulator({ http: true, sharedStorage: true, volumesDir: volumes })
    try {
      const api = client(sim)
      const local = new Uint8Array(6000).map((_, i) => i % 251)
      const shared = new Uint8Array(2048).fill(9)
      expect(await api.waitTask(asString((await api.upload("pve2", "local", "seed-1.iso", local)).data))).toBe("OK")
      expect(await api.waitTask(asString((await api.upload("pve1", "cephfs", "seed-2.iso", shared)).data))).toBe("OK")
      const localFile = join(volumes, "pve2", "local", "template", "iso", "seed-1.iso")
      const sharedFile = join(volumes, "shared", "cephfs", "template", "iso", "seed-2.iso")
      expect(new Uint8Array(readFileSync(localFile))).toEqual(local)
      expect(new Uint8Array(readFileSync(sharedFile))).toEqual(shared)
      // Uploading the same name again replaces the file.
      const again = new Uint8Array(100).fill(1)
      expect(await api.waitTask(asString((await api.upload("pve2", "local", "seed-1.iso", again)).data))).toBe("OK")
      expect(new Uint8Array(readFileSync(localFile))).toEqual(again)
      expect(await api.task("DELETE", `/nodes/pve2/storage/local/content/${encodeURIComponent("local:iso/seed-1.iso")}`)).toBe("OK")
      expect(await api.task("DELETE", `/nodes/pve3/storage/cephfs/content/${encodeURIComponent("cephfs:iso/seed-2.iso")}`)).toBe("OK")
      expect([existsSync(localFile), existsSync(sharedFile)]).toEqual([false, false])
    } finally {
      await sim.close()
    }
  })

  it("without it, nothing is written", async () => {
    const sim = await startSimulator({ http: true })
    try {
      const api = client(sim)
      expect(await api.waitTask(asString((await api.upload("pve1", "local", "seed.iso", new Uint8Array(10))).data))).toBe("OK")
      expect(sim.model.volume("pve1", "local:iso/seed.iso")?.size).toBe(10)
    } finally {
      await sim.close()
    }
  })

  it("the command creates the directory, or says in one line that it cannot", async () => {
    const blocker = join(dir, "file")
    writeFileSync(blocker, "x")
    const result = await runCommand(simCommand, "nstance-pve-sim", ["--port", "0", "--volumes-dir", join(blocker, "sub")], { env: {} })
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toMatch(/^✗ --volumes-dir .*\/file\/sub: cannot create it \(ENOTDIR/)
  })
})
