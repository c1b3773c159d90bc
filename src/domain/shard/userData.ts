/**
 * The user-data a group's VMs boot with: the template's `userdata` (else the defaults') — decoded in
 * `../config/userdata.ts` and rendered in `templateData.ts` — plus the agent's registration settings as a
 * cloud-init MIME part, and reading those back as the VM's agent does.
 */
import { Either, Schema } from "effect"
import type { Group, ShardConfig, Userdata } from "../config/index.js"

export const userDataSource = (config: ShardConfig, group: Group): Userdata | undefined =>
  config.templates[group.template]?.userdata ?? config.defaults.userdata

/** Where the agent finds its registration settings on the VM. */
export const AGENT_CONFIG_PATH = "/etc/nstance/agent.json"

export interface AgentRegistrationData {
  /** `https://{shard.advertise.registration_addr}/agent`. */
  readonly registrationUrl: string
  /** The nonce token itself: goes into the ISO only, never into a log or the event log. */
  readonly nonce: string
  /**
   * The cluster CA certificate (public): the agent speaks only to a server whose TLS certificate it signed,
   * from its very first call, so the nonce never reaches an unauthenticated host.
   */
  readonly caPem: string
}

/** The MIME part type cloud-init needs for a user-data document (after `normaliseUserData`). */
const partType = (text: string): string => {
  const trimmed = text.trimStart()
  if (trimmed.startsWith("#cloud-config")) return "text/cloud-config"
  if (trimmed.startsWith("#include")) return "text/x-include-url"
  if (trimmed.startsWith("#cloud-boothook")) return "text/cloud-boothook"
  return "text/x-shellscript"
}

/** The `text/cloud-config` part that writes `agent.json` (0600) and appends to, never replaces, the template's lists. */
export const agentCloudConfig = (data: AgentRegistrationData): string => {
  const json = JSON.stringify({ registration_url: data.registrationUrl, nonce: data.nonce, ca_pem: data.caPem })
  // A JSON string is a valid YAML double-quoted scalar, so the content needs no YAML escaping of its own.
  return [
    "#cloud-config",
    "merge_how:",
    "  - name: list",
    "    settings: [append]",
    "  - name: dict",
    "    settings: [no_replace, recurse_list]",
    "write_files:",
    `  - path: ${AGENT_CONFIG_PATH}`,
    "    owner: root:root",
    "    permissions: \"0600\"",
    `    content: ${JSON.stringify(json)}`,
    ""
  ].join("\n")
}

/**
 * The user-data with the agent's registration settings added: a cloud-init MIME multipart document with the
 * template's own part (`text/x-shellscript` or `text/cloud-config` by its first line; a MIME document is
 * nested as it is; empty user-data gives no part) followed by the `agent.json` cloud-config part.
 * `templateUserData` must already be normalised (`normaliseUserData`). Deterministic for equal input.
 */
export const withAgentRegistration = (templateUserData: string, data: AgentRegistrationData): string => {
  const agentPart = agentCloudConfig(data)
  const parts: Array<{ readonly type: string | undefined; readonly body: string }> = []
  if (templateUserData.trim() !== "") {
    const mime = /^content-type:\s*multipart\//i.test(templateUserData.trimStart())
    parts.push({ type: mime ? undefined : partType(templateUserData), body: mime ? templateUserData.trimStart() : templateUserData })
  }
  parts.push({ type: "text/cloud-config", body: agentPart })
  let boundary = "==nstance-user-data=="
  for (let i = 1; parts.some((part) => part.body.includes(boundary)); i++) boundary = `==nstance-user-data-${i}==`
  const lines = ["Content-Type: multipart/mixed; boundary=\"" + boundary + "\"", "MIME-Version: 1.0", ""]
  parts.forEach((part, index) => {
    lines.push(`--${boundary}`)
    if (part.type === undefined) {
      // A nested multipart document carries its own headers.
      lines.push(part.body.replace(/\n$/, ""))
    } else {
      const name = part.type === "text/cloud-config" && index === parts.length - 1 ? "nstance-agent.cfg" : "template-user-data"
      lines.push(`Content-Type: ${part.type}; charset="utf-8"`, "MIME-Version: 1.0", "Content-Transfer-Encoding: 8bit", `Content-Disposition: attachment; filename="${name}"`, "", part.body.replace(/\n$/, ""))
    }
  })
  lines.push(`--${boundary}--`, "")
  return lines.join("\n")
}

export interface MimePart {
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** The parts of a MIME multipart user-data document (flat; nested multiparts are split too); undefined if it is not one. */
export const mimeParts = (text: string): ReadonlyArray<MimePart> | undefined => {
  const split = (doc: string): { headers: Record<string, string>; body: string } => {
    const normalised = doc.replace(/\r\n/g, "\n")
    const end = normalised.indexOf("\n\n")
    const head = end < 0 ? normalised : normalised.slice(0, end)
    const headers: Record<string, string> = {}
    for (const line of head.split("\n")) {
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line)
      if (m !== null) headers[m[1]!.toLowerCase()] = m[2]!
    }
    return { headers, body: end < 0 ? "" : normalised.slice(end + 2) }
  }
  const walk = (doc: string): Array<MimePart> | undefined => {
    const { headers, body } = split(doc.trimStart())
    const type = headers["content-type"] ?? ""
    if (!/^multipart\//i.test(type)) return undefined
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1]
    if (boundary === undefined) return undefined
    const out: Array<MimePart> = []
    const chunks = body.split(`--${boundary}`)
    for (const chunk of chunks.slice(1)) {
      if (chunk.startsWith("--")) break
      const part = chunk.replace(/^\n/, "")
      const nested = walk(part)
      if (nested !== undefined) out.push(...nested)
      else out.push(split(part))
    }
    return out
  }
  return walk(text)
}

/** `agent.json` as `agentCloudConfig` writes it (extra fields are ignored: a later server may add some). */
const AgentJson = Schema.parseJson(Schema.Struct({ registration_url: Schema.String, nonce: Schema.String, ca_pem: Schema.String }))

/** The content of an `agent.json` file; undefined when it is not one. */
export const parseAgentJson = (text: string): AgentRegistrationData | undefined => {
  const decoded = Schema.decodeUnknownEither(AgentJson, { onExcessProperty: "ignore" })(text)
  return Either.isLeft(decoded) ? undefined : { registrationUrl: decoded.right.registration_url, nonce: decoded.right.nonce, caPem: decoded.right.ca_pem }
}

/**
 * The agent's registration settings as the VM's agent finds them in its user-data: the `agent.json` that
 * `withAgentRegistration`'s cloud-config part writes. Undefined when the user-data has none.
 */
export const agentRegistrationOf = (userData: string): AgentRegistrationData | undefined => {
  for (const part of mimeParts(userData) ?? []) {
    if (!part.body.includes(AGENT_CONFIG_PATH)) continue
    // The content line is a JSON string (a valid YAML double-quoted scalar) holding the JSON document.
    const line = /^\s*content:\s*(".*")\s*$/m.exec(part.body)
    if (line === null) continue
    const content = Schema.decodeUnknownEither(Schema.parseJson(Schema.String))(line[1])
    if (Either.isRight(content)) return parseAgentJson(content.right)
  }
  return undefined
}
