/**
 * What reaches an operator's terminal from user data (config keys, file contents, node names, error
 * texts that quote them) must never be able to move the cursor, clear the screen or fake a line: every
 * printer passes its text through `escapeControl`, which makes control characters visible instead.
 */

const NAMED: Readonly<Record<string, string>> = { "\t": "\\t", "\n": "\\n", "\r": "\\r" }

/**
 * C0 controls, DEL and C1 controls (which some terminals also obey) shown as `\t`, `\n`, `\r` or
 * `\xHH`; the bidirectional overrides as `\u{HHHH}`. Everything else, including non-ASCII text, is kept.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

export const escapeControl = (text: string): string =>
  text.replace(CONTROL, (char) => {
    const named = NAMED[char]
    if (named !== undefined) return named
    const code = char.charCodeAt(0)
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`
  })

/** A multi-line message as printable lines, each escaped (blank lines dropped). */
export const printableLines = (text: string): ReadonlyArray<string> =>
  text.split("\n").map((line) => escapeControl(line.replace(/\r$/, ""))).filter((line) => line.trim() !== "")

const SGR = /\u001b\[[0-9;]*m/g

/** Text with ANSI colour sequences removed (help printed into a pipe, or with NO_COLOR). */
export const stripColour = (text: string): string => text.replace(SGR, "")
