/**
 * Go's predefined template functions (`text/template/funcs.go`): `and or not len index slice print printf
 * println eq ne lt le gt ge html js urlquery`, with Go's rules for comparisons (`1` and `1.0` are not
 * comparable, a missing key compares as ""). `and`/`or` short-circuit in `exec.ts`. Errors say the types
 * involved, never the values (a value may be the nonce).
 */
import { sprintf } from "./fmt.js"
import { isList, isMap, MISSING, orEmpty, sprint, sprintln, truth, typeName, type Value } from "./values.js"

/** A function call that fails; `exec.ts` adds where. */
export class CallError {
  constructor(readonly message: string) {}
}

export interface Arity {
  readonly min: number
  readonly max?: number
}

/** The built-ins and how many arguments each takes (checked when the template is parsed). */
export const BUILTIN_ARITY: ReadonlyMap<string, Arity> = new Map<string, Arity>([
  ["and", { min: 1 }],
  ["or", { min: 1 }],
  ["not", { min: 1, max: 1 }],
  ["len", { min: 1, max: 1 }],
  ["index", { min: 1 }],
  ["slice", { min: 1, max: 4 }],
  ["print", { min: 0 }],
  ["printf", { min: 1 }],
  ["println", { min: 0 }],
  ["eq", { min: 1 }],
  ["ne", { min: 2, max: 2 }],
  ["lt", { min: 2, max: 2 }],
  ["le", { min: 2, max: 2 }],
  ["gt", { min: 2, max: 2 }],
  ["ge", { min: 2, max: 2 }],
  ["html", { min: 0 }],
  ["js", { min: 0 }],
  ["urlquery", { min: 0 }]
])

/** Go built-ins this engine refuses at parse time, with a reason. */
export const UNSUPPORTED_BUILTINS: ReadonlySet<string> = new Set(["call"])

type Kind = "bool" | "int" | "float" | "string" | "invalid" | "other"

const kindOf = (raw: Value): Kind => {
  const value = orEmpty(raw)
  if (typeof value === "string") return "string"
  if (typeof value === "bigint") return "int"
  if (typeof value === "number") return "float"
  if (typeof value === "boolean") return "bool"
  if (value === null) return "invalid"
  return "other"
}

const eq = (args: ReadonlyArray<Value>): boolean => {
  const [first, ...rest] = args
  if (first === undefined || rest.length === 0) throw new CallError("missing argument for comparison")
  const a = orEmpty(first)
  const k1 = kindOf(a)
  for (const raw of rest) {
    const b = orEmpty(raw)
    const k2 = kindOf(b)
    let equal = false
    if (k1 !== k2) {
      if (a !== null && b !== null) throw new CallError(`incompatible types for comparison (${typeName(a)} and ${typeName(b)})`)
    } else if (k1 === "other") {
      throw new CallError(`non-comparable type ${typeName(a)}`)
    } else {
      equal = k1 === "invalid" || a === b
    }
    if (equal) return true
  }
  return false
}

const lt = (args: ReadonlyArray<Value>): boolean => {
  const a = orEmpty(args[0] ?? null)
  const b = orEmpty(args[1] ?? null)
  const k1 = kindOf(a)
  const k2 = kindOf(b)
  const ordered = (k: Kind) => k === "int" || k === "float" || k === "string"
  if (!ordered(k1) || !ordered(k2)) throw new CallError(`invalid type for comparison (${typeName(ordered(k1) ? b : a)})`)
  if (k1 !== k2) throw new CallError(`incompatible types for comparison (${typeName(a)} and ${typeName(b)})`)
  // Same kind: both strings, both bigints or both numbers.
  return (a as string | bigint | number) < (b as string | bigint | number)
}

const utf8 = new TextEncoder()

const length = (raw: Value): bigint => {
  const value = orEmpty(raw)
  if (typeof value === "string") return BigInt(utf8.encode(value).length)
  if (value === null) throw new CallError("len of untyped nil")
  if (isList(value)) return BigInt(value.length)
  if (isMap(value)) return BigInt(Object.keys(value).length)
  throw new CallError(`len of type ${typeName(value)}`)
}

const intIndex = (raw: Value, what: string): number => {
  const value = orEmpty(raw)
  if (typeof value !== "bigint") throw new CallError(`cannot index ${what} with type ${typeName(value)}`)
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new CallError(`index out of range: ${value}`)
  return Number(value)
}

