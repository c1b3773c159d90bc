/**
 * Go `text/template` for user-data and provider args, as the original server renders them (behaviour §6.3:
 * option `missingkey=zero`). A parser of our own rather than a library: the npm candidates implement a
 * different subset (no trim markers, variables, pipelines, `printf`, comparisons, `else if`, or positions in
 * their errors), and a template must fail `--validate` with the line and column of its mistake.
 *
 * Supported: text with `{{- -}}` trim markers and `{{/* … *\/}}` comments; fields `.A.B`, `.`, `$`, variables
 * (`$x := …`, `$x = …`); string (`"…"`, `` `…` ``), character, number, `true`/`false`/`nil` literals;
 * pipelines `a | b`, parenthesised pipelines; `if`/`else if`/`else`, `with`/`else with`, `range` over lists,
 * maps (in key order) and ints with `$i, $v :=`, `else`, `break`, `continue`; the built-ins `and or not len
 * index slice print printf println eq ne lt le gt ge html js urlquery`. Not supported: `define`,
 * `template`, `block` (one template per field) and `call` (the data holds no functions).
 */
import { Data, Either } from "effect"
import { execute, type ExecLimits } from "./exec.js"
import { parse, type TemplateNode } from "./parse.js"
import type { Value } from "./values.js"

export type { Value as TemplateValue, ValueMap as TemplateMap } from "./values.js"

/** A template that does not parse or does not render, with where (1-based line and column, in characters). */
export class TemplateError extends Data.TaggedError("TemplateError")<{
  readonly line: number
  readonly column: number
  readonly reason: string
}> {
  override get message() {
    return `line ${this.line}, column ${this.column}: ${this.reason}`
  }
}

export interface GoTemplate {
  readonly source: string
  readonly nodes: ReadonlyArray<TemplateNode>
}

/** Output and work bounds of one render (a template is data from a config or a URL). */
export const DEFAULT_RENDER_LIMITS: ExecLimits = { maxOutput: 1024 * 1024, maxSteps: 1_000_000 }

const errorAt = (source: string, pos: number, reason: string): TemplateError => {
  const before = source.slice(0, Math.max(0, Math.min(pos, source.length)))
  const lineStart = before.lastIndexOf("\n") + 1
  const line = before.split("\n").length
  return new TemplateError({ line, column: [...before.slice(lineStart)].length + 1, reason })
}

/** Whether `text` has any action at all (text without `{{` renders as itself). */
export const hasActions = (text: string): boolean => text.includes("{{")

export const parseGoTemplate = (source: string): Either.Either<GoTemplate, TemplateError> => {
  const parsed = parse(source)
  return "failure" in parsed ? Either.left(errorAt(source, parsed.failure.pos, parsed.failure.message)) : Either.right({ source, nodes: parsed.nodes })
}

export const renderGoTemplate = (template: GoTemplate, data: Value, limits: ExecLimits = DEFAULT_RENDER_LIMITS): Either.Either<string, TemplateError> => {
  const result = execute(template.nodes, data, limits)
  return "failure" in result ? Either.left(errorAt(template.source, result.failure.pos, result.failure.message)) : Either.right(result.output)
}

/** Parse and render in one step. */
export const renderGoTemplateText = (source: string, data: Value, limits?: ExecLimits): Either.Either<string, TemplateError> =>
  Either.flatMap(parseGoTemplate(source), (template) => renderGoTemplate(template, data, limits))
