/**
 * The parser of the Go `text/template` subset: tokens (`lex.ts`) to a tree, with the checks Go's parser
 * makes before anything runs — unknown functions, undefined variables, `{{end}}`/`{{else}}` out of place,
 * `{{break}}` outside `{{range}}`, literals as later pipeline stages — plus the arity of the built-in
 * functions, which Go only finds when the call runs. So `--validate` refuses what would fail every render.
 * Follows `text/template/parse/parse.go`; `define`, `template` and `block` are refused (one template per field).
 */
import { BUILTIN_ARITY, UNSUPPORTED_BUILTINS } from "./builtins.js"
import { lex, type Token, type TokenType } from "./lex.js"

export type Operand =
  | { readonly _tag: "Field"; readonly pos: number; readonly text: string; readonly idents: ReadonlyArray<string> }
  | { readonly _tag: "Variable"; readonly pos: number; readonly text: string; readonly idents: ReadonlyArray<string> }
  | { readonly _tag: "Chain"; readonly pos: number; readonly text: string; readonly node: Operand; readonly fields: ReadonlyArray<string> }
  | { readonly _tag: "Identifier"; readonly pos: number; readonly text: string; readonly name: string }
  | { readonly _tag: "Dot"; readonly pos: number; readonly text: string }
  | { readonly _tag: "Nil"; readonly pos: number; readonly text: string }
  | { readonly _tag: "Bool"; readonly pos: number; readonly text: string; readonly value: boolean }
  | { readonly _tag: "Number"; readonly pos: number; readonly text: string; readonly value: bigint | number }
  | { readonly _tag: "String"; readonly pos: number; readonly text: string; readonly value: string }
  | { readonly _tag: "Pipe"; readonly pos: number; readonly text: string; readonly pipe: Pipeline }

export interface Command {
  readonly pos: number
  readonly args: ReadonlyArray<Operand>
}

export interface Pipeline {
  readonly pos: number
  /** Variables declared (`:=`) or assigned (`=`), `$i, $v` in a range. */
  readonly decl: ReadonlyArray<string>
  readonly isAssign: boolean
  readonly cmds: ReadonlyArray<Command>
}

export type TemplateNode =
  | { readonly _tag: "Text"; readonly pos: number; readonly text: string }
  | { readonly _tag: "Action"; readonly pos: number; readonly pipe: Pipeline }
  | ({ readonly _tag: "If" } & Control)
  | ({ readonly _tag: "With" } & Control)
  | ({ readonly _tag: "Range" } & Control)
  | { readonly _tag: "Break" | "Continue"; readonly pos: number }

interface Control {
  readonly pos: number
  readonly pipe: Pipeline
  readonly list: ReadonlyArray<TemplateNode>
  readonly elseList: ReadonlyArray<TemplateNode> | undefined
}

export interface ParseFailure {
  readonly pos: number
  readonly message: string
}

class Failure {
  constructor(readonly pos: number, readonly message: string) {}
}

/** How Go's parser names a token in "unexpected …" messages. */
const describe = (token: Token): string => {
  if (token.type === "eof") return "EOF"
  if (token.type === "keyword" || token.type === "bool" || token.type === "nil" || token.type === "dot") return `<${token.value}>`
  if (token.type === "leftDelim") return "{{"
  if (token.type === "rightDelim") return "}}"
  return token.value.length > 10 ? `${JSON.stringify(token.value.slice(0, 10))}...` : JSON.stringify(token.value)
}

/** How deep controls (`if`, `range`, …, `else if` chains included) and parentheses may nest. */
export const MAX_NESTING = 200

const HEX = /^[0-9a-fA-F]+$/
const INT64_MAX = (1n << 63n) - 1n
const INT64_MIN = -(1n << 63n)

