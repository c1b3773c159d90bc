import { spawn, spawnSync } from "node:child_process"
import { describe, expect, it } from "@effect/vitest"
import { Agent, fetch } from "undici"

const env = { ...process.env, NO_COLOR: "1", PROXMOX_TOKEN_ID: "ops@pve!sim", PROXMOX_TOKEN_SECRET: "s3cret" }

describe("nstance-pve-sim", () => {
  it("prints its URL and the PROXMOX_* exports, serves the API, and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, ["bin/nstance-pve-sim.js", "--port", "0", "--nodes", "2", "--seed", "7"], { env })
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => { stdout += chunk })
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    try {
      while (!stdout.includes("PROXMOX_TOKEN_SECRET")) {
        if (child.exitCode !== null) throw new Error(`simulator exited early: ${stdout}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      const url = /export PROXMOX_API_URL=(\S+)/.exec(stdout)?.[1] ?? ""
      expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/api2\/json$/)
      expect(stdout).toContain("export PROXMOX_TOKEN_ID='ops@pve!sim'")
      expect(stdout).toContain("export PROXMOX_TOKEN_SECRET='s3cret'")
      const dispatcher = new Agent({ connect: { rejectUnauthorized: false } })
      const r = await fetch(`${url}/cluster/resources?type=node`, { headers: { Authorization: "PVEAPIToken=ops@pve!sim=s3cret" }, dispatcher })
      expect(r.status).toBe(200)
      expect(await r.text()).toMatch(/^\{"data":\[\{"id":"node\/pve1","type":"node","node":"pve1","status":"online"/)
      await dispatcher.close()
    } finally {
      child.kill("SIGTERM")
    }
    expect(await exited).toBe(0)
  })

  it.each([
    [["--nodes", "0"], "✗ --nodes 0 must be between 1 and 64"],
    [["--port", "70000"], "✗ --port 70000 is not a TCP port (0-65535)"],
    [["--token-id", "no-realm"], "✗ --token-id \"no-realm\" is not of the form user@realm!token"]
  ])("refuses %j with one line", (args, message) => {
    const result = spawnSync(process.execPath, ["bin/nstance-pve-sim.js", ...args], { encoding: "utf8", env })
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(message)
  })

  it("describes every flag in --help", () => {
    const help = spawnSync(process.execPath, ["bin/nstance-pve-sim.js", "--help"], { encoding: "utf8", env }).stdout
    for (const flag of ["--port", "--nodes", "--seed", "--http", "--token-id", "--token-secret", "--latency", "--shared-storage"]) {
      expect(help).toContain(flag)
    }
  })
})
