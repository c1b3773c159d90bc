/**
 * `nstance-admin place`: replays a placement decision on a saved `/cluster/resources` answer and shows every
 * node's metrics, score or exclusion reason — the explanation an operator needs before (or after) a create.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either, ParseResult, Schema } from "effect"
import {
  INVALID_FIGURES,
  type NodeEvaluation,
  type NodeResources,
  NodeResourcesEntry,
  nodeResourcesFrom,
  NoPlacement,
  type Placement,
  placeOne,
  planPlacements
} from "../domain/placement.js"
import { decodeUtf8, readInputFile, UsageError } from "../inputFile.js"
import { escapeControl } from "./escape.js"

/** A saved `/cluster/resources` answer of even a large cluster (thousands of VMs) is a few MiB. */
const MAX_RESOURCES_BYTES = 64 * 1024 * 1024

const resources = Options.text("resources").pipe(
  Options.withDescription(
    "JSON file with a saved GET /cluster/resources?type=node answer: the {\"data\": [...]} envelope or a bare array; non-node entries are ignored"
  )
)
const memory = Options.integer("memory").pipe(
  Options.withDescription("Memory of the VM in MiB; nodes with less free memory are excluded (default 0: rank only)"),
  Options.withDefault(0)
)
const cores = Options.integer("cores").pipe(
  Options.withDescription("vCPU cores of the VM; nodes with fewer CPUs are excluded (default 1)"),
  Options.withDefault(1)
)
const count = Options.integer("count").pipe(
  Options.withDescription("Place this many VMs one after the other, each charged to its node before the next (default 1)"),
  Options.withDefault(1)
)
const json = Options.boolean("json").pipe(
  Options.withDescription("Print [{\"node\": ..., \"score\": ...}, ...] best first (with --count: the placements in order)")
)

const Envelope = Schema.Union(Schema.Struct({ data: Schema.Array(Schema.Unknown) }), Schema.Array(Schema.Unknown))
const Typed = Schema.Struct({ type: Schema.optional(Schema.Unknown), node: Schema.optional(Schema.Unknown) })

const decodeEntry = (path: string, index: number, entry: unknown): NodeResources | undefined | UsageError => {
  const typed = Schema.decodeUnknownEither(Typed)(entry)
  // Entries without "type" are taken as nodes (a hand-written file); other types (qemu, storage, ...) are skipped.
  if (Either.isRight(typed) && typed.right.type !== undefined && typed.right.type !== "node") return undefined
  const decoded = Schema.decodeUnknownEither(NodeResourcesEntry)(entry)
  if (Either.isRight(decoded)) return nodeResourcesFrom(decoded.right)
  const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
  const field = issue?.path.join(".") ?? ""
  const name = Either.isRight(typed) && typeof typed.right.node === "string" ? ` (node ${JSON.stringify(typed.right.node)})` : ""
  const descriptor = typeof entry === "object" && entry !== null ? Object.getOwnPropertyDescriptor(entry, field) : undefined
  // JSON.parse reads 1e999 as Infinity, which JSON.stringify would show as null.
  const actual = descriptor === undefined ? "" : `, got ${typeof descriptor.value === "number" ? String(descriptor.value) : JSON.stringify(descriptor.value)}`
  return new UsageError({
    message: `${path}: entry ${index}${name}: ${field === "" ? "" : `field ${field}: `}${issue?.message ?? "invalid"}${issue?._tag === "Missing" ? "" : actual}`
  })
}

const loadNodes = Effect.fn("admin.place.load")(function* (path: string) {
  const input = { flag: "--resources", path }
  const bytes = yield* readInputFile({ ...input, what: "a /cluster/resources answer", maxBytes: MAX_RESOURCES_BYTES })
  const text = yield* decodeUtf8(input, bytes)
  const parsed = yield* Effect.try({
    try: (): unknown => JSON.parse(text),
    // V8's message quotes the text around the error; the catch-all printer escapes what is not printable.
    catch: (error) => new UsageError({ message: `--resources ${path}: not valid JSON: ${error instanceof Error ? error.message : String(error)}` })
  })
  const envelope = Schema.decodeUnknownEither(Envelope)(parsed)
  if (Either.isLeft(envelope)) {
    return yield* new UsageError({ message: `${path}: expected {"data": [...]} or an array of /cluster/resources entries` })
  }
  const entries = "data" in envelope.right ? envelope.right.data : envelope.right
  const nodes: Array<NodeResources> = []
  for (const [index, entry] of entries.entries()) {
    const node = decodeEntry(path, index, entry)
    if (node instanceof UsageError) return yield* node
    if (node !== undefined) nodes.push(node)
  }
  return nodes
})

