/**
 * Dynamic groups: the groups operators add or resize at runtime, kept in `{prefix}groups.jsonc` next to the
 * pushed `config.jsonc` (the original's format: tenant → group key → group, JSON with 2-space indent, empty
 * fields omitted; a missing file or a `null` document means none). Pure functions only: parsing and
 * encoding the document, merging it into the static groups before validation, and the upsert/delete rules.
 *
 * Merge (as the original): a group only in one place is taken from there; a group in both keeps its static
 * definition, and the dynamic entry may only override `size`, `instance_type` and add or override `vars`.
 * A dynamic entry's absent `size` never resets anything: sizes change only when a request names one.
 */
import { Either, ParseResult, Schema } from "effect"
import { GROUPS_KEY } from "./bucketKeys.js"
import { parseJsonc } from "./config/jsonc.js"
import { oneLineText } from "./errorText.js"
import { formatProblem, type Problem } from "./config/problems.js"
import { emptyRecord, own } from "./config/records.js"
import { JsonObject, StringMap } from "./config/schema.js"
import { validateShardConfig, type Validated } from "./config/validate.js"

export const DynamicGroup = Schema.Struct({
  template: Schema.optional(Schema.String),
  size: Schema.optional(Schema.Number),
  instance_type: Schema.optional(Schema.String),
  subnet_pool: Schema.optional(Schema.String),
  vars: Schema.optional(StringMap),
  args: Schema.optional(JsonObject),
  /** The original writes it; it applies to a group only groups.jsonc defines (a static group keeps its own). */
  drain_timeout: Schema.optional(Schema.String)
})
export type DynamicGroup = typeof DynamicGroup.Type

/** tenant → group key → group. */
export type DynamicGroups = Readonly<Record<string, Readonly<Record<string, DynamicGroup>>>>

const Document = Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: DynamicGroup }) }))
const decodeDocument = Schema.decodeUnknownEither(Document, { errors: "first", onExcessProperty: "error" })

/** `groups.jsonc` text → the document, or one line saying what is wrong with it. */
export const parseDynamicGroups = (text: string): Either.Either<DynamicGroups, string> => {
  const json = parseJsonc(text)
  if (Either.isLeft(json)) {
    const first = json.left[0]
    return Either.left(first === undefined ? "not JSONC" : first.line === 0 ? first.message : `line ${first.line}, column ${first.column}: ${first.message}`)
  }
  const decoded = decodeDocument(json.right)
  if (Either.isLeft(decoded)) {
    const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
    return Either.left(issue === undefined ? SHAPES[0] : describeIssue(issue))
  }
  return Either.right(decoded.right ?? {})
}

/** What the value at each depth must be (document, tenant, group). */
const SHAPES = ["must be null or a map of tenant → group key → group", "must be a map of group key → group", "must be a group (an object)"] as const
const FIELDS = Object.keys(DynamicGroup.fields).join(", ")

/** One short line for the first decoding problem, instead of the schema's type text. */
const describeIssue = (issue: ParseResult.ArrayFormatterIssue): string => {
  const path = issue.path.map(String).join(".")
  const at = (message: string) => (path === "" ? message : `${path}: ${message}`)
  if (issue._tag === "Unexpected") return at(`unknown field (expected one of: ${FIELDS})`)
  const depth = issue.path.length
  const shape = depth < SHAPES.length ? SHAPES[depth] : undefined
  const expected = /^Expected (.*), actual (.*)$/s.exec(issue.message)
  const actual = expected?.[2] === undefined ? "" : ` (got ${oneLineText(expected[2], 60)})`
  if (shape !== undefined) return at(`${shape}${actual}`)
  const leaf = expected?.[1]
  return at(leaf === "string" || leaf === "number" ? `must be a ${leaf}${actual}` : leaf?.startsWith("{") === true ? `must be an object${actual}` : oneLineText(issue.message, 200))
}

