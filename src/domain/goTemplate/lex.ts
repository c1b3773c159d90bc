/**
 * The lexer of the Go `text/template` subset (see `index.ts`): text, `{{ … }}` actions with `{{-`/`-}}` trim
 * markers, `{{/* … *\/}}` comments, and inside an action the tokens of Go's own lexer (fields, variables,
 * strings, numbers, keywords, `:=`, `=`, `|`, parentheses). It follows `text/template/parse/lex.go` so the
 * same text splits the same way — a `}}` inside a quoted string does not end the action.
 */

export type TokenType =
  | "text"
  | "leftDelim"
  | "rightDelim"
  | "space"
  | "identifier"
  | "keyword"
  | "field"
  | "variable"
  | "dot"
  | "string"
  | "rawString"
  | "charConstant"
  | "number"
  | "bool"
  | "nil"
  | "assign"
  | "declare"
  | "pipe"
  | "leftParen"
  | "rightParen"
  | "char"
  | "eof"
  /** A lexing failure: the last token, its value the message (the parser reports it when it gets there). */
  | "error"

export interface Token {
  readonly type: TokenType
  /** The token's source text (for `text`, the text after trimming). */
  readonly value: string
  /** Offset into the template source (UTF-16 units). */
  readonly pos: number
}

export const KEYWORDS: ReadonlySet<string> = new Set(["block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"])

const LEFT = "{{"
const RIGHT = "}}"

/** Go's `isSpace` for actions and trim markers: space, tab, carriage return, newline. */
const isSpace = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\r" || c === "\n"

const ALNUM = /^[\p{L}\p{Nd}_]$/u
const codePointAt = (text: string, pos: number): string | undefined => {
  const code = text.codePointAt(pos)
  return code === undefined ? undefined : String.fromCodePoint(code)
}
const isAlphaNumeric = (c: string | undefined): boolean => c !== undefined && ALNUM.test(c)
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9"

const describeChar = (c: string): string => {
  const code = c.codePointAt(0) ?? 0
  return `U+${code.toString(16).toUpperCase().padStart(4, "0")} ${JSON.stringify(c)}`
}

/** Trailing spaces of `text` removed (a left trim marker `{{- `). */
const trimRight = (text: string): string => {
  let end = text.length
  while (end > 0 && isSpace(text[end - 1])) end--
  return text.slice(0, end)
}

/**
 * Splits `source` into tokens; the list ends with an `eof` token, or with an `error` token where the text
 * stops making sense — after the tokens before it, so (as in Go, whose parser pulls tokens one at a time) a
 * parse error earlier in the text is the one reported.
 */
