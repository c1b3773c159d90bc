/**
 * `printf` of the Go template engine: the verbs, flags, widths and precisions of Go's `fmt` that make sense
 * for template data (`%v %s %q %d %x %X %o %O %b %c %U %e %E %f %F %g %G %t %T %%`), with Go's in-band
 * reports for a mismatch — `%!d(string=abc)`, `%!s(MISSING)`, `%!(EXTRA int=1)` — rather than a failure,
 * as Go does. Widths count characters.
 */
import { formatFloatMagnitude, formatValue, isList, isMap, Missing, orEmpty, sortedKeys, typeName, type Value } from "./values.js"

interface Spec {
  readonly minus: boolean
  readonly plus: boolean
  readonly sharp: boolean
  readonly space: boolean
  readonly zero: boolean
  readonly width: number | undefined
  readonly prec: number | undefined
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u
const isPrint = (c: string): boolean => c === " " || PRINTABLE.test(c)

const hex = (n: number, width: number): string => n.toString(16).padStart(width, "0")

/** Go's `strconv.Quote` (or `QuoteRune` with `'`); `ascii` also escapes everything outside ASCII (`%+q`). */
export const goQuote = (text: string, quote: "\"" | "'" = "\"", ascii = false): string => {
  let out = quote
  for (const c of text) {
    const code = c.codePointAt(0) ?? 0
    if (c === quote || c === "\\") out += `\\${c}`
    else if (isPrint(c) && (!ascii || code < 0x80)) out += c
    else if (c === "\u0007") out += "\\a"
    else if (c === "\b") out += "\\b"
    else if (c === "\f") out += "\\f"
    else if (c === "\n") out += "\\n"
    else if (c === "\r") out += "\\r"
    else if (c === "\t") out += "\\t"
    else if (c === "\v") out += "\\v"
    else if (code < 0x20 || code === 0x7f) out += `\\x${hex(code, 2)}`
    else if (code >= 0xd800 && code <= 0xdfff) out += "\\ufffd"
    else if (code < 0x10000) out += `\\u${hex(code, 4)}`
    else out += `\\U${hex(code, 8)}`
  }
  return out + quote
}

const canBackquote = (text: string): boolean => ![...text].some((c) => c === "`" || c === "\ufeff" || (c !== "\t" && (c.codePointAt(0) ?? 0) < 0x20) || c === "\u007f")

const pad = (text: string, spec: Spec): string => {
  const length = [...text].length
  if (spec.width === undefined || length >= spec.width) return text
  const fill = " ".repeat(spec.width - length)
  return spec.minus ? text + fill : fill + text
}

/** Sign, prefix and digits, zero-padded between the prefix and the digits when `0` asks for it. */
const padNumber = (sign: string, prefix: string, digits: string, spec: Spec, zeroAllowed: boolean): string => {
  if (spec.zero && zeroAllowed && !spec.minus && spec.width !== undefined) {
    const room = spec.width - sign.length - prefix.length
    return `${sign}${prefix}${digits.padStart(room, "0")}`
  }
  return pad(`${sign}${prefix}${digits}`, spec)
}

const signOf = (negative: boolean, spec: Spec): string => (negative ? "-" : spec.plus ? "+" : spec.space ? " " : "")

const badVerb = (verb: string, value: Value): string =>
  value === null ? `%!${verb}(<nil>)` : `%!${verb}(${typeName(value)}=${formatValue(value)})`

const formatInteger = (value: bigint, verb: string, spec: Spec): string => {
  const code = Number(value)
  const rune = value >= 0n && value <= 0x10ffffn && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : "\ufffd"
  switch (verb) {
    case "c":
      return pad(rune, spec)
    case "q":
      return pad(goQuote(rune, "'", spec.plus), spec)
    case "U": {
      const digits = value < 0n ? `-${(-value).toString(16).toUpperCase()}` : value.toString(16).toUpperCase().padStart(Math.max(spec.prec ?? 4, 4), "0")
      return pad(`U+${digits}${spec.sharp && isPrint(rune) ? ` '${rune}'` : ""}`, spec)
    }
  }
  const base = verb === "b" ? 2 : verb === "o" || verb === "O" ? 8 : verb === "x" || verb === "X" ? 16 : 10
  const negative = value < 0n
  let digits = (negative ? -value : value).toString(base)
  if (verb === "X") digits = digits.toUpperCase()
  if (spec.prec !== undefined) digits = spec.prec === 0 && value === 0n ? "" : digits.padStart(spec.prec, "0")
  let prefix = ""
  if (verb === "O") prefix = "0o"
  else if (spec.sharp) {
    if (verb === "b") prefix = "0b"
    else if (verb === "o" && !digits.startsWith("0")) prefix = "0"
    else if (verb === "x") prefix = "0x"
    else if (verb === "X") prefix = "0X"
  }
  return padNumber(signOf(negative, spec), prefix, digits, spec, spec.prec === undefined)
}

const formatFloatVerb = (value: number, verb: string, spec: Spec): string => {
  const strconvVerb = verb === "v" ? "g" : verb === "F" ? "f" : (verb as "e" | "E" | "f" | "g" | "G")
  const defaultPrec = strconvVerb === "g" || strconvVerb === "G" ? -1 : 6
  const magnitude = formatFloatMagnitude(value, strconvVerb, spec.prec ?? defaultPrec)
  if (Number.isNaN(value)) return pad(spec.plus ? "+NaN" : spec.space ? " NaN" : "NaN", spec)
  const negative = value < 0 || Object.is(value, -0)
  const sign = !Number.isFinite(value) && !negative ? "+" : signOf(negative, spec)
  return padNumber(sign, "", magnitude, spec, Number.isFinite(value))
}

const formatString = (value: string, verb: string, spec: Spec): string => {
  switch (verb) {
    case "s":
    case "v":
      return pad(spec.prec === undefined ? value : [...value].slice(0, spec.prec).join(""), spec)
    case "q": {
      const text = spec.prec === undefined ? value : [...value].slice(0, spec.prec).join("")
      return pad(spec.sharp && canBackquote(text) ? `\`${text}\`` : goQuote(text, "\"", spec.plus), spec)
    }
    default: {
      // x, X: the UTF-8 bytes in hex.
      let bytes = [...new TextEncoder().encode(value)]
      if (spec.prec !== undefined) bytes = bytes.slice(0, spec.prec)
      const cased = (text: string) => (verb === "X" ? text.toUpperCase() : text)
      const prefix = spec.sharp ? cased("0x") : ""
      const text = spec.space
        ? bytes.map((b) => `${prefix}${cased(hex(b, 2))}`).join(" ")
        : `${bytes.length > 0 ? prefix : ""}${bytes.map((b) => cased(hex(b, 2))).join("")}`
      return pad(text, spec)
    }
  }
}

/** One operand under one verb (lists and maps element by element, as Go prints them). */
const formatArg = (raw: Value, verb: string, spec: Spec): string => {
  const value = orEmpty(raw)
  if (verb === "T") return pad(typeName(value), spec)
  if (value === null) return verb === "v" ? pad("<nil>", spec) : badVerb(verb, value)
  if (typeof value === "boolean") return verb === "t" || verb === "v" ? pad(value ? "true" : "false", spec) : badVerb(verb, value)
  if (typeof value === "bigint") return "bcdoOqxXUv".includes(verb) ? formatInteger(value, verb === "v" ? "d" : verb, spec) : badVerb(verb, value)
  if (typeof value === "number") return "eEfFgGv".includes(verb) ? formatFloatVerb(value, verb, spec) : badVerb(verb, value)
  if (typeof value === "string") return "vsqxX".includes(verb) ? formatString(value, verb, spec) : badVerb(verb, value)
  if (isList(value)) return `[${value.map((element) => formatArg(element, verb, spec)).join(" ")}]`
  if (isMap(value)) return `map[${sortedKeys(value).map((key) => `${formatArg(key, verb, spec)}:${formatArg(value[key] ?? null, verb, spec)}`).join(" ")}]`
  return badVerb(verb, value instanceof Missing ? "" : value)
}

/** Go's `fmt.Sprintf(format, args...)`. */
export const sprintf = (format: string, args: ReadonlyArray<Value>): string => {
  let out = ""
  let argIndex = 0
  const chars = [...format]
  let i = 0
  /** A `*` width or precision: the next operand, which must be an int. */
  const starArg = (): number | undefined => {
    const arg = args[argIndex++]
    return typeof arg === "bigint" && arg >= -1_000_000n && arg <= 1_000_000n ? Number(arg) : undefined
  }
  while (i < chars.length) {
    const c = chars[i++]!
    if (c !== "%") {
      out += c
      continue
    }
    const flags = { minus: false, plus: false, sharp: false, space: false, zero: false }
    for (; i < chars.length; i++) {
      const f = chars[i]
      if (f === "-") flags.minus = true
      else if (f === "+") flags.plus = true
      else if (f === "#") flags.sharp = true
      else if (f === " ") flags.space = true
      else if (f === "0") flags.zero = true
      else break
    }
    let width: number | undefined
    let bad = ""
    if (chars[i] === "*") {
      i++
      width = starArg()
      if (width === undefined) bad += "%!(BADWIDTH)"
      else if (width < 0) {
        flags.minus = true
        width = -width
      }
    } else {
      let digits = ""
      while (i < chars.length && /[0-9]/.test(chars[i]!)) digits += chars[i++]
      if (digits !== "") width = Math.min(Number(digits), 1_000_000)
    }
    let prec: number | undefined
    if (chars[i] === ".") {
      i++
      if (chars[i] === "*") {
        i++
        prec = starArg()
        if (prec === undefined || prec < 0) {
          prec = undefined
          bad += "%!(BADPREC)"
        }
      } else {
        let digits = ""
        while (i < chars.length && /[0-9]/.test(chars[i]!)) digits += chars[i++]
        prec = Math.min(Number(digits || "0"), 1_000_000)
      }
    }
    out += bad
    if (i >= chars.length) {
      out += "%!(NOVERB)"
      break
    }
    const verb = chars[i++]!
    if (verb === "%") {
      out += "%"
      continue
    }
    if (argIndex >= args.length) {
      out += `%!${verb}(MISSING)`
      continue
    }
    const spec: Spec = { ...flags, width, prec }
    out += formatArg(args[argIndex++]!, verb, spec)
  }
  if (argIndex < args.length) {
    const extra = args.slice(argIndex).map((arg) => (arg === null ? "<nil>" : `${typeName(orEmpty(arg))}=${formatValue(arg)}`))
    out += `%!(EXTRA ${extra.join(", ")})`
  }
  return out
}
