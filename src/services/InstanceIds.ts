/**
 * Mints instance IDs (kind + UUIDv7) from Effect's `Clock` and `Random`, so a simulation under `TestClock`
 * with a seeded `Random` mints the same IDs every run, and IDs minted later in one process always sort
 * after earlier ones (the create saga and the bucket keys rely on that order).
 */
import { Clock, Context, Effect, Layer, Random } from "effect"
import { InvalidInstanceId, makeInstanceIdGenerator } from "../domain/instanceId.js"

export class InstanceIds extends Context.Tag("nstance/InstanceIds")<InstanceIds, {
  readonly next: (kind: string) => Effect.Effect<string, InvalidInstanceId>
}>() {}

const randomBytes16 = Effect.gen(function* () {
  const bytes = new Uint8Array(16)
  for (let i = 0; i < bytes.length; i++) bytes[i] = yield* Random.nextIntBetween(0, 256)
  return bytes
})

export const InstanceIdsLive = Layer.sync(InstanceIds, () => {
  const mint = makeInstanceIdGenerator()
  return InstanceIds.of({
    next: (kind) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const random = yield* randomBytes16
        return yield* Effect.try({
          try: () => mint(kind, now, random),
          catch: (error) => error instanceof InvalidInstanceId ? error : new InvalidInstanceId({ input: kind, reason: String(error) })
        })
      })
  })
})
