/**
 * Decode and validate a shard config in one pass that reports every problem at once, each as
 * `path: message`. Schema checks the JSON shape; the rules here (identifiers, durations, addresses,
 * references, subnet pools, Proxmox args) run over the decoded shape and keep going after a failure.
 */
import { isIPv4, isIPv6 } from "node:net"
import { Duration, Either, ParseResult, Schema } from "effect"
import { parseDuration } from "../duration.js"
import { checkKeys, join, shardConfigKeys } from "./keys.js"
import type { Problem } from "./problems.js"
import { checkProxmoxArg, parseInstanceType, parseSubnetId } from "./proxmox.js"
import { type JsonObject, type RawAddresses, RawShardConfig, type RawUserdata } from "./schema.js"
import type { Address, Addresses, Group, LeaderElection, ShardConfig, Template, Userdata } from "./types.js"
import { resolveVmSpec } from "./vmSpec.js"

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
  cloudInitIsoStorage: "local",
  /** Without a `certificates.agent` entry, as the original issues at registration. */
  agentCertificateTtl: Duration.hours(24),
  /** A `certificates.agent` entry without `ttl` (or with 0): the original's default for any present entry. */
  certificateTemplateTtl: Duration.hours(8760)
} as const

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
  const duration = (path: string, text: string | undefined, fallback: Duration.Duration, allowZero = false): Duration.Duration => {
    if (text === undefined) return fallback
    const parsed = parseDuration(text)
    if (Either.isLeft(parsed)) {
      fail(path, parsed.left)
      return fallback
    }
    if (!allowZero && Duration.isZero(parsed.right)) {
      fail(path, "must be greater than zero")
      return fallback
    }
    return parsed.right
  }
  const leaderElection = (path: string, value: typeof raw.cluster.leader_election): LeaderElection => {
    const result: LeaderElection = {
      enabled: value?.enabled ?? true,
      frequentInterval: duration(`${path}.frequent_interval`, value?.frequent_interval, DEFAULTS.frequentInterval),
      infrequentInterval: duration(`${path}.infrequent_interval`, value?.infrequent_interval, DEFAULTS.infrequentInterval),
      leaderTimeout: duration(`${path}.leader_timeout`, value?.leader_timeout, DEFAULTS.leaderTimeout)
    }
    // A lease renewed less often than it expires is lost between renewals.
    if (Duration.greaterThanOrEqualTo(result.frequentInterval, result.leaderTimeout)) {
      fail(`${path}.leader_timeout`, "must be greater than frequent_interval, or the lease expires between renewals")
    }
    return result
  }
  const userdata = (path: string, value: RawUserdata | undefined): Userdata | undefined => {
    if (value === undefined) return undefined
    const result: Userdata = { source: value.source ?? "inline", encoding: value.encoding ?? "plain", content: value.content }
    if (result.source === "inline" && (result.encoding === "gzip")) fail(`${path}.encoding`, "gzip is only allowed with source url (inline content is text; use base64+gzip)")
    if (result.source === "url" && !/^https?:\/\/\S+$/.test(result.content)) fail(`${path}.content`, "must be an http(s) URL when source is url")
    if (result.content === "") fail(`${path}.content`, "cannot be empty")
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
    if (args === undefined || !proxmox) return
    for (const [key, value] of Object.entries(args)) {
      if (value === null) continue // removes an inherited value
      const problem = checkProxmoxArg(key, value)
      if (problem !== undefined) fail(`${path}.${key}`, problem)
    }
  }

  // cluster
  identifier("cluster.id", raw.cluster.id, "cluster ID")
  const clusterElection = leaderElection("cluster.leader_election", raw.cluster.leader_election)

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
  if (proxmox) {
    const tls = rawOptions["insecure_tls"]
    if (tls !== undefined) {
      if (typeof tls === "boolean") insecureTls = tls
      else fail("shard.infra.options.insecure_tls", "must be true or false")
    }
    const iso = rawOptions["cloud_init_iso_storage"]
    if (iso !== undefined) {
      if (typeof iso === "string" && /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i.test(iso)) cloudInitIsoStorage = iso
      else fail("shard.infra.options.cloud_init_iso_storage", "must be a PVE storage ID such as \"local\"")
    }
  }

  const bind = addresses("shard.bind", rs.bind)
  const advertise = addresses("shard.advertise", rs.advertise)
  const exposed = [["registration_addr", rs.bind.registration_addr], ["operator_addr", rs.bind.operator_addr], ["agent_addr", rs.bind.agent_addr]] as const
  exposed.forEach(([field, value], i) => {
    const clash = exposed.slice(0, i).find(([, other]) => other === value)
    if (clash !== undefined) fail(`shard.bind.${field}`, `must differ from ${clash[0]} (both ${JSON.stringify(value)})`)
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
    if (pool !== undefined && !Object.hasOwn(rs.subnet_pools, pool)) {
      fail(path, `unknown subnet pool ${JSON.stringify(pool)} (pools: ${Object.keys(rs.subnet_pools).join(", ") || "none"})`)
    }
  }

  // garbage collection and timings
  const gc = {
    interval: duration("shard.garbage_collection.interval", rs.garbage_collection?.interval, DEFAULTS.gcInterval),
    registrationTimeout: duration("shard.garbage_collection.registration_timeout", rs.garbage_collection?.registration_timeout, DEFAULTS.registrationTimeout),
    deletedRecordRetention: duration("shard.garbage_collection.deleted_record_retention", rs.garbage_collection?.deleted_record_retention, DEFAULTS.deletedRecordRetention)
  }
  if (Duration.lessThanOrEqualTo(gc.registrationTimeout, gc.interval)) {
    fail("shard.garbage_collection.registration_timeout", "must be greater than garbage_collection.interval")
  }
  const shardElection = leaderElection("shard.leader_election", rs.leader_election)
  const requestTimeout = duration("shard.request_timeout", rs.request_timeout, DEFAULTS.requestTimeout)
  const createRateLimit = duration("shard.create_rate_limit", rs.create_rate_limit, DEFAULTS.createRateLimit, true)
  const healthCheckInterval = duration("shard.health_check_interval", rs.health_check_interval, DEFAULTS.healthCheckInterval)

  // defaults and templates
  const defaultUserdata = userdata("defaults.userdata", raw.defaults?.userdata)
  const defaults: ShardConfig["defaults"] = {
    args: raw.defaults?.args ?? {},
    vars: raw.defaults?.vars ?? {},
    ...(defaultUserdata === undefined ? {} : { userdata: defaultUserdata })
  }
  proxmoxArgs("defaults.args", raw.defaults?.args)

  const templates: Record<string, Template> = {}
  for (const [name, rt] of Object.entries(raw.templates)) {
    const at = `templates.${name}`
    if (!TEMPLATE_NAME.test(name)) fail(at, "template names must be letters and digits only")
    if (!KIND.test(rt.kind)) fail(`${at}.kind`, `must be exactly 3 lowercase letters (got ${JSON.stringify(rt.kind)}); it prefixes instance IDs`)
    instanceType(`${at}.instance_type`, rt.instance_type)
    poolReference(`${at}.subnet_pool`, rt.subnet_pool)
    proxmoxArgs(`${at}.args`, rt.args)
    const ud = userdata(`${at}.userdata`, rt.userdata)
    templates[name] = {
      name,
      kind: rt.kind,
      arch: rt.arch ?? "amd64",
      args: rt.args ?? {},
      vars: rt.vars ?? {},
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
  const groups: Record<string, Record<string, Group>> = {}
  for (const [tenant, tenantGroups] of Object.entries(raw.groups ?? {})) {
    identifier(`groups.${tenant}`, tenant, "tenant ID")
    const out: Record<string, Group> = {}
    for (const [name, rg] of Object.entries(tenantGroups)) {
      const at = `groups.${tenant}.${name}`
      identifier(at, name, "group key")
      if (!Object.hasOwn(templates, rg.template)) {
        fail(`${at}.template`, `unknown template ${JSON.stringify(rg.template)} (templates: ${Object.keys(templates).join(", ") || "none"})`)
      }
      if (rg.size !== undefined && !(Number.isSafeInteger(rg.size) && rg.size >= 0)) fail(`${at}.size`, "must be a non-negative integer")
      else if (rg.size !== undefined && rg.size > MAX_GROUP_SIZE) fail(`${at}.size`, `must be at most ${MAX_GROUP_SIZE} (got ${rg.size})`)
      instanceType(`${at}.instance_type`, rg.instance_type)
      poolReference(`${at}.subnet_pool`, rg.subnet_pool)
      proxmoxArgs(`${at}.args`, rg.args)
      out[name] = {
        tenant,
        name,
        template: rg.template,
        size: rg.size ?? 0,
        vars: rg.vars ?? {},
        args: rg.args ?? {},
        ...(rg.instance_type === undefined ? {} : { instanceType: rg.instance_type }),
        ...(rg.subnet_pool === undefined ? {} : { subnetPool: rg.subnet_pool })
      }
    }
    groups[tenant] = out
  }

  const config: ShardConfig = {
    cluster: { id: raw.cluster.id, leaderElection: clusterElection },
    shard: {
      id: rs.id,
      infra: { provider, region: rs.infra.region, zone: rs.infra.zone, options: { insecureTls, cloudInitIsoStorage }, rawOptions },
      bind,
      advertise,
      subnetPools: rs.subnet_pools,
      garbageCollection: gc,
      leaderElection: shardElection,
      requestTimeout,
      createRateLimit,
      healthCheckInterval
    },
    defaults,
    templates,
    certificates: { agentTtl },
    groups
  }

  // Proxmox: every group must resolve to a complete VM spec (only when its template exists).
  if (proxmox) {
    const multiSubnetPoolsUsed = new Set<string>()
    for (const tenantGroups of Object.values(groups)) {
      for (const group of Object.values(tenantGroups)) {
        const template = templates[group.template]
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
