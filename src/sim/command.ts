/**
 * `nstance-pve-sim`'s command: the Proxmox VE simulator as a standalone process, so the server, the admin CLI or curl
 * can be pointed at a fake cluster. Prints the API URL and the PROXMOX_* exports, runs until SIGINT/SIGTERM.
 */
import { mkdirSync } from "node:fs"
import { resolve } from "node:path"
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

const fromEnv = (name: string): string | undefined => {
  const value = process.env[name]
  return value === undefined || value === "" ? undefined : value
}

export const simCommand = Command.make(
  "nstance-pve-sim",
  { port, nodes, seed, plainHttp, tokenId, tokenSecret, latency, sharedStorage, volumesDir },
  (o) =>
    Effect.gen(function* () {
      if (o.port < 0 || o.port > 65535) return yield* new UsageError({ message: `--port ${o.port} is not a TCP port (0-65535)` })
      if (o.nodes < 1 || o.nodes > 64) return yield* new UsageError({ message: `--nodes ${o.nodes} must be between 1 and 64` })
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
      const sim = yield* PveSimulator({
        port: o.port, nodes: o.nodes, seed: o.seed, http: o.plainHttp, tokenId: id, tokenSecret: secret,
        latency: preset, sharedStorage: o.sharedStorage,
        ...(volumesPath === undefined ? {} : { volumesDir: volumesPath }),
        log: (line) => stdio.error(`[pve-sim] ${line}`)
      }).pipe(Effect.catchAllDefect((defect) =>
        Effect.fail(new UsageError({ message: `cannot start simulator: ${defect instanceof Error ? defect.message : String(defect)}` }))))
      yield* Console.log(`Proxmox VE simulator: ${o.nodes} nodes, seed ${o.seed}, latency ${o.latency}, listening on ${sim.url}`)
      if (sim.tls !== undefined) yield* Console.log(`TLS certificate (self-signed) SHA-256 fingerprint: ${sim.tls.fingerprint256}`)
      if (volumesPath !== undefined) yield* Console.log(`Uploaded volumes (ISOs) are kept under ${volumesPath}`)
      yield* Console.log("")
      yield* Console.log(`export PROXMOX_API_URL=${sim.url}`)
      yield* Console.log(`export PROXMOX_TOKEN_ID='${sim.tokenId}'`)
      yield* Console.log(`export PROXMOX_TOKEN_SECRET='${sim.tokenSecret}'`)
      yield* Console.log("")
      yield* Console.log("Press Ctrl-C to stop.")
      return yield* Effect.never
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("Run a simulated Proxmox VE cluster (API subset used by nstance) on 127.0.0.1"))
