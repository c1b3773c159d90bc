/**
 * Runs a parsed template (`parse.ts`) over data, as Go's `text/template/exec.go` does with the option
 * `missingkey=zero`: fields and variables, pipelines, `if`/`else if`/`with`/`range` (lists, maps in key
 * order, ints) with `break`/`continue`, and the built-ins. Bounded: a render that would write more than
 * `maxOutput` characters or take more than `maxSteps` steps fails instead of running away (`range` over a
 * large int nested three deep would otherwise never end).
 */
import { CallError, callBuiltin } from "./builtins.js"
import type { Command, Operand, Pipeline, TemplateNode } from "./parse.js"
import { formatValue, isList, isMap, MISSING, Missing, sortedKeys, truth, typeName, type Value } from "./values.js"

export interface ExecLimits {
  /** Characters of output at most. */
  readonly maxOutput: number
  /** Evaluation steps (nodes walked, commands run, range iterations) at most. */
  readonly maxSteps: number
}

export interface ExecFailure {
  readonly pos: number
  readonly message: string
}

class Failure {
  constructor(readonly pos: number, readonly message: string) {}
}

/** `{{break}}` and `{{continue}}` travel up to their `{{range}}` as a walk result. */
type Flow = "break" | "continue" | undefined

/** No value from a previous pipeline stage. */
const NO_FINAL: unique symbol = Symbol("noFinal")
type Final = Value | typeof NO_FINAL

