/**
 * `nstance-admin cert issue`: an operator certificate scoped to one tenant, for people and pipelines that
 * should steer their tenant's groups and instances and nothing else. It is signed here, offline, by the
 * cluster CA in the bucket — loaded as the servers load it (`makeClusterPki`, told never to create a CA),
 * with the encryption key they use — and the key pair is made on this machine: the private key is written
 * only to `--out` (mode 0600) and is never sent anywhere. With the certificate, the CA certificate goes
 * beside it, so the directory is all `nstance-admin --cert-file … --key-file … --ca-file …` needs.
 */
import { generateKeyPairSync } from "node:crypto"
import { join } from "node:path"
import { Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Console, Duration, Effect, Either, Logger, LogLevel, Option } from "effect"
import { CONFIG_KEY, shardPrefix } from "../domain/bucketKeys.js"
import { identifierProblem } from "../domain/config/index.js"
import { own } from "../domain/config/records.js"
import { parseDurationNanos } from "../domain/duration.js"
import { echoValue } from "../domain/errorText.js"
import { objectPrefixProblem } from "../domain/objectKey.js"
import { describeLocation, objectStoreLayer } from "../layers/ObjectStoreFromFlags.js"
import { scopeStore } from "../layers/ObjectStoreScoped.js"
import { OPERATOR_NAME, OPERATOR_NAME_RULE } from "../services/ClusterPki.js"
import { ObjectStore } from "../services/ObjectStore.js"
import { loadConfig } from "../shard/shardConfig.js"
import { CERT_FILE_ENV, KEY_FILE_ENV } from "../admin/operatorCertificate.js"
import { CA_FILE_ENV } from "../admin/token.js"
import { UsageError } from "../inputFile.js"
import { escapeControl } from "./escape.js"
import { bucket, prefix, storage } from "./clusterBucketOptions.js"

/** With no revocation list, a certificate's lifetime is the only bound on a lost one: at most a year. */
export const MAX_OPERATOR_TTL = Duration.days(365)
const MIN_OPERATOR_TTL = Duration.minutes(1)
export const DEFAULT_OPERATOR_TTL = "90d"

/** `90d` (days), or a Go duration (`720h`, `30m`), between a minute and `MAX_OPERATOR_TTL`. */
export const parseOperatorTtl = (text: string): Either.Either<Duration.Duration, string> => {
  const days = /^(\d{1,4})d$/.exec(text.trim())
  const parsed = days !== null
    ? Either.right(Duration.days(Number(days[1])))
    : Either.map(parseDurationNanos(text), (nanos) => Duration.nanos(nanos))
  return Either.flatMap(parsed, (ttl) =>
    Duration.lessThan(ttl, MIN_OPERATOR_TTL) || Duration.greaterThan(ttl, MAX_OPERATOR_TTL)
      ? Either.left(`${echoValue(text)} is outside 1m to 365d (a lost certificate works until it expires)`)
      : Either.right(ttl))
}

const shard = Options.text("shard").pipe(
  Options.withDescription("A shard of the cluster: its config.jsonc names the cluster whose CA (pki/<cluster>/) signs; the certificate is good on every shard of that cluster")
)
const tenant = Options.text("tenant").pipe(Options.withDescription("The tenant the certificate is scoped to: its holder sees and changes only this tenant's instances and groups"))
const name = Options.text("name").pipe(
  Options.withDescription("Who holds it (the certificate's CN): 1-64 letters, digits, '.', '_', '@' or '-'; also the file names in --out")
)
const ttl = Options.text("ttl").pipe(
  Options.withDescription(`How long it is valid: days (90d) or a Go duration (720h); at most 365d, default ${DEFAULT_OPERATOR_TTL}`),
  Options.withDefault(DEFAULT_OPERATOR_TTL)
)
const out = Options.text("out").pipe(
  Options.withDescription("Directory to write <name>.key (mode 0600), <name>.crt and ca.crt into (created if missing)")
)
const force = Options.boolean("force").pipe(Options.withDescription("Replace files of the same names in --out (by default an existing file refuses the issue)"))
const encryptionKeyFile = Options.text("encryption-key-file").pipe(
  Options.withDescription("File holding the servers' encryption key (or set NSTANCE_ENCRYPTION_KEY): the CA's private key in the bucket is sealed with it"),
  Options.optional
)

const usage = (error: { readonly message: string }) => new UsageError({ message: error.message })

