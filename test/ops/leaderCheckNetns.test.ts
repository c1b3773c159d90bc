/**
 * The keepalived leader check that `deploy/proxmox/server-with-keepalived.sh` renders, on two real
 * `nstance-server` replicas, each in a network namespace of its own as on two PVE nodes: both listen on the
 * same ports (health 8990, …) on their own loopback and LAN address, share one bucket (a file store on a
 * shared directory) and reach one Proxmox VE simulator over the LAN. The check, taken from the script's
 * `--dry-run` output and run inside each namespace, passes on the leader only; after `kill -9` of the
 * leader it passes on the other replica once that one's term has started.
 *
 * The LAN: a bridge in a third namespace ("hub", the switch and the PVE API) with a veth pair to each
 * replica's namespace. Nothing is added to the host's own network; everything is removed at the end.
 * Creating namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): without it the suite is skipped with one
 * line saying so, and under CI the run fails (test/support/realComponents.ts).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { applyEdits, modify } from "jsonc-parser"
import { Leadership } from "../../src/domain/leadership.js"
import { DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET } from "../../src/sim/server.js"
import { daemonConfigText } from "../support/daemonProcess.js"
import { skipWithout } from "../support/skipWithout.js"
import { runProcess } from "../support/spawn.js"

/** Namespace names carry this process's id, so two runs on one machine never share one. */
const NS = { hub: `nstlc${process.pid}-hub`, a: `nstlc${process.pid}-a`, b: `nstlc${process.pid}-b` } as const
const LAN = { hub: "10.231.0.1", a: "10.231.0.2", b: "10.231.0.3", prefix: 24, vip: "10.231.0.100/24" } as const
const PVE_PORT = 8006
const PORTS = { health: 8990, election: 8991, registration: 8992, operator: 8993, agent: 8994 } as const
/** Renew every 1 s, standbys read the record every 1 s, a silent record is dead after 5 s. */
const ELECTION = { frequent_interval: "1s", infrequent_interval: "1s", leader_timeout: "5s" } as const

interface Spawned {
  readonly child: ChildProcess
  /** stdout and stderr so far (for the message of a wait that times out). */
  readonly output: () => string
  readonly exited: Promise<void>
}

const scratch = mkdtempSync(join(tmpdir(), "nstance-leadercheck-"))
const bucket = join(scratch, "bucket")
const spawned: Array<Spawned> = []
const namespaces: Array<string> = []

/** `ip …`; a failure throws with its stderr. */
const ip = async (...args: ReadonlyArray<string>) => {
  const result = await runProcess("ip", args, { timeoutMs: 10_000 })
  if (result.status !== 0) throw new Error(`ip ${args.join(" ")} failed (exit ${result.status}): ${result.stderr.trim()}`)
}

