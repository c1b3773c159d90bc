/**
 * Schema-driven parameter checking, as pveproxy does it: the official PVE API schema (an excerpt of
 * pve-docs' apidata.js) is loaded at start and every request's path, query and body parameters are checked
 * against its endpoint — unknown parameters, missing required ones, wrong types, ranges, enums, patterns and
 * formats. Nothing here is hand-written per endpoint, so the simulator rejects exactly what the schema says.
 */
import { Data, Either, ParseResult, Schema } from "effect"
import { readFileSync } from "node:fs"
import { checkNamedFormat } from "./formats.js"

export interface ParamSpec {
  readonly type?: string | undefined
  readonly optional?: number | boolean | undefined
  readonly format?: string | { readonly [key: string]: ParamSpec } | undefined
  readonly enum?: ReadonlyArray<string> | undefined
  readonly pattern?: string | undefined
  readonly minimum?: number | undefined
  readonly maximum?: number | undefined
  readonly minLength?: number | undefined
  readonly maxLength?: number | undefined
  readonly default_key?: number | boolean | undefined
  readonly alias?: string | undefined
  readonly keyAlias?: string | undefined
  readonly description?: string | undefined
}

// The schema is Perl data serialised to JSON: numbers sometimes arrive as strings ("minimum": "0").
const NumberLike = Schema.Union(Schema.Number, Schema.NumberFromString)

type NumberLikeEncoded = number | string

interface ParamSpecEncoded {
  readonly type?: string | undefined
  readonly optional?: NumberLikeEncoded | boolean | undefined
  readonly format?: string | { readonly [key: string]: ParamSpecEncoded } | undefined
  readonly enum?: ReadonlyArray<string> | undefined
  readonly pattern?: string | undefined
  readonly minimum?: NumberLikeEncoded | undefined
  readonly maximum?: NumberLikeEncoded | undefined
  readonly minLength?: NumberLikeEncoded | undefined
  readonly maxLength?: NumberLikeEncoded | undefined
  readonly default_key?: NumberLikeEncoded | boolean | undefined
  readonly alias?: string | undefined
  readonly keyAlias?: string | undefined
  readonly description?: string | undefined
}

const ParamSpecSchema: Schema.Schema<ParamSpec, ParamSpecEncoded> = Schema.Struct({
  type: Schema.optional(Schema.String),
  optional: Schema.optional(Schema.Union(NumberLike, Schema.Boolean)),
  format: Schema.optional(Schema.Union(
    Schema.String,
    Schema.Record({ key: Schema.String, value: Schema.suspend(() => ParamSpecSchema) })
  )),
  enum: Schema.optional(Schema.Array(Schema.String)),
  pattern: Schema.optional(Schema.String),
  minimum: Schema.optional(NumberLike),
  maximum: Schema.optional(NumberLike),
  minLength: Schema.optional(NumberLike),
  maxLength: Schema.optional(NumberLike),
  default_key: Schema.optional(Schema.Union(NumberLike, Schema.Boolean)),
  alias: Schema.optional(Schema.String),
  keyAlias: Schema.optional(Schema.String),
  description: Schema.optional(Schema.String)
})

const EndpointSchema = Schema.Struct({
  method: Schema.Literal("GET", "POST", "PUT", "DELETE"),
  parameters: Schema.optional(Schema.Struct({
    additionalProperties: Schema.optional(NumberLike),
    properties: Schema.optional(Schema.Record({ key: Schema.String, value: ParamSpecSchema }))
  }))
})

const ApiSchemaFile = Schema.Record({ key: Schema.String, value: EndpointSchema })

export interface Endpoint {
  readonly method: "GET" | "POST" | "PUT" | "DELETE"
  readonly path: string
  readonly additionalProperties: boolean
  readonly properties: Readonly<Record<string, ParamSpec>>
  readonly pathParams: ReadonlyArray<string>
  readonly regex: RegExp
}

export class ApiSchemaLoadError extends Data.TaggedError("ApiSchemaLoadError")<{ readonly message: string }> {}

