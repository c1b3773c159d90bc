/**
 * Log output of the daemons: one JSON object per line for log collectors (the default when stdout is not
 * a terminal), or one readable line per event for a person watching a terminal.
 */
import { HashMap, Logger, type LogLevel } from "effect"
import * as Inspectable from "effect/Inspectable"
import { boundText, causeLine, MAX_ERROR_TEXT } from "../domain/errorText.js"

export type LogFormat = "text" | "json"

const text = (value: unknown): string =>
  typeof value === "string" ? value : Array.isArray(value) ? value.map(text).join(" ") : Inspectable.toStringUnknown(value)

const quoted = (value: string) => (/[\s"=]/.test(value) ? JSON.stringify(value) : value)

const levelLabel = (level: LogLevel.LogLevel) => level.label.padEnd(5)

/**
 * `HH:MM:SS.mmm LEVEL message key=value … cause="…"`, annotations last so the message reads first. A cause
 * logged with the message is one bounded line (its errors' messages, no stack): dropping it left
 * "leader work failed" with no reason. Every message is bounded too, whatever it quotes.
 */
export const textLogger = Logger.make(({ annotations, cause, date, logLevel, message }) => {
  const pairs = [...HashMap.toEntries(annotations)].map(([key, value]) => `${key}=${quoted(boundText(text(value)))}`)
  const line = text(message)
  const why = causeLine(cause)
  // Said once: a message that quotes its cause already carries it.
  if (why !== undefined && !line.includes(why)) pairs.push(`cause=${quoted(why)}`)
  return `${date.toISOString().slice(11, 23)} ${levelLabel(logLevel)} ${boundText(line, MAX_LOG_MESSAGE)}${pairs.length > 0 ? `  ${pairs.join(" ")}` : ""}`
})

/** The longest message a log line carries: error texts are cut at `MAX_ERROR_TEXT` already; this is the backstop. */
const MAX_LOG_MESSAGE = 4 * MAX_ERROR_TEXT

/**
 * Effect's JSON logger with the message and the cause bounded: its `cause` field is `Cause.pretty` (stack
 * traces included), so a one-line `reason` from the same cause is added for log queries.
 */
const boundedJsonLogger = Logger.make((options) => {
  const why = causeLine(options.cause)
  // Effect hands a logger the messages of one call as an array.
  const bound = (value: unknown) => (typeof value === "string" ? boundText(value, MAX_LOG_MESSAGE) : value)
  const message = Array.isArray(options.message) ? options.message.map(bound) : bound(options.message)
  const line = Logger.jsonLogger.log({ ...options, message })
  if (why === undefined) return line
  const record = JSON.parse(line) as Record<string, unknown>
  return JSON.stringify({ ...record, cause: boundText(typeof record["cause"] === "string" ? record["cause"] : why, MAX_LOG_MESSAGE), reason: why })
})

/** The line logger of `format`, without the console (tests read its lines). */
export const formatLogger = (format: LogFormat): Logger.Logger<unknown, string> => (format === "json" ? boundedJsonLogger : textLogger)

export const defaultLogFormat = (): LogFormat => (process.stdout.isTTY ? "text" : "json")

export const loggerLayer = (format: LogFormat) =>
  Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(formatLogger(format)))
