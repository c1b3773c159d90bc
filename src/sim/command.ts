/**
 * `nstance-pve-sim`'s command: the Proxmox VE simulator as a standalone process, so the server, the admin CLI or curl
 * can be pointed at a fake cluster. Prints the API URL and the PROXMOX_* exports, runs until SIGINT/SIGTERM.
 */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { UsageError } from "../inputFile.js"
import { latencyPresets } from "./latency.js"
import { DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET, PveSimulator } from "./server.js"

const port = Options.integer("port").pipe(
  Options.withDescription("TCP port on 127.0.0.1 to listen on (0 = any free port)"),
  Options.withDefault(8006)
)
const nodes = Options.integer("nodes").pipe(
  Options.withDescription("Number of cluster nodes, named pve1..pveN (1-64); each gets a debian-13-template (VMID 9000+i)"),
  Options.withDefault(3)
)
const seed = Options.integer("seed").pipe(
  Options.withDescription("Seed for every random choice (latencies, MACs, probabilistic faults), so runs replay"),
  Options.withDefault(1)
)
const plainHttp = Options.boolean("http").pipe(
  Options.withDescription("Serve plain HTTP instead of HTTPS with a self-signed certificate generated at start")
)
const tokenId = Options.text("token-id").pipe(
  Options.withDescription("API token id accepted (user@realm!token); default $PROXMOX_TOKEN_ID, else nstance@pve!nstance-token"),
  Options.optional
)
const tokenSecret = Options.text("token-secret").pipe(
  Options.withDescription("API token secret accepted; default $PROXMOX_TOKEN_SECRET, else a fixed test UUID"),
  Options.optional
)
const latency = Options.choice("latency", ["fast", "demo", "realistic"]).pipe(
  Options.withDescription("Task durations: fast (tens of ms), demo (a fifth of real), realistic (seconds, 10 s lock timeouts)"),
  Options.withDefault("fast" as const)
)
const sharedStorage = Options.boolean("shared-storage").pipe(
  Options.withDescription("Add a shared ceph-vm storage and a template on it (VMID 9100) that clones to any node")
)

const volumesDir = Options.text("volumes-dir").pipe(
  Options.withDescription(
    "Keep every uploaded volume's bytes under DIR, as PVE's storages keep them, so what a VM boots can be read " +
      "from outside: DIR/<node>/<storage>/template/iso/<name> (a node's own storage, e.g. local), " +
      "DIR/shared/<storage>/template/iso/<name> (a shared one); removed with the volume. Created if missing"
  ),
  Options.optional
)

const clusters = Options.integer("clusters").pipe(
  Options.withDescription(
    "Run this many independent clusters (1-200), each with its own API on its own port (--port, --port+1, …; any free ports with " +
      "--port 0), its own seed (--seed + i) and state: a fleet for `nstance-server --shard cluster-01,… --proxmox-env-dir DIR`"
  ),
  Options.withDefault(1)
)

const envDir = Options.text("env-dir").pipe(
  Options.withDescription(
    "Write each cluster's connection to DIR/<name>.env (mode 0600; names cluster-01, cluster-02, … with --clusters, else cluster-01), " +
      "the files nstance-server --proxmox-env-dir reads. Created if missing"
  ),
  Options.optional
)

/** The shard name of cluster `index` (0-based): what its env file and the server's --shard call it. */
export const simClusterName = (index: number) => `cluster-${String(index + 1).padStart(2, "0")}`

/** A connection file as `nstance-server --proxmox-env-dir` reads it. */
export const envFileText = (sim: { readonly url: string; readonly tokenId: string; readonly tokenSecret: string }) =>
  `PROXMOX_API_URL=${sim.url}\nPROXMOX_TOKEN_ID='${sim.tokenId}'\nPROXMOX_TOKEN_SECRET='${sim.tokenSecret}'\n`

const fromEnv = (name: string): string | undefined => {
  const value = process.env[name]
  return value === undefined || value === "" ? undefined : value
}

