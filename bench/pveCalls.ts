/**
 * PVE calls per create and per delete, counted from outside: the HTTP simulator's request log (what pveproxy
 * saw), the real HTTP client and the real `leaderScope` on a memory store. From the leader's start through
 * its first 5 creates, then the 5 deletes of a scale to zero — the count of issue 25, whose goals are ≤ 5
 * non-polling calls per create and ≤ 4 per delete. Task-status polls are counted apart; so is the preflight's
 * run at the term's start (version, permissions, each node's storages and bridges), which happens once per
 * term and every 5 minutes whatever the creates do. Two groups of figures: a disk the template already has
 * (no resize), and an instance type that grows it (a resize per create).
 *
 * Prints a table and writes bench/results/pveCalls.json.
 */
import { Clock, Context, Effect, Either, Layer, Logger, LogLevel, SubscriptionRef } from "effect"
import { type ParsedShardConfig, parseShardConfig } from "../src/domain/config/index.js"
import { allInstances } from "../src/domain/shard/state.js"
import { replayStore } from "../src/layers/EventLogStore.js"
import { makeMemoryStore } from "../src/layers/ObjectStoreMemory.js"
import { ProxmoxApiHttp } from "../src/layers/ProxmoxApiHttp.js"
import { ObjectStore } from "../src/services/ObjectStore.js"
import { ProxmoxApi } from "../src/services/ProxmoxApi.js"
import { leaderScope } from "../src/shard/LeaderScope.js"
import { LatencyFast, type SimModel, startSimulator } from "../src/sim/server.js"
import { writeResult } from "./lib/results.js"

const NODES = 3
const VMS = 5
const GOALS = { perCreate: 5, perDelete: 4 } as const
const TASK_POLL = "GET /nodes/{node}/tasks/{upid}/status"
/** The preflight's own reads of one run (its nodes and VMs come from the shared cluster read, counted). */
const PREFLIGHT_RUN: Readonly<Record<string, number>> = {
  "GET /version": 1,
  "GET /access/permissions": 1,
  "GET /nodes/{node}/storage": NODES,
  "GET /nodes/{node}/network": NODES
}

const configText = (size: number, diskGiB: number) => `// pveCalls bench shard
{
  "cluster": { "id": "bench" },
  "shard": {
    "id": "pve-a",
    "infra": { "provider": "proxmox", "region": "dc1", "zone": "z1", "options": { "cloud_init_iso_storage": "local" } },
    "bind": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": ":8992", "operator_addr": ":8993", "agent_addr": ":8994" },
    "advertise": { "health_addr": ":8990", "election_addr": ":8991", "registration_addr": "10.0.0.1:8992", "operator_addr": "10.0.0.1:8993", "agent_addr": "10.0.0.1:8994" },
    "subnet_pools": { "edge": ["vmbr1"] },
    // A GC pass is a periodic cluster read of its own: out of the window.
    "garbage_collection": { "interval": "1h", "registration_timeout": "2h" },
  },
  "defaults": {
    "args": { "StoragePool": "local-lvm", "TemplateName": "debian-13-template", "StartOnBoot": true },
    "userdata": { "content": "#!/bin/sh\\necho hello\\n" },
  },
  "templates": { "web": { "kind": "web", "instance_type": "cpu:1,memory:1024,disk:${diskGiB}", "subnet_pool": "edge" } },
  "groups": { "shop": { "web": { "template": "web", "size": ${size} } } },
}
`

const parseConfig = (size: number, diskGiB: number): ParsedShardConfig => {
  const parsed = parseShardConfig(configText(size, diskGiB))
  if (Either.isLeft(parsed)) throw new Error(`bench config does not parse: ${JSON.stringify(parsed.left.problems)}`)
  return parsed.right
}

type Counts = Record<string, number>

const countSince = (model: SimModel, from: number): { readonly counts: Counts; readonly polls: number } => {
  const counts: Counts = {}
  let polls = 0
  for (const r of model.requests.slice(from)) {
    const key = r.endpoint ?? `${r.method} ${r.path}`
    if (key === TASK_POLL) polls++
    else counts[key] = (counts[key] ?? 0) + 1
  }
  return { counts, polls }
}

const withoutPreflight = (counts: Counts): Counts => {
  const out = { ...counts }
  for (const [endpoint, n] of Object.entries(PREFLIGHT_RUN)) {
    const left = (out[endpoint] ?? 0) - n
    if (left > 0) out[endpoint] = left
    else delete out[endpoint]
  }
  return out
}

const sum = (counts: Counts) => Object.values(counts).reduce((a, b) => a + b, 0)