/** The canonical text: keys sorted, empty fields and empty tenants left out, 2-space indent, final newline. */
export const encodeDynamicGroups = (groups: DynamicGroups): string => {
  const out: Record<string, Record<string, Record<string, unknown>>> = {}
  for (const tenant of Object.keys(groups).sort()) {
    const entries = own(groups, tenant) ?? {}
    const keys = Object.keys(entries).sort()
    if (keys.length === 0) continue
    const tenantOut: Record<string, Record<string, unknown>> = {}
    for (const key of keys) {
      const g = own(entries, key)
      if (g === undefined) continue
      const entry: Record<string, unknown> = {}
      if (g.template !== undefined && g.template !== "") entry["template"] = g.template
      if (g.size !== undefined) entry["size"] = g.size
      if (g.instance_type !== undefined && g.instance_type !== "") entry["instance_type"] = g.instance_type
      if (g.subnet_pool !== undefined && g.subnet_pool !== "") entry["subnet_pool"] = g.subnet_pool
      if (g.vars !== undefined && Object.keys(g.vars).length > 0) entry["vars"] = Object.fromEntries(Object.entries(g.vars).sort(([a], [b]) => (a < b ? -1 : 1)))
      if (g.args !== undefined && Object.keys(g.args).length > 0) entry["args"] = g.args
      if (g.drain_timeout !== undefined && g.drain_timeout !== "") entry["drain_timeout"] = g.drain_timeout
      tenantOut[key] = entry
    }
    out[tenant] = tenantOut
  }
  return `${JSON.stringify(out, null, 2)}\n`
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The static groups of a parsed (not yet validated) `config.jsonc` value: tenant → key → raw group, in maps
 * without prototypes, so a group called `constructor` is found only when the config has one.
 */
export const staticGroupsOf = (configJson: unknown): Readonly<Record<string, Readonly<Record<string, Record<string, unknown>>>>> => {
  const out = emptyRecord<Record<string, Record<string, unknown>>>()
  if (!isObject(configJson) || !isObject(configJson["groups"])) return out
  for (const [tenant, groups] of Object.entries(configJson["groups"])) {
    if (!isObject(groups)) continue
    const tenantOut = emptyRecord<Record<string, unknown>>()
    for (const [key, group] of Object.entries(groups)) if (isObject(group)) tenantOut[key] = group
    out[tenant] = tenantOut
  }
  return out
}

/** The dynamic entry `tenant/key`, if the document has one (never an inherited member). */
export const dynamicEntry = (dynamic: DynamicGroups, tenant: string, key: string): DynamicGroup | undefined => own(own(dynamic, tenant), key)

/**
 * The config value with the dynamic groups merged into its `groups`, ready for `validateShardConfig`:
 * the input is not changed. See the module comment for the precedence.
 */
export const mergeDynamicGroups = (configJson: unknown, dynamic: DynamicGroups): unknown => {
  if (!isObject(configJson)) return configJson
  const merged = emptyRecord<Record<string, unknown>>()
  const statics = staticGroupsOf(configJson)
  for (const [tenant, groups] of Object.entries(isObject(configJson["groups"]) ? configJson["groups"] : {})) {
    merged[tenant] = Object.assign(emptyRecord<unknown>(), isObject(groups) ? groups : {})
  }
  for (const [tenant, groups] of Object.entries(dynamic)) {
    const tenantOut = own(merged, tenant) ?? emptyRecord<unknown>()
    for (const [key, entry] of Object.entries(groups)) {
      const base = own(own(statics, tenant), key)
      if (base === undefined) {
        tenantOut[key] = encodeEntry(entry)
        continue
      }
      const baseVars = isObject(base["vars"]) ? base["vars"] : {}
      tenantOut[key] = {
        ...base,
        ...(entry.size === undefined ? {} : { size: entry.size }),
        ...(entry.instance_type === undefined || entry.instance_type === "" ? {} : { instance_type: entry.instance_type }),
        ...(entry.vars === undefined ? {} : { vars: { ...baseVars, ...entry.vars } })
      }
    }
    merged[tenant] = tenantOut
  }
  return { ...configJson, groups: merged }
}

const encodeEntry = (g: DynamicGroup): Record<string, unknown> => ({
  ...(g.template === undefined ? {} : { template: g.template }),
  ...(g.size === undefined ? {} : { size: g.size }),
  ...(g.instance_type === undefined || g.instance_type === "" ? {} : { instance_type: g.instance_type }),
  ...(g.subnet_pool === undefined || g.subnet_pool === "" ? {} : { subnet_pool: g.subnet_pool }),
  ...(g.vars === undefined ? {} : { vars: g.vars }),
  ...(g.args === undefined ? {} : { args: g.args }),
  ...(g.drain_timeout === undefined || g.drain_timeout === "" ? {} : { drain_timeout: g.drain_timeout })
})

/** What an `UpsertGroup` may set; an absent field is left as it is (a partial update). */
export interface GroupPatch {
  readonly template?: string | undefined
  readonly size?: number | undefined
  readonly instanceType?: string | undefined
  readonly subnetPool?: string | undefined
  readonly vars?: Readonly<Record<string, string>> | undefined
}

/**
 * The document after upserting `tenant/key` with `patch`, or why the patch is refused. For a group the
 * static config defines, only size, instance type and vars may change (the template may be repeated but
 * not changed). A new dynamic group needs a template; the merged config's validation checks the rest.
 */
export const upsertDynamicGroup = (
  dynamic: DynamicGroups,
  configJson: unknown,
  tenant: string,
  key: string,
  patch: GroupPatch
): Either.Either<DynamicGroups, string> => {
  const base = own(own(staticGroupsOf(configJson), tenant), key)
  const existing = dynamicEntry(dynamic, tenant, key)
  if (base !== undefined) {
    if (patch.template !== undefined && patch.template !== base["template"]) {
      return Either.left(`group ${tenant}/${key} is defined in config.jsonc with template ${JSON.stringify(base["template"])}; its template cannot be changed at runtime`)
    }
    if (patch.subnetPool !== undefined) {
      return Either.left(`group ${tenant}/${key} is defined in config.jsonc; its subnet pool cannot be changed at runtime`)
    }
  } else if (existing === undefined && (patch.template === undefined || patch.template === "")) {
    return Either.left(`group ${tenant}/${key} does not exist yet: a new group needs a template`)
  } else if (existing !== undefined && patch.template !== undefined && existing.template !== undefined && patch.template !== existing.template) {
    return Either.left(`group ${tenant}/${key} uses template ${JSON.stringify(existing.template)}; delete the group to change its template`)
  }
  const next: DynamicGroup = {
    ...existing,
    ...(base === undefined && patch.template !== undefined ? { template: patch.template } : {}),
    ...(patch.size === undefined ? {} : { size: patch.size }),
    ...(patch.instanceType === undefined ? {} : { instance_type: patch.instanceType }),
    ...(patch.subnetPool === undefined ? {} : { subnet_pool: patch.subnetPool }),
    ...(patch.vars === undefined ? {} : { vars: { ...existing?.vars, ...patch.vars } })
  }
  return Either.right({ ...dynamic, [tenant]: { ...own(dynamic, tenant), [key]: next } })
}

/** The document without `tenant/key` (a static definition of it stays in force), and whether it was there. */
export const deleteDynamicGroup = (dynamic: DynamicGroups, tenant: string, key: string): { readonly groups: DynamicGroups; readonly existed: boolean } => {
  const tenantGroups = own(dynamic, tenant)
  if (tenantGroups === undefined || !Object.hasOwn(tenantGroups, key)) return { groups: dynamic, existed: false }
  const { [key]: _removed, ...rest } = tenantGroups
  const groups: Record<string, Readonly<Record<string, DynamicGroup>>> = { ...dynamic }
  if (Object.keys(rest).length === 0) delete groups[tenant]
  else groups[tenant] = rest
  return { groups, existed: true }
}

/** The dynamic entry (`tenant/key`) a problem of the merged config is about, if it is about one. */
const entryOfProblem = (path: string, dynamic: DynamicGroups): string | undefined => {
  for (const [tenant, groups] of Object.entries(dynamic)) {
    const tenantPath = `groups.${tenant}`
    for (const key of Object.keys(groups)) {
      const at = `${tenantPath}.${key}`
      if (path === at || path.startsWith(`${at}.`) || path.startsWith(`${at}[`)) return `${tenant}/${key}`
    }
    if (path === tenantPath) return tenant
  }
  return undefined
}

export interface DynamicGroupsCheck {
  /** The entries (`tenant/key`) the problems are about, in order; empty when no problem names one. */
  readonly entries: ReadonlyArray<string>
  /** One line per problem (`path: message`), naming the dynamic entry where there is one. */
  readonly problems: ReadonlyArray<string>
}

/**
 * The merged config validated, or what makes it invalid with the dynamic entries each problem is about —
 * what a config push that would break a dynamic group is refused with, and what the servers name while
 * they keep the last good config. (Given a `config.jsonc` value valid by itself, every problem comes from
 * the dynamic groups.)
 */
export const validateWithDynamicGroups = (configJson: unknown, dynamic: DynamicGroups): Either.Either<Validated, DynamicGroupsCheck> => {
  const merged = validateShardConfig(Object.keys(dynamic).length === 0 ? configJson : mergeDynamicGroups(configJson, dynamic))
  if (Either.isRight(merged)) return Either.right(merged.right)
  const entries: Array<string> = []
  const problems = merged.left.errors.map((problem: Problem) => {
    const entry = entryOfProblem(problem.path, dynamic)
    if (entry !== undefined && !entries.includes(entry)) entries.push(entry)
    return entry === undefined ? formatProblem(problem) : `${formatProblem(problem)} (dynamic group ${entry} of ${GROUPS_KEY})`
  })
  return Either.left({ entries, problems })
}
