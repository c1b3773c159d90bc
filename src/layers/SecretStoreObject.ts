/**
 * `cluster.secrets` provider `object-storage`: each secret one object, `cluster/{prefix}{tenant}/{name}`,
 * sealed with AES-256-GCM in the original's format — a 12-byte random nonce, then ciphertext and tag, no
 * associated data — so a value the original sealed opens here and the reverse. (The PKI's own objects bind
 * their key as associated data; secrets do not, for that compatibility: whoever may write the bucket could
 * swap two sealed values, but could as well delete either.) Values are sealed with the first key and
 * opened with any, current first, so a rotation is: put the new key first, keep the old one in
 * `old_encryption_keys` until `nstance-admin secret reseal` has rewritten every value.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto"
import { readFile } from "node:fs/promises"
import { Chunk, Data, Effect, Either, Layer, Redacted, Stream } from "effect"
import { CLUSTER_PREFIX, secretObjectKey } from "../domain/bucketKeys.js"
import { identifierProblem } from "../domain/config/validate.js"
import { type KeySource, secretNameProblem, type SecretsConfig } from "../domain/config/files.js"
import { parseEncryptionKeyText } from "../domain/encryptionKey.js"
import { ObjectStore, type ObjectStoreShape } from "../services/ObjectStore.js"
import { InvalidSecretName, SecretNotFound, SecretStore, type SecretStoreShape, SecretUndecryptable } from "../services/SecretStore.js"

const NONCE_BYTES = 12
const TAG_BYTES = 16

/** `nonce ‖ ciphertext ‖ tag`, as the original's `secrets/crypto.go` writes it. */
export const sealValue = (key: Uint8Array, plaintext: Uint8Array): Uint8Array => {
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv("aes-256-gcm", key, nonce)
  return new Uint8Array(Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]))
}

/** The plaintext, or undefined when `key` does not open `sealed` (wrong key, altered, or too short). */
export const openValue = (key: Uint8Array, sealed: Uint8Array): Uint8Array | undefined => {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) return undefined
  const bytes = Buffer.from(sealed)
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, NONCE_BYTES))
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES))
    return new Uint8Array(Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]))
  } catch {
    return undefined
  }
}

/** A configured encryption key that is missing or not 32 bytes; names where it was looked for, never its value. */
export class SecretsKeyUnavailable extends Data.TaggedError("SecretsKeyUnavailable")<{ readonly field: string; readonly reason: string }> {
  override get message() {
    return `${this.field}: ${this.reason}`
  }
}

const loadKey = (field: string, source: KeySource, env: Readonly<Record<string, string | undefined>>): Effect.Effect<Uint8Array, SecretsKeyUnavailable> =>
  Effect.gen(function* () {
    const where = source.provider === "env" ? `environment variable ${source.source}` : `file ${source.source}`
    const text = source.provider === "env"
      ? env[source.source]
      : yield* Effect.tryPromise({
        try: () => readFile(source.source, "utf8"),
        catch: (cause) => new SecretsKeyUnavailable({ field, reason: `cannot read ${where} (${(cause as NodeJS.ErrnoException).code ?? "error"})` })
      })
    if (text === undefined || text === "") return yield* new SecretsKeyUnavailable({ field, reason: `${where} is not set` })
    const key = parseEncryptionKeyText(text)
    if (Either.isLeft(key)) return yield* new SecretsKeyUnavailable({ field, reason: `${where}: ${key.left}` })
    return key.right
  })

