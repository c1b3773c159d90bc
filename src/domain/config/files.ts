/**
 * What each VM of a template is given over its agent channel (`templates.*.files`), the certificate
 * templates those files name (`certificates.*`), and the cluster's secrets store (`cluster.secrets`):
 * decoded and checked in one pass that reports every problem by its field. A file is refused here for
 * what can be known before any VM exists — an unknown kind, a certificate template that does not exist, a
 * SAN that is neither a template nor a DNS name / IP / absolute URI, a template that does not parse, a
 * `storage` key that does not render to a key the VM may read — so a config push cannot leave every VM of a
 * group waiting on a file that can never be made.
 *
 * Files come from the template only (as the original merges: defaults carry no files, groups none); the
 * group decides the data they are rendered with (its vars) and, for secrets, the tenant whose secrets are
 * read: a `secret` file's `source` is a name within the tenant of the VM's group, so a template shared by
 * two tenants gives each VM its own tenant's value and never the other's.
 */
import { isIP } from "node:net"
import { Duration, Either, Schema } from "effect"
import { parseDuration } from "../duration.js"
import { echoValue } from "../errorText.js"
import { hasActions, parseGoTemplate, renderGoTemplate, type TemplateValue } from "../goTemplate/index.js"
import { objectKeyProblem } from "../objectKey.js"
import { emptyRecord, own } from "./records.js"

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

// ---------------------------------------------------------------------------------------------------------
// Raw shapes

export const RawFileKey = Schema.Struct({ source: Schema.String, name: Schema.String })

/** One entry of `files`: which fields a kind needs is checked below, so a mistake names the field. */
export const RawFile = Schema.Struct({
  kind: Schema.String,
  source: opt(Schema.String),
  // A string (string), an object of strings (env), any JSON object (json), or a certificate template's name.
  template: opt(Schema.Unknown),
  key: opt(RawFileKey),
  /** An extension of the original: the file's permission bits on the VM, octal ("0640"). */
  mode: opt(Schema.String)
})
export type RawFile = typeof RawFile.Type

export const RawFiles = Schema.Record({ key: Schema.String, value: RawFile })

export const RawCertificateTemplate = Schema.Struct({
  kind: opt(Schema.Literal("client", "server")),
  // Checked below, so a duration string such as "24h" gets a message saying hours are wanted.
  ttl: opt(Schema.Unknown),
  cn: opt(Schema.String),
  organization: opt(Schema.String),
  dns: opt(Schema.Array(Schema.String)),
  ip: opt(Schema.Array(Schema.String)),
  uri: opt(Schema.Array(Schema.String)),
  country: opt(Schema.String),
  province: opt(Schema.String),
  locality: opt(Schema.String),
  street: opt(Schema.String),
  postal_code: opt(Schema.String)
})
export type RawCertificateTemplate = typeof RawCertificateTemplate.Type

export const RawKeySource = Schema.Struct({ provider: Schema.String, source: Schema.String, project_id: opt(Schema.String) })

export const RawSecrets = Schema.Struct({
  provider: opt(Schema.String),
  prefix: opt(Schema.String),
  encryption_key: opt(RawKeySource),
  old_encryption_keys: opt(Schema.Array(RawKeySource)),
  cache_ttl: opt(Schema.String),
  project_id: opt(Schema.String)
})
export type RawSecrets = typeof RawSecrets.Type

// ---------------------------------------------------------------------------------------------------------
// Decoded shapes

/** Where a 32-byte encryption key is read from: an environment variable, or a file (trimmed). */
export interface KeySource {
  readonly provider: "env" | "file"
  readonly source: string
}

/** `cluster.secrets` with provider `object-storage`, the one store this build implements. */
export interface SecretsConfig {
  readonly provider: "object-storage"
  /** Key prefix of sealed secrets within the cluster's storage (`cluster/`), default `secret/`. */
  readonly prefix: string
  /** Seals new values; tried first when opening. */
  readonly encryptionKey: KeySource
  /** Open values sealed before a rotation; never seal. */
  readonly oldEncryptionKeys: ReadonlyArray<KeySource>
}

