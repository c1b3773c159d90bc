/**
 * A tenant VM that floods the registration port — a port every VM must reach — while the leader works:
 * the real `nstance-server` at a 1,024-descriptor limit (the common default), 2,000 connections from one
 * address kept up for the whole run (half send nothing, half trickle header lines, each reconnecting as soon
 * as it is closed). The leader keeps its lease and creates its VMs; the connections are counted as refused.
 * (Before the listener limits, 1,100 such connections ran the process out of descriptors: EMFILE on PVE
 * calls, on `leader.json` and on the event log, then "lost leadership".)
 */
import { randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { type RunningSimulator, startSimulator } from "../../src/sim/server.js"
import { daemonConfigText, type DaemonPorts, type DaemonProcess, startServerProcess } from "../support/daemonProcess.js"
import { daemonPorts } from "../support/net.js"
import { parsePrometheus, total } from "./promParser.js"
import { skipWithout } from "../support/skipWithout.js"

const FLOOD = 2_000
const GROUP_SIZE = 1
/** The example's five groups. */
const DESIRED = 5 * GROUP_SIZE
/** Longer than the fast election's 5 s leader timeout: a leader starved of descriptors would have lost its lease. */
const HOLD_MS = 8_000

const scratch: Array<string> = []
const running: Array<DaemonProcess> = []
let sim: RunningSimulator | undefined

afterAll(async () => {
  for (const daemon of running) daemon.signal("SIGKILL")
  await sim?.close()
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
})

/** Connections to `port` that reconnect whenever they are closed, until `stop`; every other one trickles header lines. */
const flood = (port: number, count: number) => {
  let stopped = false
  let connects = 0
  const sockets = new Set<Socket>()
  const start = (slow: boolean) => {
    if (stopped) return
    const socket = connect({ host: "127.0.0.1", port })
    sockets.add(socket)
    connects++
    let trickle: NodeJS.Timeout | undefined
    socket.on("error", () => undefined)
    socket.on("connect", () => {
      if (!slow) return
      socket.write("POST /agent HTTP/1.1\r\n")
      trickle = setInterval(() => socket.write("X-Slow: 1\r\n"), 500)
    })
    socket.on("close", () => {
      if (trickle !== undefined) clearInterval(trickle)
      sockets.delete(socket)
      setTimeout(() => start(slow), 20)
    })
  }
  for (let i = 0; i < count; i++) start(i % 2 === 0)
  return {
    connects: () => connects,
    stop: () => {
      stopped = true
      for (const socket of sockets) socket.destroy()
    }
  }
}

const ourVms = (s: RunningSimulator) => [...s.model.vms.values()].filter((vm) => vm.config.get("template") !== "1")

describe.skipIf(skipWithout("prometheus-parser"))("the registration port flooded from one address", () => {
  it("at 1,024 descriptors, 2,000 idle and slow connections: the leader keeps its lease and creates its VMs; the flood is counted as refused", async () => {
    const simulator = await startSimulator({ http: true, sharedStorage: true, nodeMemoryGiB: 128 })
    sim = simulator
    const ports: DaemonPorts = await daemonPorts()
    const bucket = mkdtempSync(join(tmpdir(), "nstance-flood-"))
    scratch.push(bucket)
    mkdirSync(join(bucket, "shard", "pve-a"), { recursive: true })
    writeFileSync(join(bucket, "shard", "pve-a", "config.jsonc"), daemonConfigText({ host: "127.0.0.1", ports, groupSize: GROUP_SIZE }))
    const daemon = startServerProcess(
      ["--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", "flooded", "--advertise-host", "127.0.0.1", "--log-format", "json"],
      {
        PROXMOX_API_URL: simulator.url, PROXMOX_TOKEN_ID: simulator.tokenId, PROXMOX_TOKEN_SECRET: simulator.tokenSecret,
        NSTANCE_ENCRYPTION_KEY: randomBytes(32).toString("hex")
      },
      90_000,
      1024
    )
    running.push(daemon)
    await daemon.waitFor("the lease", () => daemon.messages.some((m) => /^lease: acquired term 1$/.test(m)), 20_000)
    await daemon.waitFor("the agent endpoint", () => daemon.messages.some((m) => /^agent endpoint: listening/.test(m)), 10_000)

    const attack = flood(ports.registration, FLOOD)
    const floodStarted = Date.now()
    try {
      await daemon.waitFor(`${DESIRED} running VMs`, () => ourVms(simulator).filter((vm) => vm.status === "running").length === DESIRED, 60_000)
      const held = HOLD_MS - (Date.now() - floodStarted)
      if (held > 0) await new Promise((resolve) => setTimeout(resolve, held))
      const metrics = await (await fetch(`http://127.0.0.1:${ports.health}/metrics`)).text()
      const families = await parsePrometheus(metrics)
      const refused = total(families, "nstance_endpoint_refusals_total", { endpoint: "registration" })
      expect(attack.connects()).toBeGreaterThan(FLOOD)
      // All but the per-peer allowance (48 at 1,024 descriptors) were turned away, and more as they reconnected.
      expect(refused).toBeGreaterThan(FLOOD - 48)
      expect(total(families, "nstance_lease_state", { state: "leader" })).toBe(1)
    } finally {
      attack.stop()
    }
    expect(daemon.messages.filter((m) => /lost leadership|EMFILE/.test(m))).toEqual([])
    expect(ourVms(simulator).length).toBe(DESIRED)
    // The refusals were logged, boundedly: a few lines per ten seconds, not one per connection.
    const refusalLines = daemon.messages.filter((m) => /^registration endpoint: refused 127\.0\.0\.1:\d+: /.test(m))
    expect(refusalLines.length).toBeGreaterThan(0)
    expect(refusalLines.length).toBeLessThanOrEqual(5 * Math.ceil((Date.now() - floodStarted) / 10_000 + 1))
    daemon.signal("SIGTERM")
    expect((await daemon.exited).status).toBe(0)
  }, 120_000)
})