/** The store's keys, current first, from where `cluster.secrets` says they are. */
export const loadSecretsKeys = (
  config: SecretsConfig,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<readonly [Uint8Array, ...Array<Uint8Array>], SecretsKeyUnavailable> =>
  Effect.zipWith(
    loadKey("cluster.secrets.encryption_key", config.encryptionKey, env),
    Effect.forEach(config.oldEncryptionKeys, (source, i) => loadKey(`cluster.secrets.old_encryption_keys[${i}]`, source, env)),
    (current, old) => [current, ...old] as const
  )

export interface SecretStoreOptions {
  /** `cluster.secrets.prefix` (default `secret/`). */
  readonly prefix: string
  /** 32 bytes each; the first seals, all open. */
  readonly keys: readonly [Uint8Array, ...Array<Uint8Array>]
}

const checkNames = (tenant: string, name: string): Effect.Effect<void, InvalidSecretName> => {
  const tenantProblem = identifierProblem(tenant)
  if (tenantProblem !== undefined) return Effect.fail(new InvalidSecretName({ field: "tenant", reason: tenantProblem }))
  const nameProblem = secretNameProblem(name)
  return nameProblem === undefined ? Effect.void : Effect.fail(new InvalidSecretName({ field: "name", reason: nameProblem }))
}

/** The secrets store on `store` (the bucket root: keys are `cluster/…`). */
export const makeSecretStore = (store: ObjectStoreShape, options: SecretStoreOptions): SecretStoreShape => {
  const [current] = options.keys
  const root = `${CLUSTER_PREFIX}${options.prefix}`
  const keyOf = (tenant: string, name: string) => secretObjectKey(options.prefix, tenant, name)

  return SecretStore.of({
    get: (tenant, name) =>
      Effect.gen(function* () {
        yield* checkNames(tenant, name)
        const object = yield* store.get(keyOf(tenant, name)).pipe(Effect.catchTag("NotFound", () => new SecretNotFound({ tenant, name })))
        for (const [i, key] of options.keys.entries()) {
          const plain = openValue(key, object.body)
          if (plain !== undefined) return { value: Redacted.make(plain), version: object.etag, sealedWithOldKey: i > 0 }
        }
        return yield* new SecretUndecryptable({ tenant, name })
      }).pipe(Effect.withSpan("secrets.get", { attributes: { tenant, name } })),

    put: (tenant, name, value) =>
      Effect.gen(function* () {
        yield* checkNames(tenant, name)
        const { etag } = yield* store.put(keyOf(tenant, name), sealValue(current, Redacted.value(value))).pipe(
          // Unconditional writes cannot lose a race; the type says they could.
          Effect.catchTag("PreconditionFailed", (e) => Effect.die(e))
        )
        return { tenant, name, version: etag }
      }).pipe(Effect.withSpan("secrets.put", { attributes: { tenant, name } })),

    list: (tenant) =>
      Effect.gen(function* () {
        if (tenant !== undefined) {
          const problem = identifierProblem(tenant)
          if (problem !== undefined) return yield* new InvalidSecretName({ field: "tenant", reason: problem })
        }
        const prefix = tenant === undefined ? root : `${root}${tenant}/`
        const objects = yield* Stream.runCollect(store.list(prefix))
        return Chunk.toReadonlyArray(objects).flatMap((meta) => {
          const rest = meta.key.slice(root.length)
          const slash = rest.indexOf("/")
          if (slash <= 0) return []
          return [{ tenant: rest.slice(0, slash), name: rest.slice(slash + 1), version: meta.etag }]
        })
      }),

    version: (tenant, name) =>
      Effect.gen(function* () {
        yield* checkNames(tenant, name)
        return yield* store.head(keyOf(tenant, name)).pipe(
          Effect.map((meta): string | undefined => meta.etag),
          Effect.catchTag("NotFound", () => Effect.succeed(undefined))
        )
      }),

    delete: (tenant, name) => Effect.zipRight(checkNames(tenant, name), store.delete(keyOf(tenant, name)))
  })
}

/** The store of `cluster.secrets` with its keys loaded from the environment or files; fails naming the key field. */
export const SecretStoreLive = (config: SecretsConfig, env: Readonly<Record<string, string | undefined>>) =>
  Layer.effect(
    SecretStore,
    Effect.gen(function* () {
      const keys = yield* loadSecretsKeys(config, env)
      return makeSecretStore(yield* ObjectStore, { prefix: config.prefix, keys })
    })
  )