const issue = Command.make(
  "issue",
  { storage, bucket, shard, prefix, tenant, name, ttl, out, force, encryptionKeyFile },
  Effect.fn("admin.cert.issue")(function* (args) {
    const lifetime = parseOperatorTtl(args.ttl)
    if (Either.isLeft(lifetime)) return yield* new UsageError({ message: `--ttl ${lifetime.left}` })
    const shardProblem = identifierProblem(args.shard)
    if (shardProblem !== undefined) return yield* new UsageError({ message: `--shard ${echoValue(args.shard)} ${shardProblem}` })
    const prefixProblem = Option.flatMap(args.prefix, (p) => Option.fromNullable(p.startsWith("/") ? `must not start with "/"` : objectPrefixProblem(p)))
    if (Option.isSome(prefixProblem)) return yield* new UsageError({ message: `--prefix ${prefixProblem.value}` })
    if (!OPERATOR_NAME.test(args.name)) return yield* new UsageError({ message: `--name ${echoValue(args.name)} ${OPERATOR_NAME_RULE}` })
    const tenantProblem = identifierProblem(args.tenant)
    if (tenantProblem !== undefined) return yield* new UsageError({ message: `--tenant ${echoValue(args.tenant)} ${tenantProblem}` })
    // The PKI's X.509 and JOSE code loads only when a certificate is issued, so other commands start without it.
    const { encryptionKeyFrom, makeClusterPki } = yield* Effect.promise(() => import("../layers/ClusterPkiStore.js"))
    // Then the key: without it nothing in the bucket can be signed, and nothing is read.
    const encryptionKey = yield* encryptionKeyFrom(process.env, Option.getOrUndefined(args.encryptionKeyFile)).pipe(
      Effect.mapError((error) => new UsageError({ message: `cert issue needs the servers' encryption key: ${error.message}` }))
    )

    const fs = yield* FileSystem.FileSystem
    const files = { key: join(args.out, `${args.name}.key`), certificate: join(args.out, `${args.name}.crt`), ca: join(args.out, "ca.crt") }
    if (!args.force) {
      for (const file of [files.key, files.certificate, files.ca]) {
        if (yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false))) {
          return yield* new UsageError({ message: `${file} exists; nothing issued (choose another --out or --name, or replace it with --force)` })
        }
      }
    }

    const place = { storage: args.storage, bucket: args.bucket }
    const prefixKey = shardPrefix(args.shard, Option.getOrUndefined(args.prefix))
    const configKey = prefixKey + CONFIG_KEY
    const { pki, config } = yield* Effect.gen(function* () {
      const bucketStore = yield* ObjectStore
      const shardStore = scopeStore(bucketStore, prefixKey)
      const config = yield* loadConfig({ _tag: "Store", key: CONFIG_KEY, shard: args.shard }).pipe(
        Effect.provideService(ObjectStore, shardStore),
        Effect.mapError((error) => new UsageError({ message: `cannot tell the cluster from shard ${args.shard}'s config (${describeLocation(place, configKey)}): ${error.message}` }))
      )
      const pki = yield* makeClusterPki(bucketStore, { clusterId: config.config.cluster.id, encryptionKey, create: false }).pipe(Effect.mapError(usage))
      return { pki, config }
    }).pipe(
      Effect.provide(objectStoreLayer(place)),
      Effect.mapError(usage),
      Logger.withMinimumLogLevel(LogLevel.Error)
    )

    const pair = generateKeyPairSync("ed25519")
    const issued = yield* pki.issueOperatorCertificate({
      name: args.name,
      tenant: args.tenant,
      publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }).toString(),
      ttl: lifetime.right
    }).pipe(Effect.mapError(usage))

    const write = (path: string, text: string, mode: number) =>
      Effect.gen(function* () {
        // Removed first rather than truncated: a new file gets `mode`, an old one would keep its own.
        if (args.force) yield* fs.remove(path).pipe(Effect.catchTag("SystemError", () => Effect.void))
        yield* fs.writeFileString(path, text, { flag: "wx", mode })
      }).pipe(Effect.mapError((error) => new UsageError({ message: `${path}: cannot write (${error._tag === "SystemError" ? error.reason : error.message}); the certificate issued is not kept` })))
    yield* fs.makeDirectory(args.out, { recursive: true, mode: 0o700 }).pipe(
      Effect.mapError((error) => new UsageError({ message: `--out ${args.out}: cannot create the directory (${error._tag === "SystemError" ? error.reason : error.message})` }))
    )
    yield* write(files.key, pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), 0o600)
    yield* write(files.certificate, issued.certificatePem, 0o644)
    yield* write(files.ca, pki.caPem, 0o644)

    const cluster = config.config.cluster.id
    const lines = [
      `issued an operator certificate of tenant ${args.tenant} to ${args.name} (cluster ${cluster}, serial ${issued.serial}, valid until ${issued.notAfter.toISOString()})`,
      `  private key  ${files.key} (mode 0600; it never left this machine: keep it private)`,
      `  certificate  ${files.certificate}`,
      `  cluster CA   ${files.ca}`,
      `use it instead of the admin token, on any shard of cluster ${cluster}; it sees and changes only tenant ${args.tenant}'s instances and groups:`,
      `  export ${CERT_FILE_ENV}=${files.certificate} ${KEY_FILE_ENV}=${files.key} ${CA_FILE_ENV}=${files.ca}`,
      `  nstance-admin instances --server <host:port>     (or --cert-file/--key-file/--ca-file on each command)`
    ]
    yield* Effect.forEach(lines, (line) => Console.log(escapeControl(line)), { discard: true })
    if (own(config.config.groups, args.tenant) === undefined) {
      yield* Console.error(escapeControl(`⚠ shard ${args.shard}'s config has no group of tenant ${args.tenant} (yet): the certificate works, with nothing to see there until one exists`))
    }
  })
).pipe(Command.withDescription(
  "Issue an operator certificate scoped to one tenant, signed by the cluster CA in the bucket (needs the servers' encryption key): " +
    "a fresh Ed25519 key made here and written to --out with mode 0600, the certificate and the CA beside it. Its holder uses " +
    "nstance-admin with --cert-file/--key-file instead of the admin token, and sees and changes only that tenant"
))

export const certCommand = Command.make("cert").pipe(
  Command.withDescription("Operator certificates: a tenant's credential for the admin endpoint"),
  Command.withSubcommands([issue])
)
