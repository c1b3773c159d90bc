/**
 * Shared runner for the CLIs: every failure reaches the operator as one clear line on stderr and exit
 * status 1 — never a stack trace for an expected error. The program part (`cliProgram`) returns the exit
 * status instead of touching the process, so tests run a command in-process through the same code path as
 * the binary, with the Console swapped for one that records what it prints.
 *
 * The command line is checked before @effect/cli sees it, because the library's own messages do not name
 * the flag they are about (`Expected one of the following cases: s3, gcs, file`, `'abc' is not a
 * integer`, `Received unknown argument: '--shard'` for a repeated flag or a missing value). What is left
 * for the library (a missing required flag, say) is parsed once without printing, and its message turned
 * into our one line.
 */
import { CliConfig, Command, CommandDescriptor, HelpDoc, type Usage, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Context, Data, Effect, Either, Option } from "effect"
import { escapeControl, printableLines, stripColour } from "./escape.js"
import { echoValue } from "../domain/errorText.js"

export const VERSION = "0.1.0"

/**
 * Ends the command with this exit status; whatever the operator needs to know has already been printed.
 * (Commands fail with it rather than set `process.exitCode`, so an in-process run sees the status too.)
 */
export class CliExit extends Data.TaggedError("CliExit")<{ readonly code: number }> {}

export const exitWith = (code: number) => Effect.fail(new CliExit({ code }))

/** Where raw bytes for stdout go (`config pull` without `-o`): the process's stdout unless a test swaps it. */
export class StdoutBytes extends Context.Reference<StdoutBytes>()("nstance/StdoutBytes", {
  defaultValue: () => (bytes: Uint8Array): void => { process.stdout.write(bytes) }
}) {}

const oneLine = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" && error.message !== "") {
    return error.message
  }
  return String(error)
}

// ---------------------------------------------------------------------------------------------------
// The command line, checked flag by flag

/** A flag of one command as its usage describes it: `value` is undefined for a boolean flag. */
interface FlagSpec {
  readonly name: string
  /** `text`, `integer`, `float`, `a | b | c` (choice), … as @effect/cli names the accepted values. */
  readonly value: string | undefined
}

/** What every command accepts besides its own flags (@effect/cli's built-in options). */
const BUILT_IN: ReadonlyArray<FlagSpec> = [
  { name: "--help", value: undefined },
  { name: "-h", value: undefined },
  { name: "--version", value: undefined },
  { name: "--wizard", value: undefined },
  { name: "--completions", value: "sh | bash | fish | zsh" },
  { name: "--log-level", value: "all | trace | debug | info | warning | error | fatal | none" }
]
const SHORT_CIRCUIT = new Set(["--help", "-h", "--version", "--wizard", "--completions"])

const BOOLEAN_VALUES = new Set(["true", "1", "y", "yes", "on", "false", "0", "n", "no", "off"])

/** One level of the command tree: its flags, positional arguments and subcommands. */
interface Level {
  readonly name: string
  readonly flags: ReadonlyMap<string, FlagSpec>
  readonly positionals: number
  readonly subcommands: ReadonlyMap<string, unknown>
}

const flagsOfUsage = (usage: Usage.Usage, flags: Map<string, FlagSpec>, positionals: Array<string>): void => {
  switch (usage._tag) {
    case "Named": {
      const canonical = usage.names.find((name) => name.startsWith("--")) ?? usage.names[0] ?? ""
      if (!canonical.startsWith("-")) {
        if (canonical.startsWith("<")) positionals.push(canonical)
        return
      }
      const spec = { name: canonical, value: Option.getOrUndefined(usage.acceptedValues) }
      for (const name of usage.names) flags.set(name, spec)
      return
    }
    case "Optional":
    case "Repeated":
      return flagsOfUsage(usage.usage, flags, positionals)
    case "Alternation":
    case "Concat":
      flagsOfUsage(usage.left, flags, positionals)
      return flagsOfUsage(usage.right, flags, positionals)
    default:
      return
  }
}

/**
 * The level of a command descriptor. @effect/cli exposes a tree's usage but, past the first level, not
 * its subcommands, so the descriptor's `Map` / `Subcommands` nodes are read directly; a shape this does not
 * know yields undefined, and the check is then left to the library.
 */
const levelOf = (descriptor: unknown): Level | undefined => {
  const node = descriptor as { _tag?: string; command?: unknown; parent?: unknown; children?: ReadonlyArray<unknown>; name?: string }
  if (node._tag === "Map") return levelOf(node.command)
  if (node._tag === "Standard" && typeof node.name === "string") {
    const flags = new Map<string, FlagSpec>()
    const positionals: Array<string> = []
    flagsOfUsage(CommandDescriptor.getUsage(descriptor as CommandDescriptor.Command<unknown>), flags, positionals)
    return { name: node.name, flags, positionals: positionals.length, subcommands: new Map() }
  }
  if (node._tag === "Subcommands" && Array.isArray(node.children)) {
    const parent = levelOf(node.parent)
    if (parent === undefined) return undefined
    const subcommands = new Map<string, unknown>()
    for (const child of node.children) {
      const level = levelOf(child)
      if (level === undefined) return undefined
      subcommands.set(level.name, child)
    }
    return { ...parent, subcommands }
  }
  return undefined
}

