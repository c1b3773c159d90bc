/**
 * One process, many clusters: `nstance-server --shard cluster-01,…,cluster-NN --proxmox-env-dir DIR` with one
 * simulated PVE cluster per shard (the simulators run in this bench's process, so the server's figures are its
 * own), each shard with one group of `FLEET_SIZE` VMs. Measures how long until every cluster holds its shard's
 * VMs running (and nothing of another shard's), the server's peak RSS while it gets there, and then, with
 * nothing left to do, its idle RSS and CPU over a steady window. Runs the compiled server (`npm run build`).
 *
 *   FLEET_SHARDS (50), FLEET_SIZE (2), FLEET_STEADY_S (30), FLEET_SERVER_NODE_ARGS (e.g. --cpu-prof), FLEET_LOG (the server's log) —
 *   writes bench/results/fleet-<shards>x<size>.json (50x2: the 100-VM fleet; 50x200: 10k instances over 50 shards).
 *
 * Seeded (FLEET_SEEDED=200): each shard starts on a seeded world (`lib/seededWorld.ts`: the synthetic log of
 * 200 instances in its prefix, its cluster holding exactly the VMs that log says run), so the server has
 * nothing to create. Measures the time until every shard has replayed and read its cluster (its `cluster
 * read:` log line), the peak RSS meanwhile, then idle RSS and CPU over FLEET_STEADY_S (60 by default here),
 * and that no shard created, deleted or adopted anything (no mutating PVE call at all).
 */
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { envFileText, simClusterName } from "../src/sim/command.js"
import { LatencyFast } from "../src/sim/latency.js"
import { type RunningSimulator, startSimulator } from "../src/sim/server.js"
import { writeResult } from "./lib/results.js"
import { logObjects, seededLog, seedVms, writeToFileBucket } from "./lib/seededWorld.js"
import { procFigures, shardConfigText, startServer } from "./lib/serverProcess.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const SHARDS = Number(process.env["FLEET_SHARDS"] ?? 50)
/** Instances in each shard's seeded log (0: start from empty logs and let the leaders create FLEET_SIZE VMs each). */
const SEEDED = Number(process.env["FLEET_SEEDED"] ?? 0)
const SIZE = SEEDED > 0 ? SEEDED : Number(process.env["FLEET_SIZE"] ?? 2)
const STEADY_S = Number(process.env["FLEET_STEADY_S"] ?? (SEEDED > 0 ? 60 : 30))
const CONVERGE_LIMIT_S = Number(process.env["FLEET_LIMIT_S"] ?? 600)
/** The issue's goals: 50 shards of 2 VMs under 400 MB; 10k instances over 50 shards under 500 MB, idle under 5 % of a core. */
const GOALS = { peakRssMB: SHARDS * SIZE >= 10_000 ? 500 : 400, steadyCpuPercentOfCore: 5 }

/** A shard's config: its own loopback ports (50 shards, 5 endpoints each), one group of SIZE VMs. */
const configText = (shard: string, index: number) => {
  const port = (offset: number) => 20_000 + index * 10 + offset
  return JSON.stringify({
    cluster: { id: "fleet", leader_election: { frequent_interval: "5s", infrequent_interval: "30s", leader_timeout: "15s" } },
    shard: {
      id: shard,
      infra: { provider: "proxmox", region: "dc1", zone: shard, options: { insecure_tls: false, cloud_init_iso_storage: "local" } },
      bind: {
        health_addr: `127.0.0.1:${port(0)}`, election_addr: `127.0.0.1:${port(1)}`, registration_addr: `127.0.0.1:${port(2)}`,
        operator_addr: `127.0.0.1:${port(3)}`, agent_addr: `127.0.0.1:${port(4)}`
      },
      advertise: {
        health_addr: `127.0.0.1:${port(0)}`, election_addr: `127.0.0.1:${port(1)}`, registration_addr: `127.0.0.1:${port(2)}`,
        operator_addr: `127.0.0.1:${port(3)}`, agent_addr: `127.0.0.1:${port(4)}`
      },
      subnet_pools: { nodes: ["vmbr0"] },
      garbage_collection: { interval: "2m", registration_timeout: "5m" },
      request_timeout: "30s",
      create_rate_limit: "100ms",
      health_check_interval: "1m"
    },
    defaults: { args: { StoragePool: "local-lvm", TemplateName: "debian-13-template" } },
    templates: { web: { kind: "web", instance_type: "cpu:1,memory:512,disk:10", subnet_pool: "nodes" } },
    groups: { site: { web: { template: "web", size: SIZE } } }
  }, null, 2)
}