export const simCommand = Command.make(
  "nstance-pve-sim",
  { port, nodes, seed, plainHttp, tokenId, tokenSecret, latency, sharedStorage, volumesDir, clusters, envDir },
  (o) =>
    Effect.gen(function* () {
      if (o.port < 0 || o.port > 65535) return yield* new UsageError({ message: `--port ${o.port} is not a TCP port (0-65535)` })
      if (o.nodes < 1 || o.nodes > 64) return yield* new UsageError({ message: `--nodes ${o.nodes} must be between 1 and 64` })
      if (o.clusters < 1 || o.clusters > 200) return yield* new UsageError({ message: `--clusters ${o.clusters} must be between 1 and 200` })
      if (o.port !== 0 && o.port + o.clusters - 1 > 65535) {
        return yield* new UsageError({ message: `--port ${o.port} with --clusters ${o.clusters} runs past port 65535; use a lower --port or --port 0` })
      }
      if (o.clusters > 1 && Option.isSome(o.volumesDir)) {
        return yield* new UsageError({ message: "--volumes-dir keeps one cluster's volumes; it cannot be used with --clusters" })
      }
      const id = Option.getOrUndefined(o.tokenId) ?? fromEnv("PROXMOX_TOKEN_ID") ?? DEFAULT_TOKEN_ID
      const secret = Option.getOrUndefined(o.tokenSecret) ?? fromEnv("PROXMOX_TOKEN_SECRET") ?? DEFAULT_TOKEN_SECRET
      if (!/^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$/.test(id)) {
        // Name where the value came from: an operator who never typed --token-id looks at the flag in vain.
        const source = Option.isSome(o.tokenId) ? "--token-id" : "PROXMOX_TOKEN_ID"
        return yield* new UsageError({ message: `${source} ${JSON.stringify(id)} is not of the form user@realm!token` })
      }
      const preset = latencyPresets[o.latency]
      if (preset === undefined) return yield* new UsageError({ message: `--latency ${o.latency} is unknown` })
      const volumes = Option.getOrUndefined(o.volumesDir)
      const volumesPath = volumes === undefined ? undefined : resolve(volumes)
      if (volumesPath !== undefined) {
        yield* Effect.try({
          try: () => mkdirSync(volumesPath, { recursive: true }),
          catch: (error) => new UsageError({ message: `--volumes-dir ${volumes}: cannot create it (${error instanceof Error ? error.message : String(error)})` })
        })
      }
      const { unsafe: stdio } = yield* Effect.console
      const sims = yield* Effect.forEach(Array.from({ length: o.clusters }, (_, index) => index), (index) =>
        PveSimulator({
          port: o.port === 0 ? 0 : o.port + index, nodes: o.nodes, seed: o.seed + index, http: o.plainHttp, tokenId: id, tokenSecret: secret,
          latency: preset, sharedStorage: o.sharedStorage,
          ...(volumesPath === undefined ? {} : { volumesDir: volumesPath }),
          log: (line) => stdio.error(o.clusters === 1 ? `[pve-sim] ${line}` : `[pve-sim ${simClusterName(index)}] ${line}`)
        }).pipe(Effect.catchAllDefect((defect) =>
          Effect.fail(new UsageError({ message: `cannot start simulator${o.clusters === 1 ? "" : ` ${simClusterName(index)}`}: ${defect instanceof Error ? defect.message : String(defect)}` })))))
      const envPath = Option.getOrUndefined(o.envDir)
      if (envPath !== undefined) {
        yield* Effect.try({
          try: () => {
            mkdirSync(envPath, { recursive: true })
            sims.forEach((sim, index) => {
              const file = join(envPath, `${simClusterName(index)}.env`)
              writeFileSync(file, envFileText(sim), { mode: 0o600 })
              // An existing file keeps its mode through writeFileSync: set it.
              chmodSync(file, 0o600)
            })
          },
          catch: (error) => new UsageError({ message: `--env-dir ${envPath}: cannot write the connection files (${error instanceof Error ? error.message : String(error)})` })
        })
      }
      const [first] = sims
      if (first === undefined) return yield* Effect.never
      if (sims.length === 1) {
        yield* Console.log(`Proxmox VE simulator: ${o.nodes} nodes, seed ${o.seed}, latency ${o.latency}, listening on ${first.url}`)
      } else {
        yield* Console.log(`Proxmox VE simulator: ${sims.length} clusters of ${o.nodes} nodes, seeds ${o.seed}…${o.seed + sims.length - 1}, latency ${o.latency}`)
        for (const [index, sim] of sims.entries()) yield* Console.log(`  ${simClusterName(index)}: ${sim.url}`)
      }
      if (first.tls !== undefined) {
        yield* Console.log(`TLS certificate${sims.length === 1 ? "" : "s"} (self-signed) SHA-256 fingerprint${sims.length === 1 ? "" : " of cluster-01"}: ${first.tls.fingerprint256}`)
      }
      if (volumesPath !== undefined) yield* Console.log(`Uploaded volumes (ISOs) are kept under ${volumesPath}`)
      yield* Console.log("")
      if (envPath !== undefined) {
        const names = sims.map((_, index) => simClusterName(index)).join(",")
        yield* Console.log(`Connection files (mode 0600) in ${envPath}: run the shards with`)
        yield* Console.log(`  nstance-server --shard ${names} --proxmox-env-dir ${envPath} --storage … --bucket … --id …`)
      }
      if (sims.length === 1) {
        yield* Console.log(`export PROXMOX_API_URL=${first.url}`)
        yield* Console.log(`export PROXMOX_TOKEN_ID='${first.tokenId}'`)
        yield* Console.log(`export PROXMOX_TOKEN_SECRET='${first.tokenSecret}'`)
      }
      yield* Console.log("")
      yield* Console.log("Press Ctrl-C to stop.")
      return yield* Effect.never
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("Run a simulated Proxmox VE cluster (API subset used by nstance) on 127.0.0.1"))