export const lex = (source: string): ReadonlyArray<Token> => {
  const tokens: Array<Token> = []
  const n = source.length
  let pos = 0
  let skipLeadingSpace = false

  /** A right delimiter at `p`: `}}`, or ` -}}` (a trim marker after whitespace). */
  const atRightDelim = (p: number): { readonly end: number; readonly trim: boolean } | undefined => {
    if (source.startsWith(RIGHT, p)) return { end: p + RIGHT.length, trim: false }
    if (isSpace(source[p]) && source[p + 1] === "-" && source.startsWith(RIGHT, p + 2)) return { end: p + 2 + RIGHT.length, trim: true }
    return undefined
  }
  const skipSpaces = (p: number): number => {
    while (p < n && isSpace(source[p])) p++
    return p
  }
  /** Just past the `quote` closing the literal opened at `from` (backslash escapes skipped); undefined at a newline or the end. */
  const quotedEnd = (from: number, quote: string): number | undefined => {
    for (let q = from + 1; ; ) {
      const d = source[q]
      if (d === undefined || d === "\n") return undefined
      if (d === "\\") {
        q += 2
        continue
      }
      q++
      if (d === quote) return q
    }
  }
  const fail = (at: number, message: string): ReadonlyArray<Token> => {
    tokens.push({ type: "error", value: message, pos: at })
    return tokens
  }

  for (;;) {
    if (skipLeadingSpace) {
      pos = skipSpaces(pos)
      skipLeadingSpace = false
    }
    const open = source.indexOf(LEFT, pos)
    if (open < 0) {
      if (pos < n) tokens.push({ type: "text", value: source.slice(pos), pos })
      tokens.push({ type: "eof", value: "", pos: n })
      return tokens
    }
    const leftTrim = source[open + 2] === "-" && isSpace(source[open + 3])
    const text = leftTrim ? trimRight(source.slice(pos, open)) : source.slice(pos, open)
    if (text !== "") tokens.push({ type: "text", value: text, pos })
    let p = open + LEFT.length + (leftTrim ? 2 : 0)

    if (source.startsWith("/*", p)) {
      const end = source.indexOf("*/", p + 2)
      if (end < 0) return fail(open, "unclosed comment")
      const close = atRightDelim(end + 2)
      if (close === undefined) return fail(end + 2, "comment ends before closing delimiter")
      pos = close.end
      skipLeadingSpace = close.trim
      continue
    }

    tokens.push({ type: "leftDelim", value: LEFT, pos: open })
    let parenDepth = 0
    for (;;) {
      const close = atRightDelim(p)
      if (close !== undefined) {
        if (parenDepth > 0) return fail(p, "unclosed left paren")
        tokens.push({ type: "rightDelim", value: RIGHT, pos: p })
        pos = close.end
        skipLeadingSpace = close.trim
        break
      }
      if (p >= n) return fail(open, "unclosed action")
      const c = source[p] ?? ""
      const start = p
      /** After an identifier, field or variable only a terminator may follow. */
      const atTerminator = (q: number): boolean =>
        q >= n || isSpace(source[q]) || ".,|:()".includes(source[q] ?? "") || source.startsWith(RIGHT, q)

      if (isSpace(c)) {
        // Up to a trim-marked right delimiter (` -}}`), which the top of the loop takes.
        while (p < n && isSpace(source[p]) && atRightDelim(p) === undefined) p++
        tokens.push({ type: "space", value: source.slice(start, p), pos: start })
      } else if (c === "=") {
        tokens.push({ type: "assign", value: "=", pos: p++ })
      } else if (c === ":") {
        if (source[p + 1] !== "=") return fail(p, "expected :=")
        tokens.push({ type: "declare", value: ":=", pos: p })
        p += 2
      } else if (c === "|") {
        tokens.push({ type: "pipe", value: "|", pos: p++ })
      } else if (c === "\"") {
        const end = quotedEnd(start, "\"")
        if (end === undefined) return fail(start, "unterminated quoted string")
        p = end
        tokens.push({ type: "string", value: source.slice(start, p), pos: start })
      } else if (c === "`") {
        const end = source.indexOf("`", p + 1)
        if (end < 0) return fail(start, "unterminated raw quoted string")
        p = end + 1
        tokens.push({ type: "rawString", value: source.slice(start, p), pos: start })
      } else if (c === "'") {
        const end = quotedEnd(start, "'")
        if (end === undefined) return fail(start, "unterminated character constant")
        p = end
        tokens.push({ type: "charConstant", value: source.slice(start, p), pos: start })
      } else if (c === "$" || (c === "." && !isDigit(source[p + 1]))) {
        p++
        if (atTerminator(p)) {
          tokens.push(c === "$" ? { type: "variable", value: "$", pos: start } : { type: "dot", value: ".", pos: start })
          continue
        }
        for (let ch = codePointAt(source, p); isAlphaNumeric(ch); ch = codePointAt(source, p)) p += ch!.length
        if (!atTerminator(p)) {
          const bad = codePointAt(source, p) ?? ""
          return fail(p, `bad character ${describeChar(bad)}`)
        }
        tokens.push({ type: c === "$" ? "variable" : "field", value: source.slice(start, p), pos: start })
      } else if (c === "+" || c === "-" || c === "." || isDigit(c)) {
        // Go's scanNumber: sign, base prefix, digits, fraction, exponent; nothing alphanumeric after it.
        if (source[p] === "+" || source[p] === "-") p++
        let digits = "0123456789_"
        if (source[p] === "0") {
          p++
          const prefix = source[p]
          if (prefix === "x" || prefix === "X") digits = "0123456789abcdefABCDEF_"
          else if (prefix === "o" || prefix === "O") digits = "01234567_"
          else if (prefix === "b" || prefix === "B") digits = "01_"
          if (digits !== "0123456789_") p++
        }
        const run = (set: string) => { while (p < n && set.includes(source[p] ?? "")) p++ }
        run(digits)
        if (source[p] === ".") {
          p++
          run(digits)
        }
        if (digits === "0123456789_" && (source[p] === "e" || source[p] === "E")) {
          p++
          if (source[p] === "+" || source[p] === "-") p++
          run("0123456789_")
        }
        if (digits.length === 23 && (source[p] === "p" || source[p] === "P")) {
          p++
          if (source[p] === "+" || source[p] === "-") p++
          run("0123456789_")
        }
        if (source[p] === "i") p++
        if (isAlphaNumeric(codePointAt(source, p))) {
          p += codePointAt(source, p)?.length ?? 1
          return fail(start, `bad number syntax: ${JSON.stringify(source.slice(start, p))}`)
        }
        tokens.push({ type: "number", value: source.slice(start, p), pos: start })
      } else if (isAlphaNumeric(codePointAt(source, p))) {
        for (let ch = codePointAt(source, p); isAlphaNumeric(ch); ch = codePointAt(source, p)) p += ch!.length
        if (!atTerminator(p)) return fail(p, `bad character ${describeChar(codePointAt(source, p) ?? "")}`)
        const word = source.slice(start, p)
        if (KEYWORDS.has(word)) tokens.push({ type: "keyword", value: word, pos: start })
        else if (word === "true" || word === "false") tokens.push({ type: "bool", value: word, pos: start })
        else if (word === "nil") tokens.push({ type: "nil", value: word, pos: start })
        else tokens.push({ type: "identifier", value: word, pos: start })
      } else if (c === "(") {
        parenDepth++
        tokens.push({ type: "leftParen", value: c, pos: p++ })
      } else if (c === ")") {
        parenDepth--
        if (parenDepth < 0) return fail(p, "unexpected right paren")
        tokens.push({ type: "rightParen", value: c, pos: p++ })
      } else if (c.charCodeAt(0) >= 0x21 && c.charCodeAt(0) < 0x7f) {
        tokens.push({ type: "char", value: c, pos: p++ })
      } else {
        return fail(p, `unrecognized character in action: ${describeChar(codePointAt(source, p) ?? c)}`)
      }
    }
  }
}
