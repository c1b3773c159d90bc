/**
 * Values as the Go template engine sees them: strings, booleans, ints (bigint, Go's `int`), floats (number,
 * Go's `float64`), `nil`, lists, string-keyed maps — and `MISSING`, the zero value a missing map key gives
 * under `missingkey=zero` (it prints as "", is false, ranges zero times, and compares as ""). How each prints
 * follows Go's `fmt` `%v`, so `{{ 1e6 }}` is `1e+06` as in the original.
 */

export class Missing {
  readonly _tag = "Missing"
}

/** The zero value of a key the data does not have. */
export const MISSING = new Missing()

export type Value = string | boolean | bigint | number | null | Missing | ReadonlyArray<Value> | ValueMap

export interface ValueMap {
  readonly [key: string]: Value
}

export const isMap = (value: Value): value is ValueMap =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Missing)

export const isList = (value: Value): value is ReadonlyArray<Value> => Array.isArray(value)

/** Missing values act as the empty string they stand for, everywhere but field access. */
export const orEmpty = (value: Value): Value => (value instanceof Missing ? "" : value)

/** Go's type names, for messages and `%T` (never the value itself: it may be the nonce). */
export const typeName = (value: Value): string => {
  if (value instanceof Missing || typeof value === "string") return "string"
  if (typeof value === "boolean") return "bool"
  if (typeof value === "bigint") return "int"
  if (typeof value === "number") return "float64"
  if (value === null) return "<nil>"
  if (isList(value)) return "[]interface {}"
  return Object.values(value).every((v) => typeof v === "string") ? "map[string]string" : "map[string]interface {}"
}

/** Go's `truth`: false, 0, nil and empty strings, lists and maps are false. */
export const truth = (value: Value): boolean => {
  if (value instanceof Missing || value === null) return false
  if (typeof value === "string") return value !== ""
  if (typeof value === "boolean") return value
  if (typeof value === "bigint") return value !== 0n
  if (typeof value === "number") return value !== 0
  if (isList(value)) return value.length > 0
  return Object.keys(value).length > 0
}

/** A map's keys as Go ranges over and prints them: sorted. */
export const sortedKeys = (map: ValueMap): ReadonlyArray<string> => Object.keys(map).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))

// ---- floats, as Go's strconv formats them ----

/** A non-negative decimal: 0.`digits` × 10^`dp`; `digits` has no leading or trailing zeros ("" is zero). */
interface Decimal {
  readonly digits: string
  readonly dp: number
}

const trimmed = (digits: string, dp: number): Decimal => {
  let start = 0
  while (digits[start] === "0") start++
  let end = digits.length
  while (end > start && digits[end - 1] === "0") end--
  return start === end ? { digits: "", dp: 0 } : { digits: digits.slice(start, end), dp: dp - start }
}

/** The exact decimal value of a finite non-negative double (every double is a finite decimal). */
const exactDecimal = (x: number): Decimal => {
  if (x === 0) return { digits: "", dp: 0 }
  const view = new DataView(new ArrayBuffer(8))
  view.setFloat64(0, x)
  const high = view.getUint32(0)
  const low = view.getUint32(4)
  const biased = (high >>> 20) & 0x7ff
  let mantissa = (BigInt(high & 0xfffff) << 32n) | BigInt(low)
  let exponent: number
  if (biased === 0) exponent = -1074
  else {
    mantissa |= 1n << 52n
    exponent = biased - 1075
  }
  if (exponent >= 0) {
    const text = (mantissa << BigInt(exponent)).toString()
    return trimmed(text, text.length)
  }
  const text = (mantissa * 5n ** BigInt(-exponent)).toString()
  return trimmed(text, text.length + exponent)
}

/** The shortest digits that read back as `x` (JavaScript and Go agree on them). */
const shortestDecimal = (x: number): Decimal => {
  if (x === 0) return { digits: "", dp: 0 }
  const [mantissa = "0", exp = "0"] = x.toExponential().split("e")
  return trimmed(mantissa.replace(".", ""), Number(exp) + 1)
}

/** `d` rounded to `nd` significant digits, half to even (the digits are exact, so a tie is a real tie). */
const roundDecimal = (d: Decimal, nd: number): Decimal => {
  if (nd >= d.digits.length) return d
  if (nd < 0) return { digits: "", dp: 0 }
  const next = d.digits[nd] ?? "0"
  const rest = d.digits.slice(nd + 1)
  const previous = nd > 0 ? Number(d.digits[nd - 1]) : 0
  const up = next > "5" || (next === "5" && (rest.replace(/0/g, "") !== "" || previous % 2 === 1))
  let kept = d.digits.slice(0, nd)
  if (!up) return trimmed(kept, d.dp)
  // Add one at the last kept digit.
  let i = kept.length - 1
  while (i >= 0 && kept[i] === "9") i--
  if (i < 0) return { digits: "1", dp: d.dp + 1 }
  kept = `${kept.slice(0, i)}${String(Number(kept[i]) + 1)}`
  return trimmed(kept, d.dp)
}

