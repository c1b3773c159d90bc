/**
 * The embedded default behind `npm start`: everything a shard needs, on this machine, with nothing to set
 * up — a file object store in a fresh temporary directory, the Proxmox VE simulator (3 nodes, plain HTTP on
 * loopback), and the bundled example config pushed where an operator would push it. Then the real daemon
 * runs on top: the same election, config loading and leader loop as against a production cluster.
 */
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer as createNetServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Data, Duration, Effect, Either, Layer, Random, Redacted, Runtime, type Stream } from "effect"
import { applyEdits, modify } from "jsonc-parser"
import { decodeUtf8, readInputFile } from "../inputFile.js"
import { formatProblem, MAX_JSONC_BYTES, type ParsedShardConfig, parseShardConfig } from "../domain/config/index.js"
import { makeFileStore } from "../layers/ObjectStoreFile.js"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { makeSecretStore } from "../layers/SecretStoreObject.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { LatencyDemo } from "../sim/latency.js"
import type { SimModel } from "../sim/model.js"
import { makeSimAgents } from "../sim/agent.js"
import { PveSimulator } from "../sim/server.js"
import { CONFIG_KEY, pkiObjectKeys, shardPrefix } from "../domain/bucketKeys.js"
import { packagePath } from "../packageRoot.js"
import { runDaemon } from "./daemon.js"

export const EXAMPLE_CONFIG = packagePath("examples", "single-cluster.jsonc")

/** How often the demo crashes one of the VMs, so the replacement can be watched. */
export const DEMO_CRASH_EVERY = Duration.seconds(75)
/** The demo's GC interval: a crashed VM is noticed within seconds rather than the example's 2 minutes. */
export const DEMO_GC_INTERVAL = "15s"

/** `text` with `shard.garbage_collection.interval` set to the demo's when the config allows it (registration timeout above it). */
export const withDemoGcInterval = (text: string, parsed: ParsedShardConfig): string => {
  const gc = parsed.config.shard.garbageCollection
  if (Duration.lessThanOrEqualTo(gc.interval, Duration.decode("15 seconds")) || Duration.lessThanOrEqualTo(gc.registrationTimeout, Duration.decode("15 seconds"))) return text
  const edited = applyEdits(text, modify(text, ["shard", "garbage_collection", "interval"], DEMO_GC_INTERVAL, { formattingOptions: { insertSpaces: true, tabSize: 2 } }))
  return Either.isRight(parseShardConfig(edited)) ? edited : text
}

/** Where the demo's secrets key is (an environment variable of this process, set for this run only). */
export const DEMO_SECRETS_KEY_ENV = "NSTANCE_DEMO_SECRETS_KEY"

/** `text` with `cluster.secrets.encryption_key` read from `DEMO_SECRETS_KEY_ENV`, when the config has a secrets store. */
export const withDemoSecretsKey = (text: string): string => {
  const parsed = parseShardConfig(text)
  if (Either.isLeft(parsed) || parsed.right.config.cluster.secrets === undefined) return text
  const edited = applyEdits(text, modify(text, ["cluster", "secrets", "encryption_key"], { provider: "env", source: DEMO_SECRETS_KEY_ENV }, { formattingOptions: { insertSpaces: true, tabSize: 2 } }))
  return Either.isRight(parseShardConfig(edited)) ? edited : text
}

/**
 * `text` with the replica's endpoints on loopback: `shard.bind.*_addr` (and `shard.advertise.*_addr` for the
 * endpoints clients are sent to) set to the given `host:port`s.
 */
export const withLoopbackEndpoints = (
  text: string,
  addresses: { readonly registration: string; readonly agent: string; readonly operator: string; readonly health: string }
): string => {
  const options = { formattingOptions: { insertSpaces: true, tabSize: 2 } }
  const edits: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
    [["shard", "bind", "registration_addr"], addresses.registration],
    [["shard", "advertise", "registration_addr"], addresses.registration],
    [["shard", "bind", "agent_addr"], addresses.agent],
    [["shard", "advertise", "agent_addr"], addresses.agent],
    [["shard", "bind", "operator_addr"], addresses.operator],
    [["shard", "advertise", "operator_addr"], addresses.operator],
    [["shard", "bind", "health_addr"], addresses.health],
    [["shard", "advertise", "health_addr"], addresses.health]
  ]
  return edits.reduce((edited, [path, value]) => applyEdits(edited, modify(edited, [...path], value, options)), text)
}

/**
 * `count` TCP ports free on loopback right now, all different (the OS picks them): every socket stays bound
 * until the last one is, so the OS cannot hand one port out twice.
 */
export const freeLoopbackPorts = (count: number): Effect.Effect<ReadonlyArray<number>> =>
  Effect.promise(async () => {
    const servers = await Promise.all(Array.from({ length: count }, () =>
      new Promise<ReturnType<typeof createNetServer>>((resolve, reject) => {
        const server = createNetServer()
        server.unref()
        server.once("error", reject)
        server.listen(0, "127.0.0.1", () => resolve(server))
      })))
    const ports = servers.map((server) => {
      const address = server.address()
      return typeof address === "object" && address !== null ? address.port : 0
    })
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
    return ports
  }).pipe(Effect.filterOrDieMessage((ports) => ports.every((port) => port !== 0), "no free port on 127.0.0.1"))

