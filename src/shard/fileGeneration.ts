/**
 * Making one VM's files (`templates.*.files`): templated files rendered with the VM's data, `secret` files
 * read from its group's tenant's secrets, `storage` files read from the shard's storage under their rendered
 * key, and `certificate` files issued by the cluster CA for a key the VM's agent proved it holds. A previous
 * version is reused when nothing it was made from changed — a secret or object of the same version, a
 * certificate for the same request and key that is not yet at two thirds of its lifetime — so a VM whose
 * files are looked at again is not sent new bytes, and the CA is not asked again, for nothing.
 *
 * A file that cannot be made fails alone with a reason (metrics count them by it); the caller decides
 * whether the VM gets the others meanwhile. No secret value is ever part of an error or a log line.
 */
import { createHash } from "node:crypto"
import { Clock, Data, Duration, Effect, Either, Redacted } from "effect"
import { type CertificateTemplate, type InstanceFile, MAX_FILE_BYTES, storageKeyProblem } from "../domain/config/files.js"
import { renderCertificateRequest, renderEnvFile, renderJsonFile, renderStorageKey, renderStringFile } from "../domain/agent/fileContent.js"
import { own } from "../domain/config/records.js"
import type { TemplateValue } from "../domain/goTemplate/index.js"
import { recordFileCertificateIssued } from "../metrics/metrics.js"
import type { ClusterPkiShape } from "../services/ClusterPki.js"
import type { ObjectStoreShape } from "../services/ObjectStore.js"
import type { SecretStoreShape } from "../services/SecretStore.js"

export type FileFailureReason =
  | "key-missing"
  | "secret-missing"
  | "secret-undecryptable"
  | "storage-missing"
  | "render"
  | "too-large"
  | "store"
  | "certificate"

/** One file of a VM that cannot be made now; `detail` names fields and keys, never values. */
export class FileUnavailable extends Data.TaggedError("FileUnavailable")<{
  readonly file: string
  readonly reason: FileFailureReason
  readonly detail: string
}> {
  override get message() {
    return `file ${this.file}: ${this.detail}`
  }
}

export interface IssuedFileCertificate {
  readonly serial: string
  readonly notAfter: Date
  /** When it is renewed: two thirds of its lifetime after it was issued (epoch millis). */
  readonly renewAt: number
  /** What it was issued for (rendered request and key): another request means a new certificate. */
  readonly request: string
}

export interface GeneratedFile {
  readonly name: string
  readonly kind: InstanceFile["kind"]
  readonly mode: number
  readonly content: Uint8Array
  /** SHA-256 hex of `content`: what the agent is told, and what decides whether it is sent again. */
  readonly digest: string
  /** What it was made from: a secret's or object's version; for a certificate its serial. */
  readonly version: string
  readonly certificate?: IssuedFileCertificate
}

export interface FileSources {
  readonly pki: ClusterPkiShape
  /** Absent without `cluster.secrets` (validation refuses secret files then). */
  readonly secrets: SecretStoreShape | undefined
  /** The shard's storage (keys relative to its prefix). */
  readonly storage: ObjectStoreShape
}

export interface FileTarget {
  readonly instanceId: string
  /** The tenant of the VM's group: the only tenant whose secrets it is given. */
  readonly tenant: string
  /** The VM's template data (as for user-data, with what its agent registered). */
  readonly data: TemplateValue
  readonly certificates: Readonly<Record<string, CertificateTemplate>>
  /** Keys the agent proved it holds, by name (`key.name` without `.pub`): SPKI PEM. */
  readonly agentKeys: ReadonlyMap<string, string>
}

export const digestOf = (content: Uint8Array): string => createHash("sha256").update(content).digest("hex")

const made = (name: string, spec: InstanceFile, content: Uint8Array, version?: string, certificate?: IssuedFileCertificate): GeneratedFile => {
  const digest = digestOf(content)
  return { name, kind: spec.kind, mode: spec.mode, content, digest, version: version ?? digest, ...(certificate === undefined ? {} : { certificate }) }
}

const fromRender = (name: string, rendered: Either.Either<Uint8Array, string>): Effect.Effect<Uint8Array, FileUnavailable> =>
  Either.isRight(rendered)
    ? Effect.succeed(rendered.right)
    : Effect.fail(new FileUnavailable({ file: name, reason: rendered.left.startsWith("renders to") ? "too-large" : "render", detail: rendered.left }))

/** Same file as before, with this spec's mode (a mode change alone is a new version for the agent). */
const reuse = (previous: GeneratedFile, spec: InstanceFile): GeneratedFile => (previous.mode === spec.mode ? previous : { ...previous, mode: spec.mode })

