/**
 * The `nstance-server` command: `--validate FILE` checks a shard config offline (what
 * `create-shard-config.sh` runs before uploading), and the start flags are parsed and checked into a
 * `ServerStartOptions` before anything touches storage or Proxmox, so a bad flag or a missing token is
 * one clear line, not a crash minutes later.
 */
import { echoValue } from "../domain/errorText.js"
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either, Option } from "effect"
import { join } from "node:path"
import {
  clusterEndpointOf,
  formatProblem,
  identifierProblem,
  isWildcardHost,
  MAX_JSONC_BYTES,
  parseAddress,
  type ParsedShardConfig,
  parseShardConfig,
  type Problem,
  type ProxmoxEnv,
  readProxmoxEnv,
  readProxmoxEnvFile,
  desiredGroups
} from "../domain/config/index.js"
import { s3EndpointProblem } from "../domain/endpointUrl.js"
import { objectPrefixProblem } from "../domain/objectKey.js"
import { objectStoreLayer } from "../layers/ObjectStoreFromFlags.js"
import { CONFIG_KEY, shardPrefix } from "../domain/bucketKeys.js"
import { decodeUtf8, readInputFile } from "../inputFile.js"
import { escapeControl } from "./escape.js"
import { exitWith, withBareFlag } from "./run.js"
import { adminTokenFrom } from "../admin/token.js"
import { defaultLogFormat, loggerLayer } from "./logging.js"
import { handleDaemonSignals } from "./signals.js"


export const STORAGE_KINDS = ["s3", "gcs", "file"] as const
export type StorageKind = (typeof STORAGE_KINDS)[number]

/** Everything a start needs, checked: what the daemon (a later issue) is wired from. */
export interface ServerStartOptions {
  readonly storage: StorageKind
  /** Bucket name, or the base directory for `file`. */
  readonly bucket: string
  /** `--shard` as given: one shard ID, or several separated by commas (see `shardTargets`). */
  readonly shard: string
  readonly id: string
  /**
   * Key prefix of the shard's objects; `shard/{shard}/` unless given. With several shards it is that
   * pattern itself (`--prefix` is refused), each shard using its own ID in it.
   */
  readonly prefix: string
  readonly cachedir: string
  readonly advertiseHost?: string
  /** A local config file read instead of `{prefix}config.jsonc` (development). */
  readonly configFile?: string
  /** The local config, validated, when `configFile` is given. */
  readonly config?: ParsedShardConfig
  /**
   * Each shard's PVE connection (shard ID → connection): from `--proxmox-env-dir DIR/<shard>.env` when given,
   * otherwise the process environment's, which then serves a single shard.
   */
  readonly proxmox: Readonly<Record<string, ProxmoxEnv>>
}

/** The start flags as given on the command line. */
export interface StartFlags {
  readonly storage?: string
  readonly bucket?: string
  readonly shard?: string
  readonly id?: string
  readonly prefix?: string
  readonly cachedir: string
  readonly advertiseHost?: string
  readonly configFile?: string
  /** `--proxmox-env-dir`: a directory of `<shard>.env` files, one PVE cluster each. */
  readonly proxmoxEnvDir?: string
}

/** The default prefix as operators read it in messages and help. */
const DEFAULT_PREFIX = shardPrefix("{shard}")
const defaultPrefix = (shard: string) => shardPrefix(shard)

/** The shards of `--shard a,b`, in the order given. */
export const shardIds = (shard: string): ReadonlyArray<string> => shard.split(",")

/** Every shard this process runs, with the key prefix of its objects and its PVE connection. */
export const shardTargets = (start: ServerStartOptions): ReadonlyArray<{ readonly shard: string; readonly prefix: string; readonly proxmox: ProxmoxEnv }> =>
  shardIds(start.shard).flatMap((shard, _, shards) => {
    const proxmox = start.proxmox[shard]
    return proxmox === undefined ? [] : [{ shard, prefix: shards.length === 1 ? start.prefix : defaultPrefix(shard), proxmox }]
  })

