/**
 * Decode and validate a shard config in one pass that reports every problem at once, each as
 * `path: message`. Schema checks the JSON shape; the rules here (identifiers, durations, addresses,
 * references, subnet pools, Proxmox args) run over the decoded shape and keep going after a failure.
 */
import { isIPv4, isIPv6 } from "node:net"
import { Duration, Either, ParseResult, Schema } from "effect"
import { formatDuration, parseDuration } from "../duration.js"
import { checkKeys, join, shardConfigKeys } from "./keys.js"
import type { Problem } from "./problems.js"
import { checkProxmoxArg, parseInstanceType, parseSubnetId, STORAGE_ID } from "./proxmox.js"
import { emptyRecord, own, recordOf } from "./records.js"
import { type JsonObject, type RawAddresses, type RawLeaderElection, RawShardConfig, type RawUserdata } from "./schema.js"
import type { Address, Addresses, Expiry, Group, LeaderElection, ShardConfig, Template, Userdata } from "./types.js"
import { argsTemplateProblems, userdataProblems } from "./userdata.js"
import { resolveVmSpec } from "./vmSpec.js"
import { infraHash } from "./infraHash.js"
import { mergeArgs } from "./merge.js"
import { hasActions } from "../goTemplate/index.js"
import { certificateTemplatesOf, instanceFilesOf, type SecretsConfig, secretsConfigOf, storageRenderProblems } from "./files.js"
import { templateData } from "../shard/templateData.js"
import { DEFAULT_VMID_RANGE, formatVmidRange, parseVmidRange, type VmidRange } from "../vmids.js"

export const DEFAULTS = {
  frequentInterval: Duration.seconds(5),
  infrequentInterval: Duration.seconds(30),
  leaderTimeout: Duration.seconds(15),
  gcInterval: Duration.minutes(2),
  registrationTimeout: Duration.minutes(5),
  deletedRecordRetention: Duration.minutes(30),
  requestTimeout: Duration.seconds(30),
  createRateLimit: Duration.zero,
  healthCheckInterval: Duration.seconds(60),
  defaultDrainTimeout: Duration.minutes(5),
  cloudInitIsoStorage: "local",
  /** Without a `certificates.agent` entry, as the original issues at registration. */
  agentCertificateTtl: Duration.hours(24),
  /** A `certificates.agent` entry without `ttl` (or with 0): the original's default for any present entry. */
  certificateTemplateTtl: Duration.hours(8760),
  /** `shard.limits.max_groups`: groups of config.jsonc and groups.jsonc together. */
  maxGroups: 1_000,
  /** `shard.limits.max_instances`: the sum of every group's size. */
  maxInstances: 5_000
} as const

/**
 * The shortest interval each loop accepts. Below it a typo (`1ms` for `1m`) turns a loop into a flood: a GC
 * pass lists the cluster and the ISO storage of every node (a few PVE calls each), a lease renewal reads and
 * conditionally writes `leader.json`, a liveness pass runs at the GC interval with a grace of three health
 * intervals, and a PVE request shorter than a second times out before most answers come. The reconcile
 * period (30 s) and the config poll (5 s) are fixed in `src/shard/policies.ts`, not configurable.
 */
export const MIN_INTERVALS = {
  gcInterval: Duration.seconds(1),
  frequentInterval: Duration.seconds(1),
  infrequentInterval: Duration.seconds(1),
  healthCheckInterval: Duration.seconds(1),
  requestTimeout: Duration.seconds(1)
} as const

/** Highest `shard.limits.*` accepted: one leader plans, logs and tracks every instance of its shard in memory. */
export const MAX_LIMIT = 100_000

/** Longest `certificates.agent.ttl`: ten years, the original's CA lifetime (agents renew long before). */
export const MAX_CERTIFICATE_TTL_HOURS = 87_600

/**
 * Largest desired size of one group. PVE VMIDs would allow far more, but a Proxmox VE cluster is at most
 * a few dozen nodes, and a typo such as `1e12` must not make the leader plan a trillion clones.
 */
export const MAX_GROUP_SIZE = 10_000

const PROVIDERS = ["proxmox", "aws", "google", "mock", "tmux"] as const
type Provider = (typeof PROVIDERS)[number]

