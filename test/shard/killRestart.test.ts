/**
 * The daemon as an operator runs it, killed without warning in the middle of its creates: the real
 * compiled `nstance-server` on a file store and the HTTP simulator gets SIGKILL while VMs are being
 * cloned, a second process with the same `--id` takes over (a new term) once the dead run's lease record has
 * stayed unchanged for the leader timeout (another incarnation wrote it: it could have been a live duplicate),
 * and the shard converges with one VM per instance, no VM without an owner, and no ISO or disk that nothing
 * uses. The example config with renewals every second and a 5 s leader timeout, so that wait is 5 s.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { type RunningSimulator, startSimulator } from "../../src/sim/server.js"
import { withFastElection } from "../support/daemonProcess.js"
import { collectJsonMessages } from "../support/spawn.js"

const INSTANCE_NAME = /^[a-z]{3}[0-9a-hj-km-np-tv-z]{26}$/
const DESIRED = 12

const startServer = (sim: RunningSimulator, bucket: string, config: string) => {
  const child = spawn(process.execPath, [
    "bin/nstance-server.js", "--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", "replica-1",
    "--config", config, "--advertise-host", "127.0.0.1", "--log-format", "json"
  ], { env: { PATH: process.env["PATH"] ?? "", PROXMOX_API_URL: sim.url, PROXMOX_TOKEN_ID: sim.tokenId, PROXMOX_TOKEN_SECRET: sim.tokenSecret } })
  const { messages } = collectJsonMessages(child.stdout)
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("close", (status, signal) => resolve({ status, signal })))
  return { child, messages, exited }
}

const waitFor = async (what: string, condition: () => boolean, timeoutMs: number, log: () => ReadonlyArray<string>) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the server logged:\n${log().slice(-30).join("\n")}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

const ourVms = (sim: RunningSimulator) => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")

const kill = (child: ChildProcess, signal: NodeJS.Signals) => { if (child.exitCode === null) child.kill(signal) }

describe("nstance-server killed with SIGKILL in the middle of creates", () => {
  it("a restart converges: one VM per instance, nothing leaked", async () => {
    const sim = await startSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
    const bucket = mkdtempSync(join(tmpdir(), "nstance-kill-"))
    const config = join(mkdtempSync(join(tmpdir(), "nstance-kill-config-")), "config.jsonc")
    writeFileSync(config, withFastElection(readFileSync("examples/single-cluster.jsonc", "utf8")))
    const servers: Array<ChildProcess> = []
    try {
      const first = startServer(sim, bucket, config)
      servers.push(first.child)
      // Some VMs cloned, most not yet: the kill lands in the middle of the creates.
      await waitFor("the first clones", () => first.messages.filter((m) => / cloned template /.test(m)).length >= 2, 20_000, () => first.messages)
      kill(first.child, "SIGKILL")
      expect((await first.exited).signal).toBe("SIGKILL")
      const cloningAtKill = ourVms(sim).length
      expect(cloningAtKill).toBeLessThan(DESIRED)

      const second = startServer(sim, bucket, config)
      servers.push(second.child)
      await waitFor(
        `${DESIRED} running VMs`,
        () => ourVms(sim).filter((vm) => vm.status === "running").length === DESIRED && ourVms(sim).length === DESIRED,
        35_000,
        () => second.messages
      )
      // The restart took over as a new term and picked up what the first left behind.
      expect(second.messages.some((m) => /^lease: acquired term 2$/.test(m))).toBe(true)
      expect(second.messages.some((m) => /^lease: leader\.json names our id replica-1 \(term \d+\) but another process/.test(m))).toBe(true)

      const vms = ourVms(sim)
      const names = vms.map((vm) => vm.config.get("name") ?? "")
      expect(new Set(names).size).toBe(DESIRED)
      for (const vm of vms) {
        expect(vm.config.get("name")).toMatch(INSTANCE_NAME)
        expect(vm.config.get("tags")).toBe("nstance;acme-prod;pve-a")
      }
      // Every ISO of ours belongs to a VM that exists; every disk belongs to a VM that exists.
      const isos = [...sim.model.volumes.values()].filter((v) => /:iso\/nstance-/.test(v.volid)).map((v) => /nstance-(.+)\.iso$/.exec(v.volid)![1])
      expect(isos.sort()).toEqual([...names].sort())
      const vmids = new Set(sim.model.vms.keys())
      const orphanDisks = [...sim.model.volumes.values()].filter((v) => v.content === "images" && v.vmid !== undefined && !vmids.has(v.vmid))
      expect(orphanDisks.map((v) => v.volid)).toEqual([])

      kill(second.child, "SIGTERM")
      expect(await second.exited).toEqual({ status: 0, signal: null })
    } finally {
      for (const child of servers) kill(child, "SIGKILL")
      await sim.close()
      rmSync(bucket, { recursive: true, force: true })
      rmSync(dirname(config), { recursive: true, force: true })
    }
    // Two starts, twelve creates and the restart's wait for the dead run's record: more than the default 30 s
    // on a loaded machine.
  }, 60_000)
})
