/**
 * Signals and duplicate `--id`s, on the real compiled `nstance-server` (only a process can show them): a file
 * store and the HTTP simulator, every replica on its own loopback address (127.0.0.N) with the same ports,
 * renewals every second and a 5 s leader timeout (test/support/daemonProcess.ts).
 */
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { applyEdits, modify } from "jsonc-parser"
import { type RunningSimulator, startSimulator } from "../../src/sim/server.js"
import { daemonConfigText, type DaemonPorts, type DaemonProcess, startServerProcess } from "../support/daemonProcess.js"
import { daemonPorts } from "../support/net.js"

let sim: RunningSimulator
let ports: DaemonPorts
const scratch: Array<string> = []
const running: Array<DaemonProcess> = []

beforeAll(async () => {
  sim = await startSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
  ports = await daemonPorts()
})

afterAll(async () => {
  for (const daemon of running) daemon.signal("SIGKILL")
  await sim.close()
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
})

/** A fresh bucket with the shard config at `shard/pve-a/config.jsonc` (the poll and SIGHUP read it from there). */
const bucketWith = (configText: string) => {
  const bucket = mkdtempSync(join(tmpdir(), "nstance-signals-"))
  scratch.push(bucket)
  mkdirSync(join(bucket, "shard", "pve-a"), { recursive: true })
  writeFileSync(join(bucket, "shard", "pve-a", "config.jsonc"), configText)
  return bucket
}

/** Replica `id` on 127.0.0.`n` (its endpoints there; `leader.json` advertises that host). */
const replica = (bucket: string, id: string, n: number) => {
  const daemon = startServerProcess(
    ["--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", id, "--advertise-host", `127.0.0.${n}`, "--log-format", "json"],
    { PROXMOX_API_URL: sim.url, PROXMOX_TOKEN_ID: sim.tokenId, PROXMOX_TOKEN_SECRET: sim.tokenSecret }
  )
  running.push(daemon)
  return daemon
}

const leaseRecord = (bucket: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(bucket, "shard", "pve-a", "leader.json"), "utf8")) as Record<string, unknown>