export type FileKind = "certificate" | "env" | "json" | "string" | "secret" | "storage"
export const FILE_KINDS: ReadonlyArray<FileKind> = ["certificate", "env", "json", "string", "secret", "storage"]

interface FileBase {
  /** Permission bits of the file on the VM. */
  readonly mode: number
}

export type InstanceFile =
  | FileBase & {
    readonly kind: "certificate"
    /** The `certificates` entry it is issued from. */
    readonly certificate: string
    /** The agent key it certifies: `name` without `.pub` is what the agent generates and keeps. */
    readonly key: { readonly source: "agent"; readonly name: string }
  }
  | FileBase & { readonly kind: "env"; readonly template: Readonly<Record<string, string>> }
  | FileBase & { readonly kind: "json"; readonly template: Readonly<Record<string, unknown>> }
  | FileBase & { readonly kind: "string"; readonly template: string }
  | FileBase & { readonly kind: "secret"; readonly source: string }
  | FileBase & { readonly kind: "storage"; readonly source: string }

export interface CertificateTemplate {
  readonly name: string
  readonly kind: "client" | "server"
  /** Templated; "" = the certificate template's name, as the original issues files. */
  readonly cn: string
  readonly organization: string
  readonly dns: ReadonlyArray<string>
  readonly ip: ReadonlyArray<string>
  readonly uri: ReadonlyArray<string>
  readonly ttl: Duration.Duration
}

/** The original's default lifetime of a certificate template without `ttl` (hours). */
export const DEFAULT_FILE_CERTIFICATE_TTL_HOURS = 8760

/** Longest certificate any template may ask for: ten years, the original's CA lifetime. */
export const MAX_FILE_CERTIFICATE_TTL_HOURS = 87_600

/** Entries of `certificates` with a meaning of their own (not templates for files). */
export const SPECIAL_CERTIFICATES: ReadonlyArray<string> = ["ca", "agent", "operator"]

/** Files per template, and bytes of one generated file: a VM's files travel in one stream, held in memory. */
export const MAX_FILES_PER_TEMPLATE = 64
export const MAX_FILE_BYTES = 256 * 1024

/**
 * Keys of the shard's own state under its prefix: a `storage` file never reads them, whatever its
 * template renders to (group vars come from tenants' operators through groups.jsonc).
 */
export const RESERVED_STORAGE_KEYS: ReadonlyArray<string> = ["config.jsonc", "groups.jsonc", "leader.json"]
export const RESERVED_STORAGE_PREFIXES: ReadonlyArray<string> = ["log/", "snapshot/", "quarantine/"]

/** Why a rendered `storage` key may not be read, or undefined. */
export const storageKeyProblem = (key: string): string | undefined => {
  const problem = objectKeyProblem(key)
  if (problem !== undefined) return problem
  if (key.endsWith("/")) return "names a prefix, not an object"
  if (RESERVED_STORAGE_KEYS.includes(key) || RESERVED_STORAGE_PREFIXES.some((prefix) => key.startsWith(prefix))) {
    return "names the shard's own state (config, groups, lease or event log), which no VM may read"
  }
  return undefined
}

/** A name within a tenant's secrets: path segments of letters, digits, '.', '_', '-'. */
const SECRET_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/
export const secretNameProblem = (name: string): string | undefined => {
  if (name === "") return "cannot be empty"
  if (name.length > 256) return "must be at most 256 characters"
  if (!SECRET_NAME.test(name) || name.split("/").some((part) => part === "." || part === "..")) {
    return "must be a secret name: segments of letters, digits, '.', '_' or '-' separated by '/' (no '..')"
  }
  return undefined
}

