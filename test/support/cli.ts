/**
 * Runs a command of ours in-process, through the same `cliProgram` the binary runs, with a Console that
 * records what the command prints (and raw stdout bytes), so a test sees exit status, stdout and stderr
 * without starting a Node process. Environment overrides are applied to `process.env` for the duration of
 * the run (each test file runs in its own worker, and runs are awaited one at a time).
 */
import { NodeContext } from "@effect/platform-node"
import type { Command } from "@effect/cli"
import { Console, Effect, Layer, Logger, Schedule } from "effect"
import { cliProgram, StdoutBytes } from "../../src/cli/run.js"

export interface CliResult {
  readonly status: number
  readonly stdout: string
  readonly stderr: string
  /** Raw bytes written to stdout (e.g. `config pull`), followed by the printed text. */
  readonly stdoutBytes: Uint8Array
}

const format = (args: ReadonlyArray<unknown>) => args.map((arg) => (typeof arg === "string" ? arg : String(arg))).join(" ")

/** A Console whose output goes to two string buffers. */
export const recordingConsole = () => {
  const out: Array<string> = []
  const err: Array<string> = []
  const unsafe: Console.UnsafeConsole = {
    assert: () => {},
    clear: () => {},
    count: () => {},
    countReset: () => {},
    debug: (...args) => { err.push(`${format(args)}\n`) },
    dir: (item) => { out.push(`${String(item)}\n`) },
    dirxml: (...args) => { out.push(`${format(args)}\n`) },
    error: (...args) => { err.push(`${format(args)}\n`) },
    group: () => {},
    groupCollapsed: () => {},
    groupEnd: () => {},
    info: (...args) => { out.push(`${format(args)}\n`) },
    log: (...args) => { out.push(`${format(args)}\n`) },
    table: (data) => { out.push(`${String(data)}\n`) },
    time: () => {},
    timeEnd: () => {},
    timeLog: () => {},
    trace: (...args) => { err.push(`${format(args)}\n`) },
    warn: (...args) => { err.push(`${format(args)}\n`) }
  }
  const lift = <A extends ReadonlyArray<unknown>>(f: (...args: A) => void) => (...args: A) => Effect.sync(() => f(...args))
  const console: Console.Console = {
    [Console.TypeId]: Console.TypeId,
    assert: lift(unsafe.assert),
    clear: Effect.void,
    count: lift(unsafe.count),
    countReset: lift(unsafe.countReset),
    debug: lift(unsafe.debug),
    dir: lift(unsafe.dir),
    dirxml: lift(unsafe.dirxml),
    error: lift(unsafe.error),
    group: () => Effect.void,
    groupEnd: Effect.void,
    info: lift(unsafe.info),
    log: lift(unsafe.log),
    table: lift(unsafe.table),
    time: () => Effect.void,
    timeEnd: () => Effect.void,
    timeLog: () => Effect.void,
    trace: lift(unsafe.trace),
    warn: lift(unsafe.warn),
    unsafe
  }
  return { console, stdout: () => out.join(""), stderr: () => err.join("") }
}

const withEnv = async <A>(env: Readonly<Record<string, string | undefined>>, run: () => Promise<A>): Promise<A> => {
  const saved = new Map<string, string | undefined>()
  for (const [key, value] of Object.entries(env)) {
    saved.set(key, process.env[key])
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  try {
    return await run()
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
}

export interface InProcessOptions {
  /** Variables set (or, when undefined, removed) in `process.env` while the command runs. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Interrupts the command after this many milliseconds (for commands that run until Ctrl-C). */
  readonly interruptAfterMs?: number
  /**
   * Interrupts the command as soon as this holds (checked every 50 ms; `interruptAfterMs` still bounds it):
   * a test waits for what it checks, not for a time a busy machine may not meet.
   */
  readonly until?: () => boolean
}

/** `runCommand(adminCommand, "nstance-admin", ["place", "--json", …])`. */
export const runCommand = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>,
  name: string,
  args: ReadonlyArray<string>,
  options: InProcessOptions = {}
): Promise<CliResult> =>
  withEnv({ NO_COLOR: "1", ...options.env }, async () => {
    const recorder = recordingConsole()
    const bytes: Array<Uint8Array> = []
    const program = cliProgram(command, name)(["node", name, ...args]) as Effect.Effect<number, never, NodeContext.NodeContext>
    const until = options.until
    const stoppable = until === undefined
      ? program
      : Effect.raceFirst(program, Effect.sync(until).pipe(Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (done) => done }), Effect.as(0)))
    const bounded = options.interruptAfterMs === undefined
      ? stoppable
      : stoppable.pipe(Effect.timeoutTo({ duration: options.interruptAfterMs, onTimeout: () => 0, onSuccess: (code) => code }))
    const status = await Effect.runPromise(bounded.pipe(
      Effect.withConsole(recorder.console),
      Effect.provideService(StdoutBytes, (chunk) => { bytes.push(chunk) }),
      // Logs go to the recording console as well, never to the test runner's stdout.
      Effect.provide(Layer.mergeAll(NodeContext.layer, Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(Logger.logfmtLogger))))
    ))
    const stdout = recorder.stdout()
    const raw = Buffer.concat([...bytes, Buffer.from(stdout)])
    return { status, stdout: bytes.length > 0 ? Buffer.concat(bytes).toString("utf8") + stdout : stdout, stderr: recorder.stderr(), stdoutBytes: new Uint8Array(raw) }
  })
