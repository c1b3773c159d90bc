/**
 * Where `nstance-admin` finds an operator certificate to present instead of the admin token:
 * `--cert-file`/`--key-file`, else `NSTANCE_CERT_FILE`/`NSTANCE_KEY_FILE` (what `nstance-admin cert issue`
 * wrote). Both files are checked here — a certificate, a private key that is its own, not expired — so a
 * mix-up is one line naming the file instead of an anonymous refusal from the server. Never prints the key.
 */
import { createPrivateKey, X509Certificate } from "node:crypto"
import { Clock, Effect, Option, Redacted } from "effect"
import type { TlsClientCertificate } from "../layers/ClusterTlsClient.js"
import { decodeUtf8, readInputFile, UsageError } from "../inputFile.js"

export const CERT_FILE_ENV = "NSTANCE_CERT_FILE"
export const KEY_FILE_ENV = "NSTANCE_KEY_FILE"

/** A certificate or a key is a few hundred bytes; anything this large is not one. */
const MAX_PEM_BYTES = 64 * 1024

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/

const pathFrom = (flag: string, file: string | undefined, env: Readonly<Record<string, string | undefined>>, variable: string) => {
  if (file !== undefined) return Option.some({ label: flag, path: file })
  const fromEnv = env[variable]
  return fromEnv !== undefined && fromEnv !== "" ? Option.some({ label: variable, path: fromEnv }) : Option.none()
}

const readPem = (source: { readonly label: string; readonly path: string }, what: string) =>
  Effect.flatMap(
    readInputFile({ flag: source.label, path: source.path, what, maxBytes: MAX_PEM_BYTES }),
    (bytes) => decodeUtf8({ flag: source.label, path: source.path }, bytes)
  )

/** The operator certificate and its key, or none when neither file is named. */
export const operatorCertificateFrom = (
  env: Readonly<Record<string, string | undefined>>,
  certFile: string | undefined,
  keyFile: string | undefined
): Effect.Effect<Option.Option<TlsClientCertificate>, UsageError> =>
  Effect.gen(function* () {
    const certSource = pathFrom("--cert-file", certFile, env, CERT_FILE_ENV)
    const keySource = pathFrom("--key-file", keyFile, env, KEY_FILE_ENV)
    if (Option.isNone(certSource) && Option.isNone(keySource)) return Option.none()
    if (Option.isNone(certSource)) {
      return yield* new UsageError({ message: `${Option.getOrThrow(keySource).label} is given without --cert-file (or ${CERT_FILE_ENV}): an operator certificate needs both` })
    }
    if (Option.isNone(keySource)) {
      return yield* new UsageError({ message: `${certSource.value.label} is given without --key-file (or ${KEY_FILE_ENV}): an operator certificate needs both` })
    }
    const cert = certSource.value
    const key = keySource.value
    const certificatePem = yield* readPem(cert, "a certificate")
    const certificate = PEM_CERTIFICATE.test(certificatePem) ? Option.liftThrowable(() => new X509Certificate(certificatePem))() : Option.none()
    if (Option.isNone(certificate)) {
      return yield* new UsageError({ message: `${cert.label} ${cert.path}: not a PEM certificate (expected -----BEGIN CERTIFICATE-----)` })
    }
    const privateKeyPem = yield* readPem(key, "a private key")
    // The key's text is never put into a message, not even a piece of it.
    const privateKey = Option.liftThrowable(() => createPrivateKey({ key: privateKeyPem, format: "pem" }))()
    if (Option.isNone(privateKey)) {
      return yield* new UsageError({ message: `${key.label} ${key.path}: not a PEM private key` })
    }
    if (!certificate.value.checkPrivateKey(privateKey.value)) {
      return yield* new UsageError({ message: `${key.label} ${key.path} is not the private key of ${cert.label} ${cert.path}` })
    }
    const now = yield* Clock.currentTimeMillis
    const notAfter = new Date(certificate.value.validTo)
    if (now > notAfter.getTime()) {
      return yield* new UsageError({
        message: `${cert.label} ${cert.path} expired at ${notAfter.toISOString()}; get a new one (nstance-admin cert issue)`
      })
    }
    return Option.some({ certificatePem, privateKeyPem: Redacted.make(privateKeyPem) })
  })