/** A file's name on the VM: a relative path under the agent's files directory. */
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/
export const fileNameProblem = (name: string): string | undefined => {
  if (name.length > 255) return "must be at most 255 characters"
  if (!FILE_NAME.test(name) || name.split("/").some((part) => part === "." || part === "..")) {
    return "must be a relative path of letters, digits, '.', '_' or '-' (no leading '/', '.' or '..' segments)"
  }
  return undefined
}

const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
/** A DNS SAN: a hostname, or a wildcard in its first label only. */
export const dnsNameProblem = (name: string): string | undefined => {
  const labels = name.split(".")
  const rest = labels[0] === "*" && labels.length > 2 ? labels.slice(1) : labels
  if (name.length > 253 || !rest.every((label) => DNS_LABEL.test(label))) return `${echoValue(name)} is not a DNS name`
  return undefined
}
export const ipProblem = (ip: string): string | undefined => (isIP(ip) === 0 ? `${echoValue(ip)} is not an IP address` : undefined)
export const uriProblem = (uri: string): string | undefined => {
  try {
    const parsed = new URL(uri)
    return parsed.protocol === "" ? `${echoValue(uri)} is not an absolute URI` : undefined
  } catch {
    return `${echoValue(uri)} is not an absolute URI`
  }
}

const DEFAULT_MODES: Readonly<Record<FileKind, number>> = {
  certificate: 0o644,
  env: 0o640,
  json: 0o644,
  string: 0o644,
  secret: 0o600,
  storage: 0o644
}

// ---------------------------------------------------------------------------------------------------------
// Validation

type Fail = (path: string, message: string) => void
type Warn = (path: string, message: string) => void

/** A templated string must parse; where it renders at all is judged per VM. */
const templateProblem = (fail: Fail, path: string, text: string): void => {
  if (!hasActions(text)) return
  const parsed = parseGoTemplate(text)
  if (Either.isLeft(parsed)) fail(path, `is not a valid template: ${parsed.left.message}`)
}

const isPlainObject = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Every string leaf of a JSON value is a template. */
const jsonTemplateProblems = (fail: Fail, path: string, value: unknown): void => {
  if (typeof value === "string") templateProblem(fail, path, value)
  else if (Array.isArray(value)) value.forEach((element, i) => jsonTemplateProblems(fail, `${path}[${i}]`, element))
  else if (isPlainObject(value)) for (const [key, child] of Object.entries(value)) jsonTemplateProblems(fail, `${path}.${key}`, child)
}

/** `certificates`: every entry's kind and TTL; the special entries' meaning stays with the caller. */
export const certificateTemplatesOf = (
  raw: Readonly<Record<string, RawCertificateTemplate>> | undefined,
  fail: Fail,
  warn: Warn
): Record<string, CertificateTemplate> => {
  const out = emptyRecord<CertificateTemplate>()
  for (const [name, entry] of Object.entries(raw ?? {})) {
    const at = `certificates.${name}`
    if (name === "agent" || name === "operator" || name === "ca") {
      for (const field of ["cn", "organization", "dns", "ip", "uri", "country", "province", "locality", "street", "postal_code"] as const) {
        if (entry[field] !== undefined) warn(`${at}.${field}`, "not used by this build; ignored")
      }
      if (name !== "agent") warn(at, "not used by this build (the CA and operator certificates are made by nstance-admin and the servers); ignored")
      continue
    }
    let ttl = Duration.hours(DEFAULT_FILE_CERTIFICATE_TTL_HOURS)
    const written = entry.ttl
    if (written !== undefined && written !== 0) {
      if (typeof written !== "number" || !Number.isSafeInteger(written) || written < 0) fail(`${at}.ttl`, `must be a whole number of hours, e.g. 720 (got ${JSON.stringify(written)})`)
      else if (written > MAX_FILE_CERTIFICATE_TTL_HOURS) fail(`${at}.ttl`, `must be at most ${MAX_FILE_CERTIFICATE_TTL_HOURS} hours (got ${written})`)
      else ttl = Duration.hours(written)
    }
    if (entry.cn !== undefined) templateProblem(fail, `${at}.cn`, entry.cn)
    if (entry.organization !== undefined) templateProblem(fail, `${at}.organization`, entry.organization)
    const sans = (field: "dns" | "ip" | "uri", check: (value: string) => string | undefined) =>
      (entry[field] ?? []).forEach((value, i) => {
        const path = `${at}.${field}[${i}]`
        // A template is judged once rendered, for each VM; a literal now.
        if (hasActions(value)) return templateProblem(fail, path, value)
        const problem = check(value)
        if (problem !== undefined) fail(path, problem)
      })
    sans("dns", dnsNameProblem)
    sans("ip", ipProblem)
    sans("uri", uriProblem)
    for (const field of ["country", "province", "locality", "street", "postal_code"] as const) {
      if (entry[field] !== undefined) warn(`${at}.${field}`, "not put into certificates (as the original: CN, O and the SANs are); ignored")
    }
    out[name] = {
      name,
      kind: entry.kind ?? "server",
      cn: entry.cn ?? "",
      organization: entry.organization ?? "",
      dns: entry.dns ?? [],
      ip: entry.ip ?? [],
      uri: entry.uri ?? [],
      ttl
    }
  }
  return out
}