/** Calls by kind: what changes PVE, the shared cluster read, and the other reads (configs, statuses, lists). */
const byKind = (counts: Counts, n: number) => {
  let mutations = 0
  let clusterReads = 0
  let otherReads = 0
  for (const [endpoint, count] of Object.entries(counts)) {
    if (!endpoint.startsWith("GET ")) mutations += count
    else if (endpoint === "GET /cluster/resources") clusterReads += count
    else otherReads += count
  }
  return { mutations: mutations / n, clusterReads: clusterReads / n, otherReads: otherReads / n }
}

const perOp = (counts: Counts, polls: number, n: number) => ({
  nonPollingPerOp: sum(counts) / n,
  pollsPerOp: polls / n,
  byKind: byKind(counts, n),
  byEndpoint: Object.fromEntries(Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([e, c]) => [e, c / n]))
})

const scenario = (label: string, diskGiB: number) =>
  Effect.gen(function* () {
    const sim = yield* Effect.acquireRelease(
      Effect.promise(() => startSimulator({ nodes: NODES, http: true, seed: 1, latency: LatencyFast })),
      (s) => Effect.promise(() => s.close())
    )
    const api = Context.get(
      yield* Layer.build(ProxmoxApiHttp({
        apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret,
        taskPoll: { initial: "10 millis", factor: 1.5, max: "100 millis" }
      })),
      ProxmoxApi
    )
    const store = makeMemoryStore()
    const config = yield* SubscriptionRef.make(parseConfig(VMS, diskGiB))
    const from = sim.model.requests.length
    yield* leaderScope({ clusterId: "bench", shard: "pve-a", replica: "bench", config })(1).pipe(
      Effect.provideService(ProxmoxApi, api),
      Effect.provideService(ObjectStore, store),
      Logger.withMinimumLogLevel(LogLevel.None),
      Effect.forkScoped
    )
    const instances = Effect.map(replayStore(store).pipe(Effect.orDie), (r) => allInstances(r.state))
    const waitFor = (what: string, done: Effect.Effect<boolean>) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + 120_000
        while (!(yield* done)) {
          if ((yield* Clock.currentTimeMillis) > deadline) return yield* Effect.dieMessage(`${label}: ${what} not reached within 120 s`)
          yield* Effect.sleep("10 millis")
        }
      })
    yield* waitFor(`${VMS} running`, Effect.map(instances, (list) => list.length === VMS && list.every((i) => i.phase === "running")))
    const creates = countSince(sim.model, from)
    const deleteFrom = sim.model.requests.length
    yield* SubscriptionRef.set(config, parseConfig(0, diskGiB))
    const vmsLeft = () => [...sim.model.vms.values()].filter((vm) => vm.config.get("template") !== "1").length
    yield* waitFor("0 left", Effect.map(instances, (list) => list.length === 0 && vmsLeft() === 0))
    const deletes = countSince(sim.model, deleteFrom)

    const createCounts = withoutPreflight(creates.counts)
    const figures = {
      diskGiB,
      perCreate: { ...perOp(createCounts, creates.polls, VMS), goal: GOALS.perCreate },
      perDelete: { ...perOp(deletes.counts, deletes.polls, VMS), goal: GOALS.perDelete },
      preflightRun: PREFLIGHT_RUN
    }
    console.log(`\n${label} (instance type disk ${diskGiB} GiB; the template's is 2 GiB), ${VMS} VMs:`)
    for (const [name, op] of [["per create", figures.perCreate], ["per delete", figures.perDelete]] as const) {
      const k = op.byKind
      console.log(`  ${name}: ${op.nonPollingPerOp.toFixed(2)} non-polling calls (goal ≤ ${op.goal}) — ${k.mutations.toFixed(2)} mutations, ` +
        `${k.clusterReads.toFixed(2)} /cluster/resources, ${k.otherReads.toFixed(2)} other reads (+ ${op.pollsPerOp.toFixed(2)} task polls)`)
      for (const [endpoint, count] of Object.entries(op.byEndpoint)) console.log(`    ${count.toFixed(2).padStart(6)}  ${endpoint}`)
    }
    return figures
  }).pipe(Effect.scoped)

const run = Effect.gen(function* () {
  console.log(`pveCalls: HTTP simulator (${NODES} nodes, fast latency); counted from the leader's start; the preflight's run at the start apart: ${JSON.stringify(PREFLIGHT_RUN)}`)
  const noResize = yield* scenario("no resize", 2)
  const resize = yield* scenario("a resize per create", 8)
  return { vms: VMS, goals: GOALS, noResize, resize }
})

const figures = await Effect.runPromise(run)
console.log(`\nwrote ${writeResult("pveCalls", figures)}`)
