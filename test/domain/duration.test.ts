import { describe, expect, it } from "@effect/vitest"
import { Duration, Either, FastCheck } from "effect"
import {
  formatDuration,
  formatDurationNanos,
  MAX_DURATION_NANOS,
  parseDuration,
  parseDurationNanos
} from "../../src/domain/duration.js"

const parsed = (text: string) => Either.getOrThrowWith(parseDurationNanos(text), (error) => new Error(error))

describe("Go durations", () => {
  it.each([
    ["0", 0n],
    ["0s", 0n],
    ["300ms", 300_000_000n],
    ["5s", 5_000_000_000n],
    ["2m", 120_000_000_000n],
    ["1h30m", 5_400_000_000_000n],
    ["1.5s", 1_500_000_000n],
    [".5s", 500_000_000n],
    ["1.s", 1_000_000_000n],
    ["1h2m3s4ms5us6ns", 3_723_004_005_006n],
    ["10µs", 10_000n],
    ["10μs", 10_000n],
    ["10us", 10_000n],
    ["7ns", 7n],
    ["1.0000000001s", 1_000_000_000n],
    ["+5s", 5_000_000_000n],
    ["2562047h47m16.854775807s", MAX_DURATION_NANOS]
  ])("parses %j exactly", (text, nanos) => {
    expect(parsed(text)).toBe(nanos)
  })

  it.each([
    ["", /empty duration/],
    ["-5s", /"-5s" is negative/],
    ["5", /"5" has no unit; write e.g. "5s"/],
    ["5 minutes", /is not a duration.*no spaces/],
    ["5d", /unknown unit "d"/],
    ["s", /is not a duration/],
    [".s", /is not a duration/],
    ["1..5s", /is not a duration|unknown unit/],
    ["2562047h47m16.854775808s", /too large/]
  ])("refuses %j with a clear message", (text, message) => {
    const result = parseDurationNanos(text)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(result.left).toMatch(message)
  })

  it.each([
    [0n, "0s"],
    [1n, "1ns"],
    [1_100n, "1.1µs"],
    [2_200_000n, "2.2ms"],
    [300_000_000n, "300ms"],
    [1_500_000_000n, "1.5s"],
    [60_000_000_000n, "1m0s"],
    [300_000_000_000n, "5m0s"],
    [5_400_000_000_000n, "1h30m0s"],
    [3_723_004_005_006n, "1h2m3.004005006s"],
    [MAX_DURATION_NANOS, "2562047h47m16.854775807s"]
  ])("formats %s ns like Go: %j", (nanos, text) => {
    expect(formatDurationNanos(nanos)).toBe(text)
  })

  it("gives Effect durations", () => {
    const result = parseDuration("1h30m")
    expect(Either.isRight(result) && Duration.toMillis(result.right)).toBe(5_400_000)
    expect(formatDuration(Duration.seconds(5))).toBe("5s")
  })

  it.prop(
    "format then parse is the identity on every duration Go can hold",
    [FastCheck.bigInt({ min: 0n, max: MAX_DURATION_NANOS })],
    ([nanos]) => {
      expect(parsed(formatDurationNanos(nanos))).toBe(nanos)
    }
  )

  it.prop(
    "parse then format is canonical: formatting again changes nothing",
    [FastCheck.array(FastCheck.tuple(FastCheck.integer({ min: 0, max: 999 }), FastCheck.constantFrom("h", "m", "s", "ms", "us", "µs", "ns")), { minLength: 1, maxLength: 5 })],
    ([segments]) => {
      const text = segments.map(([n, unit]) => `${n}${unit}`).join("")
      const canonical = formatDurationNanos(parsed(text))
      expect(formatDurationNanos(parsed(canonical))).toBe(canonical)
    }
  )
})