/** A template's `files`, checked against the certificate templates that exist. */
export const instanceFilesOf = (
  at: string,
  raw: Readonly<Record<string, RawFile>> | undefined,
  certificates: Readonly<Record<string, CertificateTemplate>>,
  fail: Fail
): Record<string, InstanceFile> => {
  const out = emptyRecord<InstanceFile>()
  const entries = Object.entries(raw ?? {})
  if (entries.length > MAX_FILES_PER_TEMPLATE) fail(at, `${entries.length} files; a template may give a VM at most ${MAX_FILES_PER_TEMPLATE}`)
  const agentKeys = new Map<string, string>()
  for (const [name, file] of entries) {
    const path = `${at}.${name}`
    const nameProblem = fileNameProblem(name)
    if (nameProblem !== undefined) fail(path, `file name ${nameProblem}`)
    if (!(FILE_KINDS as ReadonlyArray<string>).includes(file.kind)) {
      fail(`${path}.kind`, `unknown file kind ${echoValue(file.kind)} (expected one of: ${FILE_KINDS.join(", ")})`)
      continue
    }
    const kind = file.kind as FileKind
    let mode = DEFAULT_MODES[kind]
    if (file.mode !== undefined) {
      if (/^0?[0-7]{3}$/.test(file.mode)) mode = Number.parseInt(file.mode, 8)
      else fail(`${path}.mode`, `must be octal permission bits such as "0640" (got ${echoValue(file.mode)})`)
    }
    const unexpected = (field: "source" | "template" | "key") => {
      if (file[field] !== undefined) fail(`${path}.${field}`, `is not a field of a ${kind} file`)
    }
    switch (kind) {
      case "certificate": {
        unexpected("source")
        const template = file.template
        if (typeof template !== "string") {
          fail(`${path}.template`, "is required: the name of a certificates entry")
          continue
        }
        if (SPECIAL_CERTIFICATES.includes(template) || own(certificates, template) === undefined) {
          const names = Object.keys(certificates)
          fail(`${path}.template`, `unknown certificate template ${echoValue(template)} (certificates: ${names.join(", ") || "none"})`)
          continue
        }
        if (file.key === undefined) {
          fail(`${path}.key`, `is required: {"source": "agent", "name": "<name>.pub"}, the agent key it certifies`)
          continue
        }
        if (file.key.source !== "agent") {
          fail(`${path}.key.source`, `must be "agent" (the key is made on the VM and never leaves it; got ${echoValue(file.key.source)})`)
          continue
        }
        const keyName = file.key.name.endsWith(".pub") ? file.key.name.slice(0, -4) : ""
        if (keyName === "" || fileNameProblem(keyName) !== undefined || keyName.includes("/")) {
          fail(`${path}.key.name`, `must be "<name>.pub" with a name of letters, digits, '.', '_' or '-' (got ${echoValue(file.key.name)})`)
          continue
        }
        const other = agentKeys.get(keyName)
        if (other !== undefined) fail(`${path}.key.name`, `${echoValue(file.key.name)} is also certified by ${other}; one key per certificate file`)
        agentKeys.set(keyName, name)
        out[name] = { kind, mode, certificate: template, key: { source: "agent", name: keyName } }
        break
      }
      case "env": {
        unexpected("source")
        unexpected("key")
        const template = file.template
        if (!isPlainObject(template) || !Object.values(template).every((value) => typeof value === "string")) {
          fail(`${path}.template`, "must be an object of string values (variable name → templated value)")
          continue
        }
        for (const [variable, value] of Object.entries(template)) {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable)) fail(`${path}.template.${variable}`, "is not an environment variable name")
          templateProblem(fail, `${path}.template.${variable}`, value as string)
        }
        out[name] = { kind, mode, template: template as Readonly<Record<string, string>> }
        break
      }
      case "json": {
        unexpected("source")
        unexpected("key")
        const template = file.template
        if (!isPlainObject(template)) {
          fail(`${path}.template`, "must be a JSON object (its string values are templates)")
          continue
        }
        jsonTemplateProblems(fail, `${path}.template`, template)
        out[name] = { kind, mode, template }
        break
      }
      case "string": {
        unexpected("source")
        unexpected("key")
        if (typeof file.template !== "string") {
          fail(`${path}.template`, "is required: the file's content, a template")
          continue
        }
        templateProblem(fail, `${path}.template`, file.template)
        out[name] = { kind, mode, template: file.template }
        break
      }
      case "secret":
      case "storage": {
        unexpected("template")
        unexpected("key")
        if (file.source === undefined || file.source === "") {
          fail(`${path}.source`, kind === "secret" ? "is required: the secret's name (within the group's tenant)" : "is required: the object's key in the shard's storage")
          continue
        }
        if (kind === "secret") {
          const problem = secretNameProblem(file.source)
          if (problem !== undefined) fail(`${path}.source`, problem)
        } else if (hasActions(file.source)) {
          templateProblem(fail, `${path}.source`, file.source)
        } else {
          const problem = storageKeyProblem(file.source)
          if (problem !== undefined) fail(`${path}.source`, `${echoValue(file.source)} ${problem}`)
        }
        out[name] = { kind, mode, source: file.source }
        break
      }
    }
  }
  return out
}

