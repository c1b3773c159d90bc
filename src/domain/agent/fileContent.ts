/**
 * The content of a VM's templated files, rendered with the VM's template data: `env` (one `NAME=value` line
 * per variable, sorted, quoted where a shell or systemd's EnvironmentFile would otherwise split or expand
 * the value), `json` (every string leaf rendered, two-space indented), `string`, and what a `certificate`
 * file asks the CA for (CN, O and SANs rendered; a SAN that renders empty — an IPv6 the VM does not have —
 * is left out, one that renders to something else than its kind is refused naming the field). Pure: the
 * effects (issuing, reading secrets and storage) are the shard's.
 */
import { Either } from "effect"
import type { CertificateTemplate } from "../config/files.js"
import { dnsNameProblem, ipProblem, MAX_FILE_BYTES, uriProblem } from "../config/files.js"
import { hasActions, parseGoTemplate, renderGoTemplate, type TemplateValue } from "../goTemplate/index.js"

/** `field: why` of a file that cannot be rendered (the caller prefixes the file's name). */
export type RenderProblem = string

const render = (field: string, text: string, data: TemplateValue): Either.Either<string, RenderProblem> => {
  if (!hasActions(text)) return Either.right(text)
  return Either.mapLeft(
    Either.flatMap(parseGoTemplate(text), (template) => renderGoTemplate(template, data)),
    (error) => `${field}: ${error.message}`
  )
}

const utf8 = (text: string) => new Uint8Array(Buffer.from(text, "utf8"))

const bounded = (bytes: Uint8Array): Either.Either<Uint8Array, RenderProblem> =>
  bytes.length > MAX_FILE_BYTES ? Either.left(`renders to ${bytes.length} bytes; a file may be at most ${MAX_FILE_BYTES}`) : Either.right(bytes)

const PLAIN_ENV_VALUE = /^[A-Za-z0-9_./:@%+,=-]*$/

/** A value as a double-quoted string both `sh` and systemd read back as written. */
export const envValue = (value: string): string =>
  PLAIN_ENV_VALUE.test(value) ? value : `"${value.replace(/[\\"$`]/g, (c) => `\\${c}`).replace(/\n/g, "\\n")}"`

export const renderEnvFile = (template: Readonly<Record<string, string>>, data: TemplateValue): Either.Either<Uint8Array, RenderProblem> => {
  const lines: Array<string> = []
  for (const name of Object.keys(template).sort()) {
    const value = render(`template.${name}`, template[name]!, data)
    if (Either.isLeft(value)) return Either.left(value.left)
    lines.push(`${name}=${envValue(value.right)}`)
  }
  return bounded(utf8(lines.map((line) => `${line}\n`).join("")))
}

export const renderJsonFile = (template: Readonly<Record<string, unknown>>, data: TemplateValue): Either.Either<Uint8Array, RenderProblem> => {
  const walk = (path: string, value: unknown): Either.Either<unknown, RenderProblem> => {
    if (typeof value === "string") return render(path, value, data)
    if (Array.isArray(value)) return Either.all(value.map((element, i) => walk(`${path}[${i}]`, element)))
    if (typeof value === "object" && value !== null) {
      const entries = Object.entries(value).map(([key, child]) => Either.map(walk(`${path}.${key}`, child), (rendered) => [key, rendered] as const))
      return Either.map(Either.all(entries), (pairs) => Object.fromEntries(pairs))
    }
    return Either.right(value)
  }
  return Either.flatMap(walk("template", template), (rendered) => bounded(utf8(`${JSON.stringify(rendered, null, 2)}\n`)))
}

export const renderStringFile = (template: string, data: TemplateValue): Either.Either<Uint8Array, RenderProblem> =>
  Either.flatMap(render("template", template, data), (text) => bounded(utf8(text)))

/** A rendered `storage` source. */
export const renderStorageKey = (source: string, data: TemplateValue): Either.Either<string, RenderProblem> => render("source", source, data)

export interface CertificateRequestFields {
  readonly kind: "server" | "client"
  readonly commonName: string
  readonly organization: string
  readonly dns: ReadonlyArray<string>
  readonly ip: ReadonlyArray<string>
  readonly uri: ReadonlyArray<string>
}

/** What one certificate file asks for, rendered for one VM; problems name the certificate template's field. */
export const renderCertificateRequest = (template: CertificateTemplate, data: TemplateValue): Either.Either<CertificateRequestFields, RenderProblem> => {
  const at = `certificates.${template.name}`
  const sans = (field: "dns" | "ip" | "uri", check: (value: string) => string | undefined) => {
    const out: Array<string> = []
    for (const [i, text] of template[field].entries()) {
      const rendered = render(`${at}.${field}[${i}]`, text, data)
      if (Either.isLeft(rendered)) return Either.left(rendered.left)
      const value = rendered.right.trim()
      if (value === "") continue
      const problem = check(value)
      if (problem !== undefined) return Either.left(`${at}.${field}[${i}]: renders to ${problem}`)
      if (!out.includes(value)) out.push(value)
    }
    return Either.right(out)
  }
  return Either.all({
    kind: Either.right(template.kind),
    commonName: Either.map(render(`${at}.cn`, template.cn === "" ? template.name : template.cn, data), (cn) => cn.trim()),
    organization: Either.map(render(`${at}.organization`, template.organization, data), (o) => o.trim()),
    dns: sans("dns", dnsNameProblem),
    ip: sans("ip", ipProblem),
    uri: sans("uri", uriProblem)
  })
}
