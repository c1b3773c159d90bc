/**
 * Which keys a shard config may contain. The original server silently ignores unknown fields, so a
 * typo such as `registration_timout` quietly falls back to a default; here a key close to a known one is
 * an error with a suggestion, a field of the original that this build does not implement (secrets,
 * load balancers, NAT, …) is a warning (so the original's configs still load), and anything else is an
 * error.
 */
import type { Problem } from "./problems.js"

/** A JSON object's expected keys; `each` describes the values of a map (tenant → group → …). */
export interface KeySpec {
  readonly known?: Readonly<Record<string, KeySpec | undefined>>
  /** Fields of the original server accepted and ignored by this build. */
  readonly ignored?: ReadonlyArray<string>
  readonly each?: KeySpec
  /** Unknown keys that are not typos are warnings, not errors (provider args and options). */
  readonly openEnded?: string
}

const leaderElection: KeySpec = { known: { enabled: undefined, frequent_interval: undefined, infrequent_interval: undefined, leader_timeout: undefined } }
const addresses: KeySpec = {
  known: { health_addr: undefined, election_addr: undefined, registration_addr: undefined, operator_addr: undefined, agent_addr: undefined }
}
const userdata: KeySpec = { known: { source: undefined, encoding: undefined, content: undefined } }

/** Every entry of `certificates` has the original's template fields (which of them an entry uses: files.ts). */
const certificates: KeySpec = {
  each: {
    known: Object.fromEntries(
      ["kind", "ttl", "cn", "organization", "dns", "ip", "uri", "country", "province", "locality", "street", "postal_code"].map((key) => [key, undefined])
    )
  }
}
const files: KeySpec = {
  each: { known: { kind: undefined, source: undefined, template: undefined, key: { known: { source: undefined, name: undefined } }, mode: undefined } }
}
const keySource: KeySpec = { known: { provider: undefined, source: undefined, project_id: undefined } }
const secrets: KeySpec = {
  known: {
    provider: undefined,
    prefix: undefined,
    encryption_key: keySource,
    old_encryption_keys: undefined,
    cache_ttl: undefined,
    project_id: undefined
  }
}

export const PROXMOX_ARGS = [
  "StoragePool", "TemplateName", "TemplateVMID", "Bridge", "VLANTag", "Cores", "Memory", "DiskSize", "StartOnBoot", "Pool"
] as const

const proxmoxArgs: KeySpec = {
  known: Object.fromEntries(PROXMOX_ARGS.map((key) => [key, undefined])),
  openEnded: "not a Proxmox arg; ignored"
}
const proxmoxOptions: KeySpec = {
  known: { insecure_tls: undefined, cloud_init_iso_storage: undefined, vmid_range: undefined, detach_iso_after_registration: undefined },
  openEnded: "not a Proxmox option; ignored"
}

export const shardConfigKeys = (proxmox: boolean): KeySpec => {
  const args: KeySpec | undefined = proxmox ? proxmoxArgs : undefined
  return {
    known: {
      cluster: { known: { id: undefined, leader_election: leaderElection, secrets }, ignored: ["storage"] },
      shard: {
        known: {
          id: undefined,
          infra: { known: { provider: undefined, kind: undefined, region: undefined, zone: undefined, options: proxmox ? proxmoxOptions : undefined } },
          bind: addresses,
          advertise: addresses,
          subnet_pools: undefined,
          garbage_collection: { known: { interval: undefined, registration_timeout: undefined, deleted_record_retention: undefined } },
          leader_election: leaderElection,
          request_timeout: undefined,
          create_rate_limit: undefined,
          health_check_interval: undefined,
          default_drain_timeout: undefined,
          expiry: { known: { eligible_age: undefined, forced_age: undefined, ondemand_age: undefined } },
          limits: { known: { max_groups: undefined, max_instances: undefined } }
        },
        ignored: [
          "leader_network", "dynamic_subnet_pools", "image_refresh_interval", "shutdown_timeout", "error_exit_jitter"
        ]
      },
      defaults: { known: { args, vars: undefined, userdata } },
      templates: {
        each: {
          known: { kind: undefined, arch: undefined, args, userdata, instance_type: undefined, subnet_pool: undefined, vars: undefined, files },
          ignored: ["size"]
        }
      },
      certificates,
      groups: {
        each: {
          each: {
            known: { template: undefined, size: undefined, instance_type: undefined, subnet_pool: undefined, vars: undefined, args, drain_timeout: undefined },
            ignored: ["load_balancers"]
          }
        }
      }
    },
    ignored: ["load_balancers", "images", "server", "tunnels", "nat"]
  }
}

/** Edit distance, case-insensitive, so `cores` and `registration_timout` are caught as typos. */
export const editDistance = (a: string, b: string): number => {
  const x = a.toLowerCase()
  const y = b.toLowerCase()
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j)
  for (let i = 1; i <= x.length; i++) {
    const current = [i]
    for (let j = 1; j <= y.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[y.length]!
}

/** The known key a misspelt key most likely meant, if any is close enough. */
export const suggestKey = (key: string, known: ReadonlyArray<string>): string | undefined => {
  const limit = key.length <= 4 ? 1 : key.length <= 10 ? 2 : 3
  let best: { key: string; distance: number } | undefined
  for (const candidate of known) {
    const distance = editDistance(key, candidate)
    if (distance <= limit && (best === undefined || distance < best.distance)) best = { key: candidate, distance }
  }
  return best?.key
}

const isObject = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

export const join = (path: string, key: string): string => (path === "" ? key : `${path}.${key}`)

/**
 * The Proxmox provider's answer (per the integration guide) to fields that ask for what it does not do:
 * there is no leader network to assign, and load-balancer registration is a no-op.
 */
const PROXMOX_ANSWERS: Readonly<Record<string, string>> = {
  leader_network: "not supported by the Proxmox provider (it cannot assign a leader network; use keepalived for a VIP); ignored",
  load_balancers: "load-balancer registration is a no-op with the Proxmox provider (Proxmox has no load balancer); ignored"
}

/** Walks `value` along `spec`, reporting unknown keys as errors and ignored fields as warnings. */
export const checkKeys = (
  value: unknown,
  spec: KeySpec,
  path: string,
  errors: Array<Problem>,
  warnings: Array<Problem>
): void => {
  if (!isObject(value)) return
  if (spec.each !== undefined) {
    for (const [key, child] of Object.entries(value)) checkKeys(child, spec.each, join(path, key), errors, warnings)
    return
  }
  const known = spec.known ?? {}
  const knownKeys = Object.keys(known)
  for (const [key, child] of Object.entries(value)) {
    const at = join(path, key)
    if (Object.hasOwn(known, key)) {
      const childSpec = known[key]
      if (childSpec !== undefined) checkKeys(child, childSpec, at, errors, warnings)
    } else if (spec.ignored?.includes(key)) {
      warnings.push({ path: at, message: PROXMOX_ANSWERS[key] ?? "not used by this build; ignored" })
    } else {
      const suggestion = suggestKey(key, knownKeys)
      if (suggestion !== undefined) errors.push({ path: at, message: `unknown field; did you mean ${suggestion}?` })
      else if (spec.openEnded !== undefined) warnings.push({ path: at, message: spec.openEnded })
      else errors.push({ path: at, message: `unknown field (expected one of: ${knownKeys.join(", ")})` })
    }
  }
}
