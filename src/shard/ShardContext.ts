/**
 * What every part of one shard's leader needs to know about where it runs: cluster and shard ids (for the
 * ownership tags), this replica and its term, and the shard config as a `SubscriptionRef`, so a config
 * push reaches the reconcile loop without a restart.
 */
import { Context, type Duration, type SubscriptionRef } from "effect"
import { hostname } from "node:os"
import { type Address, isWildcardHost, type ParsedShardConfig } from "../domain/config/index.js"
import type { ClusterPkiShape } from "../services/ClusterPki.js"

export interface ShardContextShape {
  readonly clusterId: string
  readonly shard: string
  readonly replica: string
  readonly term: number
  readonly config: SubscriptionRef.SubscriptionRef<ParsedShardConfig>
  /** Overrides of the GC grace periods (`ORPHAN_GRACE`, `VM_LOSS_GRACE` in policies.ts), for tests and demos. */
  readonly graces?: GcGraces
  /** Agent registration; absent when it is off (an instance then counts as ready once its VM runs). */
  readonly registration?: RegistrationSettings
  /** `--advertise-host`: fills in a wildcard host of the advertised addresses templates see (`.Server.*Addr`). */
  readonly advertiseHost?: string
}

export interface RegistrationSettings {
  /** The cluster PKI (loaded or created at startup): mints the nonces and issues the agents' certificates. */
  readonly pki: ClusterPkiShape
  /** Fills in an empty or wildcard host of `shard.advertise.registration_addr` (default: hostname). */
  readonly advertiseHost?: string
}

/** `host:port` of `address`, an empty or wildcard host replaced by `advertiseHost` (else the hostname). */
export const advertisedAddress = (address: Address, advertiseHost: string | undefined): string => {
  const host = isWildcardHost(address.host) ? advertiseHost ?? hostname() : address.host
  return host.includes(":") ? `[${host}]:${address.port}` : `${host}:${address.port}`
}

/** The URL agents register at: `https://{shard.advertise.registration_addr}/agent`. */
export const registrationUrl = (config: ParsedShardConfig, advertiseHost: string | undefined): string =>
  `https://${advertisedAddress(config.config.shard.advertise.registration, advertiseHost)}/agent`

/** The agent channel agents are told of at registration: `wss://{shard.advertise.agent_addr}/agent`. */
export const agentChannelUrl = (config: ParsedShardConfig, advertiseHost: string | undefined): string =>
  `wss://${advertisedAddress(config.config.shard.advertise.agent, advertiseHost)}/agent`

/**
 * The names a TLS endpoint's certificate carries: whatever a client may dial — the advertised host (a VIP or
 * DNS name every replica shares), this replica's `--advertise-host` and bound address, its hostname, and
 * loopback for an operator on the machine itself.
 */
export const certificateHosts = (config: ParsedShardConfig, endpoint: "registration" | "agent" | "operator", advertiseHost: string | undefined): ReadonlyArray<string> => {
  const advertised = config.config.shard.advertise[endpoint].host
  const bound = config.config.shard.bind[endpoint].host
  const hosts = [advertised, advertiseHost ?? "", bound, hostname(), "localhost", "127.0.0.1", "::1"]
  return [...new Set(hosts.filter((host) => !isWildcardHost(host)))]
}

export interface GcGraces {
  readonly orphan?: Duration.DurationInput
  readonly vmLoss?: Duration.DurationInput
  /** How long an ISO of an instance this shard does not know is kept (default `UNKNOWN_ISO_GRACE`). */
  readonly unknownIso?: Duration.DurationInput
  /** How long a registered agent may stay silent before its instance is replaced (default 3 × `health_check_interval`). */
  readonly health?: Duration.DurationInput
}

export class ShardContext extends Context.Tag("nstance/ShardContext")<ShardContext, ShardContextShape>() {}