const running = (sim: RunningSimulator, shard: string) =>
  [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1" && vm.status === "running" && vm.config.get("tags") === `nstance;fleet;${shard}`).length

const foreign = (sim: RunningSimulator, shard: string) =>
  [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1" && vm.config.get("tags") !== `nstance;fleet;${shard}`).length

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const scratch = mkdtempSync(join(tmpdir(), "nstance-fleet-"))
const names = Array.from({ length: SHARDS }, (_, index) => simClusterName(index))
const sims: Array<RunningSimulator> = []

/**
 * The seeded fleet: every shard's log and cluster seeded, the server started on them; nothing may be created,
 * deleted or adopted. Ready = every shard has logged `cluster read:` (replayed, read its cluster, started work).
 */
const seededRun = async () => {
  const bucket = join(scratch, "bucket")
  const envDir = join(scratch, "pve")
  mkdirSync(envDir, { recursive: true })
  let running = 0
  for (const [index, shard] of names.entries()) {
    const log = seededLog(SEEDED, `fleet/${shard}`)
    writeToFileBucket(bucket, join("shard", shard), logObjects(log.events))
    running += seedVms(sims[index]!.model, log, { clusterId: "fleet", shard, template: "web", cores: 1, memoryMiB: 512 })
    writeFileSync(join(bucket, "shard", shard, "config.jsonc"), shardConfigText({ clusterId: "fleet", shard, portBase: 20_000 + index * 10, groups: log.groupSizes }))
    writeFileSync(join(envDir, `${shard}.env`), envFileText(sims[index]!), { mode: 0o600 })
  }
  console.log(`seeded ${SHARDS} shards: ${SEEDED} instances in each log, ${running} VMs running in all`)
  const started = Date.now()
  const server = startServer(root, [
    "--storage", "file", "--bucket", bucket, "--shard", names.join(","), "--id", "fleet-1",
    "--proxmox-env-dir", envDir, "--cachedir", join(scratch, "cache")
  ], {
    nodeArgs: (process.env["FLEET_SERVER_NODE_ARGS"] ?? "").split(" ").filter((arg) => arg !== ""),
    ...(process.env["FLEET_LOG"] === undefined ? {} : { logFile: process.env["FLEET_LOG"] })
  })
  const shardOf = (annotations: Readonly<Record<string, unknown>>) => typeof annotations["shard"] === "string" ? annotations["shard"] : undefined
  const clusterRead = new Map<string, { at: number; owned: number; adopted: number }>()
  let peakRssMB = 0
  let lastProgress = Date.now()
  while (clusterRead.size < SHARDS) {
    if (server.child.exitCode !== null) throw new Error(`nstance-server exited with ${server.child.exitCode} before every shard read its cluster`)
    if (Date.now() - started > CONVERGE_LIMIT_S * 1000) throw new Error(`not every shard read its cluster within ${CONVERGE_LIMIT_S} s`)
    for (const line of server.lines) {
      const read = /^cluster read: (\d+) VMs carry this shard's tags, (\d+) adopted/.exec(line.message)
      const shard = shardOf(line.annotations)
      if (read !== null && shard !== undefined && !clusterRead.has(shard)) clusterRead.set(shard, { at: line.at, owned: Number(read[1]), adopted: Number(read[2]) })
    }
    peakRssMB = Math.max(peakRssMB, procFigures(server.pid).peakRssMB)
    if (Date.now() - lastProgress > 10_000) {
      lastProgress = Date.now()
      console.log(`  ${((Date.now() - started) / 1000).toFixed(0)} s: ${clusterRead.size} of ${SHARDS} shards read their cluster; server RSS ${procFigures(server.pid).rssMB.toFixed(0)} MB`)
    }
    await sleep(250)
  }
  const readyMs = Math.max(...[...clusterRead.values()].map((read) => read.at)) - started
  const atReady = procFigures(server.pid)
  console.log(`${SHARDS} shards replayed and read their clusters after ${(readyMs / 1000).toFixed(1)} s; RSS ${atReady.rssMB.toFixed(0)} MB, peak ${atReady.peakRssMB.toFixed(0)} MB`)
  // Let the terms' first passes (reconcile, GC, preflight) finish before the steady window.
  await sleep(10_000)
  const before = procFigures(server.pid)
  const windowStart = Date.now()
  await sleep(STEADY_S * 1000)
  const after = procFigures(server.pid)
  const steadyCpu = ((after.cpuSeconds - before.cpuSeconds) / ((Date.now() - windowStart) / 1000)) * 100
  const mutations = new Map<string, number>()
  for (const sim of sims) {
    for (const [endpoint, n] of sim.model.requestCounts(started)) if (!endpoint.startsWith("GET ")) mutations.set(endpoint, (mutations.get(endpoint) ?? 0) + n)
  }
  const reads = [...clusterRead.values()]
  const adopted = reads.reduce((sum, read) => sum + read.adopted, 0)
  const owned = reads.reduce((sum, read) => sum + read.owned, 0)
  const complaints = server.lines.filter((line) => /adopted VM|deleting it|replacing it|retiring|requested/.test(line.message) || line.level === "ERROR").map((line) => `${shardOf(line.annotations) ?? "-"}: ${line.message}`)
  const misplaced = names.reduce((sum, shard, index) => sum + foreign(sims[index]!, shard), 0)
  server.child.kill("SIGTERM")
  const exitCode = await server.exited
  const figures = {
    shards: SHARDS,
    instancesPerShardLog: SEEDED,
    vmsRunning: running,
    clustersPerShard: 1,
    allShardsReadyAfterSeconds: readyMs / 1000,
    peakRssMB: Math.round(Math.max(peakRssMB, after.peakRssMB)),
    rssAtReadyMB: Math.round(atReady.rssMB),
    idleRssMB: Math.round(after.rssMB),
    steadyCpuPercentOfCore: Number(steadyCpu.toFixed(2)),
    steadyWindowSeconds: STEADY_S,
    vmsSeenAtClusterRead: owned,
    adopted,
    mutatingPveCalls: Object.fromEntries(mutations),
    vmsOnAnotherShardsCluster: misplaced,
    complaints: complaints.slice(0, 10),
    exitCodeOnSigterm: exitCode,
    goals: GOALS,
    meetsGoals: after.peakRssMB < GOALS.peakRssMB && steadyCpu < GOALS.steadyCpuPercentOfCore && misplaced === 0 && mutations.size === 0 && adopted === 0 && owned === running
  }
  console.log(JSON.stringify(figures, null, 2))
  console.log(`wrote ${writeResult(`fleet-${SHARDS}x${SIZE}`, { note: "seeded: each shard's log and cluster seeded (lib/seededWorld.ts), nothing to create; simulators (fast latency, 3 nodes each) in the bench process; file store; registration off", ...figures })}`)
}

try {
  for (const [index] of names.entries()) sims.push(await startSimulator({ http: true, nodes: 3, seed: index + 1, latency: LatencyFast, nodeMemoryGiB: 512 }))
  if (SEEDED > 0) await seededRun()
  else {
    const bucket = join(scratch, "bucket")
    const envDir = join(scratch, "pve")
    mkdirSync(envDir, { recursive: true })
    for (const [index, shard] of names.entries()) {
      mkdirSync(join(bucket, "shard", shard), { recursive: true })
      writeFileSync(join(bucket, "shard", shard, "config.jsonc"), configText(shard, index))
      writeFileSync(join(envDir, `${shard}.env`), envFileText(sims[index]!), { mode: 0o600 })
    }
    const started = Date.now()
    const server = spawn(process.execPath, [
      ...(process.env["FLEET_SERVER_NODE_ARGS"] ?? "").split(" ").filter((arg) => arg !== ""),
      "bin/nstance-server.js", "--storage", "file", "--bucket", bucket, "--shard", names.join(","), "--id", "fleet-1",
      "--proxmox-env-dir", envDir, "--cachedir", join(scratch, "cache"), "--log-format", "json"
    ], { cwd: root, stdio: ["ignore", process.env["FLEET_LOG"] === undefined ? "ignore" : openSync(process.env["FLEET_LOG"], "w"), "inherit"] })
    const pid = server.pid
    if (pid === undefined) throw new Error("nstance-server did not start")
    const exited = new Promise<number | null>((resolve) => server.on("exit", (code) => resolve(code)))

    let convergedMs: number | undefined
    let lastProgress = Date.now()
    while (convergedMs === undefined) {
      if (server.exitCode !== null) throw new Error(`nstance-server exited with ${server.exitCode} before the fleet converged`)
      if (Date.now() - started > CONVERGE_LIMIT_S * 1000) throw new Error(`the fleet did not converge within ${CONVERGE_LIMIT_S} s`)
      const done = names.reduce((sum, shard, index) => sum + running(sims[index]!, shard), 0)
      if (done === SHARDS * SIZE) convergedMs = Date.now() - started
      else {
        if (Date.now() - lastProgress > 10_000) {
          lastProgress = Date.now()
          console.log(`  ${((Date.now() - started) / 1000).toFixed(0)} s: ${done} of ${SHARDS * SIZE} VMs running; server RSS ${procFigures(pid).rssMB.toFixed(0)} MB`)
        }
        await sleep(250)
      }
    }
    const atConvergence = procFigures(pid)
    console.log(`${SHARDS} shards × ${SIZE} VMs running after ${(convergedMs / 1000).toFixed(1)} s; RSS ${atConvergence.rssMB.toFixed(0)} MB, peak ${atConvergence.peakRssMB.toFixed(0)} MB`)
    // A moment to finish what follows the last start (registration off: the instances are ready once running).
    await sleep(5_000)
    const before = procFigures(pid)
    const windowStart = Date.now()
    await sleep(STEADY_S * 1000)
    const after = procFigures(pid)
    const steadyCpu = ((after.cpuSeconds - before.cpuSeconds) / ((Date.now() - windowStart) / 1000)) * 100
    const misplaced = names.reduce((sum, shard, index) => sum + foreign(sims[index]!, shard), 0)
    server.kill("SIGTERM")
    const exitCode = await exited
    const figures = {
      shards: SHARDS,
      vmsPerShard: SIZE,
      clustersPerShard: 1,
      convergedSeconds: convergedMs / 1000,
      peakRssMB: Math.round(after.peakRssMB),
      idleRssMB: Math.round(after.rssMB),
      steadyCpuPercentOfCore: Number(steadyCpu.toFixed(2)),
      steadyWindowSeconds: STEADY_S,
      vmsOnAnotherShardsCluster: misplaced,
      exitCodeOnSigterm: exitCode,
      goals: GOALS,
      meetsGoals: after.peakRssMB < GOALS.peakRssMB && steadyCpu < GOALS.steadyCpuPercentOfCore && misplaced === 0
    }
    console.log(JSON.stringify(figures, null, 2))
    console.log(`wrote ${writeResult(`fleet-${SHARDS}x${SIZE}`, { note: "simulators (fast latency, 3 nodes each) in the bench process; file store; registration off", ...figures })}`)
  }
} finally {
  await Promise.all(sims.map((sim) => sim.close()))
  rmSync(scratch, { recursive: true, force: true })
}