/** A long-running command inside namespace `ns`; its output is kept. */
const startIn = (ns: string, argv: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Spawned => {
  const child = spawn("ip", ["netns", "exec", ns, ...argv], { env: { PATH: process.env["PATH"] ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on("data", (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<void>((resolve) => {
    child.on("close", () => resolve())
    child.on("error", (error) => { output += `\ncannot start: ${error.message}`; resolve() })
  })
  const handle: Spawned = { child, output: () => output, exited }
  spawned.push(handle)
  return handle
}

const waitFor = async (what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number, describeState: () => string = () => "") => {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${describeState().slice(-4000)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Namespaces an earlier run of this test left behind when it was killed (its process is gone). */
const removeLeftovers = async () => {
  const listed = await runProcess("ip", ["netns", "list"], { timeoutMs: 10_000 })
  for (const match of listed.stdout.matchAll(/^nstlc(\d+)-(?:hub|a|b)\b/gm)) {
    const pid = Number(match[1])
    if (pid === process.pid) continue
    const alive = (() => { try { process.kill(pid, 0); return true } catch { return false } })()
    if (!alive) await ip("netns", "del", match[0]).catch(() => undefined)
  }
}

/** The LAN: hub (bridge, 10.231.0.1) ← veth → a (10.231.0.2), b (10.231.0.3); loopback up everywhere. */
const buildLan = async () => {
  try {
    await removeLeftovers()
    await ip("netns", "add", NS.hub)
  } catch (error) {
    throw new Error(
      "this test runs each nstance-server replica in a network namespace of its own and cannot create one " +
        `(it needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN; uid ${process.getuid?.() ?? "?"}): ${error instanceof Error ? error.message : String(error)}`
    )
  }
  namespaces.push(NS.hub)
  for (const ns of [NS.a, NS.b]) {
    await ip("netns", "add", ns)
    namespaces.push(ns)
  }
  for (const ns of [NS.hub, NS.a, NS.b]) await ip("-n", ns, "link", "set", "lo", "up")
  await ip("-n", NS.hub, "link", "add", "br0", "type", "bridge")
  await ip("-n", NS.hub, "addr", "add", `${LAN.hub}/${LAN.prefix}`, "dev", "br0")
  await ip("-n", NS.hub, "link", "set", "br0", "up")
  for (const node of ["a", "b"] as const) {
    // Created inside the replica's namespace with its peer straight in the hub: never on the host.
    await ip("-n", NS[node], "link", "add", "eth0", "type", "veth", "peer", "name", `port-${node}`, "netns", NS.hub)
    await ip("-n", NS.hub, "link", "set", `port-${node}`, "master", "br0", "up")
    await ip("-n", NS[node], "addr", "add", `${LAN[node]}/${LAN.prefix}`, "dev", "eth0")
    await ip("-n", NS[node], "link", "set", "eth0", "up")
  }
}

/**
 * The simulator listens on the hub's loopback only (it binds 127.0.0.1); a small TCP relay in the hub
 * makes it reachable on the LAN, as a PVE API is from every node.
 */
const RELAY = `
const net = require("node:net")
const [host, port] = process.argv.slice(1)
net.createServer((client) => {
  const upstream = net.connect(Number(port), "127.0.0.1")
  client.pipe(upstream).pipe(client)
  client.on("error", () => upstream.destroy())
  upstream.on("error", () => client.destroy())
}).listen(Number(port), host, () => console.log("relay ready"))
`

const startPve = async () => {
  const sim = startIn(NS.hub, [process.execPath, "bin/nstance-pve-sim.js", "--port", String(PVE_PORT), "--http"])
  const relay = startIn(NS.hub, [process.execPath, "-e", RELAY, LAN.hub, String(PVE_PORT)])
  await waitFor("the simulator", () => /listening on http:\/\/127\.0\.0\.1:8006/.test(sim.output()), 15_000, sim.output)
  await waitFor("the relay", () => relay.output().includes("relay ready"), 10_000, relay.output)
}

/** The check script a `--dry-run` in `ns` shows it would install (keepalived.conf's VIP interface detected there). */
const renderCheck = async (node: "a" | "b") => {
  const root = join(scratch, `deploy-root-${node}`)
  const result = await runProcess("ip", [
    "netns", "exec", NS[node], "deploy/proxmox/server-with-keepalived.sh", "--dry-run",
    "--shard", "pve-a", "--storage", "file", "--bucket", bucket, "--id", `replica-${node}`, "--vip", LAN.vip
  ], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", NSTANCE_DEPLOY_ROOT: root, PROXMOX_TOKEN_ID: DEFAULT_TOKEN_ID, PROXMOX_TOKEN_SECRET: DEFAULT_TOKEN_SECRET },
    timeoutMs: 20_000
  })
  if (result.status !== 0) throw new Error(`server-with-keepalived.sh --dry-run failed (exit ${result.status}):\n${result.stderr}`)
  const shown = (file: string) => {
    const lines = result.stdout.split("\n")
    const start = lines.findIndex((line) => line.startsWith("[dry-run] write ") && line.includes(`${file} (mode `))
    if (start < 0) throw new Error(`the dry-run shows no ${file}:\n${result.stdout}`)
    const body: Array<string> = []
    for (const line of lines.slice(start + 1)) {
      if (!line.startsWith("[dry-run]   |")) break
      body.push(line.replace(/^\[dry-run\] {3}\| ?/, ""))
    }
    return `${body.join("\n")}\n`
  }
  // Detected inside the namespace: the LAN interface holding the VIP's subnet.
  expect(shown("keepalived.conf")).toContain(`${LAN.vip} dev eth0`)
  const path = join(scratch, `check-leader-${node}`)
  writeFileSync(path, shown("nstance-check-leader"))
  chmodSync(path, 0o755)
  return path
}

/** Replica `node` in its namespace, every endpoint on 0.0.0.0 there, PVE over the LAN. */
const startReplica = (node: "a" | "b") => {
  const cache = join(scratch, `cache-${node}`)
  mkdirSync(cache)
  return startIn(NS[node], [
    process.execPath, "bin/nstance-server.js", "--storage", "file", "--bucket", bucket, "--shard", "pve-a", "--id", `replica-${node}`,
    "--advertise-host", LAN[node], "--cachedir", cache, "--log-format", "json"
  ], {
    PROXMOX_API_URL: `http://${LAN.hub}:${PVE_PORT}/api2/json`,
    PROXMOX_TOKEN_ID: DEFAULT_TOKEN_ID,
    PROXMOX_TOKEN_SECRET: DEFAULT_TOKEN_SECRET
  })
}

/** Runs check script `path` inside namespace `ns` as keepalived would; true when it passes (exit 0). */
const checkPasses = async (ns: string, path: string) => {
  const result = await runProcess("ip", ["netns", "exec", ns, path], { env: { PATH: "/usr/bin:/bin" }, timeoutMs: 10_000 })
  if (result.status !== 0 && result.status !== 1) throw new Error(`the check exited ${result.status} in ${ns}: ${result.stderr}`)
  return result.status === 0
}

/** `GET path` on the health endpoint of `node`'s replica, from inside its namespace: status (0: no answer) and body. */
const health = async (node: "a" | "b", path: string) => {
  const result = await runProcess("ip", ["netns", "exec", NS[node], "curl", "--silent", "--noproxy", "*", "--max-time", "2",
    "--write-out", "\n%{http_code}", `http://127.0.0.1:${PORTS.health}${path}`], { env: { PATH: "/usr/bin:/bin" }, timeoutMs: 10_000 })
  const cut = result.stdout.lastIndexOf("\n")
  return { status: Number(result.stdout.slice(cut + 1)), body: result.stdout.slice(0, cut) }
}

const decodeLeadership = Schema.decodeUnknownSync(Schema.parseJson(Leadership))

/** `node`'s `/leaderz`: status and decoded body; undefined while nothing answers. */
const leaderz = async (node: "a" | "b") => {
  const answer = await health(node, "/leaderz")
  return answer.status === 0 ? undefined : { status: answer.status, body: decodeLeadership(answer.body) }
}

beforeAll(async () => {
  await buildLan()
  await startPve()
  mkdirSync(join(bucket, "shard", "pve-a"), { recursive: true })
  const text = daemonConfigText({ host: "0.0.0.0", ports: PORTS })
  writeFileSync(join(bucket, "shard", "pve-a", "config.jsonc"), applyEdits(text, modify(text, ["shard", "leader_election"], ELECTION, {})))
}, 40_000)

afterAll(async () => {
  for (const p of spawned) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL")
  await Promise.all(spawned.map((p) => p.exited))
  // Deleting the hub also deletes the veth ends in it, and with them their peers.
  for (const ns of namespaces.reverse()) await ip("netns", "del", ns).catch((error: unknown) => console.error(error))
  rmSync(scratch, { recursive: true, force: true })
}, 20_000)

describe.skipIf(skipWithout("network-namespaces"))("the keepalived leader check on two replicas in network namespaces", () => {
  it("passes on the leader only; after kill -9 of the leader it passes on the other replica once its term has started", async () => {
    const [checkA, checkB] = await Promise.all([renderCheck("a"), renderCheck("b")])
    const check = { a: checkA, b: checkB }
    const passes = async () => ({ a: await checkPasses(NS.a, check.a), b: await checkPasses(NS.b, check.b) })

    // replica-a alone takes the lease; replica-b then joins as its standby.
    const a = startReplica("a")
    await waitFor("replica-a to hold the lease", async () => {
      const answer = await leaderz("a")
      return answer !== undefined && (answer.body.leading || answer.body.leader?.replica === "replica-a")
    }, 20_000, () => a.output())
    const b = startReplica("b")
    // The check passes on replica-a once its term has started (log replayed, cluster read over the LAN).
    await waitFor("the check to pass on replica-a", () => checkPasses(NS.a, check.a), 20_000, () => a.output())
    expect(await leaderz("a")).toEqual({ status: 200, body: { leading: true, shard: "pve-a", replica: "replica-a", term: 1 } })
    await waitFor("replica-b to see replica-a lead", async () => (await leaderz("b"))?.body.leading === false, 20_000, () => b.output())
    expect(await leaderz("b")).toMatchObject({ status: 503, body: { replica: "replica-b", role: "standby", leader: { replica: "replica-a", term: 1, health: `${LAN.a}:${PORTS.health}` } } })
    for (let round = 0; round < 3; round++) expect(await passes()).toEqual({ a: true, b: false })
    // The standby is healthy and ready: a readiness (or port) check would have put the VIP there too.
    expect((await health("b", "/readyz")).status).toBe(200)

    a.child.kill("SIGKILL")
    await a.exited
    const killedAt = Date.now()
    await waitFor("the check to pass on replica-b", () => checkPasses(NS.b, check.b), 20_000, () => b.output())
    const takeoverMs = Date.now() - killedAt
    expect(await leaderz("b")).toEqual({ status: 200, body: { leading: true, shard: "pve-a", replica: "replica-b", term: 2 } })
    // The record goes stale after leader_timeout (5 s), seen at the standby's next read (1 s), then term 2 starts.
    expect(takeoverMs).toBeLessThan(15_000)
    expect(await passes()).toEqual({ a: false, b: true })
    console.info(`leader check: passed on replica-b ${takeoverMs} ms after kill -9 of replica-a`)
  }, 50_000)
})