/** Go's escapes in a double-quoted string or a character constant, as UTF-8 bytes (`\x`, octal are bytes). */
const unquoteBytes = (body: string, quote: "\"" | "'"): Array<number> | string => {
  const out: Array<number> = []
  const encoder = new TextEncoder()
  for (let i = 0; i < body.length;) {
    const code = body.codePointAt(i) ?? 0
    const c = String.fromCodePoint(code)
    if (c !== "\\") {
      out.push(...encoder.encode(c))
      i += c.length
      continue
    }
    const e = body[i + 1]
    i += 2
    const simple: Readonly<Record<string, number>> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 92 }
    if (e !== undefined && simple[e] !== undefined) out.push(simple[e]!)
    else if (e === quote) out.push(e.charCodeAt(0))
    else if (e === "x" || e === "u" || e === "U") {
      const length = e === "x" ? 2 : e === "u" ? 4 : 8
      const hex = body.slice(i, i + length)
      if (hex.length !== length || !HEX.test(hex)) return "invalid syntax"
      i += length
      const value = parseInt(hex, 16)
      if (e === "x") out.push(value)
      else if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return "invalid syntax"
      else out.push(...encoder.encode(String.fromCodePoint(value)))
    } else if (e !== undefined && e >= "0" && e <= "7") {
      const octal = body.slice(i - 1, i + 2)
      if (!/^[0-7]{3}$/.test(octal) || parseInt(octal, 8) > 255) return "invalid syntax"
      i += 2
      out.push(parseInt(octal, 8))
    } else return "invalid syntax"
  }
  return out
}

const unquoteString = (token: Token): string | undefined => {
  if (token.type === "rawString") return token.value.slice(1, -1).replace(/\r/g, "")
  const bytes = unquoteBytes(token.value.slice(1, -1), "\"")
  return typeof bytes === "string" ? undefined : new TextDecoder().decode(Uint8Array.from(bytes))
}