const index = (args: ReadonlyArray<Value>): Value => {
  let item: Value = args[0] ?? null
  for (const raw of args.slice(1)) {
    const value = orEmpty(item)
    if (value === null) throw new CallError("index of untyped nil")
    if (typeof value === "string") {
      const bytes = utf8.encode(value)
      const i = intIndex(raw, "string")
      if (i >= bytes.length) throw new CallError(`index out of range: ${i}`)
      item = BigInt(bytes[i]!)
    } else if (isList(value)) {
      const i = intIndex(raw, "slice/array")
      if (i >= value.length) throw new CallError(`index out of range: ${i}`)
      item = value[i]!
    } else if (isMap(value)) {
      const key = orEmpty(raw)
      if (typeof key !== "string") throw new CallError(`value has type ${typeName(key)}; should be string`)
      item = Object.hasOwn(value, key) ? value[key]! : MISSING
    } else {
      throw new CallError(`can't index item of type ${typeName(value)}`)
    }
  }
  return item
}

const slice = (args: ReadonlyArray<Value>): Value => {
  const item = orEmpty(args[0] ?? null)
  const indexes = args.slice(1)
  if (item === null) throw new CallError("slice of untyped nil")
  let size: number
  if (typeof item === "string") {
    if (indexes.length > 2) throw new CallError("cannot 3-index slice a string")
    size = utf8.encode(item).length
  } else if (isList(item)) size = item.length
  else throw new CallError(`can't slice item of type ${typeName(item)}`)
  const bounds = indexes.map((raw) => intIndex(raw, "slice"))
  for (const bound of bounds) if (bound > size) throw new CallError(`index out of range: ${bound}`)
  const [low = 0, high = size] = bounds
  if (low > high) throw new CallError(`invalid slice index: ${low} > ${high}`)
  if (bounds.length === 3 && high > bounds[2]!) throw new CallError(`invalid slice index: ${high} > ${bounds[2]}`)
  if (typeof item === "string") return new TextDecoder().decode(utf8.encode(item).slice(low, high))
  return (item as ReadonlyArray<Value>).slice(low, high)
}

/** The text `html`, `js` and `urlquery` escape: one string argument as it is, else `fmt.Sprint` of them all. */
const argsText = (args: ReadonlyArray<Value>): string => {
  const only = args.length === 1 ? orEmpty(args[0]!) : undefined
  return typeof only === "string" ? only : sprint(args)
}

const HTML_ESCAPES: Readonly<Record<string, string>> = { "\"": "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\u0000": "\ufffd" }

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}\u0020]$/u
const jsEscape = (text: string): string => {
  let out = ""
  for (const c of text) {
    const code = c.codePointAt(0) ?? 0
    const u = (n: number) => `\\u${n.toString(16).toUpperCase().padStart(4, "0")}`
    if (c === "\\" || c === "'" || c === "\"") out += `\\${c}`
    else if (c === "<" || c === ">" || c === "&" || c === "=") out += u(code)
    else if (code < 0x20) out += u(code)
    else if (code < 0x80 || PRINTABLE.test(c)) out += c
    else if (code < 0x10000) out += u(code)
    else out += u(c.charCodeAt(0)) + u(c.charCodeAt(1))
  }
  return out
}

/** Go's `url.QueryEscape`. */
const queryEscape = (text: string): string =>
  [...utf8.encode(text)].map((b) => {
    const c = String.fromCharCode(b)
    if (/[A-Za-z0-9\-_.~]/.test(c)) return c
    if (c === " ") return "+"
    return `%${b.toString(16).toUpperCase().padStart(2, "0")}`
  }).join("")

/** Every built-in except `and` and `or`, on evaluated arguments. */
export const callBuiltin = (name: string, args: ReadonlyArray<Value>): Value => {
  switch (name) {
    case "not":
      return !truth(args[0] ?? null)
    case "len":
      return length(args[0] ?? null)
    case "index":
      return index(args)
    case "slice":
      return slice(args)
    case "print":
      return sprint(args)
    case "println":
      return sprintln(args)
    case "printf": {
      const format = orEmpty(args[0] ?? null)
      if (typeof format !== "string") throw new CallError(`wrong type for value; expected string; got ${typeName(format)}`)
      return sprintf(format, args.slice(1))
    }
    case "eq":
      return eq(args)
    case "ne":
      return !eq(args)
    case "lt":
      return lt(args)
    case "le":
      return lt(args) || eq(args)
    case "gt":
      return !(lt(args) || eq(args))
    case "ge":
      return !lt(args)
    case "html":
      return argsText(args).replace(/["'&<>\u0000]/g, (c) => HTML_ESCAPES[c] ?? c)
    case "js":
      return jsEscape(argsText(args))
    case "urlquery":
      return queryEscape(argsText(args))
    default:
      throw new CallError(`function ${JSON.stringify(name)} not defined`)
  }
}
