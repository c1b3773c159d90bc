/**
 * Log output of the daemons: one JSON object per line for log collectors (the default when stdout is not
 * a terminal), or one readable line per event for a person watching a terminal.
 */
import { HashMap, Logger, type LogLevel } from "effect"
import * as Inspectable from "effect/Inspectable"

export type LogFormat = "text" | "json"

const text = (value: unknown): string =>
  typeof value === "string" ? value : Array.isArray(value) ? value.map(text).join(" ") : Inspectable.toStringUnknown(value)

const quoted = (value: string) => (/[\s"=]/.test(value) ? JSON.stringify(value) : value)

const levelLabel = (level: LogLevel.LogLevel) => level.label.padEnd(5)

/** `HH:MM:SS.mmm LEVEL message key=value …`, annotations last so the message reads first. */
export const textLogger = Logger.make(({ annotations, date, logLevel, message }) => {
  const pairs = [...HashMap.toEntries(annotations)].map(([key, value]) => `${key}=${quoted(text(value))}`)
  return `${date.toISOString().slice(11, 23)} ${levelLabel(logLevel)} ${text(message)}${pairs.length > 0 ? `  ${pairs.join(" ")}` : ""}`
})

export const defaultLogFormat = (): LogFormat => (process.stdout.isTTY ? "text" : "json")

export const loggerLayer = (format: LogFormat) =>
  Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(format === "json" ? Logger.jsonLogger : textLogger))
