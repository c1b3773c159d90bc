/** Replicas with the health endpoint on loopback, over a memory store, for the ops suites. */
import { readFileSync } from "node:fs"
import { Context, Duration, Effect, Either, Option, Schedule, Stream, SubscriptionRef } from "effect"
import { applyEdits, modify } from "jsonc-parser"
import { type ParsedShardConfig, parseShardConfig } from "../../src/domain/config/index.js"
import { fold } from "../../src/domain/shard/state.js"
import type { ShardEvent } from "../../src/domain/shard/events.js"
import { makeHealthServer } from "../../src/http/HealthServer.js"
import { makeLeaderLeaseOn } from "../../src/layers/LeaderLeaseStore.js"
import { EventLog, type EventLogShape } from "../../src/services/EventLog.js"
import type { ObjectStoreShape } from "../../src/services/ObjectStore.js"
import { EXAMPLE_CONFIG } from "../../src/app/embedded.js"
import type { LeaderServices, ShardReplicaShape } from "../../src/shard/ShardReplica.js"
import { buildReplica } from "../support/stackReplica.js"

/** The example config with `shard.bind.health_addr` changed, and optionally `shard.create_rate_limit`. */
export const exampleConfigWithHealth = (address: string, createRateLimit?: string): string => {
  const text = readFileSync(EXAMPLE_CONFIG, "utf8")
  const bound = applyEdits(text, modify(text, ["shard", "bind", "health_addr"], address, {}))
  return createRateLimit === undefined ? bound : applyEdits(bound, modify(bound, ["shard", "create_rate_limit"], createRateLimit, {}))
}

/**
 * The example config with election timings of a few hundred ms (readiness judges the lease loop by them).
 * Set on the parsed config: they are below the validator's 1 s floors, which protect a real bucket; here
 * the lease runs `FAST_LEASE` on a memory store.
 */
export const fastElectionConfig = (): ParsedShardConfig => {
  const parsed = parsedConfig(readFileSync(EXAMPLE_CONFIG, "utf8"))
  const leaderElection = { enabled: true, frequentInterval: Duration.millis(50), infrequentInterval: Duration.millis(50), leaderTimeout: Duration.millis(300) }
  return { ...parsed, config: { ...parsed.config, shard: { ...parsed.config.shard, leaderElection } } }
}

/** `text` with the size of group `tenant/group` set to `size`. */
export const withGroupSize = (text: string, tenant: string, group: string, size: number): string =>
  applyEdits(text, modify(text, ["groups", tenant, group, "size"], size, {}))

export const parsedConfig = (text: string) => {
  const parsed = parseShardConfig(text)
  if (Either.isLeft(parsed)) throw new Error(`test config does not parse: ${parsed.left.message}`)
  return parsed.right
}

/** Fast lease timings: a leader fences itself ~0.5 s after its last successful renewal. */
export const FAST_LEASE = { frequentInterval: "50 millis", infrequentInterval: "50 millis", leaderTimeout: "600 millis" } as const

export interface TestReplica {
  readonly replica: ShardReplicaShape
  readonly url: string
}

/** A replica (lease loop running) with its health endpoint on 127.0.0.1, a free port (the config's health_addr is not used). */
export const startReplica = (store: ObjectStoreShape, id: string, configText: string | ParsedShardConfig = readFileSync(EXAMPLE_CONFIG, "utf8")) =>
  Effect.gen(function* () {
    const config = typeof configText === "string" ? parsedConfig(configText) : configText
    const lease = yield* makeLeaderLeaseOn(store, { id, address: `127.0.0.1:${id.length}`, ...FAST_LEASE }).pipe(Effect.orDie)
    // The handle alone: these replicas are judged by their health endpoint, and the tests publish the terms they need.
    const replica = yield* buildReplica({ id, advertiseHost: "127.0.0.1", config: yield* SubscriptionRef.make(config), lease, store, leader: false })
    const address = yield* makeHealthServer(replica, { host: "127.0.0.1", port: 0 })
    if (address._tag !== "TcpAddress") throw new Error("the health server is not on TCP")
    return { replica, url: `http://127.0.0.1:${address.port}` } satisfies TestReplica
  })

export const awaitLeading = (replica: ShardReplicaShape, leading: boolean) =>
  replica.lease.isLeader.changes.pipe(
    Stream.filter((now) => now === leading),
    Stream.runHead,
    Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`${replica.replica} did not become ${leading ? "leader" : "a follower"} within 5 s`) })
  )

export const awaitLeaderKnown = (replica: ShardReplicaShape, leaderId: string) =>
  replica.lease.currentLeader.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (leader) => Option.isSome(leader) && leader.value.id === leaderId }),
    Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`${replica.replica} did not see ${leaderId} lead within 5 s`) })
  )

/**
 * Publishes a term on `replica` whose only real service is an event log folded from `events` at `seq`
 * (the health endpoint reads nothing else); released with the calling scope.
 */
export const publishTerm = (replica: ShardReplicaShape, term: number, events: ReadonlyArray<ShardEvent>, seq: number) =>
  Effect.gen(function* () {
    const state = fold(events)
    const log: EventLogShape = {
      open: () => Effect.void,
      append: () => Effect.succeed({ seq }),
      state: Effect.succeed(state),
      seq: Effect.succeed(seq),
      changes: Stream.make(state),
      snapshot: () => Effect.succeed({ seq })
    }
    // A partial context on purpose: a term's other services are never used by the health endpoint.
    const context = Context.make(EventLog, log) as unknown as Context.Context<LeaderServices>
    yield* replica.publishTerm({ term, context })
  })

export interface HttpAnswer {
  readonly status: number
  readonly body: string
  readonly contentType: string
}

/** One HTTP request; a refused connection fails (typed), so a poll can wait for a server to come up. */
export const get = (url: string, init?: RequestInit) =>
  Effect.tryPromise({
    try: async (): Promise<HttpAnswer> => {
      const response = await fetch(url, init)
      return { status: response.status, body: await response.text(), contentType: response.headers.get("content-type") ?? "" }
    },
    catch: (error) => new Error(`GET ${url}: ${error instanceof Error ? error.message : String(error)}`)
  })

/** Runs `effect` every 50 ms until `done` holds for its value (at most `seconds`, default 5); returns that value. */
export const pollUntil = <A, E>(effect: Effect.Effect<A, E>, done: (value: A) => boolean, seconds = 5) =>
  Effect.gen(function* () {
    let last: A | undefined
    const attempt = Effect.tap(effect, (value) => Effect.sync(() => { last = value }))
    yield* attempt.pipe(
      Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: done }),
      Effect.timeoutFail({ duration: `${seconds} seconds`, onTimeout: () => new Error(`the awaited answer did not come within ${seconds} s; the last was ${JSON.stringify(last)?.slice(0, 400)}`) })
    )
    if (last === undefined) return yield* Effect.dieMessage("pollUntil: no value")
    return last
  })
