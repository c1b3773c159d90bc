/**
 * `nstance-admin secret put|get|list|delete|reseal`: a tenant's secrets in the cluster's bucket, sealed as
 * the servers seal them (`cluster.secrets` of the shard's config says where the keys are; this machine needs
 * the same key). A value never comes from the command line — `ps` and shell history would keep it — but from
 * `--from-file` (mode 0600) or standard input, and `get` writes it to standard output alone; no other line
 * ever carries it.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Logger, LogLevel, Option, Redacted } from "effect"
import { CONFIG_KEY, shardPrefix } from "../domain/bucketKeys.js"
import { identifierProblem } from "../domain/config/index.js"
import { MAX_FILE_BYTES, secretNameProblem } from "../domain/config/files.js"
import { echoValue } from "../domain/errorText.js"
import { objectPrefixProblem } from "../domain/objectKey.js"
import { describeLocation, objectStoreLayer } from "../layers/ObjectStoreFromFlags.js"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { loadSecretsKeys, makeSecretStore } from "../layers/SecretStoreObject.js"
import { ObjectStore } from "../services/ObjectStore.js"
import type { SecretStoreShape } from "../services/SecretStore.js"
import { loadConfig } from "../shard/shardConfig.js"
import { readInputFile, UsageError } from "../inputFile.js"
import { escapeControl } from "./escape.js"
import { StdoutBytes } from "./run.js"
import { bucket, prefix, storage } from "./clusterBucketOptions.js"

const shard = Options.text("shard").pipe(
  Options.withDescription("A shard of the cluster: its config.jsonc's cluster.secrets says where the secrets are and which keys seal them")
)
const tenant = Options.text("tenant").pipe(Options.withDescription("The tenant the secret belongs to: only this tenant's VMs receive it"))
const name = Args.text({ name: "NAME" }).pipe(Args.withDescription("The secret's name within the tenant, as a secret file's source names it (e.g. db-password)"))

const usage = (error: { readonly message: string }) => new UsageError({ message: error.message })

interface Place {
  readonly storage: "s3" | "gcs" | "file"
  readonly bucket: string
  readonly shard: string
  readonly prefix: Option.Option<string>
}

/** Checks the flags, reads the shard's config for `cluster.secrets`, loads its keys, and runs `use` on the store. */
const withStore = <A>(place: Place, use: (store: SecretStoreShape) => Effect.Effect<A, UsageError>) =>
  Effect.gen(function* () {
    const shardProblem = identifierProblem(place.shard)
    if (shardProblem !== undefined) return yield* new UsageError({ message: `--shard ${echoValue(place.shard)} ${shardProblem}` })
    const prefixProblem = Option.flatMap(place.prefix, (p) => Option.fromNullable(p.startsWith("/") ? `must not start with "/"` : objectPrefixProblem(p)))
    if (Option.isSome(prefixProblem)) return yield* new UsageError({ message: `--prefix ${prefixProblem.value}` })
    const flags = { storage: place.storage, bucket: place.bucket }
    const prefixKey = shardPrefix(place.shard, Option.getOrUndefined(place.prefix))
    return yield* Effect.gen(function* () {
      const bucketStore = yield* ObjectStore
      const config = yield* loadConfig({ _tag: "Store", key: CONFIG_KEY, shard: place.shard }).pipe(
        Effect.provideService(ObjectStore, scopeStore(bucketStore, prefixKey)),
        Effect.mapError((error) => new UsageError({ message: `cannot read cluster.secrets from shard ${place.shard}'s config (${describeLocation(flags, prefixKey + CONFIG_KEY)}): ${error.message}` }))
      )
      const secrets = config.config.cluster.secrets
      if (secrets === undefined) {
        return yield* new UsageError({ message: `shard ${place.shard}'s config has no cluster.secrets with provider object-storage; add one (with its encryption_key) and push it first` })
      }
      const keys = yield* loadSecretsKeys(secrets, process.env).pipe(Effect.mapError(usage))
      return yield* use(makeSecretStore(bucketStore, { prefix: secrets.prefix, keys }))
    }).pipe(
      Effect.provide(objectStoreLayer(flags)),
      Effect.mapError((error) => (error instanceof UsageError ? error : usage(error))),
      Logger.withMinimumLogLevel(LogLevel.Error)
    )
  })

const checkedName = (text: string) => {
  const problem = secretNameProblem(text)
  return problem === undefined ? Effect.succeed(text) : Effect.fail(new UsageError({ message: `NAME ${echoValue(text)} ${problem}` }))
}

const checkedTenant = (text: string) => {
  const problem = identifierProblem(text)
  return problem === undefined ? Effect.succeed(text) : Effect.fail(new UsageError({ message: `--tenant ${echoValue(text)} ${problem}` }))
}

