import { spawn } from "node:child_process"
import { describe, expect, it } from "@effect/vitest"
import { Agent, fetch } from "undici"
import { simCommand } from "../../src/sim/command.js"
import { runCommand } from "../support/cli.js"
import { runBin } from "../support/spawn.js"

const TOKEN = { PROXMOX_TOKEN_ID: "ops@pve!sim", PROXMOX_TOKEN_SECRET: "s3cret" }
const env = { ...process.env, NO_COLOR: "1", ...TOKEN }
// In-process, through the same code path as the binary (the command reads PROXMOX_TOKEN_* from process.env).
const sim = (args: ReadonlyArray<string>) => runCommand(simCommand, "nstance-pve-sim", args, { env: TOKEN })

describe("nstance-pve-sim", () => {
  // A real process: the check is that SIGTERM ends it with exit 0, which only a process can show.
  it("prints its URL and the PROXMOX_* exports, serves the API, and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, ["bin/nstance-pve-sim.js", "--port", "0", "--nodes", "2", "--seed", "7"], { env })
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => { stdout += chunk })
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    try {
      // Bounded, so a simulator that never starts is killed (finally) instead of outliving the test.
      const deadline = Date.now() + 20_000
      while (!stdout.includes("PROXMOX_TOKEN_SECRET")) {
        if (child.exitCode !== null) throw new Error(`simulator exited early: ${stdout}`)
        if (Date.now() > deadline) throw new Error(`simulator printed no exports within 20 s: ${stdout}`)
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
  ])("refuses %j with one line", async (args, message) => {
    const result = await sim(args)
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(message)
  })

  it("refuses a bad flag as a real process: one line on stderr, exit 1", async () => {
    const result = await runBin("nstance-pve-sim", ["--nodes", "0"], { env })
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr.trim()).toBe("✗ --nodes 0 must be between 1 and 64")
  })

  it("describes every flag in --help", async () => {
    const help = (await sim(["--help"])).stdout
    for (const flag of ["--port", "--nodes", "--seed", "--http", "--token-id", "--token-secret", "--latency", "--shared-storage", "--volumes-dir"]) {
      expect(help).toContain(flag)
    }
  })
})