/**
 * A group's `storage` keys rendered with data like its VMs' (an instance's own fields are not known yet):
 * a template that fails to render, or renders to a key no VM may read, is refused for the group.
 */
export const storageRenderProblems = (
  groupPath: string,
  templatePath: string,
  files: Readonly<Record<string, InstanceFile>>,
  data: TemplateValue,
  fail: Fail
): void => {
  for (const [name, file] of Object.entries(files)) {
    if (file.kind !== "storage" || !hasActions(file.source)) continue
    const parsed = parseGoTemplate(file.source)
    if (Either.isLeft(parsed)) continue // reported with the template
    const rendered = renderGoTemplate(parsed.right, data)
    const path = `${templatePath}.${name}.source`
    if (Either.isLeft(rendered)) fail(path, `cannot render for ${groupPath}: ${rendered.left.message}`)
    else {
      const problem = storageKeyProblem(rendered.right)
      if (problem !== undefined) fail(path, `renders to ${echoValue(rendered.right)} for ${groupPath}, which ${problem}`)
    }
  }
}

const KEY_PROVIDERS = ["env", "file", "aws-parameter-store", "aws-secrets-manager", "google-secret-manager"] as const
const STORE_PROVIDERS = ["object-storage", "aws-parameter-store", "aws-secrets-manager", "google-secret-manager", "memory"] as const

