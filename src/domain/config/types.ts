/** The shard config after decoding, defaults and validation: what the rest of nstance consumes. */
import type { Duration } from "effect"
import type { VmidRange } from "../vmids.js"
import type { CertificateTemplate, InstanceFile, SecretsConfig } from "./files.js"
import type { JsonObject } from "./schema.js"

/** The shard's election timings (`shard.leader_election`, field by field else `cluster.leader_election`). */
export interface LeaderElection {
  /** Always true: the election always runs (a written `false` is warned about and ignored). */
  readonly enabled: boolean
  readonly frequentInterval: Duration.Duration
  readonly infrequentInterval: Duration.Duration
  readonly leaderTimeout: Duration.Duration
}

/** A `host:port` address; `host` is "" for a wildcard written as `:8990`, IPv6 hosts without brackets. */
export interface Address {
  readonly host: string
  readonly port: number
  readonly text: string
}

export interface Addresses {
  readonly health: Address
  readonly election: Address
  readonly registration: Address
  readonly operator: Address
  readonly agent: Address
}

export interface Userdata {
  readonly source: "inline" | "url"
  readonly encoding: "plain" | "base64" | "gzip" | "base64+gzip"
  readonly content: string
}

export interface Template {
  readonly name: string
  readonly kind: string
  readonly arch: "amd64" | "arm64"
  readonly args: JsonObject
  readonly userdata?: Userdata
  readonly instanceType?: string
  readonly subnetPool?: string
  readonly vars: Readonly<Record<string, string>>
  /** What each VM of the template is given over its agent channel, by file name. */
  readonly files: Readonly<Record<string, InstanceFile>>
}

export interface Group {
  readonly tenant: string
  readonly name: string
  readonly template: string
  /** Desired number of VMs (absent in the file = 0, as in the original). */
  readonly size: number
  readonly instanceType?: string
  readonly subnetPool?: string
  readonly vars: Readonly<Record<string, string>>
  readonly args: JsonObject
  /** `drain_timeout`: how long a retiring instance is announced before deletion; absent = `shard.default_drain_timeout`. */
  readonly drainTimeout?: Duration.Duration
  /**
   * The original server's infra hash of the group's merged config (args, instance type, subnet pool,
   * userdata, kind, arch): an instance created under another hash is rotated.
   */
  readonly infraHash: string
}

/** `shard.expiry`: ages after which instances are retired (absent = that rule is off). */
export interface Expiry {
  /** Replace the oldest instance past this age, one per group at a time. */
  readonly eligibleAge?: Duration.Duration
  /** Replace an instance past this age even while another of its group is retiring. */
  readonly forcedAge?: Duration.Duration
  /** Retire operator-requested (on-demand) instances past this age, without a replacement. */
  readonly ondemandAge?: Duration.Duration
}

export interface ShardConfig {
  readonly cluster: {
    readonly id: string
    readonly leaderElection: LeaderElection
    /** `cluster.secrets` with a store this build implements; absent: no `secret` file can be configured. */
    readonly secrets?: SecretsConfig
  }
  readonly shard: {
    readonly id: string
    readonly infra: {
      readonly provider: "proxmox" | "aws" | "google" | "mock" | "tmux"
      readonly region: string
      readonly zone: string
      /** Proxmox options with defaults applied (ignored by other providers). */
      readonly options: {
        readonly insecureTls: boolean
        readonly cloudInitIsoStorage: string
        /** `vmid_range`: the VMIDs the shard's VMs get (default `DEFAULT_VMID_RANGE`). */
        readonly vmidRange: VmidRange
        /** `detach_iso_after_registration`: eject and delete a VM's cloud-init ISO once its agent registered (default false). */
        readonly detachIsoAfterRegistration: boolean
      }
      /** The options object as written, for providers other than Proxmox. */
      readonly rawOptions: JsonObject
    }
    readonly bind: Addresses
    readonly advertise: Addresses
    readonly subnetPools: Readonly<Record<string, ReadonlyArray<string>>>
    readonly garbageCollection: {
      readonly interval: Duration.Duration
      readonly registrationTimeout: Duration.Duration
      readonly deletedRecordRetention: Duration.Duration
    }
    readonly leaderElection: LeaderElection
    readonly requestTimeout: Duration.Duration
    /** Minimum spacing between two creations; zero = no limit. */
    readonly createRateLimit: Duration.Duration
    readonly healthCheckInterval: Duration.Duration
    /** `default_drain_timeout`: a group's drain timeout when it sets none (default 5 m; zero = delete at once). */
    readonly defaultDrainTimeout: Duration.Duration
    readonly expiry: Expiry
    /** Totals over config.jsonc and groups.jsonc together; a config above them is refused. */
    readonly limits: { readonly maxGroups: number; readonly maxInstances: number }
  }
  readonly defaults: {
    readonly args: JsonObject
    readonly vars: Readonly<Record<string, string>>
    readonly userdata?: Userdata
  }
  readonly templates: Readonly<Record<string, Template>>
  readonly certificates: {
    /** Lifetime of an agent's client certificate (`certificates.agent.ttl`, hours). */
    readonly agentTtl: Duration.Duration
    /** The templates `certificate` files are issued from (every entry but `ca`, `agent` and `operator`). */
    readonly templates: Readonly<Record<string, CertificateTemplate>>
  }
  /** tenant → group key → group. */
  readonly groups: Readonly<Record<string, Readonly<Record<string, Group>>>>
}