/** The connection file of `shard` under `--proxmox-env-dir`. */
export const proxmoxEnvFile = (dir: string, shard: string) => join(dir, `${shard}.env`)

/**
 * The PVE connection of every shard: each from its own file under `--proxmox-env-dir` (every problem prefixed
 * with the file), or the environment's for a single shard. Several shards on one connection are refused: one
 * PVE cluster is one shard, and two shards' VMID allocators on one cluster would take each other's VMIDs.
 */
const proxmoxConnections = (
  flags: StartFlags,
  shards: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
  envFiles: ReadonlyMap<string, string>
): Either.Either<Record<string, ProxmoxEnv>, ReadonlyArray<string>> => {
  const dir = flags.proxmoxEnvDir
  if (dir === undefined) {
    if (shards.length > 1) {
      return Either.left([
        `--shard ${echoValue(flags.shard ?? "")} runs ${shards.length} shards, and each shard is its own PVE cluster: give --proxmox-env-dir DIR ` +
          `with one DIR/<shard>.env per shard (PROXMOX_API_URL, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET)`
      ])
    }
    return Either.map(readProxmoxEnv(env), (proxmox) => Object.fromEntries(shards.map((shard) => [shard, proxmox])))
  }
  const errors: Array<string> = []
  const connections: Record<string, ProxmoxEnv> = {}
  for (const shard of shards) {
    const text = envFiles.get(shard)
    // A file that could not be read was reported by the caller, with the reason.
    if (text === undefined) continue
    const read = readProxmoxEnvFile(text)
    if (Either.isLeft(read)) errors.push(...read.left.map((line) => `${proxmoxEnvFile(dir, shard)}: ${line}`))
    else connections[shard] = read.right
  }
  const byCluster = new Map<string, Array<string>>()
  for (const [shard, proxmox] of Object.entries(connections)) {
    const endpoint = clusterEndpointOf(proxmox.apiUrl)
    byCluster.set(endpoint, [...(byCluster.get(endpoint) ?? []), shard])
  }
  for (const [endpoint, sharing] of byCluster) {
    if (sharing.length > 1) {
      errors.push(`shards ${sharing.map((shard) => echoValue(shard)).join(", ")} all name the PVE API at ${endpoint}; one PVE cluster is one shard (their VMIDs would collide)`)
    }
  }
  return errors.length > 0 ? Either.left(errors) : Either.right(connections)
}

/**
 * Checks the start flags, the local config (if any) and the Proxmox environment; every problem is
 * returned as one line. Pure apart from what the caller passes in, so tests and the daemon share it.
 */
