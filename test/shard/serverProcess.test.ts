import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { startSimulator } from "../../src/sim/server.js"

/** Spawns the real `nstance-server`, collecting JSON log lines, until `until` holds; then SIGTERM. */
const runServer = (args: ReadonlyArray<string>, env: Record<string, string>, until: (messages: ReadonlyArray<string>) => boolean) =>
  new Promise<{ status: number | null; messages: ReadonlyArray<string>; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/nstance-server.js", ...args], { env: { PATH: process.env["PATH"] ?? "", ...env } })
    const messages: Array<string> = []
    let buffered = ""
    let stderr = ""
    let stopping = false
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000)
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split("\n")
      buffered = lines.pop() ?? ""
      for (const line of lines) {
        const parsed = JSON.parse(line) as { message: string }
        messages.push(parsed.message)
      }
      if (!stopping && until(messages)) {
        stopping = true
        child.kill("SIGTERM")
      }
    })
    child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString() })
    child.on("error", reject)
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, messages, stderr })
    })
  })

describe("nstance-server start (real process, simulator, file store)", () => {
  it("leads the shard, plans every group, and resigns the lease on SIGTERM", async () => {
    const sim = await startSimulator({ http: true })
    const bucket = mkdtempSync(join(tmpdir(), "nstance-server-"))
    try {
      const { status, messages, stderr } = await runServer(
        ["--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", "replica-1", "--config", "examples/single-cluster.jsonc", "--advertise-host", "127.0.0.1"],
        { PROXMOX_API_URL: sim.url, PROXMOX_TOKEN_ID: sim.tokenId, PROXMOX_TOKEN_SECRET: sim.tokenSecret },
        (seen) => seen.some((message) => message.startsWith("desired VMs:"))
      )
      expect(stderr).toBe("")
      expect(status).toBe(0)
      expect(messages).toContain("lease: acquired term 1")
      expect(messages).toContain("nodes: 3 online (pve1, pve2, pve3)")
      const lease = JSON.parse(readFileSync(join(bucket, "shard/pve-a/leader.json"), "utf8")) as Record<string, unknown>
      expect(lease).toMatchObject({ leaderID: "replica-1", leaderAddr: "127.0.0.1:8991", lastUpdated: "0001-01-01T00:00:00Z" })
    } finally {
      await sim.close()
    }
  }, 180_000)
})
