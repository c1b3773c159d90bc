/**
 * JSONC text → JSON value, with syntax errors located by line and column so an operator can find a
 * missing comma in a 300-line shard config without counting characters. Size and nesting are bounded
 * before the (recursive) parser sees the text, so a hostile file is one clear problem, not a stack overflow.
 */
import { Either } from "effect"
import { createScanner, type Node, type ParseError, parse, parseTree, printParseErrorCode } from "jsonc-parser"

// jsonc-parser's SyntaxKind is an ambient const enum, which isolated modules cannot read; its values:
const OPEN_BRACE = 1
const CLOSE_BRACE = 2
const OPEN_BRACKET = 3
const CLOSE_BRACKET = 4
const EOF = 17

/** Largest config text accepted, in bytes of UTF-8: real shard configs are a few KiB. */
export const MAX_JSONC_BYTES = 4 * 1024 * 1024
/** Deepest nesting of objects and arrays accepted; a shard config needs about 6. */
export const MAX_JSONC_DEPTH = 64

export interface JsoncSyntaxError {
  /** 1-based; 0 (with column 0) for a problem of the whole text, such as its size. */
  readonly line: number
  readonly column: number
  readonly message: string
}

const describe: Record<string, string> = {
  InvalidSymbol: "invalid symbol",
  InvalidNumberFormat: "invalid number",
  PropertyNameExpected: "expected a property name",
  ValueExpected: "expected a value",
  ColonExpected: "expected ':'",
  CommaExpected: "expected ','",
  CloseBraceExpected: "expected '}'",
  CloseBracketExpected: "expected ']'",
  EndOfFileExpected: "expected end of file",
  InvalidCommentToken: "invalid comment",
  UnexpectedEndOfComment: "unterminated comment",
  UnexpectedEndOfString: "unterminated string",
  UnexpectedEndOfNumber: "unterminated number",
  InvalidUnicode: "invalid unicode escape",
  InvalidEscapeCharacter: "invalid escape character",
  InvalidCharacter: "invalid character"
}

/** 1-based line and column of a character offset. */
export const lineColumnOf = (text: string, offset: number): { line: number; column: number } => {
  let line = 1
  let lineStart = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      lineStart = i + 1
    }
  }
  return { line, column: offset - lineStart + 1 }
}

/**
 * Keys no reader can keep. A key written twice in one object: JSON parsers keep the last silently, so a
 * second `"groups"` block pasted at the end of a file would quietly replace the first. A `__proto__` key:
 * the parser assigns it, which sets the object's prototype instead of adding a member — a tenant, template
 * or var of that name would vanish, and its contents would show through as inherited fields.
 */
const keyProblems = (text: string, node: Node | undefined, out: Array<JsoncSyntaxError>): void => {
  if (node === undefined) return
  if (node.type === "object") {
    const seen = new Set<string>()
    for (const property of node.children ?? []) {
      const key = property.children?.[0]
      if (key !== undefined && typeof key.value === "string") {
        if (seen.has(key.value)) out.push({ ...lineColumnOf(text, key.offset), message: `duplicate key ${JSON.stringify(key.value)}` })
        else if (key.value === "__proto__") out.push({ ...lineColumnOf(text, key.offset), message: `"__proto__" cannot be used as a name (JavaScript reserves it)` })
        seen.add(key.value)
      }
      keyProblems(text, property.children?.[1], out)
    }
  } else if (node.type === "array") {
    for (const child of node.children ?? []) keyProblems(text, child, out)
  }
}

const MIB = 1024 * 1024

/** UTF-8 length of `text`, counted without encoding it (a 50 MB file should not be copied to be refused). */
const utf8Length = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) bytes += 1
    else if (code < 0x800) bytes += 2
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

/**
 * The size and nesting bounds, checked with the (iterative) scanner so strings and comments do not count
 * as nesting. The first problem only: past a bound nothing else is worth reading.
 */
export const jsoncBoundsProblem = (
  text: string,
  bounds: { readonly maxBytes: number; readonly maxDepth: number } = { maxBytes: MAX_JSONC_BYTES, maxDepth: MAX_JSONC_DEPTH }
): JsoncSyntaxError | undefined => {
  if (text.length > bounds.maxBytes || utf8Length(text) > bounds.maxBytes) {
    const size = utf8Length(text)
    return { line: 0, column: 0, message: `${(size / MIB).toFixed(1)} MiB is too large (at most ${bounds.maxBytes / MIB} MiB)` }
  }
  const scanner = createScanner(text, true)
  let depth = 0
  for (let token = scanner.scan(); token !== EOF; token = scanner.scan()) {
    if (token === OPEN_BRACE || token === OPEN_BRACKET) {
      depth++
      if (depth > bounds.maxDepth) {
        return { ...lineColumnOf(text, scanner.getTokenOffset()), message: `nested more than ${bounds.maxDepth} levels deep` }
      }
    } else if (token === CLOSE_BRACE || token === CLOSE_BRACKET) {
      depth = Math.max(0, depth - 1)
    }
  }
  return undefined
}

/**
 * Parses JSONC (comments and trailing commas allowed); every syntax error is returned, not just the first
 * — but one per position: the parser's recovery reports a truncated file's end several times.
 */
export const parseJsonc = (text: string): Either.Either<unknown, ReadonlyArray<JsoncSyntaxError>> => {
  const bounds = jsoncBoundsProblem(text)
  if (bounds !== undefined) return Either.left([bounds])
  const errors: Array<ParseError> = []
  const value: unknown = parse(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false })
  if (errors.length > 0) {
    // The parser's recovery reports several errors at one place (at the end of a truncated text, one per
    // open brace); the last of them says best what was missing.
    const last = new Map<number, ParseError>()
    for (const error of errors) last.set(error.offset, error)
    const end = text.trimEnd().length
    return Either.left([...last.values()].map((error) => {
      const code = printParseErrorCode(error.error)
      const what = describe[code] ?? code
      const atEnd = error.offset >= end && code !== "UnexpectedEndOfString" && code !== "UnexpectedEndOfComment"
      return { ...lineColumnOf(text, error.offset), message: atEnd ? `unexpected end of file; ${what}` : what }
    }))
  }
  const problems: Array<JsoncSyntaxError> = []
  keyProblems(text, parseTree(text, [], { allowTrailingComma: true, disallowComments: false }), problems)
  return problems.length > 0 ? Either.left(problems) : Either.right(value)
}