const GIB = 1024 ** 3

const table = (ranking: ReadonlyArray<NodeEvaluation>): string => {
  const rows = ranking.map((e, i) => {
    // The figures of a node that reports impossible ones are not shown: they are the problem.
    const plausible = !(e.excluded ?? "").startsWith(INVALID_FIGURES)
    return [
    e.excluded === undefined ? String(i + 1) : "-",
    escapeControl(e.node),
    e.score === undefined ? "-" : e.score.toFixed(4),
    e.excluded === undefined || (plausible && e.freeMemoryBytes > 0) ? `${(e.freeMemoryBytes / GIB).toFixed(1)} GiB` : "-",
    e.excluded === undefined || (plausible && e.freeMemoryBytes > 0) ? e.freeMemoryPercent.toFixed(1) : "-",
    e.excluded === undefined || (plausible && e.maxcpu > 0) ? e.freeCpuPercent.toFixed(1) : "-",
    plausible && e.maxcpu > 0 ? String(e.maxcpu) : "-",
    e.excluded === undefined ? "" : `excluded: ${escapeControl(e.excluded)}`
    ]
  })
  const header = ["rank", "node", "score", "free mem", "free mem %", "free cpu %", "cpus", ""]
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

const scoreOf = (score: number) => Math.round(score * 1e6) / 1e6

export const placeCommand = Command.make(
  "place",
  { resources, memory, cores, count, json },
  Effect.fn("admin.place")(function* (args) {
    if (args.memory < 0) return yield* new UsageError({ message: `--memory must be 0 or more MiB, got ${args.memory}` })
    if (args.cores < 1) return yield* new UsageError({ message: `--cores must be at least 1, got ${args.cores}` })
    if (args.count < 1) return yield* new UsageError({ message: `--count must be at least 1, got ${args.count}` })
    const nodes = yield* loadNodes(args.resources)
    for (const node of nodes) {
      if (node.invalid !== undefined) {
        yield* Console.error(`⚠ --resources ${escapeControl(args.resources)}: node ${escapeControl(JSON.stringify(node.node))}: ${node.invalid}; not ranked`)
      }
    }
    const demand = { memoryBytes: args.memory * 1024 * 1024, cores: args.cores }

    const first = placeOne(nodes, demand)
    if (!args.json) yield* Console.log(table(first instanceof NoPlacement ? first.ranking : first.ranking))
    if (first instanceof NoPlacement) return yield* new UsageError({ message: first.message })

    if (args.count === 1) {
      if (args.json) {
        const candidates = first.ranking.filter((e) => e.score !== undefined)
        yield* Console.log(JSON.stringify(candidates.map((e) => ({ node: e.node, score: scoreOf(e.score ?? 0) }))))
      } else {
        yield* Console.log(`\nchosen: ${escapeControl(first.node)} (score ${first.score.toFixed(4)})`)
      }
      return
    }
    const plan = planPlacements(nodes, demand, args.count)
    const placements: ReadonlyArray<Placement> = plan instanceof NoPlacement ? plan.placed : plan
    if (args.json) {
      if (plan instanceof NoPlacement) return yield* new UsageError({ message: plan.message })
      yield* Console.log(JSON.stringify(placements.map((p) => ({ node: p.node, score: scoreOf(p.score) }))))
      return
    }
    yield* Console.log(`\nplacements for ${args.count} VMs (each charged to its node before the next):`)
    for (const [i, p] of placements.entries()) yield* Console.log(`${String(i + 1).padStart(4)}. ${escapeControl(p.node)} (score ${p.score.toFixed(4)})`)
    if (plan instanceof NoPlacement) return yield* new UsageError({ message: plan.message })
  })
).pipe(Command.withDescription("Rank the nodes of a saved /cluster/resources answer as the scheduler would (TOPSIS: free memory 60 %, free CPU 40 %)"))
