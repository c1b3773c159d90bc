/** Helpers shared by the event-log suites (memory, file and real S3). */
import { Chunk, Effect, Exit, Scope, Stream } from "effect"
import { InstanceRequested, type ShardEvent } from "../../src/domain/shard/events.js"
import { encodeState, type State } from "../../src/domain/shard/state.js"
import { type EventLogOptions, makeEventLog } from "../../src/layers/EventLogStore.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"

export const enc = new TextEncoder()
export const view = (state: State) => JSON.parse(JSON.stringify(encodeState(state)))

export const requested = (instanceId: string): ShardEvent =>
  InstanceRequested.make({ instanceId, at: 1, tenant: "t", group: "web", kind: "web", specHash: "h", reason: "scale-up" })

export interface Counted {
  readonly store: ObjectStoreShape
  /** Keys of every PUT attempted through this wrapper, in order. */
  readonly puts: Array<string>
}

export const counted = (base: ObjectStoreShape): Counted => {
  const puts: Array<string> = []
  return {
    puts,
    store: { ...base, put: (key, body, pre) => Effect.suspend(() => (puts.push(key), base.put(key, body, pre))) }
  }
}

export const segmentPuts = (c: Counted) => c.puts.filter((key) => key.startsWith("log/")).length

export const keysUnder = (store: ObjectStoreShape, prefix: string) =>
  store.list(prefix).pipe(
    Stream.runCollect,
    Effect.map((chunk) => Chunk.toReadonlyArray(chunk).map((meta) => meta.key))
  )

/** An event log in its own scope, so a test can close it like a process going away. */
export const startLog = (store: ObjectStoreShape, options: EventLogOptions = {}) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const log = yield* makeEventLog(store, options).pipe(Scope.extend(scope))
    return { log, close: Scope.close(scope, Exit.void) }
  })

