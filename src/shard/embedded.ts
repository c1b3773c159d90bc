/**
 * The embedded default behind `npm start`: everything a shard needs, on this machine, with nothing to set
 * up — a file object store in a fresh temporary directory, the Proxmox VE simulator (3 nodes, plain HTTP on
 * loopback), and the bundled example config pushed where an operator would push it. Then the real daemon
 * runs on top: the same election, config loading and leader loop as against a production cluster.
 */
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Data, type Duration, Effect, Either, Layer } from "effect"
import { formatProblem, parseShardConfig } from "../domain/config/index.js"
import { makeFileStore } from "../layers/ObjectStoreFile.js"
import { scopeStore, shardPrefix } from "../layers/ObjectStoreScoped.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { LatencyDemo } from "../sim/latency.js"
import { PveSimulator } from "../sim/server.js"
import { CONFIG_KEY } from "./leaderWork.js"
import { packagePath } from "../packageRoot.js"
import { runDaemon } from "./daemon.js"

export const EXAMPLE_CONFIG = packagePath("examples", "single-cluster.jsonc")

export class EmbeddedSetupFailed extends Data.TaggedError("EmbeddedSetupFailed")<{ readonly message: string }> {}

export const runEmbedded = (options: { readonly configFile?: string; readonly reconcileInterval?: Duration.DurationInput } = {}) =>
  Effect.gen(function* () {
    const configFile = options.configFile ?? EXAMPLE_CONFIG
    const text = readFileSync(configFile, "utf8")
    const parsed = parseShardConfig(text)
    if (Either.isLeft(parsed)) {
      return yield* new EmbeddedSetupFailed({
        message: `${configFile} is not a valid shard config:\n${parsed.left.problems.map(formatProblem).join("\n")}`
      })
    }
    const shard = parsed.right.config.shard.id
    const bucket = mkdtempSync(join(tmpdir(), "nstance-embedded-"))
    const prefix = shardPrefix(shard)
    const store = makeFileStore({ directory: bucket })
    yield* scopeStore(store, prefix)
      .put(CONFIG_KEY, new TextEncoder().encode(text))
      .pipe(Effect.orDie)

    const sim = yield* PveSimulator({ nodes: 3, http: true, latency: LatencyDemo })
    yield* Effect.logInfo(
      [
        "nstance embedded default — nothing here touches a real cluster",
        `  object store : file://${bucket} (config at ${prefix}${CONFIG_KEY})`,
        `  Proxmox VE   : simulator at ${sim.url} (nodes pve1..pve3, token ${sim.tokenId})`,
        `  shard config : ${configFile}`,
        "  stop with Ctrl-C (the lease is resigned on the way out)"
      ].join("\n")
    )
    return yield* runDaemon({
      id: "embedded",
      advertiseHost: "127.0.0.1",
      prefix,
      store: Layer.succeed(ObjectStore, store),
      config: { _tag: "Store", key: CONFIG_KEY },
      proxmox: { apiUrl: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret },
      reconcileInterval: options.reconcileInterval ?? "10 seconds"
    })
  })
