/**
 * Parses Prometheus text with a real parser — the official Python client's (`python3-prometheus-client`),
 * run as a process with the text on stdin — so a test checks what a Prometheus server would read, not
 * what our own code thinks it wrote. The suites that use it skip off CI where it is missing
 * (test/support/realComponents.ts); under CI a missing parser fails the run.
 */
import { SYSTEM_PYTHON } from "../support/realComponents.js"
import { Effect, Schema } from "effect"
import { runProcess } from "../support/spawn.js"

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Family {
  readonly name: string
  readonly type: string
  readonly help: string
  readonly samples: ReadonlyArray<Sample>
}

const PYTHON = SYSTEM_PYTHON

const SCRIPT = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": family.name, "type": family.type, "help": family.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value if math.isfinite(s.value) else str(s.value)} for s in family.samples]})
print(json.dumps(out))
`

const ParserOutput = Schema.Array(Schema.Struct({
  name: Schema.String,
  type: Schema.String,
  help: Schema.String,
  samples: Schema.Array(Schema.Struct({
    name: Schema.String,
    labels: Schema.Record({ key: Schema.String, value: Schema.String }),
    // Non-finite values (+Inf, NaN) come as their Python spelling, which Number() reads back.
    value: Schema.Union(Schema.Number, Schema.String)
  }))
}))

export const parsePrometheus = async (text: string): Promise<ReadonlyArray<Family>> => {
  const result = await runProcess(PYTHON, ["-c", SCRIPT], { input: text, timeoutMs: 8_000 })
  if (result.status !== 0) throw new Error(`the Prometheus text parser (${PYTHON}, prometheus_client) refused the text (exit ${result.status}): ${result.stderr.trim()}`)
  const parsed = Schema.decodeUnknownSync(Schema.parseJson(ParserOutput))(result.stdout)
  return parsed.map((f) => ({ ...f, samples: f.samples.map((s) => ({ ...s, value: typeof s.value === "number" ? s.value : Number(s.value) })) }))
}

/** The samples named `name` whose labels include `labels`. */
export const samples = (families: ReadonlyArray<Family>, name: string, labels: Readonly<Record<string, string>> = {}): ReadonlyArray<Sample> =>
  families.flatMap((family) => family.samples).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

/** The sum of the values of those samples (0 when there are none). */
export const total = (families: ReadonlyArray<Family>, name: string, labels: Readonly<Record<string, string>> = {}): number =>
  samples(families, name, labels).reduce((sum, s) => sum + s.value, 0)

export const family = (families: ReadonlyArray<Family>, name: string): Family | undefined => families.find((f) => f.name === name)

/** GET `{url}/metrics` and parse it (the status must be 200). */
export const scrape = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}/metrics`)
    const text = await response.text()
    if (response.status !== 200) throw new Error(`GET ${url}/metrics answered ${response.status}: ${text}`)
    return parsePrometheus(text)
  })
