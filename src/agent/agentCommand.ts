/**
 * The `nstance-agent` command: the agent on a VM nstance created. It registers once with the single-use
 * nonce from its user-data (a fresh Ed25519 key pair; the private key never leaves the VM), keeps the
 * key and certificate in `--state-dir` so a restart carries on without a nonce, then holds one agent
 * channel open (a WebSocket authenticated by that certificate) over which it reports health on an
 * interval and renews the certificate when the server said to. A refusal (a bad, expired or reused nonce)
 * is one line on stderr and exit status 1; an endpoint that is away or not the leader is retried.
 */
import { networkInterfaces, hostname as osHostname } from "node:os"
import { Command, Options } from "@effect/cli"
import type { FileSystem } from "@effect/platform"
import { Clock, Duration, Effect, Either, Option, Redacted, Ref, Schedule, Stream } from "effect"
import { defaultLogFormat, loggerLayer } from "../cli/logging.js"
import { formatDuration, parseDuration } from "../domain/duration.js"
import { type AgentClient, AgentTransportError, makeAgentClient, type RegisterAgentError, tlsTransport } from "./AgentClient.js"
import { makeFilesDir } from "./filesDir.js"
import { DEFAULT_SETTINGS_FILE, readRegistration, type RegistrationSource } from "./registrationSource.js"
import { AgentError, certificateNotAfter, loadIdentity, saveIdentity, type StoredIdentity } from "./stateDir.js"

export const DEFAULT_STATE_DIR = "/var/lib/nstance-agent"
export const DEFAULT_HEALTH_INTERVAL = "20s"
export const DEFAULT_REGISTER_TIMEOUT = "10m"
/** How soon a file stream that ended is opened again (the original agent's 2 seconds). */
export const FILES_RETRY = Duration.seconds(2)

export interface AgentRunSettings {
  readonly stateDir: string
  /** Where the nonce is; read only when the state directory holds no identity yet. */
  readonly source: RegistrationSource
  /** Overrides the registration URL of the settings. */
  readonly url: string | undefined
  /** Overrides the agent channel URL the registration answer named. */
  readonly agentUrl: string | undefined
  readonly ips: { readonly ipv4?: string | undefined; readonly ipv6?: string | undefined }
  readonly hostname: string | undefined
  readonly healthEvery: Duration.Duration
  /** How long registration keeps retrying an endpoint that is away or has no leader. */
  readonly registerWithin: Duration.Duration
  /** Register if needed, report health once, renew if due, and exit. */
  readonly once: boolean
  /** Where the VM's files go (`templates.*.files`); absent: the agent asks for none. */
  readonly filesDir?: string | undefined
}

/** Registration against an endpoint that is away or not the leader: 1, 2, 4 … then every 30 seconds. */
export const registerRetry = Schedule.exponential("1 second", 2).pipe(Schedule.union(Schedule.spaced("30 seconds")))

/** The agent's beat: a health report (and the renewal when due) every `every`. */
export const healthBeat = (every: Duration.Duration) => Schedule.spaced(every)

const mayPass = (error: RegisterAgentError) => error._tag === "AgentTransportError" || error._tag === "NotLeader"

/** The error without the endpoint's URL, which the caller's line names already. */
const reasonOf = (error: { readonly _tag: string; readonly message: string }) =>
  error instanceof AgentTransportError ? error.reason : error.message

/** The first non-internal address of each family (IPv6 link-local skipped): what the VM is reached at. */
export const detectIps = (): { ipv4?: string; ipv6?: string } => {
  const out: { ipv4?: string; ipv6?: string } = {}
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.internal) continue
      if (address.family === "IPv4" && out.ipv4 === undefined) out.ipv4 = address.address
      if (address.family === "IPv6" && out.ipv6 === undefined && !address.address.toLowerCase().startsWith("fe80:")) out.ipv6 = address.address
    }
  }
  return out
}

/** The endpoint URL, refused unless it is `https://`: the agent sends its nonce and reports over TLS only. */
const httpsOnly = (url: string): Effect.Effect<string, AgentError> =>
  url.startsWith("https://")
    ? Effect.succeed(url)
    : Effect.fail(new AgentError({ message: `${url} is not an https:// URL; the agent speaks to its shard over TLS only` }))