/** Standard input, at most `MAX_FILE_BYTES` (a secret file is delivered whole over the agent channel). */
const readStdin = Effect.async<Uint8Array, UsageError>((resume) => {
  const chunks: Array<Buffer> = []
  let size = 0
  const onData = (chunk: Buffer) => {
    size += chunk.length
    if (size > MAX_FILE_BYTES) {
      process.stdin.off("data", onData)
      process.stdin.pause()
      resume(Effect.fail(new UsageError({ message: `standard input: more than ${MAX_FILE_BYTES} bytes; a secret may be at most that` })))
    } else chunks.push(chunk)
  }
  process.stdin.on("data", onData)
  process.stdin.once("end", () => resume(Effect.succeed(new Uint8Array(Buffer.concat(chunks)))))
  process.stdin.once("error", (cause) => resume(Effect.fail(new UsageError({ message: `standard input: ${cause.message}` }))))
})

const put = Command.make(
  "put",
  {
    storage, bucket, shard, prefix, tenant, name,
    fromFile: Options.text("from-file").pipe(
      Options.withDescription("Read the value from this file (mode 0600 or tighter); without it the value is read from standard input"),
      Options.optional
    )
  },
  Effect.fn("admin.secret.put")(function* (args) {
    const secretName = yield* checkedName(args.name)
    const owner = yield* checkedTenant(args.tenant)
    const bytes = yield* Option.match(args.fromFile, {
      onNone: () => readStdin,
      onSome: (path) => readInputFile({ flag: "--from-file", path, what: "a secret", maxBytes: MAX_FILE_BYTES, ownerOnly: true })
    })
    const entry = yield* withStore(args, (store) => store.put(owner, secretName, Redacted.make(bytes)).pipe(Effect.mapError(usage)))
    yield* Console.log(escapeControl(`sealed secret ${secretName} of tenant ${owner} (${bytes.length} bytes, version ${entry.version}); VMs whose files name it receive the new value`))
  })
).pipe(Command.withDescription("Seal a tenant's secret with the current key of cluster.secrets and store it (the value from --from-file or standard input)"))

const get = Command.make(
  "get",
  { storage, bucket, shard, prefix, tenant, name },
  Effect.fn("admin.secret.get")(function* (args) {
    const secretName = yield* checkedName(args.name)
    const owner = yield* checkedTenant(args.tenant)
    const secret = yield* withStore(args, (store) => store.get(owner, secretName).pipe(Effect.mapError(usage)))
    const write = yield* StdoutBytes
    write(Redacted.value(secret.value))
    if (secret.sealedWithOldKey) yield* Console.error(`⚠ sealed with an old key; run nstance-admin secret reseal before retiring it`)
  })
).pipe(Command.withDescription("Write a tenant's secret to standard output, exactly its bytes"))

const list = Command.make(
  "list",
  { storage, bucket, shard, prefix, tenant: tenant.pipe(Options.optional) },
  Effect.fn("admin.secret.list")(function* (args) {
    const owner = yield* Option.match(args.tenant, { onNone: () => Effect.succeed(undefined), onSome: checkedTenant })
    const entries = yield* withStore(args, (store) => store.list(owner).pipe(Effect.mapError(usage)))
    if (entries.length === 0) return yield* Console.log(owner === undefined ? "no secrets" : `no secrets of tenant ${owner}`)
    yield* Effect.forEach(entries, (entry) => Console.log(escapeControl(`${entry.tenant}/${entry.name}  version ${entry.version}`)), { discard: true })
  })
).pipe(Command.withDescription("List secrets by tenant and name (never their values)"))

const remove = Command.make(
  "delete",
  { storage, bucket, shard, prefix, tenant, name },
  Effect.fn("admin.secret.delete")(function* (args) {
    const secretName = yield* checkedName(args.name)
    const owner = yield* checkedTenant(args.tenant)
    yield* withStore(args, (store) => store.delete(owner, secretName).pipe(Effect.mapError(usage)))
    yield* Console.log(escapeControl(`deleted secret ${secretName} of tenant ${owner}; VMs whose files name it keep their copy until the config stops naming it`))
  })
).pipe(Command.withDescription("Delete a tenant's secret"))

const reseal = Command.make(
  "reseal",
  { storage, bucket, shard, prefix },
  Effect.fn("admin.secret.reseal")(function* (args) {
    const counts = yield* withStore(args, (store) =>
      Effect.gen(function* () {
        let resealed = 0
        const entries = yield* store.list()
        for (const entry of entries) {
          const secret = yield* store.get(entry.tenant, entry.name)
          if (!secret.sealedWithOldKey) continue
          yield* store.put(entry.tenant, entry.name, secret.value)
          resealed++
        }
        return { resealed, total: entries.length }
      }).pipe(Effect.mapError(usage)))
    yield* Console.log(`resealed ${counts.resealed} of ${counts.total} secrets with the current key; keys in old_encryption_keys no longer open anything this command found`)
  })
).pipe(Command.withDescription("Rewrite every secret sealed with an old key under the current one (after a key rotation, before retiring the old key)"))

export const secretCommand = Command.make("secret").pipe(
  Command.withDescription("A tenant's secrets for secret files: sealed with AES-256-GCM under cluster.secrets' keys in the cluster's bucket"),
  Command.withSubcommands([put, get, list, remove, reseal])
)
