/**
 * Effect's metric registry as Prometheus text, through OpenTelemetry: @effect/opentelemetry's producer
 * reads the registry, the Prometheus exporter (as a plain `MetricReader`, its own HTTP server never started)
 * collects from it, and its serializer writes the exposition format. We serve the text ourselves so that
 * `/healthz`, `/readyz` and `/metrics` share one port, and so the state gauges can be set right before each
 * collection.
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Data, Effect, type Scope } from "effect"

/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

export class MetricsCollectFailed extends Data.TaggedError("MetricsCollectFailed")<{ readonly reason: string }> {
  override get message() {
    return `metrics: collecting the metric registry failed: ${this.reason}`
  }
}

export interface PrometheusScrape {
  /** The whole registry, serialized now. */
  readonly text: Effect.Effect<string, MetricsCollectFailed>
}

/**
 * A reader of Effect's (process-wide) metric registry, for as long as the scope lives. Each call makes its
 * own reader: an OpenTelemetry reader binds to one producer, once.
 */
export const makePrometheusScrape: Effect.Effect<PrometheusScrape, never, Scope.Scope> = Effect.gen(function* () {
  const reader = new PrometheusExporter({ preventServerStart: true })
  const producer = yield* OtelMetrics.makeProducer.pipe(Effect.provide(OtelResource.layer({ serviceName: "nstance" })))
  yield* OtelMetrics.registerProducer(producer, () => reader)
  // No otel_scope_name label on every series: there is one scope, and Prometheus users do not expect it.
  const serializer = new PrometheusSerializer(undefined, undefined, undefined, false, true)
  return {
    text: Effect.tryPromise({
      try: () => reader.collect(),
      catch: (error) => new MetricsCollectFailed({ reason: error instanceof Error ? error.message : String(error) })
    }).pipe(
      Effect.flatMap(({ resourceMetrics, errors }) =>
        errors.length === 0
          ? Effect.succeed(serializer.serialize(resourceMetrics))
          : Effect.fail(new MetricsCollectFailed({ reason: errors.map((error) => (error instanceof Error ? error.message : String(error))).join("; ") })))
    )
  }
})