/** Whether something accepts a TCP connection at 127.0.0.1:`port`. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port })
    socket.once("connect", () => { socket.destroy(); resolve(true) })
    socket.once("error", () => resolve(false))
  })

const has = (daemon: DaemonProcess, pattern: RegExp) => () => daemon.messages.some((m) => pattern.test(m))

describe("signals", () => {
  it("Node's default for SIGUSR1 (reproduced on a bare node process): it opens the inspector", async () => {
    const bare = spawn(process.execPath, ["-e", "process.stdout.write('up\\n'); setInterval(() => {}, 1000)"])
    let stderr = ""
    bare.stderr.on("data", (chunk: Buffer) => { stderr += chunk.toString() })
    await new Promise((resolve) => bare.stdout.once("data", resolve))
    bare.kill("SIGUSR1")
    const deadline = Date.now() + 5_000
    while (!/Debugger listening|Starting inspector/.test(stderr) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    bare.kill("SIGKILL")
    expect(stderr).toMatch(/Debugger listening on ws:\/\/127\.0\.0\.1:9229|Starting inspector on 127\.0\.0\.1:9229/)
  })

  it("SIGUSR1 and SIGUSR2 neither open a debugger nor stop the server; SIGHUP re-reads the shard config; it runs on", async () => {
    const config = daemonConfigText({ host: "127.0.0.1", ports })
    const bucket = bucketWith(config)
    const daemon = replica(bucket, "replica-1", 1)
    await daemon.waitFor("the lease", has(daemon, /^lease: acquired term 1$/))
    const inspectorBefore = await listening(9229)

    daemon.signal("SIGUSR1")
    await daemon.waitFor("SIGUSR1 said and ignored", has(daemon, /^SIGUSR1 ignored: this server never opens Node's inspector/))
    daemon.signal("SIGUSR2")
    await daemon.waitFor("SIGUSR2 said and ignored", has(daemon, /^SIGUSR2 ignored: SIGTERM or SIGINT stops the server/))
    expect(daemon.stderr()).not.toMatch(/Debugger|inspector/i)
    // Only judged when nothing else on this machine held the port already.
    if (!inspectorBefore) expect(await listening(9229)).toBe(false)

    // A config change the 5 s poll has not seen yet: SIGHUP makes the server read it now.
    writeFileSync(join(bucket, "shard", "pve-a", "config.jsonc"), applyEdits(config, modify(config, ["groups", "storefront", "web", "size"], 1, {})))
    daemon.signal("SIGHUP")
    await daemon.waitFor("the reload", has(daemon, /^shard config reloaded \(SIGHUP\): \d+ → 1 desired VMs$/))
    expect(daemon.messages).toContain("SIGHUP: re-reading the shard config now (as nstance-admin refresh does)")
    await daemon.waitFor("the new group's VM", has(daemon, / requested for storefront\/web /), 8_000)

    // Still the same running process, still the leader of term 1.
    expect(daemon.child.exitCode).toBeNull()
    expect(daemon.messages.filter((m) => /^lease: (lost|resigned)/.test(m))).toEqual([])
    expect(leaseRecord(bucket)).toMatchObject({ leaderID: "replica-1", term: 1 })
    daemon.signal("SIGTERM")
    expect(await daemon.exited).toEqual({ status: 0, signal: null })
    expect(leaseRecord(bucket)).toMatchObject({ leaderID: "replica-1", lastUpdated: "0001-01-01T00:00:00Z" })
  }, 20_000)

  it.each(["SIGINT", "SIGTERM", "SIGQUIT"] as const)("%s resigns the lease: the standby takes over at its next tick, not after the timeout", async (signal) => {
    const bucket = bucketWith(daemonConfigText({ host: "127.0.0.1", ports }))
    // Started together: whichever wins term 1 is the leader, the other its standby.
    const both = [replica(bucket, "replica-1", 1), replica(bucket, "replica-2", 2)]
    const leads = (d: DaemonProcess) => has(d, /^lease: acquired term 1$/)()
    const follows = (d: DaemonProcess) => has(d, /^lease: following replica-\d \(term 1\)$/)()
    await both[0]!.waitFor("one leader and one standby", () => both.some(leads) && both.some(follows))
    const leader = both.find(leads)!
    const standby = both.find((d) => d !== leader)!

    leader.signal(signal)
    expect(await leader.exited).toEqual({ status: 0, signal: null })
    const stoppedAt = Date.now()
    expect(leader.messages).toContain("lease: resigned term 1")
    await standby.waitFor("the standby to take over", has(standby, /^lease: acquired term 2$/), 4_000)
    // A renewal interval (1 s) plus slack for a loaded machine, under the 5 s leader timeout it would otherwise wait.
    expect(Date.now() - stoppedAt).toBeLessThan(4_000)
    standby.signal("SIGTERM")
    expect(await standby.exited).toEqual({ status: 0, signal: null })
  }, 20_000)
})

describe("two processes with one --id", () => {
  it("the second exits 1 with one line naming the id; the first keeps its lease and term", async () => {
    const bucket = bucketWith(daemonConfigText({ host: "127.0.0.1", ports }))
    const first = replica(bucket, "replica-1", 1)
    await first.waitFor("the lease", has(first, /^lease: acquired term 1$/))
    const second = replica(bucket, "replica-1", 2)
    const startedAt = Date.now()
    const exit = await second.exited
    expect(exit).toEqual({ status: 1, signal: null })
    // It needs one renewal of the first's record to be sure: about two ticks.
    expect(Date.now() - startedAt).toBeLessThan(5_000)
    expect(second.stderr()).toBe(
      "✗ another process is running with --id replica-1: it holds shard/pve-a/leader.json (term 1, advertising 127.0.0.1:8991) " +
        "and renews it; this one stops — give every replica of a shard its own --id\n"
    )
    expect(second.messages.filter((m) => /^lease: acquired/.test(m))).toEqual([])
    // The first noticed nothing: still leading term 1, renewing.
    const before = leaseRecord(bucket)
    await first.waitFor("another renewal", () => leaseRecord(bucket)["lastUpdated"] !== before["lastUpdated"], 3_000)
    expect(leaseRecord(bucket)).toMatchObject({ leaderID: "replica-1", term: 1, incarnation: before["incarnation"] })
    expect(first.messages.filter((m) => /^lease: lost/.test(m))).toEqual([])
    first.signal("SIGTERM")
    expect(await first.exited).toEqual({ status: 0, signal: null })
  }, 20_000)
})
