/**
 * Agent registration, on or off for the whole run. On when the operator gave the key the cluster PKI's
 * private keys are encrypted with: the PKI is loaded from the bucket root before the election, and a
 * partial PKI or a wrong key refuses the start — never a silently regenerated CA. Off: instances count as
 * ready once their VM runs, and the replica says so once.
 */
import { Context, Effect, Layer, SubscriptionRef } from "effect"
import { makeClusterPki } from "../layers/ClusterPkiStore.js"
import type { ClusterPkiShape, PkiLoadError } from "../services/ClusterPki.js"
import { BucketStore } from "./stores.js"
import { ShardConfig } from "./ShardConfig.js"

export interface RegistrationShape {
  /** The cluster PKI while registration is on; absent: off. */
  readonly pki: ClusterPkiShape | undefined
}

export class Registration extends Context.Tag("nstance/app/Registration")<Registration, RegistrationShape>() {}

export const REGISTRATION_OFF_WARNING =
  "agent registration is off: set NSTANCE_ENCRYPTION_KEY (or --encryption-key-file) to turn it on; " +
  "an instance counts as ready once its VM runs"

/** `encryptionKey` (32 bytes) turns registration on; absent: off. */
export const RegistrationLive = (encryptionKey: Uint8Array | undefined): Layer.Layer<Registration, PkiLoadError, BucketStore | ShardConfig> =>
  Layer.effect(
    Registration,
    Effect.gen(function* () {
      if (encryptionKey === undefined) {
        yield* Effect.logWarning(REGISTRATION_OFF_WARNING)
        return { pki: undefined }
      }
      const clusterId = (yield* SubscriptionRef.get((yield* ShardConfig).current)).config.cluster.id
      const pki = yield* makeClusterPki(yield* BucketStore, { clusterId, encryptionKey }).pipe(
        Effect.tapError((error) => Effect.logError(`agent registration: cannot load the cluster PKI: ${error.message}`))
      )
      yield* Effect.logInfo(`agent registration is on: cluster PKI pki/${clusterId}/ loaded`)
      return { pki }
    })
  )

/** Registration as a test sets it up (a PKI it made, or none), with nothing logged. */
export const registrationOf = (pki: ClusterPkiShape | undefined): Layer.Layer<Registration> => Layer.succeed(Registration, { pki })
