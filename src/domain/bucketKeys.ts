/**
 * Every object key nstance reads or writes in a bucket, outside the event log (whose segment and snapshot
 * keys belong to its own modules). One spelling each, so the daemon, the admin tool and the tests cannot
 * drift apart on where a shard's objects live.
 */

/** A shard's config as operators push it, relative to the shard's prefix. */
export const CONFIG_KEY = "config.jsonc"

/** A shard's dynamic groups (the admin endpoint's writes), relative to the shard's prefix. */
export const GROUPS_KEY = "groups.jsonc"

/** The shard lease record, relative to the shard's prefix. */
export const LEADER_KEY = "leader.json"

/** The key prefix of a shard: `override` when given (an operator's `--prefix`), else `shard/{shard}/`. */
export const shardPrefix = (shard: string, override?: string): string => override ?? `shard/${shard}/`

/**
 * The cluster PKI's objects. They sit at the bucket root, not under a shard prefix, because every shard of
 * the cluster signs agent certificates with the same CA.
 */
export const pkiObjectKeys = (clusterId: string) => ({
  caCert: `pki/${clusterId}/ca.crt`,
  caKey: `pki/${clusterId}/ca.key`,
  nonceKey: `pki/${clusterId}/nonce.key`
})

/**
 * Where the cluster's own objects live when `cluster.storage` names no bucket of its own: the original's
 * default, in the shard's bucket. Sealed secrets are under `{CLUSTER_PREFIX}{cluster.secrets.prefix}`.
 */
export const CLUSTER_PREFIX = "cluster/"

/** A tenant's secret: `cluster/{secrets prefix}{tenant}/{name}`. */
export const secretObjectKey = (secretsPrefix: string, tenant: string, name: string): string =>
  `${CLUSTER_PREFIX}${secretsPrefix}${tenant}/${name}`
