import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { startSimulator } from "../../src/sim/server.js"
import { collectJsonMessages } from "../support/spawn.js"

/**
 * Starts the real, compiled `nstance-server` (as `runBin` does: `node bin/nstance-server.js`, asynchronously),
 * collecting its JSON log lines until `until` holds; then sends SIGTERM and waits for the exit. A process
 * still running after `killAfterMs` is SIGKILLed (the test then fails on the status and signal).
 */
const runServer = (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  until: (messages: ReadonlyArray<string>) => boolean,
  killAfterMs = 20_000
) =>
  new Promise<{ status: number | null; signal: NodeJS.Signals | null; messages: ReadonlyArray<string>; notJson: ReadonlyArray<string>; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/nstance-server.js", ...args], { env: { PATH: process.env["PATH"] ?? "", ...env } })
    let stderr = ""
    let stopping = false
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs)
    const { messages, notJson, flush } = collectJsonMessages(child.stdout, (seen) => {
      if (!stopping && until(seen)) {
        stopping = true
        child.kill("SIGTERM")
      }
    })
    child.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString() })
    child.on("error", (error) => { clearTimeout(timer); reject(error) })
    child.on("close", (status, signal) => {
      clearTimeout(timer)
      flush()
      resolve({ status, signal, messages, notJson, stderr })
    })
  })

describe("nstance-server start (real process, simulator, file store)", () => {
  it("leads the shard, creates VMs, and resigns the lease on SIGTERM", async () => {
    const sim = await startSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
    const bucket = mkdtempSync(join(tmpdir(), "nstance-server-"))
    try {
      const { status, signal, messages, notJson, stderr } = await runServer(
        ["--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", "replica-1", "--config", "examples/single-cluster.jsonc", "--advertise-host", "127.0.0.1"],
        { PROXMOX_API_URL: sim.url, PROXMOX_TOKEN_ID: sim.tokenId, PROXMOX_TOKEN_SECRET: sim.tokenSecret },
        (seen) => seen.some((message) => / running as VM \d+ on pve\d$/.test(message))
      )
      expect(stderr).toBe("")
      expect(notJson).toEqual([])
      expect({ status, signal }).toEqual({ status: 0, signal: null })
      expect(messages).toContain("lease: acquired term 1")
      expect(messages).toContain("cluster read: 0 VMs carry this shard's tags, 0 adopted")
      const running = messages.map((m) => /^([a-z]{3}[0-9a-z]{26}): running as VM (\d+) on (pve\d)$/.exec(m)).find((match) => match !== null)
      const vm = sim.model.vms.get(Number(running![2]))
      expect({ name: vm?.config.get("name"), tags: vm?.config.get("tags"), status: vm?.status }).toEqual({ name: running![1], tags: "nstance;acme-prod;pve-a", status: "running" })
      const lease = JSON.parse(readFileSync(join(bucket, "shard/pve-a/leader.json"), "utf8")) as Record<string, unknown>
      expect(lease).toMatchObject({ leaderID: "replica-1", leaderAddr: "127.0.0.1:8991", lastUpdated: "0001-01-01T00:00:00Z" })
    } finally {
      await sim.close()
      rmSync(bucket, { recursive: true, force: true })
    }
  })
})
