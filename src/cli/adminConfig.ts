/**
 * `nstance-admin config push|pull`: moves a shard's `config.jsonc` between a local file and the shard's
 * object store. Semantic validation is `nstance-server --validate`'s job; push only refuses text that is
 * not JSONC at all, so a typo never reaches the servers that read it.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Console, Effect, Logger, LogLevel, Option } from "effect"
import { type ParseError, parse, printParseErrorCode } from "jsonc-parser"
import { describeLocation, objectStoreLayer, type StorageFlags } from "../layers/ObjectStoreFromFlags.js"
import { shardPrefix } from "../layers/ObjectStoreScoped.js"
import { ifMatch, ObjectStore } from "../services/ObjectStore.js"
import { UsageError } from "./errors.js"
import { StdoutBytes } from "./run.js"

export const CONFIG_KEY = "config.jsonc"

const storage = Options.choice("storage", ["s3", "gcs", "file"] as const).pipe(
  Options.withDescription(
    "Where the shard's state lives: s3 (AWS_* env, AWS_ENDPOINT_URL, AWS_S3_USE_PATH_STYLE), gcs (Application Default Credentials) or file (a directory)"
  )
)
const bucket = Options.text("bucket").pipe(Options.withDescription("Bucket name (s3, gcs) or directory (file)"))
const shard = Options.text("shard").pipe(Options.withDescription("Shard ID; the config lives at shard/{shard}/config.jsonc unless --prefix is given"))
const prefix = Options.text("prefix").pipe(
  Options.withDescription("Key prefix of the shard instead of shard/{shard}/ (include the trailing '/')"),
  Options.optional
)

/** 1-based line and column of a character offset, as editors show them. */
export const lineColumn = (text: string, offset: number) => {
  const before = text.slice(0, offset)
  const line = before.split("\n").length
  return { line, column: offset - before.lastIndexOf("\n") }
}

/** Undefined when `text` is well-formed JSONC (comments and trailing commas allowed), else the first problem. */
export const jsoncProblem = (text: string): string | undefined => {
  const errors: Array<ParseError> = []
  parse(text, errors, { allowTrailingComma: true, disallowComments: false })
  const first = errors[0]
  if (first === undefined) return undefined
  const { line, column } = lineColumn(text, first.offset)
  return `${line}:${column}: ${printParseErrorCode(first.error)}`
}

/**
 * The store layer for one CLI call: retry warnings are kept out of the operator's terminal (the final
 * error names the reason), and the AWS SDK's notice about future Node versions is not an error of theirs.
 */
const withStore = (flags: StorageFlags) => <A, E>(effect: Effect.Effect<A, E, ObjectStore>) => {
  process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true"
  return effect.pipe(Effect.provide(objectStoreLayer(flags)), Logger.withMinimumLogLevel(LogLevel.Error))
}

const keyOf = (args: { readonly shard: string; readonly prefix: Option.Option<string> }) =>
  shardPrefix(args.shard, Option.getOrUndefined(args.prefix)) + CONFIG_KEY

const push = Command.make(
  "push",
  {
    file: Args.text({ name: "FILE" }).pipe(Args.withDescription("The config.jsonc to upload")),
    storage,
    bucket,
    shard,
    prefix,
    ifMatchEtag: Options.text("if-match").pipe(
      Options.withDescription("Upload only if the stored config still has this etag (as printed by a previous push or pull -o)"),
      Options.optional
    )
  },
  Effect.fn("admin.config.push")(function* (args) {
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* fs.readFile(args.file).pipe(
      Effect.mapError((error) => new UsageError({ message: `cannot read ${args.file}: ${error.message}` }))
    )
    const text = yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      catch: () => new UsageError({ message: `${args.file} is not UTF-8 text; nothing uploaded` })
    })
    const problem = jsoncProblem(text)
    if (problem !== undefined) return yield* new UsageError({ message: `${args.file}:${problem} (not valid JSONC); nothing uploaded` })
    const flags: StorageFlags = { storage: args.storage, bucket: args.bucket }
    const key = keyOf(args)
    const { etag } = yield* Effect.gen(function* () {
      const store = yield* ObjectStore
      return yield* store.put(key, bytes, Option.getOrUndefined(Option.map(args.ifMatchEtag, ifMatch)))
    }).pipe(withStore(flags))
    yield* Console.log(`pushed ${args.file} to ${describeLocation(flags, key)} (etag ${etag})`)
  })
).pipe(Command.withDescription("Upload a shard's config.jsonc (refused unless it is well-formed JSONC; run nstance-server --validate first)"))

const pull = Command.make(
  "pull",
  {
    storage,
    bucket,
    shard,
    prefix,
    output: Options.text("output").pipe(
      Options.withAlias("o"),
      Options.withDescription("Write the config to this file (and print its etag) instead of printing it to stdout"),
      Options.optional
    )
  },
  Effect.fn("admin.config.pull")(function* (args) {
    const flags: StorageFlags = { storage: args.storage, bucket: args.bucket }
    const key = keyOf(args)
    const object = yield* Effect.gen(function* () {
      const store = yield* ObjectStore
      return yield* store.get(key)
    }).pipe(
      withStore(flags),
      Effect.catchTag("NotFound", () => new UsageError({ message: `no config at ${describeLocation(flags, key)}` }))
    )
    if (Option.isNone(args.output)) {
      const writeStdout = yield* StdoutBytes
      yield* Effect.sync(() => writeStdout(object.body))
      return
    }
    const fs = yield* FileSystem.FileSystem
    yield* fs.writeFile(args.output.value, object.body).pipe(
      Effect.mapError((error) => new UsageError({ message: `cannot write ${error.message}` }))
    )
    yield* Console.log(`wrote ${args.output.value} from ${describeLocation(flags, key)} (etag ${object.etag})`)
  })
).pipe(Command.withDescription("Download a shard's config.jsonc to stdout or a file"))

export const configCommand = Command.make("config").pipe(
  Command.withDescription("Push or pull a shard's config.jsonc in its object store"),
  Command.withSubcommands([push, pull])
)
