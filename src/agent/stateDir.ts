/**
 * What a registered `nstance-agent` keeps on the VM, in `--state-dir`. The nonce is single-use, so a
 * restarted agent must carry on with what it stored rather than register again. `identity.json` (0600) is
 * the record the agent reads back: instance ID, the endpoint, when to renew, and the key, certificate and
 * CA together — written beside its final name and renamed over it, so a crash mid-write leaves the previous
 * identity whole and never pairs a certificate with a key it does not certify. `agent.key` (0600),
 * `agent.crt` and `ca.crt` are copies of the same for other programs on the VM (TLS clients, say).
 */
import { X509Certificate } from "node:crypto"
import { FileSystem } from "@effect/platform"
import { Data, Effect, Option, Redacted, Schema } from "effect"
import type { AgentIdentity } from "./AgentClient.js"

/** The agent could not go on; `message` is the one line the operator sees. */
export class AgentError extends Data.TaggedError("AgentError")<{ readonly message: string }> {}

/** An identity as held: what `AgentClient` needs, where it registered, and when to renew (epoch millis). */
export interface StoredIdentity {
  readonly identity: AgentIdentity
  readonly url: string
  readonly renewAt: number
}

const IdentityJson = Schema.parseJson(Schema.Struct({
  instance_id: Schema.String,
  url: Schema.String,
  renew_at: Schema.Int,
  renew_after_seconds: Schema.Int,
  public_key_pem: Schema.String,
  private_key_pem: Schema.String,
  certificate_pem: Schema.String,
  ca_pem: Schema.String
}))

export const STATE_FILES = {
  key: "agent.key",
  certificate: "agent.crt",
  ca: "ca.crt",
  identity: "identity.json"
} as const

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error))

const inDir = (dir: string, name: string) => `${dir.replace(/\/+$/, "")}/${name}`

/** When the certificate stops being valid, from its PEM; none when it does not parse. */
export const certificateNotAfter = (certificatePem: string): Option.Option<Date> => {
  try {
    return Option.some(new Date(new X509Certificate(certificatePem).validTo))
  } catch {
    return Option.none()
  }
}

/** Reads the identity in `dir`; none when the directory holds none yet (no `identity.json`). */
export const loadIdentity = (dir: string): Effect.Effect<Option.Option<StoredIdentity>, AgentError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = inDir(dir, STATE_FILES.identity)
    const present = yield* fs.exists(path).pipe(Effect.orElseSucceed(() => false))
    if (!present) return Option.none()
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((error) => new AgentError({ message: `cannot read ${path}: ${errorText(error)}` }))
    )
    const json = yield* Schema.decodeUnknown(IdentityJson)(text).pipe(
      Effect.mapError(() => new AgentError({ message: `${path} is not an identity this agent wrote; remove it to register anew (with a new nonce)` }))
    )
    return Option.some({
      url: json.url,
      renewAt: json.renew_at,
      identity: {
        instanceId: json.instance_id,
        certificatePem: json.certificate_pem,
        caPem: json.ca_pem,
        publicKeyPem: json.public_key_pem,
        privateKeyPem: Redacted.make(json.private_key_pem),
        renewAfterSeconds: json.renew_after_seconds
      }
    })
  })

/** Writes the identity into `dir` (created 0700 if missing); the key file is readable by its owner only. */
export const saveIdentity = (dir: string, stored: StoredIdentity): Effect.Effect<void, AgentError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const failed = (what: string) => (error: unknown) => new AgentError({ message: `cannot write ${what}: ${errorText(error)}` })
    yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 }).pipe(Effect.mapError(failed(dir)))
    const write = (name: string, content: string, mode: number) => {
      const path = inDir(dir, name)
      const staging = `${path}.new`
      return fs.writeFileString(staging, content, { mode }).pipe(
        // `mode` applies only when the file is created: a leftover staging file keeps its own.
        Effect.zipRight(fs.chmod(staging, mode)),
        Effect.zipRight(fs.rename(staging, path)),
        Effect.mapError(failed(path))
      )
    }
    const { identity } = stored
    yield* write(STATE_FILES.identity, `${JSON.stringify({
      instance_id: identity.instanceId,
      url: stored.url,
      renew_at: stored.renewAt,
      renew_after_seconds: identity.renewAfterSeconds,
      public_key_pem: identity.publicKeyPem,
      private_key_pem: Redacted.value(identity.privateKeyPem),
      certificate_pem: identity.certificatePem,
      ca_pem: identity.caPem
    }, null, 2)}\n`, 0o600)
    yield* write(STATE_FILES.key, Redacted.value(identity.privateKeyPem), 0o600)
    yield* write(STATE_FILES.certificate, identity.certificatePem, 0o644)
    yield* write(STATE_FILES.ca, identity.caPem, 0o644)
  })