const IDENTIFIER = /^[a-z0-9]+(-[a-z0-9]+)*$/
const KIND = /^[a-z]{3}$/
const TEMPLATE_NAME = /^[A-Za-z0-9]+$/
const HOSTNAME_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/** Identifier rules of the original (behaviour §8.2): cluster, shard, tenant, group and subnet pool IDs. */
export const identifierProblem = (value: string): string | undefined => {
  if (value === "") return "cannot be empty"
  if (value.length > 32) return "exceeds maximum length of 32 characters"
  if (!IDENTIFIER.test(value)) {
    return "must contain only lowercase alphanumeric characters and hyphens, with no leading/trailing/consecutive hyphens"
  }
  return undefined
}

/** `host:port`: port 1-65535; host empty (wildcard), an IP (IPv6 in brackets) or a hostname. */
export const parseAddress = (text: string): Either.Either<Address, string> => {
  const colon = text.lastIndexOf(":")
  if (colon < 0) return Either.left(`${JSON.stringify(text)} must be host:port (the host may be empty, e.g. ":8990")`)
  let host = text.slice(0, colon)
  const portText = text.slice(colon + 1)
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN
  if (!(port >= 1 && port <= 65535)) return Either.left(`${JSON.stringify(text)} has port ${JSON.stringify(portText)}; a port is 1-65535`)
  if (host.startsWith("[") && host.endsWith("]")) {
    host = host.slice(1, -1)
    if (!isIPv6(host)) return Either.left(`${JSON.stringify(text)}: ${JSON.stringify(host)} is not an IPv6 address`)
  } else if (host.includes(":")) {
    return Either.left(`${JSON.stringify(text)}: an IPv6 host must be in brackets, e.g. "[::1]:8990"`)
  } else if (host !== "" && !isIPv4(host)) {
    const labels = host.split(".")
    if (host.length > 253 || !labels.every((label) => HOSTNAME_LABEL.test(label))) {
      return Either.left(`${JSON.stringify(text)}: ${JSON.stringify(host)} is not a valid IP address or hostname`)
    }
  }
  return Either.right({ host, port, text })
}

/** An empty host, `0.0.0.0` or `::`: bound, it means every interface; advertised, it is filled in per replica. */
export const isWildcardHost = (host: string): boolean => host === "" || host === "0.0.0.0" || host === "::"

const ADDRESS_FIELDS = ["health_addr", "election_addr", "registration_addr", "operator_addr", "agent_addr"] as const

const describeExpected = (expected: string): string => {
  if (expected.startsWith("{ readonly [")) return "an object"
  if (expected.startsWith("{")) return "an object"
  if (expected.startsWith("ReadonlyArray<")) return "an array"
  if (expected === "string" || expected === "number" || expected === "boolean") return `a ${expected}`
  if (expected.includes("|")) return `one of ${expected.split(" | ").join(", ")}`
  return expected
}

const schemaProblems = (error: ParseResult.ParseError): Array<Problem> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => {
    const path = issue.path.reduce<string>((acc, key) => (typeof key === "number" ? `${acc}[${key}]` : join(acc, String(key))), "")
    if (issue._tag === "Missing") return { path, message: "is required" }
    const match = /^Expected (.*), actual (.*)$/s.exec(issue.message)
    return { path, message: match === null ? issue.message : `must be ${describeExpected(match[1] ?? "")} (got ${match[2] ?? ""})` }
  })

const providerOf = (raw: unknown): string | undefined => {
  if (typeof raw !== "object" || raw === null) return undefined
  const shard = (raw as { shard?: unknown }).shard
  if (typeof shard !== "object" || shard === null) return undefined
  const infra = (shard as { infra?: unknown }).infra
  if (typeof infra !== "object" || infra === null) return undefined
  const { provider, kind } = infra as { provider?: unknown; kind?: unknown }
  return typeof provider === "string" ? provider : typeof kind === "string" ? kind : undefined
}

export interface Validated {
  readonly config: ShardConfig
  readonly warnings: ReadonlyArray<Problem>
}

