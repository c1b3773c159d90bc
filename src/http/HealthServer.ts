/**
 * Plain HTTP on `shard.bind.health_addr`, served by every replica, leader or standby:
 *
 * - `GET /healthz` — 200 `ok` while the process serves at all (liveness).
 * - `GET /readyz` — 200 when this replica leads with its term started, or is a standby whose lease loop
 *   reaches the store; 503 otherwise. The body is one line: `ready: <why>` or `not ready: <why>`.
 * - `GET /leaderz` — 200 only while this replica leads with its term started, 503 from the moment it does
 *   not (a standby, a leader still starting, a leader that lost or fenced its lease); a JSON body saying
 *   which term, or who leads instead. What a keepalived check asks, so a VIP sits on the leader only.
 * - `GET /metrics` — every Effect `Metric` as Prometheus text; the state gauges (lease, log seq, instances
 *   by phase, reconcile backlog) are set from this replica's view just before each collection.
 *
 * One server and one port for the four, rather than the Prometheus exporter's own server (which serves a
 * single path and would need a second port).
 */
import { HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { ServeError } from "@effect/platform/HttpServerError"
import { Clock, Context, Duration, Effect, Layer, Option, Ref, type Scope, SubscriptionRef } from "effect"
import { Leadership, leadershipOf } from "../domain/leadership.js"
import { type Readiness, readinessOf } from "../domain/readiness.js"
import type { State } from "../domain/shard/state.js"
import { setReplicaGauges } from "../metrics/metrics.js"
import { makePrometheusScrape, PROMETHEUS_CONTENT_TYPE, type PrometheusScrape } from "../metrics/prometheus.js"
import { EventLog } from "../services/EventLog.js"
import { Ownership } from "../shard/Ownership.js"
import { Preflight, type PreflightRun } from "../shard/Preflight.js"
import { ClusterView } from "../shard/ClusterView.js"
import type { PvePowerState } from "../domain/pve/status.js"
import type { ListenerLimits } from "../domain/listenerLimits.js"
import { guardedServerLayer } from "./listener.js"
import type { ShardReplicaShape } from "../shard/ShardReplica.js"

/** What the replica looks like right now: its readiness, and the figures the state gauges show. */
export const observeReplica = (replica: ShardReplicaShape) =>
  Effect.gen(function* () {
    const isLeader = yield* SubscriptionRef.get(replica.lease.isLeader)
    const leaseTerm = yield* replica.lease.term
    const term = yield* replica.currentTerm
    const leader = Option.getOrUndefined(yield* replica.lease.currentLeader)
    const contact = replica.lease.lastContact === undefined ? Option.some(yield* Clock.currentTimeMillis) : yield* replica.lease.lastContact
    const now = yield* Clock.currentTimeMillis
    const election = (yield* SubscriptionRef.get(replica.config)).config.shard.leaderElection
    // A follower of a healthy leader reads the record only every infrequent interval; silence for two of
    // the longer of that and the leader timeout means the lease loop cannot see a free lease in time.
    const staleAfterMillis = 2 * Math.max(Duration.toMillis(election.leaderTimeout), Duration.toMillis(election.infrequentInterval))
    const configHeld = yield* Ref.get(replica.configHeld.objects)
    const ownershipHold = yield* Option.match(term, {
      onNone: () => Effect.succeed(Option.none<string>()),
      // A term may publish without the ownership service (tests publish a bare log): no hold then.
      onSome: (t) => Option.match(Context.getOption(t.context, Ownership), {
        onNone: () => Effect.succeed(Option.none<string>()),
        onSome: (ownership) => SubscriptionRef.get(ownership.hold)
      })
    })
    // The term's last preflight run (a term published without the service, as tests do, has none).
    const preflight = yield* Option.match(Option.flatMap(term, (t) => Context.getOption(t.context, Preflight)), {
      onNone: () => Effect.succeed(Option.none<PreflightRun>()),
      onSome: (service) => service.latest
    })
    const readiness: Readiness = readinessOf({
      replica: replica.replica,
      isLeader,
      leaseTerm,
      publishedTerm: Option.getOrUndefined(Option.map(term, (t) => t.term)),
      leader,
      sinceContactMillis: Option.getOrUndefined(Option.map(contact, (at) => Math.max(0, now - at))),
      staleAfterMillis,
      logProblem: Option.getOrUndefined(yield* replica.logProblem),
      configHeld,
      ownershipHold: Option.getOrUndefined(ownershipHold),
      preflight: Option.getOrUndefined(Option.map(preflight, (run) => run.report.findings))
    })
    const log = yield* Option.match(term, {
      onNone: () => Effect.succeed(Option.none<{ state: State; seq: number }>()),
      onSome: (t) => {
        const eventLog = Context.get(t.context, EventLog)
        return Effect.map(Effect.all({ state: eventLog.state, seq: eventLog.seq }), Option.some)
      }
    })
    // PVE's VM states from the term's last GC pass (a term published without the view, as tests do, has none).
    const pveStates = yield* Option.match(Option.flatMap(term, (t) => Context.getOption(t.context, ClusterView)), {
      onNone: () => Effect.succeed(new Map<string, PvePowerState>()),
      onSome: (view) => view.vmStates
    })
    return { readiness, leaseTerm, leader, log, configHeld, pveStates }
  })

const text = (body: string, status = 200) => HttpServerResponse.text(`${body}\n`, { status })

const leadershipJson = HttpServerResponse.schemaJson(Leadership)

/** `/leaderz`: 200 exactly when readiness says "leader" (lease held, term started), else 503 naming who leads. */
const leaderz = (replica: ShardReplicaShape) =>
  Effect.gen(function* () {
    const { readiness, leaseTerm, leader } = yield* observeReplica(replica)
    const leaderHealth = leader === undefined ? "" : yield* replica.leaderAddress("health")
    const answer = leadershipOf({ shard: replica.shard, replica: replica.replica, readiness, leaseTerm, leader, leaderHealth })
    return yield* leadershipJson(answer, { status: answer.leading ? 200 : 503 }).pipe(
      // Our own value failing its schema is a bug; the check must fail then, so it is a 500 (and logged).
      Effect.catchAll((error) => Effect.as(Effect.logError("/leaderz: cannot encode the answer", error.reason.error), text("cannot encode the answer", 500)))
    )
  })

/** The four endpoints as one HTTP app. */
export const healthApp = (replica: ShardReplicaShape, scrape: PrometheusScrape) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.method !== "GET" && request.method !== "HEAD") {
      return HttpServerResponse.text("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } })
    }
    const path = request.url.split("?")[0]
    switch (path) {
      case "/healthz":
        return text("ok")
      case "/readyz": {
        const { readiness } = yield* observeReplica(replica)
        return readiness.ready ? text(`ready: ${readiness.reason}`) : text(`not ready: ${readiness.reason}`, 503)
      }
      case "/leaderz":
        return yield* leaderz(replica)
      case "/metrics": {
        const { readiness, leaseTerm, log, configHeld, pveStates } = yield* observeReplica(replica)
        yield* setReplicaGauges({
          shard: replica.shard,
          replica: replica.replica,
          role: readiness.role,
          term: leaseTerm,
          log,
          configHeld: configHeld.map((h) => h.object),
          pveStates
        })
        return yield* scrape.text.pipe(
          Effect.map((body) => HttpServerResponse.text(body, { contentType: PROMETHEUS_CONTENT_TYPE })),
          Effect.catchAll((error) => Effect.as(Effect.logError(error.message), text(error.message, 500)))
        )
      }
      default:
        return text("not found; this server answers /healthz, /readyz, /leaderz and /metrics", 404)
    }
  })