/** A number literal: an int (bigint, int64 range) unless it is written as a float (`.`, `e`, `p`). */
export const numberValue = (token: Token): bigint | number | string => {
  if (token.type === "charConstant") {
    const bytes = unquoteBytes(token.value.slice(1, -1), "'")
    if (typeof bytes === "string") return `malformed character constant: ${token.value}`
    const text = new TextDecoder("utf-8", { fatal: false }).decode(Uint8Array.from(bytes))
    const chars = [...text]
    if (bytes.length === 1) return BigInt(bytes[0]!)
    if (chars.length !== 1) return `malformed character constant: ${token.value}`
    return BigInt(chars[0]!.codePointAt(0) ?? 0)
  }
  const text = token.value
  const illegal = `illegal number syntax: ${JSON.stringify(text)}`
  if (text.endsWith("i")) return `complex numbers are not supported: ${JSON.stringify(text)}`
  const negative = text.startsWith("-")
  const unsigned = text.replace(/^[+-]/, "")
  if (/(^_|_$|__)/.test(unsigned) || /_[.eEpP]|[.eEpP]_/.test(unsigned)) return illegal
  const clean = unsigned.replace(/_/g, "")
  let int: bigint | undefined
  if (/^0[xX][0-9a-fA-F]+$/.test(clean) || /^0[bB][01]+$/.test(clean) || /^0[oO][0-7]+$/.test(clean)) int = BigInt(clean.toLowerCase())
  else if (/^0[0-7]*$/.test(clean)) int = clean.length === 1 ? 0n : BigInt(`0o${clean.slice(1)}`)
  else if (/^[1-9][0-9]*$/.test(clean)) int = BigInt(clean)
  if (int !== undefined) {
    const signed = negative ? -int : int
    if (signed > INT64_MAX || signed < INT64_MIN) return `${text} overflows int`
    return signed
  }
  if (/^0[xX]/.test(clean)) return `hexadecimal floats are not supported: ${JSON.stringify(text)}`
  if (!/^(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(clean)) return illegal
  const value = Number(clean)
  if (!Number.isFinite(value)) return illegal
  return negative ? -value : value
}

/** A pipeline whose first command is a built-in; how many arguments it is called with. */
const checkArity = (name: string, given: number, pos: number) => {
  const arity = BUILTIN_ARITY.get(name)
  if (arity === undefined) return
  if (given < arity.min) {
    throw new Failure(pos, arity.max === arity.min
      ? `wrong number of args for ${name}: want ${arity.min} got ${given}`
      : `wrong number of args for ${name}: want at least ${arity.min} got ${given}`)
  }
  if (arity.max !== undefined && given > arity.max) {
    throw new Failure(pos, arity.max === arity.min
      ? `wrong number of args for ${name}: want ${arity.max} got ${given}`
      : `wrong number of args for ${name}: want at most ${arity.max} got ${given}`)
  }
}

const OPERAND_START: ReadonlySet<TokenType> = new Set([
  "bool", "charConstant", "dot", "field", "identifier", "number", "nil", "rawString", "string", "variable", "leftParen"
])

/** The tree of `source`, or the first problem found (as Go's parser, it stops at the first). */
export const parse = (source: string): { readonly nodes: ReadonlyArray<TemplateNode> } | { readonly failure: ParseFailure } => {
  const tokens = lex(source)
  let index = 0
  const vars: Array<string> = ["$"]
  let rangeDepth = 0
  /** Nested controls and parentheses: bounded, so no text can exhaust the stack of the parser or the renderer. */
  let depth = 0
  const enter = (pos: number) => {
    if (++depth > MAX_NESTING) throw new Failure(pos, `nested more than ${MAX_NESTING} levels deep`)
  }

  const eofToken = tokens[tokens.length - 1]!
  const next = (): Token => tokens[index++] ?? eofToken
  const peek = (): Token => tokens[index] ?? eofToken
  const backup = () => { index-- }
  const nextNonSpace = (): Token => {
    let token = next()
    while (token.type === "space") token = next()
    return token
  }
  const peekNonSpace = (): Token => {
    const token = nextNonSpace()
    backup()
    return token
  }
  const unexpected = (token: Token, context: string): never => {
    if (token.type === "error") throw new Failure(token.pos, token.value)
    throw new Failure(token.pos, `unexpected ${describe(token)} in ${context}`)
  }
  const expect = (type: TokenType, context: string): Token => {
    const token = nextNonSpace()
    if (token.type !== type) unexpected(token, context)
    return token
  }
  const useVar = (token: Token): void => {
    if (!vars.includes(token.value)) throw new Failure(token.pos, `undefined variable ${JSON.stringify(token.value)}`)
  }

  const term = (): Operand | undefined => {
    const token = nextNonSpace()
    const base = { pos: token.pos, text: token.value }
    switch (token.type) {
      case "identifier":
        if (UNSUPPORTED_BUILTINS.has(token.value)) throw new Failure(token.pos, `function ${JSON.stringify(token.value)} is not supported (the data holds no functions to call)`)
        if (!BUILTIN_ARITY.has(token.value)) throw new Failure(token.pos, `function ${JSON.stringify(token.value)} not defined`)
        return { _tag: "Identifier", ...base, name: token.value }
      case "dot":
        return { _tag: "Dot", ...base }
      case "nil":
        return { _tag: "Nil", ...base }
      case "variable":
        useVar(token)
        return { _tag: "Variable", ...base, idents: [token.value] }
      case "field":
        return { _tag: "Field", ...base, idents: [token.value.slice(1)] }
      case "bool":
        return { _tag: "Bool", ...base, value: token.value === "true" }
      case "charConstant":
      case "number": {
        const value = numberValue(token)
        if (typeof value === "string") throw new Failure(token.pos, value)
        return { _tag: "Number", ...base, value }
      }
      case "leftParen": {
        enter(token.pos)
        const pipe = pipeline("parenthesized pipeline", "rightParen")
        depth--
        return { _tag: "Pipe", pos: token.pos, text: source.slice(token.pos, tokens[index - 1]!.pos + 1), pipe }
      }
      case "string":
      case "rawString": {
        const value = unquoteString(token)
        if (value === undefined) throw new Failure(token.pos, `invalid syntax in string ${JSON.stringify(token.value.slice(0, 20))}`)
        return { _tag: "String", ...base, value }
      }
      default:
        backup()
        return undefined
    }
  }

  const operand = (): Operand | undefined => {
    const node = term()
    if (node === undefined) return undefined
    if (peek().type !== "field") return node
    const fields: Array<string> = []
    while (peek().type === "field") fields.push(next().value.slice(1))
    const text = `${node.text}${fields.map((f) => `.${f}`).join("")}`
    switch (node._tag) {
      case "Field":
        return { ...node, text, idents: [...node.idents, ...fields] }
      case "Variable":
        return { ...node, text, idents: [...node.idents, ...fields] }
      case "Bool":
      case "String":
      case "Number":
      case "Nil":
      case "Dot":
        throw new Failure(node.pos, `unexpected . after term ${JSON.stringify(node.text)}`)
      default:
        return { _tag: "Chain", pos: node.pos, text, node, fields }
    }
  }

  const command = (): Command => {
    const pos = peekNonSpace().pos
    const args: Array<Operand> = []
    for (;;) {
      peekNonSpace()
      const found = operand()
      if (found !== undefined) args.push(found)
      const token = next()
      if (token.type === "space") continue
      if (token.type === "rightDelim" || token.type === "rightParen") backup()
      else if (token.type !== "pipe") unexpected(token, "operand")
      break
    }
    if (args.length === 0) throw new Failure(pos, "empty command")
    return { pos, args }
  }

  const pipeline = (context: string, end: "rightDelim" | "rightParen"): Pipeline => {
    const pos = peekNonSpace().pos
    const decl: Array<string> = []
    let isAssign = false
    for (;;) {
      if (peekNonSpace().type !== "variable") break
      const mark = index
      const variable = nextNonSpace()
      const following = peekNonSpace()
      if (following.type === "assign" || following.type === "declare") {
        nextNonSpace()
        isAssign = following.type === "assign"
        if (isAssign) useVar(variable)
        decl.push(variable.value)
        vars.push(variable.value)
        break
      }
      if (following.type === "char" && following.value === ",") {
        nextNonSpace()
        decl.push(variable.value)
        vars.push(variable.value)
        if (context === "range" && decl.length < 2) {
          const then = peekNonSpace().type
          if (then === "variable" || then === "rightDelim" || then === "rightParen") continue
          throw new Failure(following.pos, "range can only initialize variables")
        }
        throw new Failure(following.pos, `too many declarations in ${context}`)
      }
      // Not a declaration: the variable is the pipeline's first operand.
      index = mark
      break
    }
    const cmds: Array<Command> = []
    /** The `|` the last command ended with: a command must follow it. */
    let pendingPipe: Token | undefined
    for (;;) {
      const token = nextNonSpace()
      if (token.type === end) {
        if (pendingPipe !== undefined) throw new Failure(pendingPipe.pos, `missing command after | in ${context}`)
        if (cmds.length === 0) throw new Failure(token.pos, `missing value for ${context}`)
        cmds.slice(1).forEach((cmd, i) => {
          const first = cmd.args[0]!
          if (first._tag === "Bool" || first._tag === "Dot" || first._tag === "Nil" || first._tag === "Number" || first._tag === "String") {
            throw new Failure(first.pos, `non executable command in pipeline stage ${i + 2}`)
          }
        })
        // Built-ins: the arguments written, plus the previous stage's value after the first stage.
        cmds.forEach((cmd, i) => {
          const first = cmd.args[0]!
          if (first._tag === "Identifier") checkArity(first.name, cmd.args.length - 1 + (i > 0 ? 1 : 0), first.pos)
        })
        return { pos, decl, isAssign, cmds }
      }
      if (!OPERAND_START.has(token.type)) unexpected(token, context)
      backup()
      cmds.push(command())
      const last = tokens[index - 1]
      pendingPipe = last?.type === "pipe" ? last : undefined
    }
  }

  type Terminator =
    | { readonly _tag: "end"; readonly pos: number }
    | { readonly _tag: "else"; readonly pos: number; readonly pending: Token | undefined }
    | { readonly _tag: "eof"; readonly token: Token }

  /** Text and actions up to `{{end}}`, `{{else}}` or the end of the input. */
  const itemList = (): { readonly nodes: Array<TemplateNode>; readonly terminator: Terminator } => {
    const nodes: Array<TemplateNode> = []
    for (;;) {
      const token = nextNonSpace()
      if (token.type === "eof") return { nodes, terminator: { _tag: "eof", token } }
      if (token.type === "text") {
        nodes.push({ _tag: "Text", pos: token.pos, text: token.value })
        continue
      }
      if (token.type !== "leftDelim") unexpected(token, "input")
      const keyword = peekNonSpace()
      if (keyword.type === "keyword") {
        switch (keyword.value) {
          case "end":
            nextNonSpace()
            expect("rightDelim", "end")
            return { nodes, terminator: { _tag: "end", pos: keyword.pos } }
          case "else": {
            nextNonSpace()
            const after = peekNonSpace()
            if (after.type === "keyword" && (after.value === "if" || after.value === "with")) {
              return { nodes, terminator: { _tag: "else", pos: keyword.pos, pending: after } }
            }
            expect("rightDelim", "else")
            return { nodes, terminator: { _tag: "else", pos: keyword.pos, pending: undefined } }
          }
          case "if":
          case "with":
          case "range":
            nextNonSpace()
            nodes.push(control(keyword.value, keyword.pos))
            continue
          case "break":
          case "continue":
            nextNonSpace()
            if (rangeDepth === 0) throw new Failure(keyword.pos, `{{${keyword.value}}} outside {{range}}`)
            expect("rightDelim", `{{${keyword.value}}}`)
            nodes.push({ _tag: keyword.value === "break" ? "Break" : "Continue", pos: keyword.pos })
            continue
          default:
            throw new Failure(keyword.pos, `{{${keyword.value}}} is not supported: a user-data or arg is one template, with no named templates`)
        }
      }
      const pipe = pipeline("command", "rightDelim")
      nodes.push({ _tag: "Action", pos: keyword.pos, pipe })
    }
  }

  const control = (context: "if" | "with" | "range", pos: number): TemplateNode => {
    enter(pos)
    const mark = vars.length
    const pipe = pipeline(context, "rightDelim")
    if (context === "range") rangeDepth++
    const body = itemList()
    if (context === "range") rangeDepth--
    let elseList: Array<TemplateNode> | undefined
    const terminator = body.terminator
    if (terminator._tag === "eof") throw new Failure(terminator.token.pos, "unexpected EOF")
    if (terminator._tag === "else") {
      const pending = terminator.pending
      if (pending !== undefined) {
        if (pending.value !== context) throw new Failure(pending.pos, `unexpected <${pending.value}> after {{else}} in {{${context}}}`)
        // {{if a}}…{{else if b}}…{{end}} is {{if a}}…{{else}}{{if b}}…{{end}}{{end}}: the inner one's end ends both.
        nextNonSpace()
        elseList = [control(context, pending.pos)]
      } else {
        const rest = itemList()
        if (rest.terminator._tag === "eof") throw new Failure(rest.terminator.token.pos, "unexpected EOF")
        if (rest.terminator._tag === "else") throw new Failure(rest.terminator.pos, `expected end; found {{else}} (a second {{else}} in {{${context}}})`)
        elseList = rest.nodes
      }
    }
    vars.length = mark
    depth--
    const fields = { pos, pipe, list: body.nodes, elseList }
    return context === "if" ? { _tag: "If", ...fields } : context === "with" ? { _tag: "With", ...fields } : { _tag: "Range", ...fields }
  }

  try {
    const top = itemList()
    if (top.terminator._tag !== "eof") throw new Failure(top.terminator.pos, `unexpected {{${top.terminator._tag}}}`)
    return { nodes: top.nodes }
  } catch (error) {
    if (error instanceof Failure) return { failure: { pos: error.pos, message: error.message } }
    throw error
  }
}
