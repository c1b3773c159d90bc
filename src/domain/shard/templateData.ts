/**
 * What a VM's user-data and its group's args are rendered with (behaviour §6.3): the Go template data of
 * the original — `.Cluster.ID`, `.Cluster.CACert`, `.Server.Shard`, `.Server.RegistrationAddr`,
 * `.Server.AgentAddr`, `.Server.OperatorAddr`, `.Provider.Kind/Region/Zone`, `.Instance.ID/Kind/Arch/Type` (and for
 * files, rendered after registration, `.Instance.Hostname/FQDN/IP4/IP6` as the agent registered them),
 * `.Vars` (defaults → template → group, shallow), `.Image` and `.Nonce` — and the rendering of every string
 * leaf of the args. Pure: the caller supplies the advertised addresses, the CA and the nonce.
 */
import { Either } from "effect"
import { checkProxmoxArg, type Group, type JsonObject, type ShardConfig } from "../config/index.js"
import { mergeVars } from "../config/merge.js"
import { echoValue } from "../errorText.js"
import { hasActions, parseGoTemplate, renderGoTemplate, type TemplateMap, type TemplateValue } from "../goTemplate/index.js"
import { PROXMOX_ARGS } from "../config/keys.js"

export interface TemplateInputs {
  readonly config: ShardConfig
  readonly group: Group
  readonly instanceId: string
  /** The registration nonce; "" without registration, and always "" for args (they end up in PVE's VM config). */
  readonly nonce: string
  /** The cluster CA certificate (PEM); "" without the cluster PKI. */
  readonly caPem: string
  /** `host:port` as agents and operators reach this shard (a wildcard host already filled in). */
  readonly server: { readonly registrationAddr: string; readonly agentAddr: string; readonly operatorAddr: string }
  /** What the VM's agent registered (files are rendered after registration); absent for user-data and args. */
  readonly registered?: { readonly hostname?: string | undefined; readonly ipv4?: string | undefined; readonly ipv6?: string | undefined }
}

/** The data of one VM's templates. A key that is not here renders as "" (the original's `missingkey=zero`). */
export const templateData = (inputs: TemplateInputs): TemplateMap => {
  const { config, group } = inputs
  const template = Object.hasOwn(config.templates, group.template) ? config.templates[group.template] : undefined
  return {
    Cluster: { ID: config.cluster.id, CACert: inputs.caPem },
    Server: {
      Shard: config.shard.id,
      RegistrationAddr: inputs.server.registrationAddr,
      AgentAddr: inputs.server.agentAddr,
      OperatorAddr: inputs.server.operatorAddr
    },
    Provider: { Kind: config.shard.infra.provider, Region: config.shard.infra.region, Zone: config.shard.infra.zone },
    Instance: {
      ID: inputs.instanceId,
      Kind: template?.kind ?? "",
      Arch: template?.arch ?? "",
      Type: group.instanceType ?? template?.instanceType ?? "",
      ...(inputs.registered === undefined ? {} : {
        Hostname: inputs.registered.hostname ?? "",
        // Proxmox has no provider DNS: the FQDN is the hostname the agent registered.
        FQDN: inputs.registered.hostname ?? "",
        IP4: inputs.registered.ipv4 ?? "",
        IP6: inputs.registered.ipv6 ?? ""
      })
    },
    Vars: mergeVars(config.defaults.vars, template?.vars, group.vars),
    // Image lookups are the AWS provider's; a Proxmox VM clones a PVE template instead.
    Image: {},
    Nonce: inputs.nonce
  }
}

/** A user-data template rendered; the error says line and column (of the decoded text). */
export const renderUserDataText = (text: string, data: TemplateValue): Either.Either<string, string> =>
  Either.mapLeft(
    Either.flatMap(parseGoTemplate(text), (template) => renderGoTemplate(template, data)),
    (error) => `user-data template: ${error.message}`
  )

/** Every string leaf of `args` rendered (objects and arrays walked; other values as they are); `path` names the args. */
export const renderArgs = (path: string, args: JsonObject, data: TemplateValue): Either.Either<JsonObject, string> => {
  const walk = (at: string, value: unknown): unknown => {
    if (typeof value === "string") {
      if (!hasActions(value)) return value
      const rendered = Either.flatMap(parseGoTemplate(value), (template) => renderGoTemplate(template, data))
      if (Either.isLeft(rendered)) throw new ArgProblem(`${at}: ${rendered.left.message}`)
      return rendered.right
    }
    if (Array.isArray(value)) return value.map((element, i) => walk(`${at}[${i}]`, element))
    if (typeof value === "object" && value !== null) {
      const out: Record<string, unknown> = {}
      for (const [key, child] of Object.entries(value)) out[key] = walk(`${at}.${key}`, child)
      return out
    }
    return value
  }
  try {
    const out: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(args)) out[key] = walk(`${path}.${key}`, value)
    return Either.right(out)
  } catch (error) {
    if (error instanceof ArgProblem) return Either.left(error.message)
    throw error
  }
}

class ArgProblem {
  constructor(readonly message: string) {}
}

/**
 * `config` with the args of the group's three levels (defaults, its template, the group) rendered, for
 * resolving the group's VM spec; a templated Proxmox arg must be valid once rendered (validation could only
 * check that it parses). Only the levels the group merges are rendered.
 */
export const withRenderedArgs = (config: ShardConfig, group: Group, data: TemplateValue): Either.Either<ShardConfig, string> => {
  const template = Object.hasOwn(config.templates, group.template) ? config.templates[group.template] : undefined
  const levels = [
    { path: "defaults.args", args: config.defaults.args },
    { path: `templates.${group.template}.args`, args: template?.args ?? {} },
    { path: `groups.${group.tenant}.${group.name}.args`, args: group.args }
  ]
  const rendered: Array<JsonObject> = []
  for (const level of levels) {
    const args = renderArgs(level.path, level.args, data)
    if (Either.isLeft(args)) return Either.left(args.left)
    if (config.shard.infra.provider === "proxmox") {
      for (const key of PROXMOX_ARGS) {
        const written = level.args[key]
        const value = args.right[key]
        if (typeof written !== "string" || !hasActions(written) || value === undefined) continue
        const problem = checkProxmoxArg(key, value)
        if (problem !== undefined) return Either.left(`${level.path}.${key}: renders to ${echoValue(String(value))}; ${problem}`)
      }
    }
    rendered.push(args.right)
  }
  const [defaults, templateArgs, groupArgs] = rendered as [JsonObject, JsonObject, JsonObject]
  return Either.right({
    ...config,
    defaults: { ...config.defaults, args: defaults },
    templates: template === undefined ? config.templates : { ...config.templates, [group.template]: { ...template, args: templateArgs } },
    groups: { ...config.groups, [group.tenant]: { ...config.groups[group.tenant], [group.name]: { ...group, args: groupArgs } } }
  })
}
