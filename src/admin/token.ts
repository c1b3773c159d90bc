/**
 * Where the admin token comes from, for `nstance-server` (which checks it) and `nstance-admin` (which sends
 * it): `NSTANCE_ADMIN_TOKEN` or `--admin-token-file`, not both. A file's trailing newline is dropped; a token
 * shorter than 16 characters is refused, as one that short could be guessed over the network.
 */
import { Effect, Option, Redacted } from "effect"
import { decodeUtf8, readInputFile, UsageError } from "../inputFile.js"

export const ADMIN_TOKEN_ENV = "NSTANCE_ADMIN_TOKEN"

/** Shortest admin token accepted: anything shorter could be guessed over the network. */
export const MIN_ADMIN_TOKEN_LENGTH = 16

const checked = (token: string, source: string): Effect.Effect<Redacted.Redacted<string>, UsageError> => {
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
    return Effect.fail(new UsageError({ message: `the admin token from ${source} is ${token.length} characters; use at least ${MIN_ADMIN_TOKEN_LENGTH} (e.g. openssl rand -hex 32)` }))
  }
  if (/[\s\u0000-\u001f\u007f]/.test(token)) {
    return Effect.fail(new UsageError({ message: `the admin token from ${source} contains spaces or control characters; use printable characters only` }))
  }
  return Effect.succeed(Redacted.make(token))
}

/** The admin token, or none when neither source is set. Never prints the token. */
export const adminTokenFrom = (
  env: Readonly<Record<string, string | undefined>>,
  file: string | undefined
): Effect.Effect<Option.Option<Redacted.Redacted<string>>, UsageError> =>
  Effect.gen(function* () {
    const fromEnv = env[ADMIN_TOKEN_ENV]
    const envSet = fromEnv !== undefined && fromEnv !== ""
    if (file !== undefined && envSet) {
      return yield* new UsageError({ message: `give the admin token once: ${ADMIN_TOKEN_ENV} and --admin-token-file are both set` })
    }
    if (file !== undefined) {
      const bytes = yield* readInputFile({ flag: "--admin-token-file", path: file, what: "an admin token", maxBytes: 4096 })
      const text = yield* decodeUtf8({ flag: "--admin-token-file", path: file }, bytes)
      return Option.some(yield* checked(text.replace(/\r?\n$/, ""), `--admin-token-file ${file}`))
    }
    if (envSet) return Option.some(yield* checked(fromEnv, ADMIN_TOKEN_ENV))
    return Option.none()
  })

export const CA_FILE_ENV = "NSTANCE_CA_FILE"

/** Largest CA file read: a certificate is a couple of kilobytes; a bundle of a few is still far below this. */
const MAX_CA_BYTES = 64 * 1024

/**
 * The cluster CA certificate the admin endpoint's certificate must come from: `--ca-file`, else
 * `NSTANCE_CA_FILE`. It is public (`pki/{cluster}/ca.crt` in the bucket); without it no token is sent.
 */
export const caFrom = (env: Readonly<Record<string, string | undefined>>, file: string | undefined): Effect.Effect<string, UsageError> =>
  Effect.gen(function* () {
    const fromEnv = env[CA_FILE_ENV]
    const path = file ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : undefined)
    const flag = file !== undefined ? "--ca-file" : CA_FILE_ENV
    if (path === undefined) {
      return yield* new UsageError({
        message: `no CA certificate: give --ca-file or set ${CA_FILE_ENV} (the cluster CA, pki/<cluster>/ca.crt in the bucket; the token is sent only to a server it signed)`
      })
    }
    const bytes = yield* readInputFile({ flag, path, what: "a CA certificate", maxBytes: MAX_CA_BYTES })
    const text = yield* decodeUtf8({ flag, path }, bytes)
    if (!/-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/.test(text)) {
      return yield* new UsageError({ message: `${flag} ${path}: not a PEM certificate (expected -----BEGIN CERTIFICATE-----)` })
    }
    return text
  })
