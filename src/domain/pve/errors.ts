/**
 * One place decides what a failed PVE call means, because PVE's status codes alone do not say it: pveproxy
 * answers definite refusals with 500 as often as real outages, and puts the reason in the HTTP status line.
 * The decision (retry, treat as conflict, as gone, or give up) is made from status *and* message here,
 * purely, so the HTTP layer, the saga and the tests share it.
 */

import { boundText } from "../errorText.js"

export type PveErrorClass = "transient" | "conflict" | "notFound" | "permanent" | "unauthorized"

/** Status 0 stands for "no HTTP answer" (connection refused/reset, timeout); the message then holds the cause. */
export const NO_RESPONSE = 0

// Lock timeouts, busy workers, quorum hiccups and pveproxy failing to reach another node: all pass.
const TRANSIENT_MESSAGES: ReadonlyArray<RegExp> = [
  /got timeout/i,
  /\bis locked\b/i,
  /got no worker upid/i,
  /^internal server error/i,
  /^service unavailable/i,
  /^bad gateway/i,
  /^gateway time-?out/i,
  /connection (?:refused|reset|timed out|closed)/i,
  /no route to host/i,
  /broken pipe/i,
  /temporarily unavailable/i,
  /cluster not ready - no quorum/i,
  /ipcc_send_rec/i,
  /\b(?:ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|UND_ERR_\w+)\b/,
  /socket hang up|other side closed|request timed out/i
]

// TLS trust failures never heal by retrying: the operator must set insecure_tls or install the CA.
const TLS_MESSAGES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|certificate/i

const CONFLICT_MESSAGES: ReadonlyArray<RegExp> = [
  /\balready exists\b/i,
  /config file already exists/i,
  /\bFile exists\b/
]

const NOT_FOUND_MESSAGES: ReadonlyArray<RegExp> = [
  /configuration file .* does not exist/i,
  /unable to find configuration file/i,
  /\bdoes not exist\b/i,
  /no such (?:VM|task|volume|file)\b/i
]

// Definite refusals PVE sends as 500 that mention words the transient list would otherwise catch.
const PERMANENT_OVERRIDES: ReadonlyArray<RegExp> = [/is running - destroy failed/i]

const matches = (patterns: ReadonlyArray<RegExp>, text: string) => patterns.some((p) => p.test(text))

/** The text classification reads: the status-line message plus PVE's per-parameter `errors`, if any. */
export const errorText = (message: string, errors?: Readonly<Record<string, string>>): string =>
  errors === undefined ? message : [message, ...Object.entries(errors).map(([k, v]) => `${k}: ${v}`)].join("\n")

export const classifyPveError = (
  status: number,
  message: string,
  errors?: Readonly<Record<string, string>>
): PveErrorClass => {
  const text = errorText(message, errors)
  if (status === 401 || status === 403) return "unauthorized"
  // Without an answer only network trouble is worth retrying; anything else is a local bug or TLS distrust.
  if (status === NO_RESPONSE) return !TLS_MESSAGES.test(text) && matches(TRANSIENT_MESSAGES, text) ? "transient" : "permanent"
  if (matches(PERMANENT_OVERRIDES, text)) return "permanent"
  if (matches(CONFLICT_MESSAGES, text)) return "conflict"
  if (status === 404 || matches(NOT_FOUND_MESSAGES, text)) return "notFound"
  if (status === 408 || status === 429) return "transient"
  // 501 is "method not implemented": a client bug, not an outage.
  if (status >= 500 && status !== 501) {
    if (status !== 500) return "transient"
    if (message.trim() === "" || matches(TRANSIENT_MESSAGES, text)) return "transient"
    return "permanent"
  }
  return "permanent"
}

/** A finished task's exit status: `OK` and `WARNINGS: n` are success; anything else is PVE's error text. */
export const isTaskSuccess = (exitstatus: string): boolean => exitstatus === "OK" || /^WARNINGS: \d+$/.test(exitstatus)

/** A failed task's text classified like an API error (a lock timeout inside a task is as transient as outside). */
export const classifyTaskFailure = (exitstatus: string): PveErrorClass => {
  if (matches(PERMANENT_OVERRIDES, exitstatus)) return "permanent"
  if (matches(CONFLICT_MESSAGES, exitstatus)) return "conflict"
  if (matches(NOT_FOUND_MESSAGES, exitstatus)) return "notFound"
  if (/got timeout|\bis locked\b|no quorum/i.test(exitstatus)) return "transient"
  return "permanent"
}

/** How many of PVE's per-parameter `errors` an error keeps, and how much of each. */
const MAX_PARAMETER_ERRORS = 20
const MAX_PARAMETER_ERROR_TEXT = 256

/**
 * PVE's per-parameter `errors` bounded like its message: at most 20 parameters, each text cut, and the
 * rest counted under `…` so nothing is silently dropped.
 */
export const boundPveErrors = (errors: Readonly<Record<string, string>>): Readonly<Record<string, string>> => {
  const entries = Object.entries(errors)
  const kept = entries.slice(0, MAX_PARAMETER_ERRORS).map(([key, value]) => [boundText(key, 64), boundText(value, MAX_PARAMETER_ERROR_TEXT)] as const)
  const rest = entries.length - kept.length
  return Object.fromEntries(rest > 0 ? [...kept, ["…", `${rest} more parameters`] as const] : kept)
}
