/**
 * IsoBuilder backed by the in-process ISO 9660 writer (Rock Ridge + Joliet), so no genisoimage/xorriso is
 * needed on the server. Timestamps are fixed, so the same seed always yields the same bytes (an ISO already
 * uploaded for an instance can be recognised and a preview equals what the VM gets).
 */
import { Effect, Layer } from "effect"
import type { CloudInitSeed } from "../domain/cloudInit.js"
import { buildIso, DEFAULT_ISO_TIME, InvalidIsoInput } from "../domain/iso9660.js"
import { IsoBuildError, IsoBuilder } from "../services/IsoBuilder.js"

export const CLOUD_INIT_VOLUME_ID = "cidata"

const encoder = new TextEncoder()

/** The image for one seed, as a plain function for callers outside Effect (the admin CLI, the simulator). */
export const seedIsoBytes = (seed: CloudInitSeed): Uint8Array | IsoBuildError => {
  try {
    return buildIso([
      { name: "user-data", data: encoder.encode(seed.userData) },
      { name: "meta-data", data: encoder.encode(seed.metaData) },
      ...(seed.networkConfig === undefined ? [] : [{ name: "network-config", data: encoder.encode(seed.networkConfig) }])
    ], { volumeId: CLOUD_INIT_VOLUME_ID, createdAt: DEFAULT_ISO_TIME })
  } catch (error) {
    return new IsoBuildError({ reason: error instanceof InvalidIsoInput ? error.reason : String(error) })
  }
}

export const makeIsoBuilder9660 = IsoBuilder.of({
  build: Effect.fn("IsoBuilder.build")(function* (seed: CloudInitSeed) {
    const image = seedIsoBytes(seed)
    if (image instanceof IsoBuildError) return yield* image
    yield* Effect.annotateCurrentSpan("iso.bytes", image.length)
    return image
  })
})

export const IsoBuilder9660 = Layer.succeed(IsoBuilder, makeIsoBuilder9660)
