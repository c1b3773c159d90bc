/**
 * The JSON shape of `config.jsonc` as Schemas: types and required fields only. Rules that need more than
 * one field (references, pools, durations, Proxmox args) live in `validate.ts`, so one pass can report
 * every problem instead of stopping at the first value that is not well formed.
 */
import { Schema } from "effect"
import { RawCertificateTemplate, RawFiles, RawSecrets } from "./files.js"

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

/** Provider args and other free-form JSON objects: validated by key in `validate.ts`. */
export const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })
export type JsonObject = typeof JsonObject.Type

export const StringMap = Schema.Record({ key: Schema.String, value: Schema.String })

export const RawLeaderElection = Schema.Struct({
  enabled: opt(Schema.Boolean),
  frequent_interval: opt(Schema.String),
  infrequent_interval: opt(Schema.String),
  leader_timeout: opt(Schema.String)
})
export type RawLeaderElection = typeof RawLeaderElection.Type

export const RawAddresses = Schema.Struct({
  health_addr: Schema.String,
  election_addr: Schema.String,
  registration_addr: Schema.String,
  operator_addr: Schema.String,
  agent_addr: Schema.String
})
export type RawAddresses = typeof RawAddresses.Type

export const RawUserdata = Schema.Struct({
  source: opt(Schema.Literal("inline", "url")),
  encoding: opt(Schema.Literal("plain", "base64", "gzip", "base64+gzip")),
  content: Schema.String
})
export type RawUserdata = typeof RawUserdata.Type

export const RawInfra = Schema.Struct({
  provider: opt(Schema.String),
  // The Proxmox guide's ProviderConfig calls the field `kind`; the original code reads `provider`.
  kind: opt(Schema.String),
  region: Schema.String,
  zone: Schema.String,
  options: opt(JsonObject)
})

export const RawShard = Schema.Struct({
  id: Schema.String,
  infra: RawInfra,
  bind: RawAddresses,
  advertise: RawAddresses,
  subnet_pools: Schema.Record({ key: Schema.String, value: Schema.Array(Schema.String) }),
  garbage_collection: opt(Schema.Struct({
    interval: opt(Schema.String),
    registration_timeout: opt(Schema.String),
    deleted_record_retention: opt(Schema.String)
  })),
  leader_election: opt(RawLeaderElection),
  request_timeout: opt(Schema.String),
  create_rate_limit: opt(Schema.String),
  health_check_interval: opt(Schema.String),
  default_drain_timeout: opt(Schema.String),
  expiry: opt(Schema.Struct({ eligible_age: opt(Schema.String), forced_age: opt(Schema.String), ondemand_age: opt(Schema.String) })),
  limits: opt(Schema.Struct({ max_groups: opt(Schema.Number), max_instances: opt(Schema.Number) }))
})

export const RawTemplate = Schema.Struct({
  kind: Schema.String,
  arch: opt(Schema.Literal("amd64", "arm64")),
  args: opt(JsonObject),
  userdata: opt(RawUserdata),
  instance_type: opt(Schema.String),
  subnet_pool: opt(Schema.String),
  vars: opt(StringMap),
  files: opt(RawFiles)
})
export type RawTemplate = typeof RawTemplate.Type

export const RawGroup = Schema.Struct({
  template: Schema.String,
  size: opt(Schema.Number),
  instance_type: opt(Schema.String),
  subnet_pool: opt(Schema.String),
  vars: opt(StringMap),
  args: opt(JsonObject),
  drain_timeout: opt(Schema.String)
})
export type RawGroup = typeof RawGroup.Type

export const RawShardConfig = Schema.Struct({
  cluster: Schema.Struct({
    id: Schema.String,
    leader_election: opt(RawLeaderElection),
    secrets: opt(RawSecrets)
  }),
  shard: RawShard,
  defaults: opt(Schema.Struct({
    args: opt(JsonObject),
    vars: opt(StringMap),
    userdata: opt(RawUserdata)
  })),
  templates: Schema.Record({ key: Schema.String, value: RawTemplate }),
  certificates: opt(Schema.Record({ key: Schema.String, value: RawCertificateTemplate })),
  groups: opt(Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: RawGroup }) }))
})
export type RawShardConfig = typeof RawShardConfig.Type
