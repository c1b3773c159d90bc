/**
 * Go-style duration strings (`"300ms"`, `"5s"`, `"1h30m"`, `"1.5s"`) as the original server's config uses
 * them, so its `config.jsonc` files load unchanged. Parsing is exact (integer nanoseconds, no float
 * rounding) and formatting reproduces Go's `time.Duration.String()` (`"5m0s"`, `"1.5s"`, `"300ms"`).
 */
import { Duration, Either } from "effect"

const UNIT_NANOS: ReadonlyArray<readonly [string, bigint]> = [
  ["ns", 1n],
  ["us", 1_000n],
  ["µs", 1_000n], // U+00B5 micro sign
  ["μs", 1_000n], // U+03BC Greek mu, which Go also accepts
  ["ms", 1_000_000n],
  ["s", 1_000_000_000n],
  ["m", 60_000_000_000n],
  ["h", 3_600_000_000_000n]
]
const UNITS = new Map(UNIT_NANOS)

/** Go's largest duration (int64 nanoseconds, about 290 years). */
export const MAX_DURATION_NANOS = 9_223_372_036_854_775_807n

const SEGMENT = /^(\d*)(?:\.(\d*))?([^\d.]+)/

/**
 * Parses a Go duration into whole nanoseconds. Negative durations are refused: no config field has a
 * meaning for them, and Go's acceptance of them is how the original ended up with "0 disables" bugs.
 */
export const parseDurationNanos = (input: string): Either.Either<bigint, string> => {
  const text = input.trim()
  const quoted = JSON.stringify(input)
  if (text === "") return Either.left(`empty duration; use a Go duration such as "5s" or "1h30m"`)
  if (text.startsWith("-")) return Either.left(`${quoted} is negative; durations must be zero or positive`)
  let rest = text.startsWith("+") ? text.slice(1) : text
  if (rest === "0") return Either.right(0n)
  if (rest === "") return Either.left(`${quoted} is not a duration; use e.g. "300ms", "5s", "1h30m"`)
  if (/^\d*\.?\d*$/.test(rest)) return Either.left(`${quoted} has no unit; write e.g. "${rest}s" (units: ns, us, ms, s, m, h)`)
  let total = 0n
  while (rest !== "") {
    const match = SEGMENT.exec(rest)
    const whole = match?.[1] ?? ""
    const fraction = match?.[2]
    const unit = match?.[3] ?? ""
    if (match === null || (whole === "" && (fraction === undefined || fraction === ""))) {
      return Either.left(`${quoted} is not a duration; use e.g. "300ms", "5s", "1h30m"`)
    }
    const scale = UNITS.get(unit)
    if (scale === undefined && /\s/.test(unit)) {
      return Either.left(`${quoted} is not a duration; use e.g. "300ms", "5s", "1h30m" (no spaces)`)
    }
    if (scale === undefined) {
      return Either.left(`${quoted} has unknown unit ${JSON.stringify(unit)}; units are ns, us (µs), ms, s, m, h`)
    }
    let nanos = BigInt(whole === "" ? "0" : whole) * scale
    if (fraction !== undefined && fraction !== "") {
      // Exact: fraction digits × unit ÷ 10^digits, truncated like Go does below a nanosecond.
      nanos += (BigInt(fraction) * scale) / 10n ** BigInt(fraction.length)
    }
    total += nanos
    if (total > MAX_DURATION_NANOS) return Either.left(`${quoted} is too large (at most about 2562047h)`)
    rest = rest.slice(match[0].length)
  }
  return Either.right(total)
}

/** Parses a Go duration into an Effect `Duration`. */
export const parseDuration = (input: string): Either.Either<Duration.Duration, string> =>
  Either.map(parseDurationNanos(input), (nanos) => Duration.nanos(nanos))

/** Whole nanoseconds of a finite duration (rounding down below a nanosecond cannot occur for parsed values). */
export const toNanos = (duration: Duration.Duration): bigint => {
  const nanos = Duration.toNanos(duration)
  if (nanos._tag === "None") throw new RangeError("infinite durations have no Go form")
  return nanos.value
}

const fractionDigits = (value: bigint, digits: number): string => {
  const text = value.toString().padStart(digits, "0").replace(/0+$/, "")
  return text === "" ? "" : `.${text}`
}

/** Formats nanoseconds exactly as Go's `time.Duration.String()` does for non-negative values. */
export const formatDurationNanos = (nanos: bigint): string => {
  if (nanos < 0n) throw new RangeError("negative durations are not supported")
  if (nanos === 0n) return "0s"
  if (nanos < 1_000n) return `${nanos}ns`
  if (nanos < 1_000_000n) return `${nanos / 1_000n}${fractionDigits(nanos % 1_000n, 3)}µs`
  if (nanos < 1_000_000_000n) return `${nanos / 1_000_000n}${fractionDigits(nanos % 1_000_000n, 6)}ms`
  const hours = nanos / 3_600_000_000_000n
  const minutes = (nanos / 60_000_000_000n) % 60n
  const seconds = (nanos / 1_000_000_000n) % 60n
  const secondsText = `${seconds}${fractionDigits(nanos % 1_000_000_000n, 9)}s`
  if (hours > 0n) return `${hours}h${minutes}m${secondsText}`
  if (minutes > 0n) return `${minutes}m${secondsText}`
  return secondsText
}

/** Formats an Effect `Duration` in Go syntax (for config output and messages). */
export const formatDuration = (duration: Duration.Duration): string => formatDurationNanos(toNanos(duration))