const register = (settings: AgentRunSettings) =>
  Effect.gen(function* () {
    const registration = yield* readRegistration(settings.source)
    const url = settings.url ?? registration.registrationUrl
    const client = yield* makeAgentClient(yield* httpsOnly(url), tlsTransport(registration.caPem))
    const askedAt = yield* Clock.currentTimeMillis
    const identity = yield* client.register({
      nonce: Redacted.make(registration.nonce),
      ips: settings.ips,
      ...(settings.hostname === undefined ? {} : { hostname: settings.hostname })
    }).pipe(
      Effect.tapError((error) => (mayPass(error) ? Effect.logWarning(`registration at ${client.url}: ${reasonOf(error)}; retrying`) : Effect.void)),
      Effect.retry({ schedule: registerRetry.pipe(Schedule.upTo(settings.registerWithin)), while: mayPass }),
      Effect.mapError((error) =>
        new AgentError({ message: `registration at ${client.url} ${mayPass(error) ? "failed" : "refused"}: ${reasonOf(error)}` }))
    )
    // The renew point counts from before the request: the certificate was issued no earlier than that.
    const stored: StoredIdentity = { identity, url: client.url, renewAt: askedAt + identity.renewAfterSeconds * 1000 }
    yield* saveIdentity(settings.stateDir, stored)
    yield* Effect.logInfo(`registered as instance ${identity.instanceId} at ${client.url}; key and certificate in ${settings.stateDir}`)
    return stored
  })

const resume = (settings: AgentRunSettings, stored: StoredIdentity) =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const notAfter = certificateNotAfter(stored.identity.certificatePem)
    if (Option.isNone(notAfter)) return yield* new AgentError({ message: `${settings.stateDir}: the stored certificate does not parse` })
    if (notAfter.value.getTime() <= now) {
      return yield* new AgentError({
        message: `${settings.stateDir}: the certificate of instance ${stored.identity.instanceId} expired at ${notAfter.value.toISOString()}; ` +
          "the nonce was single-use, so this VM cannot register again (nstance replaces it)"
      })
    }
    yield* Effect.logInfo(`instance ${stored.identity.instanceId}: identity from ${settings.stateDir}, certificate valid until ${notAfter.value.toISOString()}`)
    return stored
  })

/** One beat: renew when due (a failure keeps the current certificate until the next beat), then report health. */
const beat = (settings: AgentRunSettings, client: AgentClient, held: Ref.Ref<StoredIdentity>) =>
  Effect.gen(function* () {
    const current = yield* Ref.get(held)
    const now = yield* Clock.currentTimeMillis
    if (now >= current.renewAt) {
      const renewed = yield* Effect.either(client.renew(current.identity))
      if (Either.isRight(renewed)) {
        const next: StoredIdentity = { identity: renewed.right, url: client.url, renewAt: now + renewed.right.renewAfterSeconds * 1000 }
        yield* saveIdentity(settings.stateDir, next)
        yield* Ref.set(held, next)
        yield* Effect.logInfo(`certificate renewed; next renewal in ${renewed.right.renewAfterSeconds} s`)
      } else {
        yield* Effect.logWarning(`certificate renewal at ${client.url} failed: ${reasonOf(renewed.left)}; the current one is kept and renewal retried`)
      }
    }
    return yield* client.reportHealth((yield* Ref.get(held)).identity)
  })

