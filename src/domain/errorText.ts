/**
 * Bounds on text that comes from outside and ends up in the log, the event log or an operator's terminal:
 * PVE's error messages and task exit statuses have no size limit (a 10 MB exit status was logged in full and
 * stored in every `StepFailed`), and Schema's messages print the whole expected type and the whole value.
 * One helper cuts them all the same way: the head is kept (where PVE puts the reason) and the cut says how
 * long the text was, so a reader knows something was left out.
 */
import { Cause, ParseResult } from "effect"

/** The most characters of one error text that is stored or logged. */
export const MAX_ERROR_TEXT = 2048

/**
 * The most of one PVE text (a message, an exit status) an error keeps: less than `MAX_ERROR_TEXT`, so the
 * error's own words around it (method, path, UPID) still fit when it is stored, and the cut is made once.
 */
export const MAX_PVE_TEXT = 1536

/** How much of an operator's value a message echoes back (`--id "…"`). */
export const MAX_ECHO = 64

/**
 * `text` cut to at most `max` characters plus a marker naming its original length; shorter text is returned
 * as it is. Never splits a surrogate pair.
 */
export const boundText = (text: string, max: number = MAX_ERROR_TEXT): string => {
  if (text.length <= max) return text
  const marker = `… [cut: ${text.length} characters]`
  let end = Math.max(0, max - marker.length)
  const last = text.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  return `${text.slice(0, end)}${marker}`
}

/** An operator's value quoted for a message, cut to `MAX_ECHO` characters. */
export const echoValue = (value: string, max: number = MAX_ECHO): string => JSON.stringify(boundText(value, max))

/** `text` on one line (every run of whitespace one space) and bounded. */
export const oneLineText = (text: string, max: number = MAX_ERROR_TEXT): string => boundText(text.replace(/\s+/g, " ").trim(), max)

/**
 * Schema's message for one issue in a few words: "Expected <the whole type>, actual <the whole value>"
 * becomes "unexpected value <the value, cut>"; anything else is cut to one short line.
 */
export const shortIssue = (message: string, max = 200): string => {
  const flat = message.replace(/\s+/g, " ").trim()
  if (flat.length <= max) return flat
  const expected = /^Expected [\s\S]*?, actual ([\s\S]*)$/.exec(flat)
  if (expected !== null) return `unexpected value ${boundText(expected[1] ?? "", Math.max(24, max - 20))}`
  return boundText(flat, max)
}

/**
 * A decode failure as one short line: where (the path of the first problem) and what, plus how many other
 * problems there were. Never the schema's full description, which runs to kilobytes for an envelope.
 */
export const shortParseProblem = (error: ParseResult.ParseError, max = 200): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (first === undefined) return "does not decode"
  const where = first.path.length === 0 ? "" : `at ${first.path.map((key) => (typeof key === "number" ? `[${key}]` : String(key))).join(".").replace(/\.\[/g, "[")}: `
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : ""
  return `${where}${shortIssue(first.message, max)}${more}`
}

const messageOf = (value: unknown): string => {
  if (typeof value !== "object" || value === null) return String(value)
  const message = "message" in value && typeof value.message === "string" ? value.message : ""
  const tag = "_tag" in value && typeof value._tag === "string" ? value._tag : undefined
  return message !== "" ? message : tag ?? String(value)
}

/**
 * What a cause says, as one bounded line: its failures' and defects' messages (no stack traces), or
 * "interrupted"; undefined for an empty cause. For log lines that would otherwise drop it.
 */
export const causeLine = (cause: Cause.Cause<unknown>, max: number = MAX_ERROR_TEXT): string | undefined => {
  if (Cause.isEmpty(cause)) return undefined
  const parts = [...Cause.failures(cause), ...Cause.defects(cause)].map(messageOf)
  if (parts.length === 0) return Cause.isInterrupted(cause) ? "interrupted" : undefined
  return oneLineText([...new Set(parts)].join("; "), max)
}