/** A TCP port free on loopback right now (the OS picks it). */
export const freeLoopbackPort: Effect.Effect<number> = Effect.map(freeLoopbackPorts(1), (ports) => ports[0]!)

/** `preferred` on loopback when it is free (so the documented default works), else `fallback`. */
export const loopbackPortPreferring = (preferred: number, fallback: number): Effect.Effect<number> =>
  Effect.async<boolean>((resume) => {
    const server = createNetServer()
    server.unref()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen(preferred, "127.0.0.1", () => server.close(() => resume(Effect.succeed(true))))
  }).pipe(Effect.map((free) => (free ? preferred : fallback)))

/** The operator and health ports `npm start` uses when they are free: `nstance-admin`'s default and the example's. */
export const EMBEDDED_OPERATOR_PORT = 8993
export const EMBEDDED_HEALTH_PORT = 8990

/** Crashes a random running VM of ours in the simulator now and then (the guest dies; PVE reports it stopped). */
const crashNowAndThen = (model: SimModel) =>
  Effect.gen(function* () {
    const running = [...model.vms.values()].filter((vm) => vm.status === "running" && (vm.config.get("tags") ?? "").startsWith("nstance;"))
    if (running.length === 0) return
    const victim = running[yield* Random.nextIntBetween(0, running.length)]!
    model.crashVm(victim.vmid)
    yield* Effect.logWarning(`demo: the guest of VM ${victim.vmid} (${victim.config.get("name") ?? "?"}) on ${victim.node} crashed; the shard should replace it`)
  }).pipe(Effect.delay(DEMO_CRASH_EVERY), Effect.forever)

export class EmbeddedSetupFailed extends Data.TaggedError("EmbeddedSetupFailed")<{ readonly message: string }> {}