const distance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length] ?? 0
}

const closest = (word: string, candidates: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = 3
  for (const candidate of candidates) {
    const d = distance(word, candidate)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

const choicesOf = (value: string): ReadonlyArray<string> | undefined =>
  value.includes(" | ") ? value.split(" | ") : undefined

/** What a flag wants, in words: "one of s3, gcs, file", "an integer", "a value". */
const expectedOf = (value: string): string => {
  const choices = choicesOf(value)
  if (choices !== undefined) return `one of ${choices.join(", ")}`
  if (value === "integer") return "an integer"
  if (value === "float") return "a number"
  if (value === "date") return "a date"
  return "a value"
}

const valueProblem = (flag: string, spec: FlagSpec, value: string): string | undefined => {
  const accepted = spec.value ?? ""
  const choices = choicesOf(accepted)
  if (choices !== undefined && !choices.includes(value)) return `${flag} must be one of ${choices.join(", ")} (got ${echoValue(value)})`
  if (accepted === "integer" && !/^[-+]?\d+$/.test(value)) return `${flag} must be an integer (got ${echoValue(value)})`
  // Digits alone are not enough: the library refuses what a double cannot hold exactly, without the flag's name.
  if (accepted === "integer" && !Number.isSafeInteger(Number(value))) {
    return `${flag} must be an integer between ${Number.MIN_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER} (got ${echoValue(value)})`
  }
  if (accepted === "float" && !Number.isFinite(Number(value))) return `${flag} must be a number (got ${echoValue(value)})`
  return undefined
}

const subcommandList = (names: Iterable<string>) => {
  const all = [...names].sort()
  return all.length <= 1 ? all.join("") : `${all.slice(0, -1).join(", ")} or ${all[all.length - 1]}`
}

/**
 * The first problem of `args` for `command`, as one line naming the flag and what it expects; undefined
 * when the command line is well-formed as far as flags go (or asks for help, version or completions).
 */
export const commandLineProblem = (descriptor: unknown, args: ReadonlyArray<string>): string | undefined => {
  let level = levelOf(descriptor)
  if (level === undefined) return undefined
  if (args.some((arg) => SHORT_CIRCUIT.has(arg.split("=")[0] ?? arg))) return undefined
  const path = [level.name]
  const seen = new Map<string, string>()
  let positionals = 0
  let forced = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? ""
    const known = level.flags
    const isFlag = (token: string) => {
      const name = token.startsWith("--") ? token.split("=")[0] ?? token : token
      return known.has(name) || BUILT_IN.some((flag) => flag.name === name)
    }
    if (!forced && arg === "--") {
      forced = true
      continue
    }
    if (!forced && arg.startsWith("-") && arg.length > 1) {
      const equals = arg.startsWith("--") ? arg.indexOf("=") : -1
      const name = equals > 0 ? arg.slice(0, equals) : arg
      const spec = known.get(name) ?? BUILT_IN.find((flag) => flag.name === name)
      if (spec === undefined) {
        const suggestion = closest(name, [...known.keys()].filter((flag) => flag.startsWith("--")))
        return `unknown flag ${name} for ${path.join(" ")}${suggestion === undefined ? ` (see ${path.join(" ")} --help)` : ` (did you mean ${suggestion}?)`}`
      }
      let value: string | undefined
      if (spec.value === undefined) {
        value = equals > 0 ? arg.slice(equals + 1) : BOOLEAN_VALUES.has(args[i + 1] ?? "") ? args[++i] : "true"
      } else if (equals > 0) {
        value = arg.slice(equals + 1)
      } else {
        const next = args[i + 1]
        if (next === undefined) return `${name} needs ${expectedOf(spec.value)} after it`
        if (isFlag(next)) return `${name} needs ${expectedOf(spec.value)} after it (got the flag ${next.split("=")[0]})`
        value = args[++i] ?? ""
      }
      const previous = seen.get(spec.name)
      if (previous !== undefined) {
        return spec.value === undefined
          ? `${spec.name} is given twice; give it once`
          : `${spec.name} is given twice (${echoValue(previous)}, then ${echoValue(value ?? "")}); give it once`
      }
      seen.set(spec.name, value ?? "")
      if (spec.value !== undefined && value !== undefined) {
        const problem = valueProblem(name, spec, value)
        if (problem !== undefined) return problem
      }
      continue
    }
    if (level.subcommands.size > 0 && positionals === 0 && seen.size === 0) {
      const child = level.subcommands.get(arg)
      if (child === undefined) {
        return `unknown subcommand ${echoValue(arg)} for ${path.join(" ")} (one of ${subcommandList(level.subcommands.keys())})`
      }
      const next = levelOf(child)
      if (next === undefined) return undefined
      level = next
      path.push(next.name)
      continue
    }
    positionals++
    if (positionals > level.positionals) return `unexpected argument ${echoValue(arg)} for ${path.join(" ")}`
  }
  if (level.subcommands.size > 0) {
    return `${path.join(" ")} needs a subcommand: ${subcommandList(level.subcommands.keys())} (see ${path.join(" ")} --help)`
  }
  return undefined
}

/** The library's message as one line: its paragraphs joined, missing flags listed together. */
const validationLine = (error: ValidationError.ValidationError): string => {
  const paragraphs = stripColour(HelpDoc.toAnsiText(error.error)).split(/\n\s*\n/).map((text) => text.replace(/\s+/g, " ").trim()).filter((text) => text !== "")
  const missing = paragraphs.flatMap((text) => {
    const match = /^Expected to find option: '(.+)'$/.exec(text)
    return match === null ? [] : [match[1] ?? ""]
  })
  const rest = paragraphs.filter((text) => !/^Expected to find option: /.test(text))
  const lines = [
    ...(missing.length === 0 ? [] : [`missing required flag${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`]),
    ...rest.map((text) =>
      text
        .replace(/^Received unknown argument: '(.*)'$/, (_, arg: string) => `unexpected argument ${echoValue(arg)}`)
        .replace(/^Missing argument <(.*)>$/, (_, arg: string) => `missing argument ${arg}`))
  ]
  return lines.join("; ") || `invalid command line (${error._tag})`
}

/** The current Console with colour codes removed from what it prints (help into a pipe). */
const withoutColour = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.console, (console) => {
    const plain = (print: (...args: ReadonlyArray<unknown>) => Effect.Effect<void>) => (...args: ReadonlyArray<unknown>) =>
      print(...args.map((arg) => (typeof arg === "string" ? stripColour(arg) : arg)))
    return Effect.withConsole(effect, { ...console, log: plain(console.log), error: plain(console.error), info: plain(console.info) })
  })