export const checkStartOptions = (
  flags: StartFlags,
  env: Readonly<Record<string, string | undefined>>,
  config?: ParsedShardConfig,
  /** The text of each shard's connection file, read by the caller when `flags.proxmoxEnvDir` is given. */
  envFiles: ReadonlyMap<string, string> = new Map()
): Either.Either<ServerStartOptions, ReadonlyArray<string>> => {
  const errors: Array<string> = []
  const missing = (["id", "shard", "storage", "bucket"] as const).filter((flag) => (flags[flag] ?? "").trim() === "")
  if (missing.length > 0) errors.push(`missing required flag${missing.length > 1 ? "s" : ""} ${missing.map((flag) => `--${flag}`).join(", ")}`)
  const storage = flags.storage
  if (storage !== undefined && storage !== "" && !(STORAGE_KINDS as ReadonlyArray<string>).includes(storage)) {
    errors.push(`--storage must be one of ${STORAGE_KINDS.join(", ")} (got ${echoValue(storage)})`)
  }
  const shards = flags.shard === undefined || flags.shard === "" ? [] : shardIds(flags.shard)
  for (const shard of shards) {
    const problem = identifierProblem(shard)
    if (problem !== undefined) errors.push(`--shard ${echoValue(shard)} ${problem}`)
  }
  const duplicates = [...new Set(shards.filter((shard, index) => shard !== "" && shards.indexOf(shard) !== index))]
  if (duplicates.length > 0) {
    errors.push(`--shard ${echoValue(flags.shard ?? "")} names ${duplicates.map((shard) => echoValue(shard)).join(", ")} more than once; give each shard once`)
  }
  if (flags.id !== undefined && flags.id !== "") {
    const problem = identifierProblem(flags.id)
    if (problem !== undefined) errors.push(`--id ${echoValue(flags.id)} ${problem}`)
  }
  const several = shards.length > 1
  if (several && flags.prefix !== undefined) {
    errors.push(`--prefix cannot be used with several shards: each shard keeps its objects under its own ${DEFAULT_PREFIX}`)
  }
  if (several && flags.configFile !== undefined) {
    errors.push(`--config cannot be used with several shards: each shard reads its own ${DEFAULT_PREFIX}config.jsonc from the bucket`)
  }
  if (!several && flags.prefix !== undefined) {
    // The same rule every object store applies, checked here so a bad prefix refuses the start instead of
    // failing every read of the config (which startup would retry forever).
    const problem = flags.prefix.startsWith("/") ? `must not start with "/"` : objectPrefixProblem(flags.prefix)
    if (problem !== undefined) errors.push(`--prefix ${problem} (got ${echoValue(flags.prefix)})`)
  }
  if (flags.advertiseHost !== undefined) {
    const host = flags.advertiseHost
    const asAddress = parseAddress(`${host.includes(":") ? `[${host}]` : host}:1`)
    if (host === "" || Either.isLeft(asAddress)) errors.push(`--advertise-host ${echoValue(host)} is not an IP address or hostname`)
    if (config !== undefined) {
      // Same rule as the original: the flag fills in a wildcard host, it never overrides a written one.
      for (const [name, address] of [["health_addr", config.config.shard.advertise.health], ["election_addr", config.config.shard.advertise.election]] as const) {
        if (!isWildcardHost(address.host)) {
          errors.push(`--advertise-host cannot replace shard.advertise.${name} ${echoValue(address.text)}: it already names a host`)
        }
      }
    }
  }
  if (storage === "s3") {
    const problem = s3EndpointProblem(env)
    if (problem !== undefined) errors.push(problem)
  }
  // This build drives only Proxmox, so the token is needed whatever the config says.
  const proxmox = proxmoxConnections(flags, shards.filter((shard) => identifierProblem(shard) === undefined), env, envFiles)
  if (Either.isLeft(proxmox)) errors.push(...proxmox.left)
  if (!several && config !== undefined && flags.shard !== undefined && config.config.shard.id !== flags.shard) {
    errors.push(`--shard ${echoValue(flags.shard)} does not match shard.id ${echoValue(config.config.shard.id)} in ${flags.configFile ?? "the config"}`)
  }
  if (errors.length > 0 || Either.isLeft(proxmox)) return Either.left(errors)
  const shard = flags.shard ?? ""
  return Either.right({
    storage: storage as StorageKind,
    bucket: flags.bucket ?? "",
    shard,
    id: flags.id ?? "",
    prefix: several ? DEFAULT_PREFIX : flags.prefix ?? defaultPrefix(shard),
    cachedir: flags.cachedir,
    ...(flags.advertiseHost === undefined ? {} : { advertiseHost: flags.advertiseHost }),
    ...(flags.configFile === undefined ? {} : { configFile: flags.configFile }),
    ...(config === undefined ? {} : { config }),
    proxmox: proxmox.right
  })
}