export const runEmbedded = (options: { readonly configFile?: string; readonly reloadRequests?: Stream.Stream<string> } = {}) =>
  Effect.gen(function* () {
    const configFile = options.configFile ?? EXAMPLE_CONFIG
    const input = { flag: options.configFile === undefined ? "" : "--config", path: configFile }
    const text = yield* readInputFile({ ...input, what: "a shard config", maxBytes: MAX_JSONC_BYTES }).pipe(
      Effect.flatMap((bytes) => decodeUtf8(input, bytes)),
      Effect.mapError((error) => new EmbeddedSetupFailed({ message: error.message }))
    )
    const parsed = parseShardConfig(text)
    if (Either.isLeft(parsed)) {
      return yield* new EmbeddedSetupFailed({
        message: `${configFile} is not a valid shard config:\n${parsed.left.problems.map(formatProblem).join("\n")}`
      })
    }
    const shard = parsed.right.config.shard.id
    // Agent registration is always on here: a key for this run only, the endpoint on a free loopback port.
    const [registrationPort, agentPort, operatorFallback, healthFallback] = yield* freeLoopbackPorts(4)
    const registrationAddress = `127.0.0.1:${registrationPort}`
    const agentAddress = `127.0.0.1:${agentPort}`
    // The admin endpoint and /healthz, /readyz, /metrics on loopback, with a token for this run only.
    const operatorAddress = `127.0.0.1:${yield* loopbackPortPreferring(EMBEDDED_OPERATOR_PORT, operatorFallback!)}`
    const healthAddress = `127.0.0.1:${yield* loopbackPortPreferring(EMBEDDED_HEALTH_PORT, healthFallback!)}`
    const adminToken = randomBytes(24).toString("hex")
    const gcText = withDemoGcInterval(text, parsed.right)
    const demoText = withLoopbackEndpoints(gcText, { registration: registrationAddress, agent: agentAddress, operator: operatorAddress, health: healthAddress })
    if (Either.isLeft(parseShardConfig(demoText))) return yield* new EmbeddedSetupFailed({ message: `cannot set the endpoint addresses in ${configFile}` })
    // The demo's secrets key, for this run only, where its config's cluster.secrets looks for it.
    const secretsKey = randomBytes(32)
    const secretsText = withDemoSecretsKey(demoText)
    if (secretsText !== demoText) process.env[DEMO_SECRETS_KEY_ENV] = secretsKey.toString("hex")
    const encryptionKey = new Uint8Array(randomBytes(32))
    // The demo's bucket lives as long as the run: removed when the scope closes (Ctrl-C included).
    const bucket = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "nstance-embedded-"))),
      (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
    )
    const prefix = shardPrefix(shard)
    // The file store keeps an object at its key: the CA certificate the daemon creates is this file.
    const caFile = join(bucket, pkiObjectKeys(parsed.right.config.cluster.id).caCert)
    const store = makeFileStore({ directory: bucket })
    const shardStore = scopeStore(store, prefix)
    yield* shardStore.put(CONFIG_KEY, new TextEncoder().encode(secretsText)).pipe(Effect.orDie)
    // What the example's files read: each tenant's secret (sealed as `nstance-admin secret put` seals it) and a storage object.
    const demoConfig = parseShardConfig(secretsText)
    const secretsConfig = Either.isRight(demoConfig) ? demoConfig.right.config.cluster.secrets : undefined
    if (secretsConfig !== undefined && secretsText !== demoText) {
      const secrets = makeSecretStore(store, { prefix: secretsConfig.prefix, keys: [new Uint8Array(secretsKey)] })
      for (const tenant of Object.keys(parsed.right.config.groups)) {
        yield* secrets.put(tenant, "db-password", Redacted.make(new Uint8Array(Buffer.from(randomBytes(12).toString("base64url"))))).pipe(Effect.orDie)
      }
    }
    yield* shardStore.put(`files/${parsed.right.config.defaults.vars["Environment"] ?? "production"}/site.conf`, new TextEncoder().encode("# served by the demo's storage object\nserver_name _;\n")).pipe(Effect.orDie)
    // Each simulated VM's files, as its agent wrote them.
    const filesRoot = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "nstance-embedded-files-"))),
      (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
    )
    const runtime = yield* Effect.runtime<never>()
    let shown = false
    const showFiles = (instanceId: string, directory: string, names: ReadonlyArray<string>) => {
      if (shown || names.length === 0) return
      shown = true
      Runtime.runFork(runtime)(Effect.logInfo(`demo: VM ${instanceId}'s files, as its agent wrote them in ${directory}: ${names.join(", ")} ` +
        `(openssl verify -CAfile ${caFile} ${join(directory, names.find((name) => name.endsWith(".crt")) ?? names[0]!)})`))
    }

    // The ISOs the VMs boot, as PVE's storages keep them, so they can be looked at while the demo runs.
    const volumes = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "nstance-embedded-volumes-"))),
      (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
    )
    const agents = yield* makeSimAgents({ healthEvery: "3 seconds", filesRoot, onFiles: showFiles })
    const sim = yield* PveSimulator({ nodes: 3, http: true, latency: LatencyDemo, sharedStorage: true, nodeMemoryGiB: 128, guestHook: agents.hook, volumesDir: volumes }).pipe(
      // A simulator that cannot start (its API schema missing, its port refused) is one line, not a stack.
      Effect.catchAllDefect((defect) => Effect.fail(new EmbeddedSetupFailed({
        message: `cannot start the Proxmox VE simulator: ${defect instanceof Error ? defect.message : String(defect)}`
      })))
    )
    agents.attach(sim.model)
    yield* Effect.logInfo(
      [
        "nstance embedded default — nothing here touches a real cluster",
        `  object store : file://${bucket} (config at ${prefix}${CONFIG_KEY})`,
        `  Proxmox VE   : simulator at ${sim.url} (nodes pve1..pve3, token ${sim.tokenId})`,
        `  VM ISOs      : ${volumes} (<node>/<storage>/template/iso/…, shared/<storage>/… for a shared storage; ` +
          "isoinfo -R -x /user-data -i FILE shows what a VM booted)",
        `  shard config : ${configFile}${gcText === text ? "" : ` (garbage_collection.interval shortened to ${DEMO_GC_INTERVAL} for the demo)`}`,
        `  agents       : registration on at https://${registrationAddress}/agent (TLS 1.3; a PKI key for this run only); ` +
          "simulated guests find the CA in their user-data, register with IPs 10.20.<node>.<vmid % 250>, then hold the agent channel " +
          `wss://${agentAddress}/agent open (their client certificate required) and report health over it every 3 s`,
        `  cluster CA   : ${caFile} (the agent and admin endpoints' certificates chain to it)`,
        `  VM files     : ${filesRoot}/<instance-id>/ (each guest's agent writes its template's files there, as nstance-agent --files-dir: ` +
          "a certificate for a key it made, an env file, a secret, a storage object; the first VM's are listed once they arrive)",
        `  admin        : NSTANCE_ADMIN_TOKEN=${adminToken} NSTANCE_CA_FILE=${caFile} nstance-admin status --server ${operatorAddress}` +
          " (also instances, groups, group set …; TLS 1.3, a token for this run only)",
        `  health       : http://${healthAddress}/healthz, /readyz, /leaderz, /metrics`,
        `  demo         : every ${Duration.format(DEMO_CRASH_EVERY)} one of the VMs crashes in the simulator; watch it being replaced`,
        "  stop with Ctrl-C (the lease is resigned on the way out)"
      ].join("\n")
    )
    yield* crashNowAndThen(sim.model).pipe(Effect.forkScoped)
    return yield* runDaemon({
      id: "embedded",
      advertiseHost: "127.0.0.1",
      prefix,
      store: Layer.succeed(ObjectStore, store),
      config: { _tag: "Store", key: CONFIG_KEY, shard },
      proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret },
      encryptionKey,
      adminToken: Redacted.make(adminToken),
      ...(options.reloadRequests === undefined ? {} : { reloadRequests: options.reloadRequests })
    })
  })
