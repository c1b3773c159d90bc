/**
 * JSONC text → JSON value, with syntax errors located by line and column so an operator can find a
 * missing comma in a 300-line shard config without counting characters.
 */
import { Either } from "effect"
import { type Node, type ParseError, parse, parseTree, printParseErrorCode } from "jsonc-parser"

export interface JsoncSyntaxError {
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
 * A key written twice in one object: JSON parsers keep the last silently, so a second `"groups"` block
 * pasted at the end of a file would quietly replace the first.
 */
const duplicateKeys = (text: string, node: Node | undefined, out: Array<JsoncSyntaxError>): void => {
  if (node === undefined) return
  if (node.type === "object") {
    const seen = new Set<string>()
    for (const property of node.children ?? []) {
      const key = property.children?.[0]
      if (key !== undefined && typeof key.value === "string") {
        if (seen.has(key.value)) out.push({ ...lineColumnOf(text, key.offset), message: `duplicate key ${JSON.stringify(key.value)}` })
        seen.add(key.value)
      }
      duplicateKeys(text, property.children?.[1], out)
    }
  } else if (node.type === "array") {
    for (const child of node.children ?? []) duplicateKeys(text, child, out)
  }
}

/** Parses JSONC (comments and trailing commas allowed); every syntax error is returned, not just the first. */
export const parseJsonc = (text: string): Either.Either<unknown, ReadonlyArray<JsoncSyntaxError>> => {
  const errors: Array<ParseError> = []
  const value: unknown = parse(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false })
  if (errors.length > 0) {
    return Either.left(errors.map((error) => {
      const code = printParseErrorCode(error.error)
      return { ...lineColumnOf(text, error.offset), message: describe[code] ?? code }
    }))
  }
  const duplicates: Array<JsoncSyntaxError> = []
  duplicateKeys(text, parseTree(text, [], { allowTrailingComma: true, disallowComments: false }), duplicates)
  return duplicates.length > 0 ? Either.left(duplicates) : Either.right(value)
}
