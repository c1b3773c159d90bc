/**
 * Who this replica is, as the operator started it: the `--id` written into `leader.json`, the host that
 * fills in wildcard advertised addresses, and the shard's key prefix in the bucket. Everything else a
 * replica knows comes from the shard config.
 */
import { Context, Layer } from "effect"

export interface ReplicaIdentityShape {
  /** Replica id (`--id`). */
  readonly id: string
  /** Fills in empty or wildcard advertised hosts (`--advertise-host`; absent: the hostname). */
  readonly advertiseHost?: string
  /** Key prefix of the shard in the bucket, e.g. `shard/pve-a/`. */
  readonly prefix: string
}

export class ReplicaIdentity extends Context.Tag("nstance/app/ReplicaIdentity")<ReplicaIdentity, ReplicaIdentityShape>() {}

export const replicaIdentity = (identity: ReplicaIdentityShape): Layer.Layer<ReplicaIdentity> => Layer.succeed(ReplicaIdentity, identity)