const pathRegex = (path: string): { regex: RegExp; params: Array<string> } => {
  const params: Array<string> = []
  const segments = path.split("/").filter((s) => s !== "")
  const source = segments.map((segment, index) => {
    const m = /^\{([a-z-]+)\}$/.exec(segment)
    if (m === null) return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
    params.push(m[1] ?? "")
    // A volume id may carry a slash (`local:iso/x.iso`) when a client does not encode it.
    return index === segments.length - 1 && m[1] === "volume" ? "(.+)" : "([^/]+)"
  })
  return { regex: new RegExp(`^/${source.join("/")}$`), params }
}

export interface ApiSchema {
  readonly endpoints: ReadonlyArray<Endpoint>
  /** The endpoint for a method and API path (after `/api2/json`), with its decoded path parameters. */
  readonly match: (method: string, path: string) =>
    | { readonly endpoint: Endpoint; readonly pathParams: Readonly<Record<string, string>> }
    | { readonly methodNotAllowed: true }
    | undefined
}

export const makeApiSchema = (file: unknown): ApiSchema => {
  const decoded = Schema.decodeUnknownEither(ApiSchemaFile)(file)
  if (Either.isLeft(decoded)) {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left).slice(0, 3)
      .map((issue) => `${issue.path.join(".")}: ${issue.message.slice(0, 120)}`)
    throw new ApiSchemaLoadError({ message: `PVE API schema does not decode: ${issues.join("; ")}` })
  }
  const entries: Array<[string, typeof EndpointSchema.Type]> = Object.entries(decoded.right)
  const endpoints: Array<Endpoint> = entries.map(([key, value]) => {
    const path = key.slice(key.indexOf(" ") + 1)
    const { regex, params } = pathRegex(path)
    return {
      method: value.method,
      path,
      additionalProperties: (value.parameters?.additionalProperties ?? 0) !== 0,
      properties: value.parameters?.properties ?? {},
      pathParams: params,
      regex
    }
  })
  return {
    endpoints,
    match: (method, path) => {
      let pathKnown = false
      for (const endpoint of endpoints) {
        const m = endpoint.regex.exec(path)
        if (m === null) continue
        pathKnown = true
        if (endpoint.method !== method) continue
        const pathParams: Record<string, string> = {}
        endpoint.pathParams.forEach((name, i) => {
          const raw = m[i + 1] ?? ""
          let value = raw
          try { value = decodeURIComponent(raw) } catch { /* keep it raw; the format check reports it */ }
          pathParams[name] = value
        })
        return { endpoint, pathParams }
      }
      return pathKnown ? { methodNotAllowed: true } : undefined
    }
  }
}

// Every simulator of a process (the chaos runs build hundreds) reads the same file: parse it once.
const loaded = new Map<string, ApiSchema>()

/** The schema at `path`; a missing, unreadable or malformed file throws `ApiSchemaLoadError` naming it. */
export const loadApiSchema = (path: string): ApiSchema => {
  const cached = loaded.get(path)
  if (cached !== undefined) return cached
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    throw new ApiSchemaLoadError({ message: `cannot read PVE API schema ${path}: ${error instanceof Error ? error.message : String(error)}` })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw new ApiSchemaLoadError({ message: `PVE API schema ${path} is not JSON: ${error instanceof Error ? error.message : String(error)}` })
  }
  let schema: ApiSchema
  try {
    schema = makeApiSchema(json)
  } catch (error) {
    if (error instanceof ApiSchemaLoadError) throw new ApiSchemaLoadError({ message: `${path}: ${error.message}` })
    throw error
  }
  loaded.set(path, schema)
  return schema
}

// ---------------------------------------------------------------------------------------------------------
// Checking values

/** Parameter values after checking: strings, as PVE's handlers see them (booleans as "1"/"0"). */
export type Params = Readonly<Record<string, string>>

const isOptional = (spec: ParamSpec) => spec.optional === 1 || spec.optional === true

