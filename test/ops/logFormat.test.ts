/**
 * The daemons' log lines carry the cause they are logged with (the text format used to drop it, leaving
 * "leader work failed" with no reason), once, on one line, and every line is bounded whatever it quotes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Data, Effect, Logger } from "effect"
import { formatLogger } from "../../src/cli/logging.js"

class Broken extends Data.TaggedError("Broken")<{ readonly key: string }> {
  override get message() {
    return `event log corrupt at ${this.key}: not JSON`
  }
}

const capture = (format: "text" | "json", effect: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.map(formatLogger(format), (line) => { lines.push(line) }))))
    return lines
  })

describe("log formats", () => {
  const cause = Cause.fail(new Broken({ key: "log/0000000000000042.json" }))

  it.effect("text: a logged cause is one cause=… pair, left out when the message already quotes it", () =>
    Effect.gen(function* () {
      const [bare, quoting] = yield* capture("text", Effect.zipRight(
        Effect.logError("lease: leader work of term 3 failed", cause),
        Effect.logError("lease: leader work of term 3 failed: event log corrupt at log/0000000000000042.json: not JSON", cause)
      ))
      expect(bare).toMatch(/ERROR lease: leader work of term 3 failed {2}cause="event log corrupt at log\/0000000000000042\.json: not JSON"$/)
      expect(quoting).not.toContain("cause=")
      expect(bare).not.toContain("\n")
    }))

  it.effect("json: the cause's one line is a reason field next to Effect's pretty cause", () =>
    Effect.gen(function* () {
      const [line] = yield* capture("json", Effect.logError("lease: leader work of term 3 failed", cause))
      const record = JSON.parse(line!) as { reason: string; cause: string }
      expect(record.reason).toBe("event log corrupt at log/0000000000000042.json: not JSON")
      expect(record.cause).toContain("log/0000000000000042.json")
    }))

  it.effect("a 10 MB message or cause is logged cut to a few KB, in both formats", () =>
    Effect.gen(function* () {
      const big = "x".repeat(10 * 1024 * 1024)
      for (const format of ["text", "json"] as const) {
        const lines = yield* capture(format, Effect.zipRight(Effect.logWarning(big), Effect.logError("failed", Cause.fail(new Error(big)))))
        for (const line of lines) expect(line.length).toBeLessThan(20_000)
        expect(lines[0]).toContain("[cut: 10485760 characters]")
      }
    }))
})
