import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Either } from "effect"
import { readProxmoxEnvFile } from "../../src/domain/config/index.js"
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
    [["--token-id", "no-realm"], "✗ --token-id \"no-realm\" is not of the form user@realm!token"],
    [["--clusters", "0"], "✗ --clusters 0 must be between 1 and 200"],
    [["--clusters", "3", "--port", "65534"], "✗ --port 65534 with --clusters 3 runs past port 65535; use a lower --port or --port 0"],
    [["--clusters", "2", "--volumes-dir", "/nonexistent"], "✗ --volumes-dir keeps one cluster's volumes; it cannot be used with --clusters"]
  ])("refuses %j with one line", async (args, message) => {
    const result = await sim(args)
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe(message)
  })

  it("--clusters runs independent clusters, each with its own API, and --env-dir writes the connection files nstance-server reads", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nstance-sim-fleet-"))
    const child = spawn(process.execPath, ["bin/nstance-pve-sim.js", "--clusters", "3", "--port", "0", "--http", "--nodes", "1", "--env-dir", dir], { env })
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => { stdout += chunk })
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    try {
      const deadline = Date.now() + 20_000
      while (!stdout.includes("--proxmox-env-dir")) {
        if (child.exitCode !== null) throw new Error(`simulator exited early: ${stdout}`)
        if (Date.now() > deadline) throw new Error(`simulator printed no connection files within 20 s: ${stdout}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      expect(stdout).toContain(`nstance-server --shard cluster-01,cluster-02,cluster-03 --proxmox-env-dir ${dir}`)
      const urls: Array<string> = []
      for (const name of ["cluster-01", "cluster-02", "cluster-03"]) {
        const file = join(dir, `${name}.env`)
        expect(statSync(file).mode & 0o777).toBe(0o600)
        // The server's own reader accepts the file.
        const connection = Either.getOrThrow(readProxmoxEnvFile(readFileSync(file, "utf8")))
        expect(connection).toMatchObject({ tokenId: "ops@pve!sim", tokenSecret: "s3cret" })
        expect(stdout).toContain(`  ${name}: ${connection.apiUrl}`)
        urls.push(connection.apiUrl)
      }
      expect(new Set(urls).size).toBe(3)
      // Separate state: a VM created on one cluster is not on the others.
      const headers = { Authorization: "PVEAPIToken=ops@pve!sim=s3cret" }
      const [first, ...others] = urls
      const created = await fetch(`${first}/nodes/pve1/qemu/9000/clone`, { method: "POST", headers: { ...headers, "content-type": "application/x-www-form-urlencoded" }, body: "newid=4242&name=only-here" })
      expect(created.status).toBe(200)
      const holds = async (url: string | undefined) => (await (await fetch(`${url}/cluster/resources?type=vm`, { headers })).text()).includes("\"vmid\":4242")
      // The clone is a task: its VM is listed once the task has made it.
      const listedBy = Date.now() + 10_000
      while (!(await holds(first)) && Date.now() < listedBy) await new Promise((resolve) => setTimeout(resolve, 50))
      expect(await holds(first)).toBe(true)
      for (const url of others) expect(await holds(url)).toBe(false)
    } finally {
      child.kill("SIGTERM")
      rmSync(dir, { recursive: true, force: true })
    }
    expect(await exited).toBe(0)
  })

  it("refuses a bad flag as a real process: one line on stderr, exit 1", async () => {
    const result = await runBin("nstance-pve-sim", ["--nodes", "0"], { env })
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr.trim()).toBe("✗ --nodes 0 must be between 1 and 64")
  })

  it("describes every flag in --help", async () => {
    const help = (await sim(["--help"])).stdout
    for (const flag of ["--port", "--nodes", "--seed", "--http", "--token-id", "--token-secret", "--latency", "--shared-storage", "--volumes-dir", "--clusters", "--env-dir"]) {
      expect(help).toContain(flag)
    }
  })
})