export interface HealthServerOptions {
  /** "" or absent: every interface. */
  readonly host?: string
  /** 0 picks a free port (tests); the bound address is returned. */
  readonly port: number
  /** Connection caps and timeouts (default: what the process's descriptor limit allows). */
  readonly limits?: ListenerLimits
}

/** Serves the endpoints until the scope closes; fails when the address cannot be bound. */
export const makeHealthServer = (replica: ShardReplicaShape, options: HealthServerOptions): Effect.Effect<HttpServer.Address, ServeError, Scope.Scope> =>
  Effect.gen(function* () {
    const scrape = yield* makePrometheusScrape
    const server = HttpServer.serve(healthApp(replica, scrape)).pipe(
      Layer.provideMerge(guardedServerLayer("health", options, options.limits))
    )
    const context = yield* Layer.build(server)
    return Context.get(context, HttpServer.HttpServer).address
  })

/**
 * The health endpoint of a running replica on `shard.bind.health_addr`, for as long as the calling scope
 * lives. A bind failure (port in use) is logged as an error and the replica goes on without it: losing
 * monitoring must not take a shard down.
 */
export const serveHealth = (replica: ShardReplicaShape): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const bind = (yield* SubscriptionRef.get(replica.config)).config.shard.bind.health
    yield* makeHealthServer(replica, { host: bind.host, port: bind.port }).pipe(
      Effect.tap((address) => Effect.logInfo(`health endpoint: listening on ${formatAddress(address)} (/healthz, /readyz, /leaderz, /metrics)`)),
      Effect.catchAllCause((cause) =>
        Effect.logError(`health endpoint: cannot serve on ${bind.text}; this replica runs on without /healthz, /readyz, /leaderz and /metrics`, cause))
    )
  })

const formatAddress = (address: HttpServer.Address) =>
  address._tag === "TcpAddress" ? (address.hostname.includes(":") ? `[${address.hostname}]:${address.port}` : `${address.hostname}:${address.port}`) : address.path