/** Validates a decoded JSON value (e.g. from `parseJsonc`). */
export const validateShardConfig = (
  input: unknown
): Either.Either<Validated, { readonly errors: ReadonlyArray<Problem>; readonly warnings: ReadonlyArray<Problem> }> => {
  const errors: Array<Problem> = []
  const warnings: Array<Problem> = []
  const proxmox = providerOf(input) === "proxmox"
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return Either.left({ errors: [{ path: "", message: "a shard config must be a JSON object" }], warnings })
  }
  checkKeys(input, shardConfigKeys(proxmox), "", errors, warnings)
  const decoded = Schema.decodeUnknownEither(RawShardConfig, { errors: "all", onExcessProperty: "ignore" })(input)
  if (Either.isLeft(decoded)) {
    return Either.left({ errors: [...errors, ...schemaProblems(decoded.left)], warnings })
  }
  const raw = decoded.right
  const fail = (path: string, message: string) => { errors.push({ path, message }) }
  const warn = (path: string, message: string) => { warnings.push({ path, message }) }

  const identifier = (path: string, value: string, what: string) => {
    const problem = identifierProblem(value)
    if (problem !== undefined) fail(path, `${what} ${problem}`)
  }
  const duration = (
    path: string,
    text: string | undefined,
    fallback: Duration.Duration,
    options: { readonly allowZero?: boolean; readonly floor?: Duration.Duration } = {}
  ): Duration.Duration => {
    if (text === undefined) return fallback
    const parsed = parseDuration(text)
    if (Either.isLeft(parsed)) {
      fail(path, parsed.left)
      return fallback
    }
    if (options.allowZero !== true && Duration.isZero(parsed.right)) {
      fail(path, "must be greater than zero")
      return fallback
    }
    if (options.floor !== undefined && Duration.lessThan(parsed.right, options.floor)) {
      fail(path, `must be at least ${formatDuration(options.floor)} (got ${JSON.stringify(text)}); a shorter interval floods PVE or the bucket with calls`)
      return fallback
    }
    return parsed.right
  }
  const userdata = (path: string, value: RawUserdata | undefined): Userdata | undefined => {
    if (value === undefined) return undefined
    const result: Userdata = { source: value.source ?? "inline", encoding: value.encoding ?? "plain", content: value.content }
    const inlineGzip = result.source === "inline" && result.encoding === "gzip"
    if (inlineGzip) fail(`${path}.encoding`, "gzip is only allowed with source url (inline content is text; use base64+gzip)")
    if (result.content === "") fail(`${path}.content`, "cannot be empty")
    // A URL is checked as a URL; inline content is decoded and parsed as a template (every create would fail on it).
    else if (!inlineGzip) errors.push(...userdataProblems(path, result))
    return result
  }
  const addresses = (path: string, value: RawAddresses): Addresses => {
    const address = (field: (typeof ADDRESS_FIELDS)[number]): Address => {
      const parsed = parseAddress(value[field])
      if (Either.isLeft(parsed)) fail(`${path}.${field}`, parsed.left)
      return Either.getOrElse(parsed, () => ({ host: "", port: 0, text: value[field] }))
    }
    return {
      health: address("health_addr"),
      election: address("election_addr"),
      registration: address("registration_addr"),
      operator: address("operator_addr"),
      agent: address("agent_addr")
    }
  }
  const instanceType = (path: string, value: string | undefined) => {
    if (value === undefined || !proxmox) return
    const parsed = parseInstanceType(value)
    if (Either.isLeft(parsed)) fail(path, parsed.left)
  }
  const proxmoxArgs = (path: string, args: JsonObject | undefined) => {
    if (args === undefined) return
    // Every string is a template (rendered per VM at create time): it must parse.
    errors.push(...argsTemplateProblems(path, args))
    if (!proxmox) return
    for (const [key, value] of Object.entries(args)) {
      if (value === null) continue // removes an inherited value
      if (typeof value === "string" && hasActions(value)) continue // judged once rendered, at create time
      const problem = checkProxmoxArg(key, value)
      if (problem !== undefined) fail(`${path}.${key}`, problem)
    }
  }

  // cluster
  identifier("cluster.id", raw.cluster.id, "cluster ID")

  // shard
  const rs = raw.shard
  identifier("shard.id", rs.id, "shard ID")
  const providerText = rs.infra.provider ?? rs.infra.kind
  if (rs.infra.provider !== undefined && rs.infra.kind !== undefined && rs.infra.provider !== rs.infra.kind) {
    fail("shard.infra.kind", `contradicts provider ${JSON.stringify(rs.infra.provider)}; set only provider`)
  }
  let provider: Provider = "proxmox"
  if (providerText === undefined) fail("shard.infra.provider", `is required (one of ${PROVIDERS.join(", ")})`)
  else if (!(PROVIDERS as ReadonlyArray<string>).includes(providerText)) fail("shard.infra.provider", `must be one of ${PROVIDERS.join(", ")} (got ${JSON.stringify(providerText)})`)
  else {
    provider = providerText as Provider
    if (provider !== "proxmox") warn("shard.infra.provider", `${provider} is accepted for compatibility, but this build only drives proxmox`)
  }
  if (rs.infra.region.trim() === "") fail("shard.infra.region", "cannot be empty")
  if (rs.infra.zone.trim() === "") fail("shard.infra.zone", "cannot be empty")
  const rawOptions = rs.infra.options ?? {}
  let insecureTls = false
  let cloudInitIsoStorage: string = DEFAULTS.cloudInitIsoStorage
  let vmidRange: VmidRange = DEFAULT_VMID_RANGE
  let detachIsoAfterRegistration = false
  if (proxmox) {
    const tls = rawOptions["insecure_tls"]
    if (tls !== undefined) {
      if (typeof tls === "boolean") insecureTls = tls
      else fail("shard.infra.options.insecure_tls", "must be true or false")
    }
    const iso = rawOptions["cloud_init_iso_storage"]
    if (iso !== undefined) {
      if (typeof iso === "string" && STORAGE_ID.test(iso)) cloudInitIsoStorage = iso
      else fail("shard.infra.options.cloud_init_iso_storage", "must be a PVE storage ID such as \"local\"")
    }
    const vmids = rawOptions["vmid_range"]
    if (vmids !== undefined) {
      const parsed = typeof vmids === "string" ? parseVmidRange(vmids) : `must be a VMID range "LOW-HIGH" such as "${formatVmidRange(DEFAULT_VMID_RANGE)}"`
      if (typeof parsed === "string") fail("shard.infra.options.vmid_range", parsed)
      else vmidRange = parsed
    }
    const detach = rawOptions["detach_iso_after_registration"]
    if (detach !== undefined) {
      if (typeof detach === "boolean") detachIsoAfterRegistration = detach
      else fail("shard.infra.options.detach_iso_after_registration", "must be true or false")
    }
  }

  const bind = addresses("shard.bind", rs.bind)
  const advertise = addresses("shard.advertise", rs.advertise)
  // Each endpoint binds its own socket (the original binds all five): two on one port of overlapping hosts
  // (the same host, or a wildcard) would leave one of them unserved.
  const bound = ([["health_addr", bind.health], ["election_addr", bind.election], ["registration_addr", bind.registration], ["operator_addr", bind.operator], ["agent_addr", bind.agent]] as const)
    .filter(([, address]) => address.port !== 0)
  bound.forEach(([field, address], i) => {
    const clash = bound.slice(0, i).find(([, other]) => other.port === address.port && (other.host === address.host || isWildcardHost(other.host) || isWildcardHost(address.host)))
    if (clash === undefined) return
    const [otherField, other] = clash
    fail(`shard.bind.${field}`, other.text === address.text
      ? `must differ from ${otherField} (both ${JSON.stringify(address.text)})`
      : `must differ from ${otherField} (${JSON.stringify(other.text)} and ${JSON.stringify(address.text)} both bind port ${address.port})`)
  })

  // subnet pools
  const poolEntries = Object.entries(rs.subnet_pools)
  if (poolEntries.length === 0) fail("shard.subnet_pools", "must define at least one pool")
  const subnetOwner = new Map<string, string>()
  for (const [pool, subnets] of poolEntries) {
    identifier(`shard.subnet_pools.${pool}`, pool, "subnet pool ID")
    if (subnets.length === 0) fail(`shard.subnet_pools.${pool}`, "must list at least one subnet")
    subnets.forEach((subnet, i) => {
      const at = `shard.subnet_pools.${pool}[${i}]`
      const owner = subnetOwner.get(subnet)
      if (owner !== undefined) fail(at, `${JSON.stringify(subnet)} is already in pool ${owner}; a subnet may be in only one pool`)
      else subnetOwner.set(subnet, pool)
      if (proxmox) {
        const parsed = parseSubnetId(subnet)
        if (Either.isLeft(parsed)) fail(at, parsed.left)
      }
    })
  }
  const poolReference = (path: string, pool: string | undefined) => {
    if (pool !== undefined && own(rs.subnet_pools, pool) === undefined) {
      fail(path, `unknown subnet pool ${JSON.stringify(pool)} (pools: ${Object.keys(rs.subnet_pools).join(", ") || "none"})`)
    }
  }

  /**
   * The election's timings, field by field from `shard.leader_election`, else `cluster.leader_election`
   * (where the original's examples put them; this build runs one election, per shard), else the defaults.
   * Every written value is checked; the rules between fields apply to the values in force, reported where
   * each was written. Two different values for one field are said, not silently resolved.
   */
  /** `shard.expiry`: each age zero or absent = off; eligible before forced when both are on. */
  function expiryOf(raw: RawShardConfig["shard"]["expiry"]): Expiry {
    if (raw === undefined) return {}
    const age = (field: "eligible_age" | "forced_age" | "ondemand_age"): Duration.Duration | undefined => {
      const text = raw[field]
      if (text === undefined) return undefined
      const value = duration(`shard.expiry.${field}`, text, Duration.zero, { allowZero: true })
      return Duration.isZero(value) ? undefined : value
    }
    const eligibleAge = age("eligible_age")
    const forcedAge = age("forced_age")
    const ondemandAge = age("ondemand_age")
    if (eligibleAge !== undefined && forcedAge !== undefined && Duration.greaterThanOrEqualTo(eligibleAge, forcedAge)) {
      fail("shard.expiry.eligible_age", `must be less than forced_age (${formatDuration(forcedAge)}): forced expiry is for instances eligible expiry has not replaced in time`)
    }
    return {
      ...(eligibleAge === undefined ? {} : { eligibleAge }),
      ...(forcedAge === undefined ? {} : { forcedAge }),
      ...(ondemandAge === undefined ? {} : { ondemandAge })
    }
  }

  function leaderElection(cluster: RawLeaderElection | undefined, shard: RawLeaderElection | undefined): LeaderElection {
    const blocks = [{ path: "shard.leader_election", value: shard }, { path: "cluster.leader_election", value: cluster }] as const
    const field = (name: "frequent_interval" | "infrequent_interval" | "leader_timeout", fallback: Duration.Duration, floor?: Duration.Duration) => {
      let chosen: { readonly path: string; readonly value: Duration.Duration; readonly valid: boolean } | undefined
      for (const block of blocks) {
        const text = block.value?.[name]
        if (text === undefined) continue
        const path = `${block.path}.${name}`
        const before = errors.length
        const value = duration(path, text, fallback, floor === undefined ? {} : { floor })
        chosen ??= { path, value, valid: errors.length === before }
      }
      return chosen ?? { path: `shard.leader_election.${name}`, value: fallback, valid: true }
    }
    const frequent = field("frequent_interval", DEFAULTS.frequentInterval, MIN_INTERVALS.frequentInterval)
    const infrequent = field("infrequent_interval", DEFAULTS.infrequentInterval, MIN_INTERVALS.infrequentInterval)
    const timeout = field("leader_timeout", DEFAULTS.leaderTimeout)
    // The rules between fields, once each field is fine by itself (one problem per field, not a cascade).
    // A lease renewed less often than it expires is lost between renewals.
    if (frequent.valid && timeout.valid && Duration.greaterThanOrEqualTo(frequent.value, timeout.value)) {
      fail(timeout.path, "must be greater than frequent_interval, or the lease expires between renewals")
    }
    // Standbys read the record every infrequent interval: more often than the leader renews it buys nothing.
    if (frequent.valid && infrequent.valid && Duration.lessThan(infrequent.value, frequent.value)) {
      fail(infrequent.path, `must be at least frequent_interval (${formatDuration(frequent.value)})`)
    }
    for (const name of ["enabled", "frequent_interval", "infrequent_interval", "leader_timeout"] as const) {
      const [inShard, inCluster] = [shard?.[name], cluster?.[name]]
      if (inShard !== undefined && inCluster !== undefined && inShard !== inCluster) {
        warn(`cluster.leader_election.${name}`, `differs from shard.leader_election.${name} (${JSON.stringify(inCluster)} vs ${JSON.stringify(inShard)}); this build runs one election per shard and uses the shard's`)
      }
    }
    for (const block of blocks) {
      if (block.value?.enabled === false) {
        warn(`${block.path}.enabled`, "not used by this build: the shard election always runs (a single replica simply wins it); ignored")
      }
    }
    return { enabled: true, frequentInterval: frequent.value, infrequentInterval: infrequent.value, leaderTimeout: timeout.value }
  }

  // garbage collection and timings
  const gcErrors = errors.length
  const gc = {
    interval: duration("shard.garbage_collection.interval", rs.garbage_collection?.interval, DEFAULTS.gcInterval, { floor: MIN_INTERVALS.gcInterval }),
    registrationTimeout: duration("shard.garbage_collection.registration_timeout", rs.garbage_collection?.registration_timeout, DEFAULTS.registrationTimeout),
    deletedRecordRetention: duration("shard.garbage_collection.deleted_record_retention", rs.garbage_collection?.deleted_record_retention, DEFAULTS.deletedRecordRetention)
  }
  // Judged only when both are fine by themselves: one problem per field, not a cascade.
  if (gcErrors === errors.length && Duration.lessThanOrEqualTo(gc.registrationTimeout, gc.interval)) {
    fail("shard.garbage_collection.registration_timeout", "must be greater than garbage_collection.interval")
  }
  if (rs.garbage_collection?.deleted_record_retention !== undefined) {
    warn("shard.garbage_collection.deleted_record_retention", "not used by this build (a deleted instance leaves the shard's state once its VM is gone); ignored")
  }
  const election = leaderElection(raw.cluster.leader_election, rs.leader_election)
  const requestTimeout = duration("shard.request_timeout", rs.request_timeout, DEFAULTS.requestTimeout, { floor: MIN_INTERVALS.requestTimeout })
  const createRateLimit = duration("shard.create_rate_limit", rs.create_rate_limit, DEFAULTS.createRateLimit, { allowZero: true })
  const healthCheckInterval = duration("shard.health_check_interval", rs.health_check_interval, DEFAULTS.healthCheckInterval, { floor: MIN_INTERVALS.healthCheckInterval })
  const defaultDrainTimeout = duration("shard.default_drain_timeout", rs.default_drain_timeout, DEFAULTS.defaultDrainTimeout, { allowZero: true })
  const expiry = expiryOf(rs.expiry)
  const limit = (field: "max_groups" | "max_instances", fallback: number): number => {
    const value = rs.limits?.[field]
    if (value === undefined) return fallback
    if (!Number.isSafeInteger(value) || value < 1 || value > MAX_LIMIT) {
      fail(`shard.limits.${field}`, `must be an integer from 1 to ${MAX_LIMIT} (got ${value})`)
      return fallback
    }
    return value
  }
  const limits = { maxGroups: limit("max_groups", DEFAULTS.maxGroups), maxInstances: limit("max_instances", DEFAULTS.maxInstances) }

  // defaults and templates
  const defaultUserdata = userdata("defaults.userdata", raw.defaults?.userdata)
  const defaults: ShardConfig["defaults"] = {
    args: raw.defaults?.args ?? {},
    vars: recordOf(raw.defaults?.vars ?? {}),
    ...(defaultUserdata === undefined ? {} : { userdata: defaultUserdata })
  }
  proxmoxArgs("defaults.args", raw.defaults?.args)

  const secrets: SecretsConfig | undefined = secretsConfigOf(raw.cluster.secrets, fail, warn)
  const certificateTemplates = certificateTemplatesOf(raw.certificates, fail, warn)
  const templates = emptyRecord<Template>()
  for (const [name, rt] of Object.entries(raw.templates)) {
    const at = `templates.${name}`
    if (!TEMPLATE_NAME.test(name)) fail(at, "template names must be letters and digits only")
    if (!KIND.test(rt.kind)) fail(`${at}.kind`, `must be exactly 3 lowercase letters (got ${JSON.stringify(rt.kind)}); it prefixes instance IDs`)
    instanceType(`${at}.instance_type`, rt.instance_type)
    poolReference(`${at}.subnet_pool`, rt.subnet_pool)
    proxmoxArgs(`${at}.args`, rt.args)
    const ud = userdata(`${at}.userdata`, rt.userdata)
    if (proxmox && rt.arch !== undefined) warn(`${at}.arch`, "not used by the Proxmox provider (the template VM decides the architecture); ignored")
    const files = instanceFilesOf(`${at}.files`, rt.files, certificateTemplates, fail)
    for (const [file, spec] of Object.entries(files)) {
      if (spec.kind === "secret" && secrets === undefined) {
        fail(`${at}.files.${file}.source`, "a secret file needs cluster.secrets with provider object-storage (where the secret is read)")
      }
    }
    templates[name] = {
      name,
      kind: rt.kind,
      arch: rt.arch ?? "amd64",
      args: rt.args ?? {},
      vars: recordOf(rt.vars ?? {}),
      files,
      ...(ud === undefined ? {} : { userdata: ud }),
      ...(rt.instance_type === undefined ? {} : { instanceType: rt.instance_type }),
      ...(rt.subnet_pool === undefined ? {} : { subnetPool: rt.subnet_pool })
    }
  }
  // certificates: only the agent entry's lifetime is used (hours, a JSON number as in the original)
  let agentTtl: Duration.Duration = DEFAULTS.agentCertificateTtl
  const agentCertificate = raw.certificates?.agent
  if (agentCertificate !== undefined) {
    const ttl = agentCertificate.ttl
    if (agentCertificate.kind === "server") fail("certificates.agent.kind", "must be client (agents get client certificates)")
    if (ttl === undefined || ttl === 0) agentTtl = DEFAULTS.certificateTemplateTtl
    else if (typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl < 0) {
      fail("certificates.agent.ttl", `must be a whole number of hours, e.g. 24 (got ${JSON.stringify(ttl)})`)
    } else if (ttl > MAX_CERTIFICATE_TTL_HOURS) {
      fail("certificates.agent.ttl", `must be at most ${MAX_CERTIFICATE_TTL_HOURS} hours (got ${ttl})`)
    } else {
      agentTtl = Duration.hours(ttl)
    }
  }

  const kinds = new Map<string, string>()
  for (const template of Object.values(templates)) {
    const other = kinds.get(template.kind)
    if (other !== undefined) warn(`templates.${template.name}.kind`, `${template.kind} is also the kind of template ${other}; their instance IDs share a prefix`)
    else kinds.set(template.kind, template.name)
  }

  // groups
  const groups = emptyRecord<Record<string, Group>>()
  let groupCount = 0
  let instanceCount = 0
  for (const [tenant, tenantGroups] of Object.entries(raw.groups ?? {})) {
    identifier(`groups.${tenant}`, tenant, "tenant ID")
    const out = emptyRecord<Group>()
    for (const [name, rg] of Object.entries(tenantGroups)) {
      const at = `groups.${tenant}.${name}`
      identifier(at, name, "group key")
      groupCount++
      // A size refused on its own (below) is not counted again in the total.
      if (rg.size !== undefined && Number.isSafeInteger(rg.size) && rg.size > 0 && rg.size <= MAX_GROUP_SIZE) instanceCount += rg.size
      if (own(templates, rg.template) === undefined) {
        fail(`${at}.template`, `unknown template ${JSON.stringify(rg.template)} (templates: ${Object.keys(templates).join(", ") || "none"})`)
      }
      if (rg.size !== undefined && !(Number.isSafeInteger(rg.size) && rg.size >= 0)) fail(`${at}.size`, "must be a non-negative integer")
      else if (rg.size !== undefined && rg.size > MAX_GROUP_SIZE) fail(`${at}.size`, `must be at most ${MAX_GROUP_SIZE} (got ${rg.size})`)
      instanceType(`${at}.instance_type`, rg.instance_type)
      poolReference(`${at}.subnet_pool`, rg.subnet_pool)
      proxmoxArgs(`${at}.args`, rg.args)
      const drainTimeout = rg.drain_timeout === undefined ? undefined : duration(`${at}.drain_timeout`, rg.drain_timeout, defaultDrainTimeout, { allowZero: true })
      const rt = own(raw.templates, rg.template)
      out[name] = {
        tenant,
        name,
        template: rg.template,
        size: rg.size ?? 0,
        vars: recordOf(rg.vars ?? {}),
        args: rg.args ?? {},
        ...(rg.instance_type === undefined ? {} : { instanceType: rg.instance_type }),
        ...(rg.subnet_pool === undefined ? {} : { subnetPool: rg.subnet_pool }),
        ...(drainTimeout === undefined ? {} : { drainTimeout }),
        // As the original merges: the group's instance type and pool when not empty, else the template's.
        infraHash: infraHash({
          args: mergeArgs(raw.defaults?.args, rt?.args, rg.args),
          instanceType: rg.instance_type || rt?.instance_type || "",
          subnetPool: rg.subnet_pool || rt?.subnet_pool || "",
          userdata: rt?.userdata ?? raw.defaults?.userdata,
          kind: rt?.kind ?? "",
          arch: rt?.arch ?? ""
        })
      }
    }
    groups[tenant] = out
  }
  // Totals: one leader plans, logs and watches every instance of its shard; a runaway groups.jsonc (10,000
  // groups) or a typo in a size must be refused here, not met as thousands of clone requests.
  if (groupCount > limits.maxGroups) {
    fail("groups", `${groupCount} groups (config.jsonc and groups.jsonc together) exceed shard.limits.max_groups (${limits.maxGroups})`)
  }
  if (instanceCount > limits.maxInstances) {
    fail("groups", `${instanceCount} desired VMs (the sum of every group's size) exceed shard.limits.max_instances (${limits.maxInstances})`)
  }

  const config: ShardConfig = {
    cluster: { id: raw.cluster.id, leaderElection: election, ...(secrets === undefined ? {} : { secrets }) },
    shard: {
      id: rs.id,
      infra: { provider, region: rs.infra.region, zone: rs.infra.zone, options: { insecureTls, cloudInitIsoStorage, vmidRange, detachIsoAfterRegistration }, rawOptions },
      bind,
      advertise,
      subnetPools: recordOf(rs.subnet_pools),
      garbageCollection: gc,
      leaderElection: election,
      requestTimeout,
      createRateLimit,
      healthCheckInterval,
      defaultDrainTimeout,
      expiry,
      limits
    },
    defaults,
    templates,
    certificates: { agentTtl, templates: certificateTemplates },
    groups
  }

  // Every group's storage keys render (with the group's vars) to keys its VMs may read.
  for (const tenantGroups of Object.values(groups)) {
    for (const group of Object.values(tenantGroups)) {
      const template = own(templates, group.template)
      if (template === undefined || Object.keys(template.files).length === 0) continue
      const data = templateData({
        config,
        group,
        instanceId: `${template.kind}00000000000000000000000000`,
        nonce: "",
        caPem: "",
        server: { registrationAddr: advertise.registration.text, agentAddr: advertise.agent.text, operatorAddr: advertise.operator.text }
      })
      storageRenderProblems(`groups.${group.tenant}.${group.name}`, `templates.${group.template}.files`, template.files, data, fail)
    }
  }

  // Proxmox: every group must resolve to a complete VM spec (only when its template exists).
  if (proxmox) {
    const multiSubnetPoolsUsed = new Set<string>()
    for (const tenantGroups of Object.values(groups)) {
      for (const group of Object.values(tenantGroups)) {
        const template = own(templates, group.template)
        if (template === undefined) continue
        const spec = resolveVmSpec(config, group.tenant, group.name, { argTypesReported: true })
        if (Either.isLeft(spec)) errors.push(...spec.left)
        else if (spec.right.subnet !== undefined && (rs.subnet_pools[spec.right.subnet.pool]?.length ?? 0) > 1) multiSubnetPoolsUsed.add(spec.right.subnet.pool)
      }
    }
    for (const pool of multiSubnetPoolsUsed) {
      warn(`shard.subnet_pools.${pool}`, `has ${rs.subnet_pools[pool]?.length} subnets; this build attaches VMs to the first (${rs.subnet_pools[pool]?.[0]})`)
    }
  }

  return errors.length > 0 ? Either.left({ errors, warnings }) : Either.right({ config, warnings })
}