export const execute = (
  nodes: ReadonlyArray<TemplateNode>,
  data: Value,
  limits: ExecLimits
): { readonly output: string } | { readonly failure: ExecFailure } => {
  const vars: Array<{ readonly name: string; value: Value }> = [{ name: "$", value: data }]
  const out: Array<string> = []
  let written = 0
  let steps = 0

  const step = (pos: number) => {
    if (++steps > limits.maxSteps) throw new Failure(pos, `the template takes more than ${limits.maxSteps} steps to render`)
  }
  const write = (pos: number, text: string) => {
    written += text.length
    if (written > limits.maxOutput) throw new Failure(pos, `the template renders more than ${limits.maxOutput} characters`)
    out.push(text)
  }
  const failAt = (node: { readonly pos: number; readonly text?: string }, message: string): never => {
    throw new Failure(node.pos, node.text === undefined ? message : `executing <${node.text}>: ${message}`)
  }

  const varValue = (name: string, node: Operand): Value => {
    for (let i = vars.length - 1; i >= 0; i--) if (vars[i]!.name === name) return vars[i]!.value
    return failAt(node, `undefined variable: ${name}`)
  }
  const setVar = (name: string, value: Value, node: { readonly pos: number }) => {
    for (let i = vars.length - 1; i >= 0; i--) {
      if (vars[i]!.name === name) {
        vars[i]!.value = value
        return
      }
    }
    throw new Failure(node.pos, `undefined variable: ${name}`)
  }

  const notAFunction = (args: ReadonlyArray<Operand>, final: Final) => {
    if (args.length > 1 || final !== NO_FINAL) failAt(args[0]!, `can't give argument to non-function ${args[0]!.text}`)
  }

  /** One field of `receiver`; a missing key (or a field of a missing value) is the zero value. */
  const evalField = (node: Operand, name: string, args: ReadonlyArray<Operand>, final: Final, receiver: Value): Value => {
    if (receiver instanceof Missing || receiver === null) return MISSING
    if (isMap(receiver)) {
      if (args.length > 1 || final !== NO_FINAL) failAt(node, `${name} is not a method but has arguments`)
      return Object.hasOwn(receiver, name) ? receiver[name]! : MISSING
    }
    return failAt(node, `can't evaluate field ${name} in type ${typeName(receiver)}`)
  }

  const evalFieldChain = (node: Operand, receiver: Value, idents: ReadonlyArray<string>, args: ReadonlyArray<Operand>, final: Final): Value => {
    let value = receiver
    idents.forEach((ident, i) => {
      const last = i === idents.length - 1
      value = evalField(node, ident, last ? args : [], last ? final : NO_FINAL, value)
    })
    return value
  }

  const evalArg = (dot: Value, node: Operand): Value => {
    step(node.pos)
    switch (node._tag) {
      case "Dot":
        return dot
      case "Nil":
        return null
      case "Field":
        return evalFieldChain(node, dot, node.idents, [node], NO_FINAL)
      case "Variable":
        return evalVariable(node, [node], NO_FINAL)
      case "Pipe":
        return evalPipeline(dot, node.pipe)
      case "Identifier":
        return evalFunction(dot, node, [node], NO_FINAL)
      case "Chain":
        return evalFieldChain(node, evalArg(dot, node.node), node.fields, [node], NO_FINAL)
      case "Bool":
      case "Number":
      case "String":
        return node.value
    }
  }

  const evalVariable = (node: Extract<Operand, { _tag: "Variable" }>, args: ReadonlyArray<Operand>, final: Final): Value => {
    const value = varValue(node.idents[0]!, node)
    if (node.idents.length === 1) {
      notAFunction(args, final)
      return value
    }
    return evalFieldChain(node, value, node.idents.slice(1), args, final)
  }

  const evalFunction = (dot: Value, node: Extract<Operand, { _tag: "Identifier" }>, args: ReadonlyArray<Operand>, final: Final): Value => {
    const operands = args.slice(1)
    if (node.name === "and" || node.name === "or") {
      // Go 1.18+: evaluation stops at the first argument that decides.
      let value: Value = null
      for (const operand of operands) {
        value = evalArg(dot, operand)
        if (truth(value) === (node.name === "or")) return value
      }
      return final === NO_FINAL ? value : final
    }
    const values = operands.map((operand) => evalArg(dot, operand))
    if (final !== NO_FINAL) values.push(final)
    try {
      return callBuiltin(node.name, values)
    } catch (error) {
      if (error instanceof CallError) return failAt(node, `error calling ${node.name}: ${error.message}`)
      throw error
    }
  }

  const evalCommand = (dot: Value, cmd: Command, final: Final): Value => {
    const first = cmd.args[0]!
    step(first.pos)
    switch (first._tag) {
      case "Field":
        return evalFieldChain(first, dot, first.idents, cmd.args, final)
      case "Chain":
        return evalFieldChain(first, evalArg(dot, first.node), first.fields, cmd.args, final)
      case "Identifier":
        return evalFunction(dot, first, cmd.args, final)
      case "Variable":
        return evalVariable(first, cmd.args, final)
      case "Pipe":
        notAFunction(cmd.args, final)
        return evalPipeline(dot, first.pipe)
      case "Nil":
        return failAt(first, "nil is not a command")
      case "Dot":
        notAFunction(cmd.args, final)
        return dot
      case "Bool":
      case "Number":
      case "String":
        notAFunction(cmd.args, final)
        return first.value
    }
  }

  /** The pipeline's value, its declarations left to the caller (`range` binds them per iteration). */
  const pipelineValue = (dot: Value, pipe: Pipeline): Value => {
    let value: Final = NO_FINAL
    for (const cmd of pipe.cmds) value = evalCommand(dot, cmd, value)
    return value === NO_FINAL ? null : value
  }

  const bind = (pipe: Pipeline, names: ReadonlyArray<string>, values: ReadonlyArray<Value>) => {
    names.forEach((name, i) => {
      const value = values[i] ?? null
      if (pipe.isAssign) setVar(name, value, pipe)
      else vars.push({ name, value })
    })
  }

  const evalPipeline = (dot: Value, pipe: Pipeline): Value => {
    const value = pipelineValue(dot, pipe)
    bind(pipe, pipe.decl, pipe.decl.map(() => value))
    return value
  }

  const walkList = (dot: Value, nodes: ReadonlyArray<TemplateNode>): Flow => {
    for (const node of nodes) {
      const flow = walk(dot, node)
      if (flow !== undefined) return flow
    }
    return undefined
  }

  const walkRange = (dot: Value, node: Extract<TemplateNode, { _tag: "Range" }>): Flow => {
    const mark = vars.length
    try {
      const value = pipelineValue(dot, node.pipe)
      const decl = node.pipe.decl
      const iterations: Array<readonly [Value, Value]> = []
      if (value instanceof Missing || value === null) {
        // A missing value ranges zero times.
      } else if (isList(value)) {
        value.forEach((element, i) => iterations.push([BigInt(i), element]))
      } else if (isMap(value)) {
        for (const key of sortedKeys(value)) iterations.push([key, value[key]!])
      } else if (typeof value === "bigint") {
        if (decl.length > 1) failAt(node.pipe.cmds[0]!.args[0]!, "can't use an int to iterate over more than one variable")
        if (value > BigInt(limits.maxSteps)) throw new Failure(node.pos, `the template takes more than ${limits.maxSteps} steps to render`)
        for (let i = 0n; i < value; i++) iterations.push([i, i])
      } else {
        throw new Failure(node.pos, `range can't iterate over a value of type ${typeName(value)}`)
      }
      for (const [key, element] of iterations) {
        step(node.pos)
        const iterationMark = vars.length
        if (decl.length === 1) bind(node.pipe, decl, [element])
        else if (decl.length === 2) bind(node.pipe, decl, [key, element])
        const flow = walkList(element, node.list)
        vars.length = iterationMark
        if (flow === "break") break
      }
      if (iterations.length === 0 && node.elseList !== undefined) return walkList(dot, node.elseList)
      return undefined
    } finally {
      vars.length = mark
    }
  }

  const walk = (dot: Value, node: TemplateNode): Flow => {
    if (node._tag !== "Text") step(node.pos)
    switch (node._tag) {
      case "Text":
        write(node.pos, node.text)
        return undefined
      case "Action": {
        const value = evalPipeline(dot, node.pipe)
        if (node.pipe.decl.length === 0) write(node.pos, formatValue(value))
        return undefined
      }
      case "If":
      case "With": {
        const mark = vars.length
        try {
          const value = evalPipeline(dot, node.pipe)
          if (truth(value)) return walkList(node._tag === "With" ? value : dot, node.list)
          return node.elseList === undefined ? undefined : walkList(dot, node.elseList)
        } finally {
          vars.length = mark
        }
      }
      case "Range":
        return walkRange(dot, node)
      case "Break":
        return "break"
      case "Continue":
        return "continue"
    }
  }

  try {
    walkList(data, nodes)
    return { output: out.join("") }
  } catch (error) {
    if (error instanceof Failure) return { failure: { pos: error.pos, message: error.message } }
    throw error
  }
}