/** Runs the agent until interrupted (or, with `once`, for one beat). */
export const runAgent = (settings: AgentRunSettings): Effect.Effect<void, AgentError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const stored = yield* loadIdentity(settings.stateDir)
    const loaded = Option.isSome(stored) ? yield* resume(settings, stored.value) : yield* register(settings)
    const agentUrl = settings.agentUrl ?? loaded.identity.agentUrl
    if (!agentUrl.startsWith("wss://")) {
      return yield* new AgentError({
        message: agentUrl === ""
          ? `${settings.stateDir}: the identity names no agent channel (written by an earlier build); pass --agent-url wss://host:port/agent`
          : `${agentUrl} is not a wss:// URL; the agent channel is TLS only`
      })
    }
    const start: StoredIdentity = { ...loaded, identity: { ...loaded.identity, agentUrl } }
    const held = yield* Ref.make(start)
    // Trusts the CA the registration answer carried (over a connection the user-data's CA authenticated);
    // the channel it opens stays open between beats.
    const client = yield* makeAgentClient(yield* httpsOnly(start.url), tlsTransport(start.identity.caPem))
    const filesDir = settings.filesDir
    if (filesDir !== undefined && !settings.once) {
      const files = yield* makeFilesDir(filesDir, (name, key) => Effect.flatMap(Ref.get(held), (current) => client.submitKey(current.identity, name, key))).pipe(
        Effect.mapError((error) => new AgentError({ message: error.message }))
      )
      // The stream lasts as long as the channel; after a failure (a renewal supersedes the certificate it was
      // opened with, a leader changes) it is opened again with the certificate held then.
      yield* Effect.forkScoped(
        Effect.flatMap(Ref.get(held), (current) => client.receiveFiles(current.identity).pipe(Stream.runForEach(files.apply))).pipe(
          Effect.catchAll((error) => Effect.logWarning(`file stream at ${client.url}: ${"reason" in error && typeof error.reason === "string" ? error.reason : error.message}; reopened in ${formatDuration(FILES_RETRY)}`)),
          Effect.zipRight(Effect.sleep(FILES_RETRY)),
          Effect.forever
        )
      )
    }
    if (settings.once) {
      return yield* beat(settings, client, held).pipe(
        Effect.mapError((error) => new AgentError({ message: `health report at ${client.url} failed: ${reasonOf(error)}` }))
      )
    }
    yield* beat(settings, client, held).pipe(
      Effect.catchAll((error) => Effect.logWarning(`health report at ${client.url} failed: ${reasonOf(error)}`)),
      Effect.repeat(healthBeat(settings.healthEvery))
    )
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------------------
// The command line

const text = (name: string, description: string) => Options.text(name).pipe(Options.withDescription(description), Options.optional)

const options = {
  stateDir: Options.text("state-dir").pipe(
    Options.withDescription(`Where the key, certificate and CA are kept (created 0700; default ${DEFAULT_STATE_DIR}). Once it holds an identity, no nonce is needed`),
    Options.withDefault(DEFAULT_STATE_DIR)
  ),
  settings: text("settings", `The agent settings file cloud-init writes from the user-data (default ${DEFAULT_SETTINGS_FILE}, unless NSTANCE_AGENT_NONCE is set)`),
  userData: text("user-data", "Read the nonce from this cloud-init user-data file instead (e.g. /var/lib/cloud/instance/user-data.txt)"),
  seed: text("seed", "Read the nonce from the NoCloud seed instead: the CD-ROM device or ISO image (e.g. /dev/sr0), or a directory where it is mounted"),
  url: text("url", "Register at this URL instead of the one in the settings (https://host:port/agent; the server must hold a certificate from the cluster CA)"),
  agentUrl: text("agent-url", "Report over this agent channel instead of the one the registration answer named (wss://host:port/agent, the shard's agent_addr)"),
  ipv4: text("ipv4", "Private IPv4 address to register (default: the first non-loopback one)"),
  ipv6: text("ipv6", "Private IPv6 address to register (default: the first global one)"),
  hostname: text("hostname", "Hostname to register (default: the system's)"),
  healthInterval: Options.text("health-interval").pipe(
    Options.withDescription(`Interval of health reports, e.g. 20s (default ${DEFAULT_HEALTH_INTERVAL}; keep it below the shard's health_check_interval)`),
    Options.withDefault(DEFAULT_HEALTH_INTERVAL)
  ),
  registerTimeout: Options.text("register-timeout").pipe(
    Options.withDescription(`How long to keep retrying an endpoint that is away or has no leader (default ${DEFAULT_REGISTER_TIMEOUT})`),
    Options.withDefault(DEFAULT_REGISTER_TIMEOUT)
  ),
  once: Options.boolean("once").pipe(Options.withDescription("Register if needed, report health once (renewing if due) and exit")),
  filesDir: text(
    "files-dir",
    "Write the VM's files (the template's files: certificates, env, json, string, secret and storage files) into this directory, each " +
      "atomically with its configured mode, and remove those the config drops; keys for certificate files are made here as <name>.key (0600)"
  ),
  logFormat: Options.choice("log-format", ["text", "json"] as const).pipe(
    Options.withDescription("Log lines as JSON objects (default when stdout is not a terminal) or as readable text"),
    Options.optional
  )
}

