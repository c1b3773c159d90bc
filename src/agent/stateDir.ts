/**
 * What a registered `nstance-agent` keeps on the VM, in `--state-dir`. The nonce is single-use, so a
 * restarted agent must carry on with what it stored rather than register again. `identity.json` (0600) is
 * the record the agent reads back: instance ID, the endpoint, when to renew, and the key, certificate and
 * CA together — written beside its final name and renamed over it, so a crash mid-write leaves the previous
 * identity whole and never pairs a certificate with a key it does not certify. `agent.key` (0600),
 * `agent.crt` and `ca.crt` are copies of the same for other programs on the VM (TLS clients, say).
 */
import { X509Certificate } from "node:crypto"
import { constants } from "node:fs"
import { lstat, open, rename, unlink } from "node:fs/promises"
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
  ca_pem: Schema.String,
  /** Absent in identities written before the agent channel: `--agent-url` supplies it then. */
  agent_url: Schema.optional(Schema.String)
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

/**
 * The state directory must be the agent's own: a real directory (not a link), owned by this user, writable
 * by nobody else. Anyone else who can write there could plant a link that makes the agent write its key
 * somewhere else, or read an identity it never wrote.
 */
const checkDirectory = (dir: string): Effect.Effect<void, AgentError> =>
  Effect.tryPromise({
    try: () => lstat(dir),
    catch: (error) => new AgentError({ message: `cannot look at ${dir}: ${errorText(error)}` })
  }).pipe(Effect.flatMap((stats) => {
    if (stats.isSymbolicLink()) return Effect.fail(new AgentError({ message: `${dir} is a symbolic link; give the state directory itself` }))
    if (!stats.isDirectory()) return Effect.fail(new AgentError({ message: `${dir} is not a directory` }))
    const uid = process.getuid?.()
    if (uid !== undefined && stats.uid !== uid) return Effect.fail(new AgentError({ message: `${dir} belongs to uid ${stats.uid}, not to this agent (uid ${uid})` }))
    if ((stats.mode & 0o022) !== 0) {
      return Effect.fail(new AgentError({ message: `${dir} is writable by group or others (mode ${(stats.mode & 0o777).toString(8)}); make it 0700 (chmod 700 ${dir})` }))
    }
    return Effect.void
  }))

/** Reads `path` without following a link (a planted link is refused, never read through). */
const readNoFollow = (path: string): Effect.Effect<string, AgentError> =>
  Effect.tryPromise({
    try: async () => {
      const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
      try {
        return await handle.readFile("utf8")
      } finally {
        await handle.close()
      }
    },
    catch: (error) =>
      new AgentError({
        message: (error as NodeJS.ErrnoException).code === "ELOOP" ? `${path} is a symbolic link; refusing to read through it` : `cannot read ${path}: ${errorText(error)}`
      })
  })

/** Writes `content` to `path` by a fresh file beside it (created exclusively, never through a link) and a rename. */
const writeNoFollow = (path: string, content: string, mode: number): Effect.Effect<void, AgentError> =>
  Effect.tryPromise({
    try: async () => {
      const staging = `${path}.new`
      // A leftover (or planted) staging entry goes first: unlink removes a link itself, never its target.
      await unlink(staging).catch((error: NodeJS.ErrnoException) => { if (error.code !== "ENOENT") throw error })
      const handle = await open(staging, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode)
      try {
        await handle.writeFile(content)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(staging, path)
    },
    catch: (error) => new AgentError({ message: `cannot write ${path}: ${errorText(error)}` })
  })

/** Reads the identity in `dir`; none when the directory holds none yet (no `identity.json`). */
export const loadIdentity = (dir: string): Effect.Effect<Option.Option<StoredIdentity>, AgentError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const dirPresent = yield* fs.exists(dir).pipe(Effect.orElseSucceed(() => false))
    if (!dirPresent) return Option.none()
    yield* checkDirectory(dir)
    const path = inDir(dir, STATE_FILES.identity)
    const present = yield* Effect.promise(() => lstat(path).then(() => true, () => false))
    if (!present) return Option.none()
    const text = yield* readNoFollow(path)
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
        renewAfterSeconds: json.renew_after_seconds,
        agentUrl: json.agent_url ?? ""
      }
    })
  })

/** Writes the identity into `dir` (created 0700 if missing); the key file is readable by its owner only. */
export const saveIdentity = (dir: string, stored: StoredIdentity): Effect.Effect<void, AgentError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const failed = (what: string) => (error: unknown) => new AgentError({ message: `cannot write ${what}: ${errorText(error)}` })
    yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 }).pipe(Effect.mapError(failed(dir)))
    yield* checkDirectory(dir)
    const write = (name: string, content: string, mode: number) => writeNoFollow(inDir(dir, name), content, mode)
    const { identity } = stored
    yield* write(STATE_FILES.identity, `${JSON.stringify({
      instance_id: identity.instanceId,
      url: stored.url,
      renew_at: stored.renewAt,
      renew_after_seconds: identity.renewAfterSeconds,
      public_key_pem: identity.publicKeyPem,
      private_key_pem: Redacted.value(identity.privateKeyPem),
      certificate_pem: identity.certificatePem,
      ca_pem: identity.caPem,
      agent_url: identity.agentUrl
    }, null, 2)}\n`, 0o600)
    yield* write(STATE_FILES.key, Redacted.value(identity.privateKeyPem), 0o600)
    yield* write(STATE_FILES.certificate, identity.certificatePem, 0o644)
    yield* write(STATE_FILES.ca, identity.caPem, 0o644)
  })
