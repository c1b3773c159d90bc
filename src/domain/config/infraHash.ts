/**
 * The original server's "infra hash" of a group's merged config: what a VM is built from (provider args,
 * instance type, subnet pool, user-data, kind, arch), not what its agent is given later (vars, files). An
 * instance created under another hash than its group's current one is rotated. The definition is the
 * original's byte for byte — SHA-256 over Go's `encoding/json` form of a struct in a fixed field order — so
 * the hashes its records carry compare equal to ours for the same config.
 */
import { createHash } from "node:crypto"
import type { JsonObject, RawUserdata } from "./schema.js"

export interface InfraInputs {
  /** Merged defaults → template → group. */
  readonly args: JsonObject
  /** The group's, else the template's; "" when neither sets one. */
  readonly instanceType: string
  readonly subnetPool: string
  /** The template's, else `defaults.userdata`, as written (absent fields stay absent). */
  readonly userdata?: RawUserdata | undefined
  readonly kind: string
  /** As the template writes it; "" when it does not. */
  readonly arch: string
}

// Go escapes these in strings (HTML safety and JavaScript line terminators); JSON.stringify leaves them.
const GO_ESCAPES: Readonly<Record<string, string>> = { "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029" }

const goString = (value: string): string => JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] ?? c)

/**
 * Go's `encoding/json` form of a decoded JSON value: map keys sorted (by UTF-8 bytes, which for the keys of
 * a config is their code-unit order), numbers as float64 in shortest form (JavaScript prints doubles the
 * same way, exponent style included), no whitespace.
 */
export const goJson = (value: unknown): string => {
  if (value === null || value === undefined) return "null"
  if (typeof value === "string") return goString(value)
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null"
  if (typeof value === "boolean") return value ? "true" : "false"
  if (Array.isArray(value)) return `[${value.map(goJson).join(",")}]`
  if (typeof value === "object") {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${goString(k)}:${goJson(v)}`).join(",")}}`
  }
  return "null"
}

/** The JSON the hash is taken over: the original's struct, fields in declaration order, user-data omitted when absent. */
export const infraJson = (inputs: InfraInputs): string => {
  const fields = [
    `"args":${goJson(inputs.args)}`,
    `"instance_type":${goString(inputs.instanceType)}`,
    `"subnet_pool":${goString(inputs.subnetPool)}`
  ]
  if (inputs.userdata !== undefined) {
    const u = inputs.userdata
    // The user-data struct omits an empty source and encoding.
    const parts = [
      ...(u.source === undefined ? [] : [`"source":${goString(u.source)}`]),
      ...(u.encoding === undefined ? [] : [`"encoding":${goString(u.encoding)}`]),
      `"content":${goString(u.content)}`
    ]
    fields.push(`"userdata":{${parts.join(",")}}`)
  }
  fields.push(`"kind":${goString(inputs.kind)}`, `"arch":${goString(inputs.arch)}`)
  return `{${fields.join(",")}}`
}

/** `sha256:` and the hex SHA-256 of `infraJson`. */
export const infraHash = (inputs: InfraInputs): string => `sha256:${createHash("sha256").update(infraJson(inputs)).digest("hex")}`