/**
 * `cluster.secrets`: an `object-storage` store is used; the original's other providers are accepted with a
 * warning (and then no `secret` file can be delivered, which the caller refuses per file).
 */
export const secretsConfigOf = (raw: RawSecrets | undefined, fail: Fail, warn: Warn): SecretsConfig | undefined => {
  if (raw === undefined) return undefined
  const at = "cluster.secrets"
  const provider = raw.provider
  if (provider === undefined || provider === "") {
    fail(`${at}.provider`, `is required (${STORE_PROVIDERS.join(", ")}; this build implements object-storage)`)
    return undefined
  }
  if (!(STORE_PROVIDERS as ReadonlyArray<string>).includes(provider)) {
    fail(`${at}.provider`, `must be one of ${STORE_PROVIDERS.join(", ")} (got ${echoValue(provider)})`)
    return undefined
  }
  if (provider !== "object-storage") {
    warn(`${at}.provider`, `${provider} is not implemented by this build (object-storage is); secret files cannot be delivered`)
    return undefined
  }
  const keySource = (path: string, key: typeof RawKeySource.Type): KeySource | undefined => {
    if (!(KEY_PROVIDERS as ReadonlyArray<string>).includes(key.provider)) {
      fail(`${path}.provider`, `must be one of ${KEY_PROVIDERS.join(", ")} (got ${echoValue(key.provider)})`)
      return undefined
    }
    if (key.provider !== "env" && key.provider !== "file") {
      fail(`${path}.provider`, `${key.provider} is not implemented by this build; use env or file`)
      return undefined
    }
    if (key.source === "") {
      fail(`${path}.source`, key.provider === "env" ? "is required: the environment variable holding the key" : "is required: the file holding the key")
      return undefined
    }
    if (key.provider === "env" && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key.source)) fail(`${path}.source`, `${echoValue(key.source)} is not an environment variable name`)
    if (key.provider === "file" && !key.source.startsWith("/")) fail(`${path}.source`, `${echoValue(key.source)} must be an absolute path`)
    if (key.project_id !== undefined) warn(`${path}.project_id`, "only for google-secret-manager; ignored")
    return { provider: key.provider, source: key.source }
  }
  if (raw.encryption_key === undefined) {
    fail(`${at}.encryption_key`, `is required with object-storage: {"provider": "env", "source": "NSTANCE_SECRETS_KEY"} (32 bytes; values are sealed with it)`)
    return undefined
  }
  const current = keySource(`${at}.encryption_key`, raw.encryption_key)
  const old = (raw.old_encryption_keys ?? []).flatMap((key, i) => {
    const source = keySource(`${at}.old_encryption_keys[${i}]`, key)
    return source === undefined ? [] : [source]
  })
  const prefix = raw.prefix ?? "secret/"
  const prefixProblem = prefix === "" ? "cannot be empty" : !prefix.endsWith("/") ? "must end with '/'" : objectKeyProblem(prefix)
  if (prefixProblem !== undefined) fail(`${at}.prefix`, prefixProblem)
  if (raw.cache_ttl !== undefined) {
    const ttl = parseDuration(raw.cache_ttl)
    if (Either.isLeft(ttl)) fail(`${at}.cache_ttl`, ttl.left)
    else warn(`${at}.cache_ttl`, "not used by this build (a secret is read when a VM's files are made, and its rotation delivered at once); ignored")
  }
  if (raw.project_id !== undefined) warn(`${at}.project_id`, "only for google-secret-manager; ignored")
  if (current === undefined) return undefined
  return { provider: "object-storage", prefix, encryptionKey: current, oldEncryptionKeys: old }
}
