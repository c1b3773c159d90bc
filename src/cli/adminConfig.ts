/**
 * `nstance-admin config push|pull`: moves a shard's `config.jsonc` between a local file and the shard's
 * object store. Push refuses what no server would load: it runs `nstance-server --validate`'s validation
 * (skipped only with an explicit `--force`), and always the server's identifier rules for `--shard`, the
 * size and nesting bounds, JSONC syntax and a `shard.id` that is not `--shard` — so a typo never reaches
 * the servers that read it, and no config can make a replica act for another shard. It also reads the
 * shard's `groups.jsonc` and refuses (unless `--force`) a config that would make one of its dynamic groups
 * invalid — renaming a static group a dynamic entry resizes, say — naming the entry: the servers would keep
 * their last good config in force rather than act on the push.
 */
import { echoValue } from "../domain/errorText.js"
import { stat } from "node:fs/promises"
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Console, Effect, Either, Logger, LogLevel, Option } from "effect"
import { type ParseError, parse, printParseErrorCode } from "jsonc-parser"
import {
  formatProblem,
  formatSyntaxError,
  identifierProblem,
  MAX_JSONC_BYTES,
  parseJsonc,
  parseShardConfig,
  type Problem
} from "../domain/config/index.js"
import { type DynamicGroupsCheck, parseDynamicGroups, validateWithDynamicGroups } from "../domain/dynamicGroups.js"
import { objectPrefixProblem } from "../domain/objectKey.js"
import { describeLocation, objectStoreLayer, type StorageFlags } from "../layers/ObjectStoreFromFlags.js"
import { CONFIG_KEY, GROUPS_KEY, shardPrefix } from "../domain/bucketKeys.js"
import { ifMatch, ObjectStore } from "../services/ObjectStore.js"
import { decodeUtf8, readInputFile, UsageError } from "../inputFile.js"
import { escapeControl } from "./escape.js"
import { exitWith, StdoutBytes } from "./run.js"

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
 * error names the reason). (The AWS SDK's Node-version notice is silenced where the SDK is loaded.)
 */
const withStore = (flags: StorageFlags) => <A, E>(effect: Effect.Effect<A, E, ObjectStore>) =>
  effect.pipe(Effect.provide(objectStoreLayer(flags)), Logger.withMinimumLogLevel(LogLevel.Error))

/** The server's rules for the flags that name the shard's place, so push cannot write where no server reads. */
const placeProblems = (args: { readonly shard: string; readonly prefix: Option.Option<string> }): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const shardProblem = identifierProblem(args.shard)
  if (shardProblem !== undefined) problems.push(`--shard ${echoValue(args.shard)} ${shardProblem}`)
  if (Option.isSome(args.prefix)) {
    const prefix = args.prefix.value
    const problem = prefix.startsWith("/") ? `must not start with "/"` : objectPrefixProblem(prefix)
    if (problem !== undefined) problems.push(`--prefix ${problem} (got ${echoValue(prefix)})`)
  }
  return problems
}

/** `shard.id` of a config that may not validate (with --force), when it is a string. */
const rawShardId = (json: unknown): string | undefined => {
  if (typeof json !== "object" || json === null) return undefined
  const shard = (json as { shard?: unknown }).shard
  if (typeof shard !== "object" || shard === null) return undefined
  const id = (shard as { id?: unknown }).id
  return typeof id === "string" ? id : undefined
}

/**
 * Everything push refuses, as `--validate`'s `path: message` problems (empty when the text may go up).
 * `force` skips the shard config validation only.
 */
export const pushProblems = (text: string, shard: string, force: boolean): ReadonlyArray<Problem> => {
  const json = parseJsonc(text)
  if (Either.isLeft(json)) return json.left.map((error) => ({ path: "", message: formatSyntaxError(error) }))
  if (!force) {
    const parsed = parseShardConfig(text)
    if (Either.isLeft(parsed)) return parsed.left.problems
  }
  const id = rawShardId(json.right)
  if (id !== undefined && id !== shard) {
    return [{ path: "shard.id", message: `${echoValue(id)} does not match --shard ${echoValue(shard)}; a server of shard ${shard} would refuse it` }]
  }
  return []
}

const keyOf = (args: { readonly shard: string; readonly prefix: Option.Option<string> }, object = CONFIG_KEY) =>
  shardPrefix(args.shard, Option.getOrUndefined(args.prefix)) + object

/** What a config would do to the dynamic groups already stored beside it. */
export type DynamicImpact =
  | { readonly _tag: "None" }
  /** Some entries would no longer validate: the servers would keep their last good config. */
  | { readonly _tag: "Breaks"; readonly check: DynamicGroupsCheck }
  /** `groups.jsonc` itself does not parse: nothing a push changes, but worth saying. */
  | { readonly _tag: "Unreadable"; readonly problem: string }

/**
 * The impact of config `text` on the stored `groups.jsonc` (undefined: none stored). Judged only for a
 * config that is valid by itself — an invalid one (pushed with `--force`) is held by the servers anyway.
 */