/** One line that tells an operator what the config amounts to. */
export const summarize = ({ config, warnings }: ParsedShardConfig): string => {
  const groups = desiredGroups(config)
  const tenants = new Set(groups.map((group) => group.tenant)).size
  const vms = groups.reduce((sum, group) => sum + group.size, 0)
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`
  return `cluster ${config.cluster.id}, shard ${config.shard.id} (${config.shard.infra.provider}): ` +
    `${plural(Object.keys(config.templates).length, "template")}, ${plural(tenants, "tenant")}, ` +
    `${plural(groups.length, "group")}, ${plural(vms, "desired VM")}, ${plural(warnings.length, "warning")}`
}

/** A local shard config: a regular file of at most the size any JSONC config may have, in UTF-8. */
const readConfigFile = (flag: string, path: string) =>
  readInputFile({ flag, path, what: "a shard config", maxBytes: MAX_JSONC_BYTES }).pipe(
    Effect.flatMap((bytes) => decodeUtf8({ flag, path }, bytes))
  )

/** A connection file holds three short variables; anything much larger is not one. */
const MAX_ENV_FILE_BYTES = 64 * 1024

/** The text of `shard`'s connection file under `--proxmox-env-dir`: owner-only, bounded, UTF-8. */
const readConnectionFile = (envDir: string, shard: string) => {
  const path = proxmoxEnvFile(envDir, shard)
  return readInputFile({ flag: "--proxmox-env-dir", path, what: "a PVE connection file", maxBytes: MAX_ENV_FILE_BYTES, ownerOnly: true }).pipe(
    Effect.flatMap((bytes) => decodeUtf8({ flag: "--proxmox-env-dir", path }, bytes))
  )
}

/** Every problem as `✗ path: message`, control characters of the config's keys and values made visible. */
const printProblems = (problems: ReadonlyArray<Problem>) =>
  Effect.forEach(problems, (problem) => Console.error(`✗ ${escapeControl(formatProblem(problem))}`), { discard: true })


const validateFile = (path: string) =>
  Effect.gen(function* () {
    const text = yield* readConfigFile("--validate", path)
    const parsed = parseShardConfig(text)
    if (Either.isLeft(parsed)) {
      yield* printProblems(parsed.left.problems)
      yield* Console.error(`✗ ${escapeControl(path)}: ${parsed.left.problems.length} problem${parsed.left.problems.length === 1 ? "" : "s"}; configuration is not valid`)
      return yield* exitWith(1)
    }
    yield* Console.log(`✓ Configuration is valid (${escapeControl(path)})`)
    yield* Console.log(escapeControl(summarize(parsed.right)))
    yield* Effect.forEach(parsed.right.warnings, (warning) => Console.log(`⚠ ${escapeControl(formatProblem(warning))}`), { discard: true })
  })

/** `--validate` with no file (the original's sentinel): validate the bucket's config. */
const REMOTE_VALIDATE = ":remote:"

const validateRemote = (
  storage: "s3" | "gcs" | "file" | undefined,
  bucket: string | undefined,
  shard: string | undefined,
  prefix: string | undefined,
  envDir: string | undefined
) =>
  Effect.gen(function* () {
    const missing = [["--storage", storage], ["--bucket", bucket], ["--shard", shard]].filter(([, value]) => value === undefined || value === "").map(([flag]) => flag)
    if (missing.length > 0) {
      yield* Console.error(`✗ --validate without a file reads the bucket: missing ${missing.join(", ")}`)
      return yield* exitWith(1)
    }
    const endpoint = storage === "s3" ? s3EndpointProblem(process.env) : undefined
    if (endpoint !== undefined) {
      yield* Console.error(`✗ ${escapeControl(endpoint)}`)
      return yield* exitWith(1)
    }
    const { validateStoredConfig } = yield* loadModule(() => import("../admin/validateConfig.js"))
    const { scopeStore } = yield* loadModule(() => import("../layers/ObjectStoreScoped.js"))
    const { ObjectStore } = yield* loadModule(() => import("../services/ObjectStore.js"))
    const where = `${prefix ?? defaultPrefix(shard ?? "")}${CONFIG_KEY}`
    const result = yield* Effect.gen(function* () {
      const store = scopeStore(yield* ObjectStore, prefix ?? defaultPrefix(shard ?? ""))
      return yield* validateStoredConfig(shard).pipe(Effect.provideService(ObjectStore, store))
    }).pipe(Effect.provide(objectStoreLayer({ storage: storage ?? "file", bucket: bucket ?? "" })), Effect.either)
    if (Either.isLeft(result)) {
      yield* Console.error(`✗ cannot read ${escapeControl(where)}: ${escapeControl(result.left.message)}`)
      return yield* exitWith(1)
    }
    if (!result.right.valid) {
      yield* Effect.forEach(result.right.problems, (problem) => Console.error(`✗ ${escapeControl(problem)}`), { discard: true })
      yield* Console.error(`✗ ${escapeControl(where)}: remote shard configuration is not valid`)
      return yield* exitWith(1)
    }
    yield* Console.log(`✓ Remote shard configuration is valid (${escapeControl(where)}): ${result.right.groups} groups, ${result.right.desiredVms} desired VMs`)
    yield* Effect.forEach(result.right.warnings, (warning) => Console.log(`⚠ ${escapeControl(warning)}`), { discard: true })
    yield* preflightRemote(storage ?? "file", bucket ?? "", shard ?? "", prefix ?? defaultPrefix(shard ?? ""), envDir)
  })

/**
 * After a valid bucket config: the leader's preflight against PVE, with the daemon's `PROXMOX_*` variables.
 * Without a token it is skipped (said on stderr), so a config can still be checked where PVE is out of reach.
 * Errors on stderr, warnings on stdout; an error exits 2 (the config is valid, the cluster cannot run it as is).
 */
const preflightRemote = (storage: StorageKind, bucket: string, shard: string, prefix: string, envDir: string | undefined) =>
  Effect.gen(function* () {
    if (envDir === undefined && (process.env["PROXMOX_TOKEN_ID"] ?? "") === "" && (process.env["PROXMOX_TOKEN_SECRET"] ?? "") === "") {
      yield* Console.error("⚠ preflight against PVE skipped: PROXMOX_TOKEN_ID and PROXMOX_TOKEN_SECRET are not set")
      return
    }
    const proxmox = envDir === undefined
      ? readProxmoxEnv(process.env)
      : yield* readConnectionFile(envDir, shard).pipe(
        Effect.map((text) => Either.mapLeft(readProxmoxEnvFile(text), (lines) => lines.map((line) => `${proxmoxEnvFile(envDir, shard)}: ${line}`))),
        Effect.catchAll((error) => Effect.succeed(Either.left([error.message])))
      )
    if (Either.isLeft(proxmox)) {
      yield* Effect.forEach(proxmox.left, (line) => Console.error(`✗ ${escapeControl(line)}`), { discard: true })
      return yield* exitWith(1)
    }
    const { loadConfig } = yield* loadModule(() => import("../shard/shardConfig.js"))
    const { scopeStore } = yield* loadModule(() => import("../layers/ObjectStoreScoped.js"))
    const { ObjectStore } = yield* loadModule(() => import("../services/ObjectStore.js"))
    const { preflightOnce } = yield* loadModule(() => import("../app/preflightOnce.js"))
    const { formatFinding, summarizeFindings } = yield* loadModule(() => import("../domain/pve/preflight.js"))
    const config = yield* Effect.gen(function* () {
      const store = scopeStore(yield* ObjectStore, prefix)
      return yield* loadConfig({ _tag: "Store", key: CONFIG_KEY, shard }).pipe(Effect.provideService(ObjectStore, store))
    }).pipe(Effect.provide(objectStoreLayer({ storage, bucket })), Effect.either)
    if (Either.isLeft(config)) {
      yield* Console.error(`✗ cannot read ${escapeControl(`${prefix}${CONFIG_KEY}`)} again for the preflight: ${escapeControl(config.left.message)}`)
      return yield* exitWith(1)
    }
    const report = yield* preflightOnce(config.right.config, proxmox.right).pipe(Effect.either)
    if (Either.isLeft(report)) {
      yield* Console.error(`✗ ${escapeControl(report.left.message)}`)
      return yield* exitWith(1)
    }
    const { findings, version } = report.right
    const errors = findings.filter((f) => f.severity === "error")
    yield* Console.log(`preflight against PVE ${escapeControl(version ?? "(no answer)")} at ${escapeControl(proxmox.right.apiUrl)}: ${summarizeFindings(findings)}`)
    yield* Effect.forEach(findings, (f) => (f.severity === "error" ? Console.error : Console.log)(escapeControl(formatFinding(f))), { discard: true })
    if (errors.length > 0) {
      yield* Console.error(`✗ preflight: ${summarizeFindings(errors)}; the cluster cannot run this config as it is`)
      return yield* exitWith(2)
    }
  })

const text = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), Options.optional)

const options = {
  validate: text(
    "validate",
    "Validate this local shard config file (JSONC), print every problem as `✗ path: message`, and exit (0 valid, 1 not); " +
      "with no file, validate the shard's config in the bucket (with its dynamic groups; needs --storage --bucket --shard) and, " +
      "when PROXMOX_TOKEN_ID/PROXMOX_TOKEN_SECRET are set (or --proxmox-env-dir holds the shard's file), run the leader's preflight against PVE: its version, the token's privileges " +
      "(each missing one with its ACL path), per node the StoragePool (images content) and cloud_init_iso_storage (iso content; a warning " +
      "when not shared), the subnet pools' bridges and every group's template — errors (✗, stderr) exit 2, warnings (⚠) do not"
  ),
  storage: Options.choice("storage", STORAGE_KINDS).pipe(
    Options.withDescription("Object storage of the shard: s3 (also S3-compatible: Ceph RGW, SeaweedFS; AWS_* env), gcs, or file (a directory)"),
    Options.optional
  ),
  bucket: text("bucket", "Bucket name (for --storage file: the base directory)"),
  shard: text("shard", "Shard ID (one per Proxmox VE cluster): lowercase letters, digits, single '-', at most 32 characters; several separated by commas (a,b) run in one process, each on its own and restarted with backoff when it fails"),
  id: text("id", "This server's unique ID among the shard's replicas (same rules as --shard); a second process started with an ID that a live one uses exits with one line"),
  prefix: text("prefix", "Key prefix of the shard's objects in the bucket (default shard/{shard}/)"),
  cachedir: Options.text("cachedir").pipe(
    Options.withDescription("Local cache directory (default ./cache)"),
    Options.withDefault("./cache")
  ),
  advertiseHost: text("advertise-host", "Host advertised for shard.advertise.health_addr and election_addr when the config leaves their host empty"),
  encryptionKeyFile: text(
    "encryption-key-file",
    "Turn agent registration on with the cluster PKI's 32-byte encryption key from this file (64 hex characters or base64; " +
      "or set NSTANCE_ENCRYPTION_KEY, not both). Without either, registration is off and an instance counts as ready once its VM runs"
  ),
  adminTokenFile: text(
    "admin-token-file",
    "Serve the admin endpoint (shard.bind.operator_addr) to callers presenting the token in this file (at least 16 characters; " +
      "or set NSTANCE_ADMIN_TOKEN, not both). Without either, the admin endpoint is not started"
  ),
  proxmoxEnvDir: text(
    "proxmox-env-dir",
    "Run each shard on its own PVE cluster: the connection of shard S is read from DIR/S.env (PROXMOX_API_URL, PROXMOX_TOKEN_ID, " +
      "PROXMOX_TOKEN_SECRET as KEY=VALUE lines; mode 0600, as it holds the token secret) instead of the environment. Needed with several " +
      "shards (one cluster is one shard); two shards naming one API URL are refused"
  ),
  config: text("config", "Read the shard config from this local file instead of {prefix}config.jsonc in the bucket (development)"),
  embedded: Options.boolean("embedded").pipe(Options.withDescription(
    "Run on the embedded default instead: a file store in a temporary directory and the Proxmox VE simulator " +
      "(3 nodes, loopback), with examples/single-cluster.jsonc (or --config) as the shard config. What `npm start` runs."
  )),
  logFormat: Options.choice("log-format", ["text", "json"] as const).pipe(
    Options.withDescription("Log lines as JSON objects (default when stdout is not a terminal) or as readable text"),
    Options.optional
  )
}

/**
 * The daemon, the simulator and the PKI are loaded only when the command gets that far: `--version`,
 * `--help`, `--validate` and a refused start never parse them (the bundle keeps them in their own chunks).
 */
const loadModule = <M>(load: () => Promise<M>) => Effect.promise(load)

export const serverCommand = withBareFlag(Command.make("nstance-server", options, (flags) =>
  Effect.gen(function* () {
    if (Option.isSome(flags.validate) && flags.validate.value === REMOTE_VALIDATE) {
      return yield* validateRemote(
        Option.getOrUndefined(flags.storage),
        Option.getOrUndefined(flags.bucket),
        Option.getOrUndefined(flags.shard),
        Option.getOrUndefined(flags.prefix),
        Option.getOrUndefined(flags.proxmoxEnvDir)
      )
    }
    if (Option.isSome(flags.validate)) return yield* validateFile(flags.validate.value)
    // The embedded default is a demo for a person at a terminal; a real daemon's logs usually go to a collector.
    const logger = loggerLayer(Option.getOrElse(flags.logFormat, () => (flags.embedded ? "text" : defaultLogFormat())))
    const configFile = Option.getOrUndefined(flags.config)
    if (flags.embedded) {
      const { runEmbedded } = yield* loadModule(() => import("../app/embedded.js"))
      return yield* Effect.flatMap(handleDaemonSignals(), (reloadRequests) => runEmbedded({ ...(configFile === undefined ? {} : { configFile }), reloadRequests })).pipe(
        Effect.scoped,
        Effect.provide(logger)
      )
    }
    let config: ParsedShardConfig | undefined
    // With several shards --config is refused below, so the file is not even read.
    const several = shardIds(Option.getOrElse(flags.shard, () => "")).length > 1
    if (configFile !== undefined && !several) {
      const parsed = parseShardConfig(yield* readConfigFile("--config", configFile))
      if (Either.isLeft(parsed)) {
        yield* printProblems(parsed.left.problems)
        return yield* exitWith(1)
      }
      config = parsed.right
    }
    const envDir = Option.getOrUndefined(flags.proxmoxEnvDir)
    const envFiles = new Map<string, string>()
    if (envDir !== undefined) {
      // Every shard's file is read before any is judged, so one start lists every unreadable file at once.
      const unreadable: Array<string> = []
      for (const shard of shardIds(Option.getOrElse(flags.shard, () => "")).filter((shard) => identifierProblem(shard) === undefined)) {
        const read = yield* Effect.either(readConnectionFile(envDir, shard))
        if (Either.isLeft(read)) unreadable.push(read.left.message)
        else envFiles.set(shard, read.right)
      }
      if (unreadable.length > 0) {
        yield* Effect.forEach(unreadable, (line) => Console.error(`✗ ${escapeControl(line)}`), { discard: true })
        return yield* exitWith(1)
      }
    }
    const checked = checkStartOptions({
      storage: Option.getOrUndefined(flags.storage),
      bucket: Option.getOrUndefined(flags.bucket),
      shard: Option.getOrUndefined(flags.shard),
      id: Option.getOrUndefined(flags.id),
      prefix: Option.getOrUndefined(flags.prefix),
      cachedir: flags.cachedir,
      advertiseHost: Option.getOrUndefined(flags.advertiseHost),
      configFile,
      ...(envDir === undefined ? {} : { proxmoxEnvDir: envDir })
    }, process.env, config, envFiles)
    if (Either.isLeft(checked)) {
      yield* Effect.forEach(checked.left, (line) => Console.error(`✗ ${escapeControl(line)}`), { discard: true })
      return yield* exitWith(1)
    }
    const start = checked.right
    // Agent registration is on when a key is given; a key that is unreadable or not 32 bytes refuses the start.
    const keyFile = Option.getOrUndefined(flags.encryptionKeyFile)
    const envKey = process.env["NSTANCE_ENCRYPTION_KEY"]
    let encryptionKey: Uint8Array | undefined
    if (keyFile !== undefined || (envKey !== undefined && envKey !== "")) {
      const { encryptionKeyFrom } = yield* loadModule(() => import("../layers/ClusterPkiStore.js"))
      const key = yield* Effect.either(encryptionKeyFrom(process.env, keyFile))
      if (Either.isLeft(key)) {
        yield* Console.error(`✗ ${escapeControl(key.left.message)}`)
        return yield* exitWith(1)
      }
      encryptionKey = key.right
    }
    const adminToken = yield* adminTokenFrom(process.env, Option.getOrUndefined(flags.adminTokenFile)).pipe(Effect.either)
    if (Either.isLeft(adminToken)) {
      yield* Console.error(`✗ ${escapeControl(adminToken.left.message)}`)
      return yield* exitWith(1)
    }
    // One store layer per shard: each daemon builds it in its own scope, so one shard's store trouble (or a
    // restart) never reaches the others.
    const store = objectStoreLayer({ storage: start.storage, bucket: start.bucket })
    const { runShards } = yield* loadModule(() => import("../app/supervisor.js"))
    return yield* Effect.flatMap(handleDaemonSignals(), (reloadRequests) => runShards(shardTargets(start).map(({ shard, prefix, proxmox }) => ({
      shard,
      settings: {
        id: start.id,
        ...(start.advertiseHost === undefined ? {} : { advertiseHost: start.advertiseHost }),
        prefix,
        store,
        config: start.config !== undefined && start.configFile !== undefined
          ? { _tag: "Local", parsed: start.config, path: start.configFile }
          : { _tag: "Store", key: CONFIG_KEY, shard },
        proxmox,
        cachedir: start.cachedir,
        ...(encryptionKey === undefined ? {} : { encryptionKey }),
        ...(Option.isNone(adminToken.right) ? {} : { adminToken: adminToken.right.value }),
        reloadRequests
      }
    })))).pipe(Effect.scoped, Effect.provide(logger))
  })
).pipe(Command.withDescription(
  "Nstance server for Proxmox VE: keeps groups of VMs at their desired size. Start with --storage --bucket --shard --id " +
    "(env PROXMOX_API_URL, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET; with several shards, each shard's own from --proxmox-env-dir), try it with --embedded (file store + simulator), " +
    "or check a config with --validate FILE. The leader keeps every group at its size: it creates, replaces and deletes VMs. " +
    "It first runs a preflight against PVE (again when the config's needs change, and every 5 min): PVE version, the token's privileges, " +
    "per node the storages, bridges and templates the groups need; findings are logged and shown by /readyz and nstance-admin status, " +
    "and placement never picks a node that lacks a group's template, storage or bridge. " +
    "With NSTANCE_ENCRYPTION_KEY or --encryption-key-file, VMs' agents register (nonce in the cloud-init ISO, endpoint on " +
    "shard.bind.registration_addr) and an instance that does not register or stops reporting health is replaced. " +
    "With NSTANCE_ADMIN_TOKEN or --admin-token-file and the encryption key, every replica serves the admin endpoint (nstance-admin status, groups, …) " +
    "on shard.bind.operator_addr; the agent and admin endpoints speak TLS 1.3 only, with certificates from the cluster CA (pki/<cluster>/ca.crt). " +
    "Signals: SIGINT, SIGTERM and SIGQUIT resign the lease and stop; SIGHUP re-reads the shard config now; SIGUSR1 and SIGUSR2 are ignored (no debugger is opened)."
)), "--validate", REMOTE_VALIDATE)
