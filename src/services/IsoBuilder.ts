/**
 * Builds the cloud-init NoCloud seed ISO (volume `cidata`) attached to each VM as a CD-ROM. The contract only;
 * the ISO 9660 writer is in `src/layers/IsoBuilder9660.ts`.
 */
import { Context, Data, Effect } from "effect"
import type { CloudInitSeed } from "../domain/cloudInit.js"

export class IsoBuildError extends Data.TaggedError("IsoBuildError")<{ readonly reason: string }> {
  override get message() {
    return `cannot build cloud-init ISO: ${this.reason}`
  }
}

export class IsoBuilder extends Context.Tag("nstance/IsoBuilder")<IsoBuilder, {
  /** Writes `user-data`, `meta-data` and (when given) `network-config` verbatim into one image. */
  readonly build: (seed: CloudInitSeed) => Effect.Effect<Uint8Array, IsoBuildError>
}>() {}