// Perl's `(?^:…)` / `(?^i:…)` groups have no JavaScript spelling; flags are hoisted to the whole regex.
const perlRegex = (pattern: string): RegExp => {
  const insensitive = /\(\?\^?i:/.test(pattern)
  const source = pattern.replace(/\(\?\^?i?:/g, "(?:").replace(/\\@/g, "@")
  return new RegExp(`^(?:${source})$`, insensitive ? "i" : "")
}

const describe = (value: unknown): string =>
  Array.isArray(value) ? "ARRAY" : typeof value === "object" && value !== null ? "HASH" : String(value)

/** The value as PVE's type checker would coerce it, or an error text. */
const checkType = (type: string | undefined, value: unknown): { readonly value: string } | { readonly error: string } => {
  const fail = () => ({ error: `type check ('${type}') failed - got '${describe(value)}'` })
  switch (type) {
    case "integer":
      if (typeof value === "number") return Number.isInteger(value) ? { value: String(value) } : fail()
      if (typeof value === "string" && /^[+-]?\d+$/.test(value)) return { value: String(parseInt(value, 10)) }
      return fail()
    case "number":
      if (typeof value === "number" && Number.isFinite(value)) return { value: String(value) }
      if (typeof value === "string" && /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(value)) return { value }
      return fail()
    case "boolean":
      if (typeof value === "boolean") return { value: value ? "1" : "0" }
      if (value === 1 || value === 0) return { value: String(value) }
      if (typeof value === "string") {
        if (/^(?:1|true|yes|on)$/i.test(value)) return { value: "1" }
        if (/^(?:0|false|no|off)$/i.test(value)) return { value: "0" }
      }
      return fail()
    case "string":
    case undefined:
      if (typeof value === "string") return { value }
      if (typeof value === "number" || typeof value === "boolean") return { value: typeof value === "boolean" ? (value ? "1" : "0") : String(value) }
      return fail()
    default:
      return fail()
  }
}

/** Checks one value against its spec; returns the normalised string or PVE's error text. */
export const checkValue = (name: string, spec: ParamSpec, raw: unknown): { readonly value: string } | { readonly error: string } => {
  const typed = checkType(spec.type, raw)
  if ("error" in typed) return typed
  const value = typed.value
  if (spec.type === "integer" || spec.type === "number") {
    const n = Number(value)
    if (spec.minimum !== undefined && n < spec.minimum) return { error: `value must have a minimum value of ${spec.minimum}` }
    if (spec.maximum !== undefined && n > spec.maximum) return { error: `value must have a maximum value of ${spec.maximum}` }
  }
  if (spec.type === "string" || spec.type === undefined) {
    if (spec.maxLength !== undefined && value.length > spec.maxLength) return { error: `value may only be ${spec.maxLength} characters long` }
    if (spec.minLength !== undefined && value.length < spec.minLength) return { error: `value must be at least ${spec.minLength} characters long` }
  }
  if (spec.enum !== undefined && !spec.enum.includes(value)) {
    return { error: `value '${value}' does not have a value in the enumeration '${spec.enum.join(", ")}'` }
  }
  if (spec.pattern !== undefined && !perlRegex(spec.pattern).test(value)) return { error: "value does not match the regex pattern" }
  if (typeof spec.format === "string") {
    const error = checkNamedFormat(spec.format, value)
    if (error !== undefined) return { error: `invalid format - ${error}` }
  } else if (spec.format !== undefined) {
    const errors = checkPropertyString(name, spec.format, value)
    if (errors.length > 0) return { error: `invalid format - format error\n${errors.join("\n")}\n` }
  }
  return { value }
}

/** Parses `a,k=v,…` per its sub-schema; returns `<name>.<key>: <error>` lines. */
export const parsePropertyString = (
  format: { readonly [key: string]: ParamSpec },
  value: string
): { readonly entries: ReadonlyMap<string, string>; readonly errors: ReadonlyArray<string> } => {
  const entries = new Map<string, string>()
  const errors: Array<string> = []
  const defaultKey = Object.entries(format).find(([, spec]) => spec.default_key === 1 || spec.default_key === true)?.[0]
  for (const part of value.split(",")) {
    if (part === "") continue
    const eq = part.indexOf("=")
    let key: string
    let v: string
    if (eq < 0) {
      if (defaultKey === undefined) { errors.push(`value without key, but schema does not define a default key`); continue }
      key = defaultKey
      v = part
    } else {
      key = part.slice(0, eq)
      v = part.slice(eq + 1)
    }
    const spec = format[key]
    if (spec?.keyAlias !== undefined && spec.alias !== undefined) {
      // `virtio=BC:24:…` means model=virtio and macaddr=BC:24:…
      if (entries.has(spec.keyAlias)) errors.push(`duplicate key in comma-separated list property: ${spec.keyAlias}`)
      entries.set(spec.keyAlias, key)
      key = spec.alias
    } else if (spec?.alias !== undefined) {
      key = spec.alias
    }
    if (entries.has(key)) errors.push(`duplicate key in comma-separated list property: ${key}`)
    entries.set(key, v)
  }
  return { entries, errors }
}

export const checkPropertyString = (name: string, format: { readonly [key: string]: ParamSpec }, value: string): ReadonlyArray<string> => {
  const { entries, errors } = parsePropertyString(format, value)
  const out = [...errors]
  for (const [key, v] of entries) {
    const spec = format[key]
    if (spec === undefined || spec.alias !== undefined) {
      out.push(`${name}.${key}: property is not defined in schema and the schema does not allow additional properties`)
      continue
    }
    const checked = checkValue(`${name}.${key}`, spec, v)
    if ("error" in checked) out.push(`${name}.${key}: ${checked.error}`)
  }
  for (const [key, spec] of Object.entries(format)) {
    if (spec.alias === undefined && !isOptional(spec) && !entries.has(key)) {
      out.push(`${name}.${key}: property is missing and it is not optional`)
    }
  }
  return out
}

// `net[n]` in the schema stands for net0…netN; the upper bounds come from qemu-server.
const INDEX_MAX: Readonly<Record<string, number>> = {
  ide: 3, sata: 5, scsi: 30, virtio: 15, net: 31, ipconfig: 31, hostpci: 15, numa: 7, unused: 255,
  usb: 14, serial: 3, parallel: 2, virtiofs: 9
}

const specFor = (endpoint: Endpoint, name: string): ParamSpec | undefined => {
  const direct = endpoint.properties[name]
  if (direct !== undefined) return direct
  const m = /^([a-z]+)(\d+)$/.exec(name)
  if (m === null) return undefined
  const spec = endpoint.properties[`${m[1]}[n]`]
  const max = INDEX_MAX[m[1] ?? ""] ?? 31
  const index = Number(m[2])
  // PVE does not accept leading zeros (`net01`): the key must be exactly the canonical index.
  return spec !== undefined && index <= max && String(index) === m[2] ? spec : undefined
}

/** All parameters of one request checked at once; PVE reports every bad parameter, not only the first. */
export const validateParams = (
  endpoint: Endpoint,
  input: Readonly<Record<string, unknown>>
): { readonly params: Params } | { readonly errors: Readonly<Record<string, string>> } => {
  const errors: Record<string, string> = {}
  const params: Record<string, string> = {}
  for (const [name, raw] of Object.entries(input)) {
    const spec = specFor(endpoint, name)
    // Unknown keys count even without a value (`a&b=1` sends `a`), as in PVE's JSONSchema check.
    if (spec === undefined) {
      if (!endpoint.additionalProperties) {
        errors[name] = "property is not defined in schema and the schema does not allow additional properties"
      } else if (typeof raw === "string" || typeof raw === "number" || typeof raw === "boolean") {
        params[name] = typeof raw === "boolean" ? (raw ? "1" : "0") : String(raw)
      }
      continue
    }
    if (raw === null || raw === undefined) continue
    const checked = checkValue(name, spec, raw)
    if ("error" in checked) errors[name] = checked.error
    else params[name] = checked.value
  }
  for (const [name, spec] of Object.entries(endpoint.properties)) {
    if (name.endsWith("[n]") || isOptional(spec)) continue
    if (input[name] === undefined || input[name] === null) errors[name] = "property is missing and it is not optional"
  }
  return Object.keys(errors).length > 0 ? { errors } : { params }
}
