/**
 * How a replica runs one of its endpoints (registration, agent channel, admin): the server's layer is
 * built and kept up until the fiber is interrupted. A failure to build it — the address is taken — is
 * logged as an error and the replica goes on without that endpoint: a missing endpoint must not take a
 * shard down.
 */
import type { HttpServer, SocketServer } from "@effect/platform"
import { type Context, Effect, Layer } from "effect"

/** Where a server listens: HTTP servers and socket servers say it alike. */
export type ServerAddress = HttpServer.Address | SocketServer.Address

export const keepServing = <A, E, R>(
  server: Layer.Layer<A, E, R>,
  options: {
    /** Where the built server listens (its `HttpServer` or `SocketServer`). */
    readonly address: (context: Context.Context<A>) => ServerAddress
    /** Said once the server listens (the bound address, e.g. for a port chosen by the OS). */
    readonly listening: (address: ServerAddress) => Effect.Effect<void>
    /** The one line logged, with the cause, when the server cannot be started. */
    readonly cannotServe: string
  }
): Effect.Effect<never, never, R> =>
  Effect.scoped(Effect.gen(function* () {
    yield* options.listening(options.address(yield* Layer.build(server)))
    return yield* Effect.never
  })).pipe(
    Effect.catchAllCause((cause) => Effect.logError(options.cannotServe, cause)),
    Effect.zipRight(Effect.never)
  )
