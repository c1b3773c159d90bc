/**
 * Agent registration, on or off for the whole run. On when the operator gave the key the cluster PKI's
 * private keys are encrypted with: the PKI is loaded from the bucket root before the election, and a
 * partial PKI or a wrong key refuses the start — never a silently regenerated CA. Off: instances count as
 * ready once their VM runs, and the replica says so once.
 */
import { Context, Effect, Either, Layer, SubscriptionRef } from "effect"
import type { SecretsConfig } from "../domain/config/files.js"
import { makeClusterPki } from "../layers/ClusterPkiStore.js"
import { loadSecretsKeys, makeSecretStore } from "../layers/SecretStoreObject.js"
import type { SecretStoreShape } from "../services/SecretStore.js"
import type { ClusterPkiShape, PkiLoadError } from "../services/ClusterPki.js"
import { BucketStore } from "./stores.js"
import { ShardConfig } from "./ShardConfig.js"

export interface RegistrationShape {
  /** The cluster PKI while registration is on; absent: off. */
  readonly pki: ClusterPkiShape | undefined
  /**
   * The cluster's secrets store (`cluster.secrets`, keys loaded at startup), for `secret` files; absent
   * without one, or when its keys could not be loaded (said at startup; secret files then wait).
   */
  readonly secrets?: SecretStoreShape | undefined
}

export class Registration extends Context.Tag("nstance/app/Registration")<Registration, RegistrationShape>() {}

export const REGISTRATION_OFF_WARNING =
  "agent registration is off: set NSTANCE_ENCRYPTION_KEY (or --encryption-key-file) to turn it on; " +
  "an instance counts as ready once its VM runs"

/**
 * The secrets store of `cluster.secrets` as configured at startup (a changed store or key takes a restart,
 * as in the original). Keys that cannot be loaded are an error line, not a refusal to start: VMs then get
 * every file but their secrets, and each secret file's failure is counted.
 */
const secretsOf = (config: SecretsConfig | undefined) =>
  Effect.gen(function* () {
    if (config === undefined) return undefined
    const keys = yield* Effect.either(loadSecretsKeys(config, process.env))
    if (Either.isLeft(keys)) {
      yield* Effect.logError(`secrets store: ${keys.left.message}; secret files are not delivered until the server restarts with it`)
      return undefined
    }
    yield* Effect.logInfo(`secrets store: cluster/${config.prefix} in the bucket, ${keys.right.length} key(s)`)
    return makeSecretStore(yield* BucketStore, { prefix: config.prefix, keys: keys.right })
  })

/** `encryptionKey` (32 bytes) turns registration on; absent: off. */
export const RegistrationLive = (encryptionKey: Uint8Array | undefined): Layer.Layer<Registration, PkiLoadError, BucketStore | ShardConfig> =>
  Layer.effect(
    Registration,
    Effect.gen(function* () {
      if (encryptionKey === undefined) {
        yield* Effect.logWarning(REGISTRATION_OFF_WARNING)
        return { pki: undefined }
      }
      const { config } = yield* SubscriptionRef.get((yield* ShardConfig).current)
      const clusterId = config.cluster.id
      const pki = yield* makeClusterPki(yield* BucketStore, { clusterId, encryptionKey }).pipe(
        Effect.tapError((error) => Effect.logError(`agent registration: cannot load the cluster PKI: ${error.message}`))
      )
      yield* Effect.logInfo(`agent registration is on: cluster PKI pki/${clusterId}/ loaded`)
      return { pki, secrets: yield* secretsOf(config.cluster.secrets) }
    })
  )

/** Registration as a test sets it up (a PKI it made, or none), with nothing logged. */
export const registrationOf = (pki: ClusterPkiShape | undefined, secrets?: SecretStoreShape): Layer.Layer<Registration> =>
  Layer.succeed(Registration, { pki, secrets })
