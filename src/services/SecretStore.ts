/**
 * The cluster's secrets (`cluster.secrets`): values operators put with `nstance-admin secret put` and VMs
 * receive as `secret` files. Every secret belongs to one tenant, and the contract has no way to read
 * across: a read names the tenant, and a VM's files are read with its group's tenant, so a template shared
 * by two tenants never hands one the other's value. Values travel as `Redacted` so no log line or event
 * can print one by accident.
 */
import { Context, Data, type Effect, type Redacted } from "effect"
import type { StoreError } from "./ObjectStore.js"

/** No secret of that name in that tenant (it may exist in another: the message does not say). */
export class SecretNotFound extends Data.TaggedError("SecretNotFound")<{ readonly tenant: string; readonly name: string }> {
  override get message() {
    return `no secret ${this.name} in tenant ${this.tenant}`
  }
}

/** The sealed object opens with none of the configured keys: a key was retired too early, or it was altered. */
export class SecretUndecryptable extends Data.TaggedError("SecretUndecryptable")<{ readonly tenant: string; readonly name: string }> {
  override get message() {
    return `secret ${this.name} of tenant ${this.tenant} does not decrypt with cluster.secrets.encryption_key or any old_encryption_keys entry`
  }
}

/** A tenant or secret name the store will not use as part of an object key. */
export class InvalidSecretName extends Data.TaggedError("InvalidSecretName")<{ readonly field: "tenant" | "name"; readonly reason: string }> {
  override get message() {
    return `secret ${this.field} ${this.reason}`
  }
}

export interface SecretEntry {
  readonly tenant: string
  readonly name: string
  /** Changes whenever the value is rewritten (the object's etag): what file delivery watches. */
  readonly version: string
}

export interface SecretValue {
  readonly value: Redacted.Redacted<Uint8Array>
  readonly version: string
  /** Sealed with an old key: `put` it again (or `nstance-admin secret reseal`) before retiring that key. */
  readonly sealedWithOldKey: boolean
}

export interface SecretStoreShape {
  readonly get: (tenant: string, name: string) => Effect.Effect<SecretValue, SecretNotFound | SecretUndecryptable | InvalidSecretName | StoreError>
  /** Sealed with the current (first) key. */
  readonly put: (tenant: string, name: string, value: Redacted.Redacted<Uint8Array>) => Effect.Effect<SecretEntry, InvalidSecretName | StoreError>
  /** A tenant's secrets, or every tenant's, by name. */
  readonly list: (tenant?: string) => Effect.Effect<ReadonlyArray<SecretEntry>, InvalidSecretName | StoreError>
  /** The version of a secret without opening it; none when it does not exist. */
  readonly version: (tenant: string, name: string) => Effect.Effect<string | undefined, InvalidSecretName | StoreError>
  /** Deleting a missing secret succeeds. */
  readonly delete: (tenant: string, name: string) => Effect.Effect<void, InvalidSecretName | StoreError>
}

export class SecretStore extends Context.Tag("nstance/SecretStore")<SecretStore, SecretStoreShape>() {}