const durationFlag = (flag: string, value: string): Either.Either<Duration.Duration, string> =>
  Either.flatMap(
    Either.mapLeft(parseDuration(value), (problem) => `--${flag}: ${problem}`),
    (duration) => (Duration.isZero(duration) ? Either.left(`--${flag}: must be greater than zero`) : Either.right(duration))
  )

/** The registration source from the flags and environment; at most one of the file flags may be given. */
export const sourceOf = (
  flags: { readonly settings: Option.Option<string>; readonly userData: Option.Option<string>; readonly seed: Option.Option<string> },
  url: string | undefined,
  env: Readonly<Record<string, string | undefined>>
): Either.Either<RegistrationSource, string> => {
  const given: Array<RegistrationSource> = [
    ...Option.toArray(Option.map(flags.settings, (path): RegistrationSource => ({ _tag: "SettingsFile", path }))),
    ...Option.toArray(Option.map(flags.userData, (path): RegistrationSource => ({ _tag: "UserData", path }))),
    ...Option.toArray(Option.map(flags.seed, (path): RegistrationSource => ({ _tag: "Seed", path })))
  ]
  if (given.length > 1) return Either.left("give at most one of --settings, --user-data and --seed")
  if (given[0] !== undefined) return Either.right(given[0])
  const nonce = env["NSTANCE_AGENT_NONCE"]
  if (nonce !== undefined && nonce !== "") return Either.right({ _tag: "Env", nonce, url: url ?? env["NSTANCE_AGENT_URL"], caFile: env["NSTANCE_AGENT_CA_FILE"] })
  return Either.right({ _tag: "SettingsFile", path: DEFAULT_SETTINGS_FILE })
}

export const agentCommand = Command.make("nstance-agent", options, (flags) =>
  Effect.gen(function* () {
    const url = Option.getOrUndefined(flags.url)
    const checked = Either.all({
      source: sourceOf(flags, url, process.env),
      healthEvery: durationFlag("health-interval", flags.healthInterval),
      registerWithin: durationFlag("register-timeout", flags.registerTimeout)
    })
    if (Either.isLeft(checked)) return yield* new AgentError({ message: checked.left })
    const detected = detectIps()
    const ipv4 = Option.getOrElse(flags.ipv4, () => detected.ipv4)
    const ipv6 = Option.getOrElse(flags.ipv6, () => detected.ipv6)
    const settings: AgentRunSettings = {
      stateDir: flags.stateDir,
      ...checked.right,
      url,
      agentUrl: Option.getOrUndefined(flags.agentUrl),
      ips: { ...(ipv4 === undefined ? {} : { ipv4 }), ...(ipv6 === undefined ? {} : { ipv6 }) },
      hostname: Option.getOrElse(flags.hostname, () => osHostname()),
      once: flags.once,
      filesDir: Option.getOrUndefined(flags.filesDir)
    }
    yield* Effect.logDebug(`health reports every ${formatDuration(settings.healthEvery)}`)
    return yield* runAgent(settings).pipe(Effect.provide(loggerLayer(Option.getOrElse(flags.logFormat, defaultLogFormat))))
  })).pipe(Command.withDescription(
  "Registers this VM with its nstance shard over TLS 1.3, trusting only the cluster CA: the nonce and the CA come from " +
  "agent.json (written by cloud-init), the user-data, the NoCloud seed, or NSTANCE_AGENT_NONCE with NSTANCE_AGENT_URL and " +
  "NSTANCE_AGENT_CA_FILE. Then holds the agent channel open (a WebSocket over TLS 1.3 authenticated by the VM's client certificate) " +
  "to report health every --health-interval and renew its certificate when due, and, with --files-dir, keeps the VM's files there as the shard sends them."
))