/** One file of `target`, or the reason it cannot be made now. `previous` is the version the VM holds. */
export const generateFile = (
  sources: FileSources,
  target: FileTarget,
  name: string,
  spec: InstanceFile,
  previous?: GeneratedFile
): Effect.Effect<GeneratedFile, FileUnavailable> => {
  const fail = (reason: FileFailureReason, detail: string) => Effect.fail(new FileUnavailable({ file: name, reason, detail }))
  switch (spec.kind) {
    case "env":
      return Effect.map(fromRender(name, renderEnvFile(spec.template, target.data)), (content) => made(name, spec, content))
    case "json":
      return Effect.map(fromRender(name, renderJsonFile(spec.template, target.data)), (content) => made(name, spec, content))
    case "string":
      return Effect.map(fromRender(name, renderStringFile(spec.template, target.data)), (content) => made(name, spec, content))
    case "secret": {
      const secrets = sources.secrets
      if (secrets === undefined) return fail("secret-missing", "no secrets store is configured (cluster.secrets)")
      return Effect.gen(function* () {
        const version = yield* secrets.version(target.tenant, spec.source).pipe(
          Effect.catchAll((error) => fail("store", `secret ${spec.source}: ${error.message}`))
        )
        if (version === undefined) return yield* fail("secret-missing", `no secret ${spec.source} in tenant ${target.tenant}`)
        if (previous !== undefined && previous.kind === "secret" && previous.version === version) return reuse(previous, spec)
        const secret = yield* secrets.get(target.tenant, spec.source).pipe(
          Effect.catchTags({
            SecretNotFound: () => fail("secret-missing", `no secret ${spec.source} in tenant ${target.tenant}`),
            SecretUndecryptable: (error) => fail("secret-undecryptable", error.message)
          }),
          Effect.catchAll((error) => (error instanceof FileUnavailable ? Effect.fail(error) : fail("store", `secret ${spec.source}: ${error.message}`)))
        )
        const content = Redacted.value(secret.value)
        if (content.length > MAX_FILE_BYTES) return yield* fail("too-large", `secret ${spec.source} is ${content.length} bytes; a file may be at most ${MAX_FILE_BYTES}`)
        return made(name, spec, content, secret.version)
      })
    }
    case "storage":
      return Effect.gen(function* () {
        const key = renderStorageKey(spec.source, target.data)
        if (Either.isLeft(key)) return yield* fail("render", key.left)
        const problem = storageKeyProblem(key.right)
        if (problem !== undefined) return yield* fail("render", `source renders to a key that ${problem}`)
        const head = yield* sources.storage.head(key.right).pipe(
          Effect.catchTag("NotFound", () => fail("storage-missing", `no object ${key.right} in the shard's storage`)),
          Effect.catchAll((error) => (error instanceof FileUnavailable ? Effect.fail(error) : fail("store", error.message)))
        )
        if (head.size > MAX_FILE_BYTES) return yield* fail("too-large", `object ${key.right} is ${head.size} bytes; a file may be at most ${MAX_FILE_BYTES}`)
        const version = `${key.right}@${head.etag}`
        if (previous !== undefined && previous.kind === "storage" && previous.version === version) return reuse(previous, spec)
        const object = yield* sources.storage.get(key.right).pipe(
          Effect.catchTag("NotFound", () => fail("storage-missing", `no object ${key.right} in the shard's storage`)),
          Effect.catchAll((error) => (error instanceof FileUnavailable ? Effect.fail(error) : fail("store", error.message)))
        )
        if (object.body.length > MAX_FILE_BYTES) return yield* fail("too-large", `object ${key.right} is ${object.body.length} bytes; a file may be at most ${MAX_FILE_BYTES}`)
        return made(name, spec, object.body, `${key.right}@${object.etag}`)
      })
    case "certificate":
      return Effect.gen(function* () {
        const template = own(target.certificates, spec.certificate)
        if (template === undefined) return yield* fail("render", `certificate template ${spec.certificate} is not in the config`)
        const publicKeyPem = target.agentKeys.get(spec.key.name)
        if (publicKeyPem === undefined) return yield* fail("key-missing", `the agent has not submitted key ${spec.key.name} yet`)
        const fields = renderCertificateRequest(template, target.data)
        if (Either.isLeft(fields)) return yield* fail("render", fields.left)
        const request = createHash("sha256").update(JSON.stringify({ ...fields.right, ttl: Duration.toMillis(template.ttl), publicKeyPem })).digest("hex")
        const now = yield* Clock.currentTimeMillis
        const held = previous?.certificate
        if (previous !== undefined && held !== undefined && held.request === request && now < held.renewAt) return reuse(previous, spec)
        const issued = yield* sources.pki.issueFileCertificate({ ...fields.right, publicKeyPem, ttl: template.ttl }).pipe(
          Effect.mapError((error) => new FileUnavailable({ file: name, reason: "certificate", detail: `${error.message} (certificates.${template.name})` }))
        )
        yield* recordFileCertificateIssued(template.kind)
        const renewAt = now + Math.floor(((issued.notAfter.getTime() - now) * 2) / 3)
        return made(name, spec, new Uint8Array(Buffer.from(issued.certificatePem, "utf8")), issued.serial, {
          serial: issued.serial,
          notAfter: issued.notAfter,
          renewAt,
          request
        })
      })
  }
}


/** The agent keys `files` need (names without `.pub`), for the agent to make and prove. */
export const agentKeysNeeded = (files: Readonly<Record<string, InstanceFile>>): ReadonlyArray<string> =>
  [...new Set(Object.values(files).flatMap((spec) => (spec.kind === "certificate" ? [spec.key.name] : [])))].sort()