const colourWanted = () => process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined

const bareFlags = new WeakMap<object, ReadonlyMap<string, string>>()

/**
 * Lets `flag` be given without a value (`nstance-server --validate`), as the original allows: alone or
 * followed by another flag, it stands for `--flag=<sentinel>`. @effect/cli has no optional-value option.
 */
export const withBareFlag = <C extends object>(command: C, flag: string, sentinel: string): C => {
  bareFlags.set(command, new Map([...(bareFlags.get(command) ?? []), [flag, sentinel]]))
  return command
}

const expandBareFlags = (command: object, args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const flags = bareFlags.get(command)
  if (flags === undefined) return args
  return args.map((arg, i) => {
    const sentinel = flags.get(arg)
    const next = args[i + 1]
    return sentinel !== undefined && (next === undefined || next.startsWith("-")) ? `${arg}=${sentinel}` : arg
  })
}

/** Runs `command` on `argv` (as `process.argv`: node, script, args…) and yields the exit status. */
export const cliProgram = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, name: string) => {
  const cli = Command.run(command, { name, version: VERSION })
  const refuse = (line: string) => Console.error(`✗ ${escapeControl(line)}`).pipe(Effect.as(1))
  return (given: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      const args = expandBareFlags(command, given.slice(2))
      const argv = [...given.slice(0, 2), ...args]
      const problem = commandLineProblem(command.descriptor, args)
      if (problem !== undefined) return yield* refuse(problem)
      // Parsed once without printing: the library would print its own (unnamed) message on failure.
      const top = [...Command.getNames(command)][0] ?? name
      const parsed = yield* Effect.either(CommandDescriptor.parse(command.descriptor, [top, ...args], CliConfig.defaultConfig))
      if (Either.isLeft(parsed)) return yield* refuse(validationLine(parsed.left))
      const directive = parsed.right
      if (directive._tag === "UserDefined" && directive.leftover.length > 0) {
        const first = directive.leftover[0] ?? ""
        // The library reads its built-in --log-level only in front of the command's own flags.
        return yield* refuse(BUILT_IN.some((flag) => flag.name === first)
          ? `${first} must come before the other flags`
          : `unexpected argument ${echoValue(first)}`)
      }
      const builtIn = directive._tag === "BuiltIn"
      yield* builtIn && !colourWanted() ? withoutColour(cli(argv)) : Effect.suspend(() => cli(argv))
      return 0
    }).pipe(
      Effect.catchAllCause((cause) => {
        // SIGINT/SIGTERM: the daemon's finalizers (lease resign) have run; nothing to report.
        if (Cause.isInterruptedOnly(cause)) return Effect.succeed(0)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) {
          const error: unknown = failure.value
          if (error instanceof CliExit) return Effect.succeed(error.code)
          if (ValidationError.isValidationError(error)) return refuse(validationLine(error))
        }
        const message = Option.match(failure, { onNone: () => Cause.pretty(cause), onSome: oneLine })
        return Effect.forEach(printableLines(message), (line) => Console.error(`✗ ${line}`), { discard: true }).pipe(Effect.as(1))
      })
    )
}

export const runCli = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, name: string) => {
  const program = cliProgram(command, name)(process.argv).pipe(
    Effect.flatMap((code) => Effect.sync(() => { process.exitCode = code })),
    Effect.provide(NodeContext.layer)
  )
  NodeRuntime.runMain(program as Effect.Effect<void, never, never>, { disableErrorReporting: true, disablePrettyLogger: true })
}
