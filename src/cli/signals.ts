/**
 * What the daemon does with the signals an operator (or a stray `kill`) may send. Node's defaults are wrong
 * for a process that holds the PVE token, the admin token and the encryption key: SIGUSR1 opens the
 * inspector on 127.0.0.1:9229 (anyone on the host could then run code inside it), and SIGHUP, SIGUSR2 and
 * SIGQUIT end the process at once, without resigning the lease. So, for as long as the daemon runs:
 *
 * - SIGHUP re-reads the shard config (`config.jsonc` and `groups.jsonc`) now, as `nstance-admin refresh` does;
 * - SIGUSR1 and SIGUSR2 are logged and ignored — a listener on SIGUSR1 is what keeps Node from starting the
 *   inspector (Node 20 has no `--disable-sigusr1`);
 * - SIGQUIT stops the server as SIGTERM does (the lease resigned on the way out);
 * - SIGINT and SIGTERM stay with `NodeRuntime.runMain`, which interrupts the program so every scope closes.
 *
 * `bin/nstance-server.js` installs listeners of its own before the bundle loads, so the window before these
 * handlers exist is closed too; they stay installed for the life of the process, because removing the last
 * listener of a signal restores Node's default for it.
 */
import { Effect, PubSub, Runtime, type Scope, Stream } from "effect"

/** The signals handled here; SIGINT/SIGTERM are `runMain`'s. */
export const DAEMON_SIGNALS = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT"] as const
export type DaemonSignal = (typeof DAEMON_SIGNALS)[number]

const said = (signal: DaemonSignal): Effect.Effect<void> => {
  switch (signal) {
    case "SIGHUP":
      return Effect.logInfo("SIGHUP: re-reading the shard config now (as nstance-admin refresh does)")
    case "SIGUSR1":
      return Effect.logWarning("SIGUSR1 ignored: this server never opens Node's inspector (it would expose the tokens and keys it holds)")
    case "SIGUSR2":
      return Effect.logWarning("SIGUSR2 ignored: SIGTERM or SIGINT stops the server (resigning the lease), SIGHUP re-reads the shard config")
    case "SIGQUIT":
      return Effect.logInfo("SIGQUIT: stopping as for SIGTERM (resigning the lease)")
  }
}

/**
 * Installs the daemon's handlers for the life of the scope and returns the stream of config reload requests
 * (one `"SIGHUP"` per SIGHUP) every shard's daemon follows. `raise` re-sends SIGQUIT as SIGTERM (swapped in
 * tests, where the process is the test runner).
 */
export const handleDaemonSignals = (
  raise: (signal: NodeJS.Signals) => void = (signal) => { process.kill(process.pid, signal) }
): Effect.Effect<Stream.Stream<string>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const reloads = yield* Effect.acquireRelease(PubSub.unbounded<string>(), PubSub.shutdown)
    const run = Runtime.runFork(yield* Effect.runtime<never>())
    const handle = (signal: DaemonSignal) =>
      said(signal).pipe(
        Effect.zipRight(
          signal === "SIGHUP"
            ? PubSub.publish(reloads, signal)
            : signal === "SIGQUIT"
            ? Effect.sync(() => raise("SIGTERM"))
            : Effect.void
        )
      )
    const listeners = DAEMON_SIGNALS.map((signal) => [signal, () => { run(handle(signal)) }] as const)
    yield* Effect.acquireRelease(
      Effect.sync(() => { for (const [signal, listener] of listeners) process.on(signal, listener) }),
      () => Effect.sync(() => { for (const [signal, listener] of listeners) process.off(signal, listener) })
    )
    return Stream.fromPubSub(reloads)
  })