const digitAt = (d: Decimal, i: number): string => d.digits[i] ?? "0"

const formatE = (d: Decimal, prec: number, upper: boolean): string => {
  let out = digitAt(d, 0)
  if (prec > 0) {
    out += "."
    for (let i = 1; i <= prec; i++) out += digitAt(d, i)
  }
  const exp = d.digits === "" ? 0 : d.dp - 1
  const abs = Math.abs(exp)
  return `${out}${upper ? "E" : "e"}${exp < 0 ? "-" : "+"}${abs < 10 ? "0" : ""}${abs}`
}

const formatF = (d: Decimal, prec: number): string => {
  let out = ""
  if (d.dp > 0) for (let i = 0; i < d.dp; i++) out += digitAt(d, i)
  else out = "0"
  if (prec > 0) {
    out += "."
    for (let i = 0; i < prec; i++) out += digitAt(d, d.dp + i)
  }
  return out
}

/**
 * `x` as Go's `strconv.FormatFloat(x, verb, prec, 64)` writes it, without the sign (the caller adds it):
 * `e`, `f` or `g`; `prec` < 0 is the shortest representation (`%v` is `g` with -1).
 */
export const formatFloatMagnitude = (x: number, verb: "e" | "E" | "f" | "g" | "G", prec: number): string => {
  const value = Math.abs(x)
  if (!Number.isFinite(value)) return Number.isNaN(value) ? "NaN" : "Inf"
  const shortest = prec < 0
  switch (verb) {
    case "e":
    case "E": {
      const d = shortest ? shortestDecimal(value) : roundDecimal(exactDecimal(value), prec + 1)
      return formatE(d, shortest ? Math.max(d.digits.length - 1, 0) : prec, verb === "E")
    }
    case "f": {
      if (shortest) {
        const d = shortestDecimal(value)
        return formatF(d, Math.max(d.digits.length - d.dp, 0))
      }
      const exact = exactDecimal(value)
      return formatF(roundDecimal(exact, exact.dp + prec), prec)
    }
    case "g":
    case "G": {
      let digits = prec
      let d: Decimal
      if (shortest) {
        d = shortestDecimal(value)
        digits = d.digits.length
      } else {
        if (digits === 0) digits = 1
        d = roundDecimal(exactDecimal(value), digits)
      }
      let eprec = digits
      if (eprec > d.digits.length && d.digits.length >= d.dp) eprec = d.digits.length
      if (shortest) eprec = 6
      const exp = d.dp - 1
      if (d.digits !== "" && (exp < -4 || exp >= eprec)) {
        return formatE(d, Math.min(digits, d.digits.length) - 1, verb === "G")
      }
      return formatF(d, Math.max((digits > d.dp ? d.digits.length : digits) - d.dp, 0))
    }
  }
}

/** A float as `%v` prints it: `1e+06`, `0.5`, `-Inf`. */
export const formatFloat = (x: number): string => {
  if (Number.isNaN(x)) return "NaN"
  if (x === Infinity) return "+Inf"
  return `${x < 0 || Object.is(x, -0) ? "-" : ""}${formatFloatMagnitude(x, "g", -1)}`
}

/** Go's `%v` of a value (`fmt.Sprint` of one operand). */
export const formatValue = (value: Value): string => {
  if (value instanceof Missing) return ""
  if (typeof value === "string") return value
  if (typeof value === "boolean") return value ? "true" : "false"
  if (typeof value === "bigint") return value.toString()
  if (typeof value === "number") return formatFloat(value)
  if (value === null) return "<nil>"
  if (isList(value)) return `[${value.map(formatValue).join(" ")}]`
  return `map[${sortedKeys(value).map((key) => `${key}:${formatValue(value[key] ?? null)}`).join(" ")}]`
}

/** `fmt.Sprint`: operands joined, with a space between two operands when neither is a string. */
export const sprint = (values: ReadonlyArray<Value>): string => {
  let out = ""
  values.forEach((value, i) => {
    const isString = typeof value === "string" || value instanceof Missing
    const previous = values[i - 1]
    const previousString = previous !== undefined && (typeof previous === "string" || previous instanceof Missing)
    if (i > 0 && !isString && !previousString) out += " "
    out += formatValue(value)
  })
  return out
}

/** `fmt.Sprintln`: operands joined by spaces, and a newline. */
export const sprintln = (values: ReadonlyArray<Value>): string => `${values.map(formatValue).join(" ")}\n`
