/**
 * How a replica runs one of its HTTP endpoints (agent, admin): the server's layer is built and kept up until
 * the fiber is interrupted. A failure to build it — the address is taken — is logged as an error and the
 * replica goes on without that endpoint: a missing endpoint must not take a shard down.
 */
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer } from "effect"

export const keepServing = <E, R>(
  server: Layer.Layer<HttpServer.HttpServer, E, R>,
  options: {
    /** Said once the server listens (the bound address, e.g. for a port chosen by the OS). */
    readonly listening: (address: HttpServer.Address) => Effect.Effect<void>
    /** The one line logged, with the cause, when the server cannot be started. */
    readonly cannotServe: string
  }
): Effect.Effect<never, never, R> =>
  Effect.scoped(Effect.gen(function* () {
    const context = yield* Layer.build(server)
    yield* options.listening(Context.get(context, HttpServer.HttpServer).address)
    return yield* Effect.never
  })).pipe(
    Effect.catchAllCause((cause) => Effect.logError(options.cannotServe, cause)),
    Effect.zipRight(Effect.never)
  )