export const dynamicImpact = (text: string, groupsText: string | undefined): DynamicImpact => {
  if (groupsText === undefined) return { _tag: "None" }
  const json = parseJsonc(text)
  if (Either.isLeft(json) || Either.isLeft(parseShardConfig(text))) return { _tag: "None" }
  const dynamic = parseDynamicGroups(groupsText)
  if (Either.isLeft(dynamic)) return { _tag: "Unreadable", problem: dynamic.left }
  const merged = validateWithDynamicGroups(json.right, dynamic.right)
  return Either.isLeft(merged) ? { _tag: "Breaks", check: merged.left } : { _tag: "None" }
}

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
    ),
    force: Options.boolean("force").pipe(Options.withDescription(
      "Upload even if the config does not pass nstance-server --validate, or makes a dynamic group of groups.jsonc invalid " +
        "(the servers then keep their last good config in force until it is fixed; JSONC syntax, size, nesting, --shard and shard.id are still checked)"
    ))
  },
  Effect.fn("admin.config.push")(function* (args) {
    const place = placeProblems(args)
    if (place.length > 0) {
      yield* Effect.forEach(place, (line) => Console.error(`✗ ${escapeControl(line)}`), { discard: true })
      return yield* exitWith(1)
    }
    const input = { flag: "", path: args.file }
    const bytes = yield* readInputFile({ ...input, what: "a shard config", maxBytes: MAX_JSONC_BYTES })
    const text = yield* decodeUtf8(input, bytes)
    const problems = pushProblems(text, args.shard, args.force)
    if (problems.length > 0) {
      yield* Effect.forEach(problems, (problem) => Console.error(`✗ ${escapeControl(formatProblem(problem))}`), { discard: true })
      const count = `${problems.length} problem${problems.length === 1 ? "" : "s"}`
      yield* Console.error(`✗ ${escapeControl(args.file)}: ${count}; nothing uploaded${args.force ? "" : " (see nstance-server --validate)"}`)
      return yield* exitWith(1)
    }
    const flags: StorageFlags = { storage: args.storage, bucket: args.bucket }
    const key = keyOf(args)
    const groupsKey = keyOf(args, GROUPS_KEY)
    // A store that cannot give groups.jsonc is met again by the upload itself, which then names config.jsonc.
    const groupsRead = yield* Effect.gen(function* () {
      const store = yield* ObjectStore
      return yield* store.get(groupsKey).pipe(
        Effect.map((object) => new TextDecoder().decode(object.body)),
        Effect.catchTag("NotFound", () => Effect.succeed(undefined))
      )
    }).pipe(withStore(flags), Effect.either)
    const impact = dynamicImpact(text, Either.getOrUndefined(groupsRead))
    if (impact._tag === "Breaks") {
      const mark = args.force ? "⚠" : "✗"
      yield* Effect.forEach(impact.check.problems, (line) => Console.error(`${mark} ${escapeControl(line)}`), { discard: true })
      const named = impact.check.entries
      const entries = named.length === 0 ? "the dynamic groups" : `dynamic group${named.length === 1 ? "" : "s"} ${named.join(", ")}`
      if (!args.force) {
        yield* Console.error(escapeControl(
          `✗ ${args.file}: would make ${entries} of ${groupsKey} invalid; nothing uploaded ` +
            `(change or delete ${named.length === 1 ? "it" : "them"} first with nstance-admin group set/delete, ` +
            `or push with --force: the servers then keep their last good config in force until it is fixed)`
        ))
        return yield* exitWith(1)
      }
      yield* Console.error(escapeControl(`⚠ ${args.file}: makes ${entries} of ${groupsKey} invalid; pushed anyway (--force): the servers keep their last good config in force until it is fixed`))
    } else if (impact._tag === "Unreadable") {
      yield* Console.error(escapeControl(`⚠ ${groupsKey} does not parse (${impact.problem}); the servers keep their last good config in force until it is fixed`))
    }
    const { etag } = yield* Effect.gen(function* () {
      const store = yield* ObjectStore
      return yield* store.put(key, bytes, Option.getOrUndefined(Option.map(args.ifMatchEtag, ifMatch)))
    }).pipe(withStore(flags))
    if (Either.isLeft(groupsRead)) {
      yield* Console.error(escapeControl(`⚠ ${groupsKey} could not be read (${groupsRead.left.message}); its dynamic groups were not checked against this config`))
    }
    yield* Console.log(`pushed ${args.file} to ${describeLocation(flags, key)} (etag ${etag})`)
  })
).pipe(Command.withDescription(
  "Upload a shard's config.jsonc: refused unless it is well-formed JSONC, passes nstance-server --validate and keeps every dynamic group of groups.jsonc valid (both unless --force), and names --shard as shard.id"
))

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
    const output = args.output.value
    const existing = yield* Effect.promise(() => stat(output).catch(() => undefined))
    if (existing?.isDirectory() === true) return yield* new UsageError({ message: `-o ${output}: is a directory` })
    yield* fs.writeFile(output, object.body).pipe(
      Effect.mapError((error) => {
        const reason = error._tag === "SystemError" ? error.reason : undefined
        const why = reason === "NotFound" ? "its directory does not exist" : reason === "PermissionDenied" ? "permission denied" : error.message
        return new UsageError({ message: `-o ${output}: cannot write (${why})` })
      })
    )
    yield* Console.log(`wrote ${output} from ${describeLocation(flags, key)} (etag ${object.etag})`)
  })
).pipe(Command.withDescription("Download a shard's config.jsonc to stdout or a file"))

export const configCommand = Command.make("config").pipe(
  Command.withDescription("Push or pull a shard's config.jsonc in its object store"),
  Command.withSubcommands([push, pull])
)
